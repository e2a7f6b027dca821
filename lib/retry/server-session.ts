import type { Knex } from 'knex';
import { type FreshQuery, withFreshConnection } from './fresh-connection';
import { isConnectionError } from './is-connection-error';

/**
 * The server session (PostgreSQL backend, MySQL/MariaDB connection thread) a transaction ran
 * on, noted when it began, so that it can be ended from another connection if the client lost
 * it while the server may still be running its statement or its COMMIT.
 */
export type ServerSession =
  | {
      readonly dialect: 'postgresql';
      /** `pg_backend_pid()`: the server's, also through PgBouncer (pg's `processID` is not). */
      readonly pid: number;
      /**
       * `now()` of the transaction, as text: the backend still runs this transaction while
       * `pg_stat_activity.xact_start` equals it, which no other backend reusing the pid can.
       */
      readonly started: string;
    }
  | {
      readonly dialect: 'mysql';
      /** `CONNECTION_ID()`. */
      readonly id: number;
      /** `@@hostname:@@port:@@server_id`: the server the id belongs to. */
      readonly server: string;
    };

/** How ending a server session went. */
export type EndOutcome = 'ended' | 'not running' | 'unreachable';

const pollDelays = [5, 10, 20, 40, 80, 160];

/**
 * Makes sure `session` no longer runs on the server: terminates it from a fresh connection
 * (`pg_terminate_backend` / `KILL CONNECTION`) if it is still there, then waits until it has
 * gone. `'not running'` when it had already ended, `'unreachable'` when that could not be
 * made sure before `deadline` (a `Date.now()` value): the server could not be reached, the
 * session would not end, or (MySQL/MariaDB) the fresh connection reached another server.
 * Internal to knex-scope.
 *
 * @example
 * if ((await endServerSession(knex, session, Date.now() + 10_000)) !== 'unreachable') lookUp();
 */
export async function endServerSession(
  knex: Knex,
  session: ServerSession,
  deadline: number,
): Promise<EndOutcome> {
  for (let attempt = 0; Date.now() < deadline; attempt++) {
    try {
      const outcome = await withFreshConnection(knex, deadline, (query) =>
        session.dialect === 'postgresql'
          ? endBackend(query, session, deadline)
          : endThread(query, session, deadline),
      );
      if (outcome !== 'unreachable') return outcome;
    } catch (error) {
      // The server may be restarting, or the same fault killed this connection too; anything
      // else (a login refused) will not get better.
      if (!isConnectionError(error)) return 'unreachable';
    }
    await delay(Math.min(pollDelays[attempt] ?? 200, Math.max(deadline - Date.now(), 0)));
  }
  return 'unreachable';
}

async function endBackend(
  query: FreshQuery,
  session: Extract<ServerSession, { dialect: 'postgresql' }>,
  deadline: number,
): Promise<EndOutcome> {
  const terminated = await query(
    'select pg_terminate_backend(pid) as terminated from pg_stat_activity ' +
      'where pid = ? and xact_start = ?::timestamptz',
    [session.pid, session.started],
  );
  if (terminated.length === 0) return 'not running';
  // A pid freed by the terminated backend and reused by a new one is told apart by its start.
  const stillThere = () =>
    query('select 1 from pg_stat_activity where pid = ? and backend_start <= ?::timestamptz', [
      session.pid,
      session.started,
    ]);
  return (await waitUntilEmpty(stillThere, deadline)) ? 'ended' : 'unreachable';
}

async function endThread(
  query: FreshQuery,
  session: Extract<ServerSession, { dialect: 'mysql' }>,
  deadline: number,
): Promise<EndOutcome> {
  const present = () =>
    query('select id from information_schema.processlist where id = ?', [session.id]);
  const [here] = await query(
    "select connection_id() as me, concat(@@hostname, ':', @@port, ':', @@server_id) as server",
  );
  // Another server (a Galera node the connection function moved to): an id there is someone else's.
  if (here?.server !== session.server) return 'unreachable';
  // Thread ids grow for the life of the server: a fresh one not above the old one means the
  // server restarted since, taking the old session with it, and the id may now be another's.
  if (Number(here?.me) <= session.id) return 'not running';
  if ((await present()).length === 0) return 'not running';
  try {
    await query(`kill connection ${Number(session.id)}`);
  } catch (error) {
    // ER_NO_SUCH_THREAD: it ended between the two statements.
    if ((error as { errno?: unknown }).errno !== 1094) throw error;
    return 'not running';
  }
  return (await waitUntilEmpty(present, deadline)) ? 'ended' : 'unreachable';
}

async function waitUntilEmpty(rows: () => Promise<unknown[]>, deadline: number): Promise<boolean> {
  for (let attempt = 0; ; attempt++) {
    if ((await rows()).length === 0) return true;
    if (Date.now() >= deadline) return false;
    await delay(pollDelays[attempt] ?? 200);
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
