import type { DriverConnection } from '../core/connection-state';
import type { ServerSession } from './server-session';
import type { TxClient } from './use-xa-transaction';

interface QueryObject {
  response?: unknown;
}

/**
 * Makes the BEGIN that knex is about to send on `trxClient` also return the backend's
 * `pg_backend_pid()` and the transaction's `now()`, in the same round trip (a simple-protocol
 * query may hold several statements, through PgBouncer too), and hands them to `captured`.
 * pg's `client.processID` would cost nothing, but through PgBouncer it is the pooler's key, not
 * a server backend: terminating that pid could end an unrelated session. Internal to knex-scope.
 *
 * @example
 * captureBackendAtBegin(trxClient, (session) => { record.server = session; });
 */
export function captureBackendAtBegin(
  trxClient: TxClient,
  captured: (session: Extract<ServerSession, { dialect: 'postgresql' }>) => void,
): void {
  const inner = trxClient.query;
  trxClient.query = function (this: TxClient, connection: DriverConnection, sql: unknown) {
    trxClient.query = inner; // BEGIN only
    if (typeof sql !== 'string' || !sql.startsWith('BEGIN')) {
      return inner.call(this, connection, sql);
    }
    const begin = sql.endsWith(';') ? sql : `${sql};`;
    return inner
      .call(this, connection, `${begin} select pg_backend_pid() as pid, now()::text as started`)
      .then((result) => {
        const query = result as QueryObject;
        const responses = query.response;
        if (Array.isArray(responses)) {
          const row = (responses[1] as { rows?: { pid: unknown; started: unknown }[] })?.rows?.[0];
          if (row !== undefined) {
            captured({ dialect: 'postgresql', pid: Number(row.pid), started: String(row.started) });
          }
          query.response = responses[0];
        }
        return query;
      });
  };
}

/** The session, if any, to tell when the backend of a pg client says it is exiting. */
const listening = new WeakMap<object, { exited: () => void }>();

/**
 * Calls `exited` when the backend of the pg client `connection` says it is exiting with a FATAL
 * error of its own (57P01 when terminated or at shutdown, 57P02 at a crash, 25P03 and 57P05 on
 * timeouts) or a PANIC, as the answer to a statement of `trxClient` or, between statements, as
 * the client's 'error' event. Such a backend runs nothing after that (a COMMIT it had finished
 * stays finished), so there is no server session left to end before a retry or a lookup. One
 * listener per connection, told about the session it runs now. Internal to knex-scope.
 *
 * @example
 * observeBackendExit(trxClient, connection, () => { record.done = true; });
 */
export function observeBackendExit(
  trxClient: TxClient,
  connection: DriverConnection,
  exited: () => void,
): void {
  const client = connection as DriverConnection & {
    on?(event: 'error', listener: (error: unknown) => void): void;
  };
  const current = listening.get(client);
  if (current !== undefined) current.exited = exited;
  else if (typeof client.on === 'function') {
    const state = { exited };
    listening.set(client, state);
    client.on('error', (error) => {
      if (isExit(error)) state.exited();
    });
  }
  // knex emits query-error on the transaction's client before the statement's promise rejects
  // (lib/execution/internal/query-executioner.js): no promise per statement.
  trxClient.on('query-error', (error) => {
    if (isExit(error)) exited();
  });
}

// What PostgreSQL's own backend sends as it exits. Not every FATAL: PgBouncer sends FATALs of its
// own (08P01: query_timeout, "server conn crashed?") while the backend behind it may still be
// running the statement, which must then be ended before a retry or a lookup.
const exitCodes = new Set(['57P01', '57P02', '57P05', '25P03']);

function isExit(error: unknown): boolean {
  const { severity, code } = (error ?? {}) as { severity?: unknown; code?: unknown };
  return severity === 'PANIC' || (severity === 'FATAL' && exitCodes.has(String(code)));
}
