import type { Knex } from 'knex';
import type { RunInContext } from '../observability/run-in-context';
import {
  type CommitResolution,
  type SessionKind,
  type SessionMessage,
  type SessionOutcome,
  sessionChannel,
} from '../observability/session-channel';
import { tracingSubscribed } from '../observability/tracing-subscribed';
import { outcomeUncertain } from '../retry/is-connection-error';
import { type DatabaseIdentity, databaseIdentity } from './database-identity';
import { writesData } from './writes-data';

type Query = (connection: unknown, query: unknown) => Promise<unknown>;

interface TracedClient {
  query: Query;
  raw: (...args: unknown[]) => unknown;
  schemaBuilder: (...args: unknown[]) => unknown;
  runner: (builder: unknown) => { run: () => unknown };
}

// Builders that instrumentation-knex stamps with the context they were made in (every dialect
// overrides queryBuilder, which it cannot see: query builders are covered by `runner` below).
const builders = ['raw', 'schemaBuilder'] as const;

/**
 * What knex-scope knows of one session while someone listens: the context of its trace on
 * `knex-scope:session`, and the statement counts a forgotten-session report needs. Made only
 * when the channel has subscribers or forgotten sessions are reported. Internal to knex-scope.
 *
 * @example
 * const trace = traceSession('lazy', knex, true); // undefined when nobody listens
 */
export class SessionTrace implements SessionMessage {
  readonly kind: SessionKind;
  statements = 0;
  wrote = false;
  outcome: SessionOutcome | undefined = undefined;
  error: unknown = undefined;
  commitResolution: CommitResolution | undefined = undefined;
  runInContext: RunInContext | undefined = undefined;
  readonly #knex: Knex;
  #identity: DatabaseIdentity | undefined;

  constructor(kind: SessionKind, knex: Knex) {
    this.kind = kind;
    this.#knex = knex;
  }

  get system(): string {
    return this.#database().system;
  }

  get namespace(): string | undefined {
    return this.#database().namespace;
  }

  get serverAddress(): string | undefined {
    return this.#database().serverAddress;
  }

  get serverPort(): number | undefined {
    return this.#database().serverPort;
  }

  // Read on first use: a session counted only for a forgotten-session report rarely needs it.
  #database(): DatabaseIdentity {
    this.#identity ??= databaseIdentity(this.#knex);
    return this.#identity;
  }
}

/**
 * Starts the trace of a session being asked for (publishing `start`), or returns undefined, having
 * allocated nothing, when `knex-scope:session` has no subscriber and `counted` is false.
 *
 * @example
 * const trace = traceSession(kind, knex, core.onForgotten !== undefined);
 */
export function traceSession(
  kind: SessionKind,
  knex: Knex,
  counted: boolean,
): SessionTrace | undefined {
  if (!counted && !tracingSubscribed(sessionChannel)) return undefined;
  const trace = new SessionTrace(kind, knex);
  if (sessionChannel.start.hasSubscribers) sessionChannel.start.publish(trace);
  return trace;
}

/**
 * Calls `begin` for a traced session, in the subscriber's context if it gave one, then publishes
 * `end`.
 *
 * @example
 * const opening = trace === undefined ? begin() : beginTraced(trace, begin);
 */
export function beginTraced<T>(trace: SessionTrace, begin: () => T): T {
  try {
    const run = trace.runInContext;
    return run === undefined ? begin() : run(begin, undefined);
  } finally {
    if (sessionChannel.end.hasSubscribers) sessionChannel.end.publish(trace);
  }
}

/**
 * Counts one statement of a traced session (every statement of the user's comes to the
 * transaction's client as a query object; BEGIN, COMMIT and ROLLBACK as strings), for the
 * forgotten-session report and the session's span.
 *
 * @example
 * if (typeof sql !== 'string') countStatement(trace, sql);
 */
export function countStatement(trace: SessionTrace, sql: unknown): void {
  trace.statements++;
  if (!trace.wrote && writesData(sql)) trace.wrote = true;
}

/**
 * When the subscriber of a traced session gave a `runInContext`, makes the session's transaction
 * client run its statements, the making of its raw and schema builders and the running of every
 * builder (`await trx('t')…`) through it: so that the spans of database instrumentations
 * (`@opentelemetry/instrumentation-pg`, `-mysql2`, `-knex`) nest under the session's. Call it
 * before the session wraps `client.query` itself.
 *
 * @example
 * traceClient(trx.client, trace);
 */
export function traceClient(client: TracedClient, trace: SessionTrace): void {
  const run = trace.runInContext;
  if (run === undefined) return;
  const query = client.query;
  client.query = (connection, sql) => run(query, client, connection, sql);
  for (const name of builders) {
    const make = client[name];
    client[name] = function (this: unknown, ...args: unknown[]) {
      return run(make, this, ...args);
    };
  }
  const runner = client.runner;
  client.runner = function (this: unknown, builder) {
    const made = runner.call(this, builder);
    const start = made.run;
    made.run = function (this: unknown) {
      return run(start, this);
    };
    return made;
  };
}

/**
 * Records how the session ended and publishes `error` (when it failed), `asyncStart` and
 * `asyncEnd`. Only the first call counts.
 *
 * @example
 * settleSession(trace, 'committed', undefined);
 */
export function settleSession(trace: SessionTrace, outcome: SessionOutcome, error: unknown): void {
  if (trace.outcome !== undefined) return;
  trace.outcome = outcome;
  if (outcome === 'failed') {
    trace.error = error;
    if (sessionChannel.error.hasSubscribers) sessionChannel.error.publish(trace);
  }
  if (sessionChannel.asyncStart.hasSubscribers) sessionChannel.asyncStart.publish(trace);
  if (sessionChannel.asyncEnd.hasSubscribers) sessionChannel.asyncEnd.publish(trace);
}

/**
 * Traces a session the scope refused to open (SessionLimitError) as one that failed at once, if
 * anyone listens, and returns the error.
 *
 * @example
 * throw refuseSession('explicit', knex, new SessionLimitError(message));
 */
export function refuseSession<E>(kind: SessionKind, knex: Knex, error: E): E {
  if (!tracingSubscribed(sessionChannel)) return error;
  const trace = traceSession(kind, knex, false) as SessionTrace;
  beginTraced(trace, () => undefined);
  settleSession(trace, 'failed', error);
  return error;
}

/**
 * Notes on a traced session what the lookup of a COMMIT that lost its connection found out, and
 * passes its answer (whether the COMMIT was applied) through.
 *
 * @example
 * applied = await resolveCommit(trace, error, tracker.commitFailed(trx, error, knex));
 */
export function resolveCommit(
  trace: SessionTrace | undefined,
  error: unknown,
  lookup: Promise<boolean>,
): Promise<boolean> {
  if (trace === undefined || !outcomeUncertain(error)) return lookup;
  return lookup.then(
    (applied) => {
      trace.commitResolution = applied ? 'committed' : 'rolled back';
      return applied;
    },
    (unknown: unknown) => {
      trace.commitResolution = 'unknown';
      throw unknown;
    },
  );
}
