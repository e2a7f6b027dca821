import { randomBytes } from 'node:crypto';
import type { Knex } from 'knex';
import { CommitOutcomeUnsupportedError } from '../core/errors';
import { commitMarkerTable } from './commit-marker-migration';
import { withFreshConnection } from './fresh-connection';
import { isConnectionError } from './is-connection-error';
import type { ServerSession } from './server-session';

/** What a marker lookup found. */
export type MarkerOutcome = 'committed' | 'absent' | 'unknown';

const retryDelays = [0, 25, 50, 100, 200, 400, 800, 1600];

/**
 * A new marker token: the time in base 36 on 9 characters, then 24 random hex digits. Tokens
 * sort by age, which `deleteExpiredCommitMarkers` relies on.
 *
 * @example
 * newMarkerToken(); // 'm0x1k2a3b9f0c…'
 */
export function newMarkerToken(): string {
  return Date.now().toString(36).padStart(9, '0') + randomBytes(12).toString('hex');
}

/**
 * The token of a marker older than `date`: every token below it is older.
 *
 * @example
 * knex(commitMarkerTable).where('token', '<', markerTokenAt(new Date(Date.now() - 86_400_000)));
 */
export function markerTokenAt(date: Date): string {
  return date.getTime().toString(36).padStart(9, '0');
}

/**
 * Inserts the marker row `token` in the open transaction `trx`. On PostgreSQL the same round
 * trip returns the backend it runs on. A missing table is a CommitOutcomeUnsupportedError;
 * `'read only'` when MySQL/MariaDB refused the INSERT in a READ ONLY transaction (which it
 * leaves open; PostgreSQL would abort it, so READ ONLY must be known before there).
 *
 * @example
 * const backend = await insertCommitMarker(trx, token); // PostgreSQL: { pid, started }
 */
export async function insertCommitMarker(
  trx: Knex.Transaction,
  token: string,
): Promise<ServerSession | 'read only' | undefined> {
  const dialect = (trx.client as { dialect?: string }).dialect;
  try {
    if (dialect === 'postgresql') {
      const { rows } = (await trx.raw(
        `insert into ${commitMarkerTable} (token) values (?) ` +
          'returning pg_backend_pid() as pid, now()::text as started',
        [token],
      )) as { rows: { pid: number; started: string }[] };
      const row = rows[0];
      return row && { dialect: 'postgresql', pid: Number(row.pid), started: row.started };
    }
    await trx.raw(`insert into ${commitMarkerTable} (token) values (?)`, [token]);
    return undefined;
  } catch (error) {
    // ER_CANT_EXECUTE_IN_READ_ONLY_TRANSACTION: a statement error, the transaction goes on.
    if ((error as { errno?: unknown }).errno === 1792) return 'read only';
    if (!isMissingTable(error)) throw error;
    throw new CommitOutcomeUnsupportedError(
      `retryTransaction({ commitOutcome: 'marker' }) writes a row in table ${commitMarkerTable}, ` +
        'which does not exist: create it with the migration knex-scope exports ' +
        '(commitMarkerMigration, or commitMarkerMigrationSource).',
      { cause: error },
    );
  }
}

/**
 * Looks for the marker `token` from a fresh connection, retrying while the server cannot be
 * reached until `deadline`. On PostgreSQL a standby is not believed (`unknown`); on Galera the
 * read waits for every write the cluster committed (`wsrep_sync_wait = 1`).
 *
 * @example
 * if ((await lookUpCommitMarker(knex, token, Date.now() + 20_000)) === 'committed') return;
 */
export async function lookUpCommitMarker(
  knex: Knex,
  token: string,
  deadline: number,
): Promise<MarkerOutcome> {
  const dialect = (knex.client as { dialect?: string }).dialect;
  if (dialect !== 'postgresql' && dialect !== 'mysql') {
    // SQLite: in-process, one connection; no fresh one needed or possible.
    const row = await knex(commitMarkerTable).where({ token }).first();
    return row === undefined ? 'absent' : 'committed';
  }
  for (const delay of retryDelays) {
    if (delay > 0) await new Promise((resolve) => setTimeout(resolve, delay));
    if (Date.now() >= deadline) break;
    try {
      const found = await withFreshConnection(knex, deadline, async (query) => {
        if (dialect === 'postgresql') {
          const [row] = await query(
            `select pg_is_in_recovery() as standby, exists (select 1 from ${commitMarkerTable} ` +
              'where token = ?) as found',
            [token],
          );
          return row?.standby === true ? undefined : row?.found === true;
        }
        try {
          await query('set session wsrep_sync_wait = 1');
        } catch (error) {
          // ER_UNKNOWN_SYSTEM_VARIABLE: not a Galera build; nothing to wait for.
          if ((error as { errno?: unknown }).errno !== 1193) throw error;
        }
        const rows = await query(`select 1 as found from ${commitMarkerTable} where token = ?`, [
          token,
        ]);
        return rows.length > 0;
      });
      if (found !== undefined) return found ? 'committed' : 'absent';
    } catch (error) {
      // The server may be restarting, or the same fault killed this connection too; anything
      // else (a login refused) will not get better.
      if (!isConnectionError(error)) break;
    }
  }
  return 'unknown';
}

function isMissingTable(error: unknown): boolean {
  const { code, errno, message } = (error ?? {}) as Record<string, unknown>;
  return (
    code === '42P01' ||
    errno === 1146 ||
    (typeof message === 'string' && message.includes(`no such table: ${commitMarkerTable}`))
  );
}
