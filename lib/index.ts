export type { ScopeMiddleware } from './adapters/scope-middleware';
export { type Db, withDb } from './adapters/with-db';
export {
  type LegacySession,
  type LegacySessionOptions,
  withLegacySession,
} from './adapters/with-legacy-session';
export type { Wrap } from './adapters/wrap/wrap-handler';
export type { CommitTracker } from './core/commit-tracking';
export type { DbConfig } from './core/create-knex';
export { currentDb } from './core/current-db';
export {
  CommitOutcomeUnknownError,
  CommitOutcomeUnsupportedError,
  type ErrorCode,
  InvalidConfigError,
  isKnexScopeError,
  KnexScopeError,
  NoScopeError,
  ScopeClosedError,
  SessionClosedError,
  SessionLimitError,
  TestDatabaseError,
  UnsafeRetryError,
} from './core/errors';
export {
  type FailoverConnection,
  type FailoverOptions,
  failoverConnection,
} from './core/failover-connection';
export type { CommitMode, DbOptions } from './core/normalize-db-options';
export { parseDatabaseUrl } from './core/parse-database-url';
export { redactUrl } from './core/redact-url';
export type { Scope } from './core/scope';
export type { ForgottenSession } from './observability/forgotten-channel';
export type { RetryAttemptMessage, RetryOperation } from './observability/retry-channel';
export type { RunInContext } from './observability/run-in-context';
export type {
  CommitResolution,
  SessionKind,
  SessionMessage,
  SessionOutcome,
} from './observability/session-channel';
export {
  commitMarkerMigration,
  commitMarkerMigrationName,
  commitMarkerMigrationSource,
  commitMarkerTable,
} from './retry/commit-marker-migration';
export {
  type DeleteExpiredCommitMarkersOptions,
  deleteExpiredCommitMarkers,
} from './retry/delete-expired-commit-markers';
export { isConnectionError, isTransientError } from './retry/is-connection-error';
export {
  type PreparedTransaction,
  type ResolvePreparedOptions,
  resolvePreparedTransactions,
} from './retry/resolve-prepared-transactions';
export type {
  CommitOutcomeMode,
  RetryDecision,
  RetryEvent,
  RetryOptions,
  RetrySessionTarget,
} from './retry/retry-options';
export { type RetryDecorator, type Retrying, retryTransaction } from './retry/retry-transaction';
