export type { CommitTracker } from './commit-tracking';
export type { DbConfig } from './create-knex';
export { currentDb } from './current-db';
export {
  CommitOutcomeUnknownError,
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
} from './errors';
export { isConnectionError, isTransientError } from './is-connection-error';
export type { DbOptions } from './normalize-db-options';
export { parseDatabaseUrl } from './parse-database-url';
export { redactUrl } from './redact-url';
export type {
  RetryDecision,
  RetryEvent,
  RetryOptions,
  RetrySessionTarget,
} from './retry-options';
export { type RetryDecorator, type Retrying, retryTransaction } from './retry-transaction';
export type { Scope } from './scope';
export type { ScopeMiddleware } from './scope-middleware';
export { type Db, withDb } from './with-db';
export {
  type LegacySession,
  type LegacySessionOptions,
  withLegacySession,
} from './with-legacy-session';
export type { Wrap } from './wrap-handler';
