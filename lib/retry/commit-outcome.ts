import type { Knex } from 'knex';
import { isConnectionError } from './is-connection-error';

/** What PostgreSQL says became of a transaction. */
export type CommitOutcome = 'committed' | 'aborted' | 'unknown';

// When the connection is cut while COMMIT is in flight, the backend may still be finishing the
// transaction (or noticing the lost client and aborting it): 'in progress' is asked again.
const pollDelays = [0, 25, 50, 100, 200, 400, 800];

/**
 * The id of the open PostgreSQL transaction `trx`, or null if it has none because it wrote
 * nothing (`txid_current_if_assigned()`, PostgreSQL 10+, assigns no id itself). One round trip.
 *
 * @example
 * const xid = await captureTransactionId(trx); // '7482', or null for a read-only transaction
 */
export async function captureTransactionId(trx: Knex.Transaction): Promise<string | null> {
  const result = (await trx.raw('select txid_current_if_assigned() as xid')) as {
    rows: { xid: string | null }[];
  };
  return result.rows[0]?.xid ?? null;
}

/**
 * Asks PostgreSQL, on a fresh pooled connection, whether transaction `xid` committed
 * (`txid_status`). Waits up to about 1.6 s while it is still in progress; `unknown` if it stays
 * so, if the server no longer knows the id, or if it cannot be asked.
 *
 * @example
 * if ((await resolveCommitOutcome(knex, xid)) === 'committed') return result;
 */
export async function resolveCommitOutcome(knex: Knex, xid: string): Promise<CommitOutcome> {
  let failures = 0;
  for (const delay of pollDelays) {
    if (delay > 0) await new Promise((resolve) => setTimeout(resolve, delay));
    let status: string | null;
    try {
      const result = (await knex.raw('select txid_status(?::bigint) as status', [xid])) as {
        rows: { status: string | null }[];
      };
      status = result.rows[0]?.status ?? null;
    } catch (error) {
      // The pool may first hand out another connection that died with the same fault.
      if (isConnectionError(error) && ++failures < 3) continue;
      return 'unknown';
    }
    if (status === 'committed' || status === 'aborted') return status;
    if (status !== 'in progress') return 'unknown';
  }
  return 'unknown';
}
