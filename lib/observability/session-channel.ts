import { type TracingChannel, tracingChannel } from 'node:diagnostics_channel';
import type { RunInContext } from './run-in-context';

/** How a session was asked for: `scope.session`, `scope.getSession()`, `scope.getSession(callback)`, `withLegacySession`. */
export type SessionKind = 'lazy' | 'explicit' | 'callback' | 'eager';

/**
 * How a session ended: COMMIT succeeded; rolled back by the caller (`trx.rollback()`, a callback
 * that threw, `scope.rollback()`, `retryTransaction` before a retry); rolled back because its
 * scope ended while it was still open; or failed (BEGIN or COMMIT failed, or the scope refused
 * it with SessionLimitError).
 */
export type SessionOutcome = 'committed' | 'rolled back' | 'rolled back at scope end' | 'failed';

/**
 * What became of a COMMIT whose connection was lost, as `retryTransaction` found out: applied,
 * not applied, or impossible to tell (CommitOutcomeUnknownError).
 */
export type CommitResolution = 'committed' | 'rolled back' | 'unknown';

/**
 * The context object of one session on the `knex-scope:session` tracing channel: the same object
 * in every event of that session. Published only while the channel has subscribers.
 */
export interface SessionMessage {
  /** `db.system.name` of OpenTelemetry: `postgresql`, `mysql` (MariaDB too), `sqlite`, or knex's dialect name. */
  readonly system: string;
  /** The database name, or the SQLite file; undefined when the connection config does not say. */
  readonly namespace: string | undefined;
  readonly serverAddress: string | undefined;
  readonly serverPort: number | undefined;
  readonly kind: SessionKind;
  /** Statements the session sent, not counting BEGIN, COMMIT and ROLLBACK. */
  readonly statements: number;
  /** True once a statement that may change data was sent (anything but SELECT, SHOW, EXPLAIN…). */
  readonly wrote: boolean;
  /** Set before `asyncStart`. */
  readonly outcome: SessionOutcome | undefined;
  /** The error a failed session ended with (BEGIN's, COMMIT's, or SessionLimitError); set before `error`. */
  readonly error: unknown;
  /** Set when the session's COMMIT lost its connection and `retryTransaction` looked the outcome up. */
  readonly commitResolution: CommitResolution | undefined;
  /**
   * A subscriber of `start` may set it: the session's BEGIN, statements, COMMIT and ROLLBACK, and
   * the making of its query builders, then run through it.
   */
  runInContext?: RunInContext | undefined;
}

/**
 * `knex-scope:session`: one trace per session, from the moment it is asked for (`start`, then
 * `end` once BEGIN is under way) to its COMMIT or ROLLBACK (`asyncStart`, `asyncEnd`), with
 * `error` before them when it failed. The context is a SessionMessage.
 *
 * @example
 * sessionChannel.subscribe({
 *   start() {}, end() {}, asyncStart() {}, error() {},
 *   asyncEnd(message) { console.log(message.kind, message.outcome) },
 * });
 */
export const sessionChannel: TracingChannel<unknown, SessionMessage> =
  tracingChannel('knex-scope:session');
