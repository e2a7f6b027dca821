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
