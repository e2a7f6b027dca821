import { hostname } from 'node:os';
import type { Knex } from 'knex';
import { settlingXids } from './settle-xa-branch';
import { parseXid, xidSql } from './xa-xid';

/** Options of `resolvePreparedTransactions`. */
export interface ResolvePreparedOptions {
  /**
   * Only transactions that began at least this many ms ago are committed: a process on another
   * host may still be settling a younger one. Keep it above your longest transaction plus 30 s.
   * @default 600_000 (ten minutes)
   */
  readonly olderThan?: number | undefined;
  /** Report what would be done, change nothing. @default false */
  readonly dryRun?: boolean | undefined;
}

/** One prepared XA transaction found on the server, and what was done with it. */
export interface PreparedTransaction {
  /** As `XA RECOVER` shows it: gtrid and bqual concatenated. */
  readonly xid: string;
  /** `committed`; left alone: `foreign` (not knex-scope's), `owner alive` (its process on this host still runs), `too recent` (younger than `olderThan`), `in use` (attached to a live session, or resolved meanwhile); `would commit` in a dry run. */
  readonly action:
    | 'committed'
    | 'would commit'
    | 'foreign'
    | 'owner alive'
    | 'too recent'
    | 'in use';
  /** For knex-scope's: the app, host and process that made it, and when it began. */
  readonly app?: string;
  readonly host?: string;
  readonly pid?: number;
  readonly createdAt?: Date;
}

/**
 * Finds the prepared XA transactions on the MySQL/MariaDB server (`XA RECOVER`) and commits
 * those that `retryTransaction({ commitOutcome: 'xa' })` left behind: a process that crashed,
 * or lost the server for longer than its 20 s settling limit, between `XA PREPARE` and
 * `XA COMMIT`. Such a transaction holds its locks until committed. Committing is always the
 * right end: knex-scope prepares only once the application asked to commit. Others' prepared
 * transactions are reported, never touched. Call it when the app starts and on a timer; it
 * needs the privilege to run `XA RECOVER` (MySQL 8: XA_RECOVER_ADMIN).
 *
 * @example
 * const found = await resolvePreparedTransactions(db.knex);
 * for (const t of found) if (t.action !== 'committed') console.warn('prepared XA left alone', t);
 */
export async function resolvePreparedTransactions(
  knex: Knex,
  options: ResolvePreparedOptions = {},
): Promise<PreparedTransaction[]> {
  const olderThan = options.olderThan ?? 600_000;
  if (typeof olderThan !== 'number' || Number.isNaN(olderThan) || olderThan < 0) {
    throw new TypeError(
      `resolvePreparedTransactions: option "olderThan" must be a number of ms, got ${String(olderThan)}`,
    );
  }
  const dryRun = options.dryRun ?? false;
  const [rows] = (await knex.raw('xa recover')) as [Record<string, unknown>[]];
  const here = hostname();
  const found: PreparedTransaction[] = [];
  for (const row of rows) {
    const data = String(row.data);
    const xid = parseXid(row);
    if (xid === undefined) {
      found.push({ xid: data, action: 'foreign' });
      continue;
    }
    const who = { xid: data, app: xid.app, host: xid.host, pid: xid.pid, createdAt: xid.createdAt };
    const ours = xid.host === here.replace(/[^A-Za-z0-9._-]/g, '_').slice(0, 20);
    if (
      ours &&
      (xid.pid === process.pid ? settlingXids.has(xid.gtrid + xid.bqual) : isAlive(xid.pid))
    ) {
      found.push({ ...who, action: 'owner alive' });
    } else if (Date.now() - xid.createdAt.getTime() < olderThan) {
      found.push({ ...who, action: 'too recent' });
    } else if (dryRun) {
      found.push({ ...who, action: 'would commit' });
    } else {
      try {
        await knex.raw(`xa commit ${xidSql(xid)}`);
        found.push({ ...who, action: 'committed' });
      } catch (error) {
        if ((error as { errno?: unknown }).errno !== 1397) throw error; // XAER_NOTA
        found.push({ ...who, action: 'in use' });
      }
    }
  }
  return found;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as { code?: unknown }).code === 'EPERM';
  }
}
