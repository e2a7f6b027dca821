import type { Knex } from 'knex';
import { withFreshConnection } from './fresh-connection';
import { isConnectionError } from './is-connection-error';
import { endServerSession, type ServerSession } from './server-session';
import { parseXid, type Xid, xidSql } from './xa-xid';

/** `committed`: the work is in the database, once; `absent`: it was never prepared, so not applied. */
export type XaSettlement = 'committed' | 'absent' | 'unknown';

const retryDelays = [0, 25, 50, 100, 200, 400, 800, 1600, 3200];

/**
 * The xids (`gtrid + bqual`) this process is settling right now, which
 * resolvePreparedTransactions leaves alone: committing one of them behind settleXaBranch's back
 * would make it find the transaction absent after a PREPARE and wrongly conclude "not applied".
 */
export const settlingXids = new Set<string>();

/**
 * Finishes XA transaction `xid` whose connection died after `XA PREPARE` was sent: ends the
 * old server session first (a prepared transaction stays attached to its session, and a
 * PREPARE or COMMIT still running there could land after the lookup), then, from a fresh
 * connection, commits it if `XA RECOVER` lists it. Absent from the list, it was committed
 * (`XA COMMIT` had been sent) or never prepared (only `XA PREPARE` had). `unknown` when the
 * server could not be reached, or the old session would not end, before `deadline`.
 *
 * @example
 * const settled = await settleXaBranch(knex, xid, session, Date.now() + 20_000);
 */
export async function settleXaBranch(
  knex: Knex,
  xid: Xid,
  session: ServerSession,
  deadline: number,
): Promise<XaSettlement> {
  const key = xid.gtrid + xid.bqual;
  settlingXids.add(key);
  try {
    return await settle(knex, xid, session, deadline);
  } finally {
    settlingXids.delete(key);
  }
}

async function settle(
  knex: Knex,
  xid: Xid,
  session: ServerSession,
  deadline: number,
): Promise<XaSettlement> {
  if ((await endServerSession(knex, session, deadline)) === 'unreachable') return 'unknown';
  for (const delay of retryDelays) {
    if (delay > 0) await new Promise((resolve) => setTimeout(resolve, delay));
    if (Date.now() >= deadline) break;
    try {
      const settled = await withFreshConnection(knex, deadline, async (query) => {
        const listed = (await query('xa recover')).some((row) => {
          const found = parseXid(row);
          return found?.gtrid === xid.gtrid && found.bqual === xid.bqual;
        });
        if (!listed) return 'absent' as const;
        try {
          await query(`xa commit ${xidSql(xid)}`);
          return 'committed' as const;
        } catch (error) {
          // XAER_NOTA: committed meanwhile by resolvePreparedTransactions in another process.
          if ((error as { errno?: unknown }).errno === 1397) return undefined;
          throw error;
        }
      });
      if (settled !== undefined) return settled;
    } catch (error) {
      // The server may be restarting, or the same fault killed this connection too; anything
      // else (a login refused) will not get better.
      if (!isConnectionError(error)) break;
    }
  }
  return 'unknown';
}
