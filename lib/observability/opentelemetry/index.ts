export type { ForgottenSession } from '../forgotten-channel';
export type { RetryAttemptMessage, RetryOperation } from '../retry-channel';
export type { RunInContext } from '../run-in-context';
export type {
  CommitResolution,
  SessionKind,
  SessionMessage,
  SessionOutcome,
} from '../session-channel';
export {
  instrumentKnexScope,
  type KnexScopeInstrumentation,
  type KnexScopeInstrumentationOptions,
} from './instrument-knex-scope';
