import type { Knex } from 'knex';
import { withFreshConnection } from './fresh-connection';
import { isConnectionError } from './is-connection-error';
import type { ServerSession } from './server-session';

/** What PostgreSQL says became of a transaction. */
export type CommitOutcome = 'committed' | 'aborted' | 'unknown';

/**
 * A PostgreSQL transaction's id and the history it belongs to, noted right before its COMMIT.
 * `txid_status` of the id means something only on a server that continues that same history:
 * the same cluster (`system`) on the same timeline. A standby promoted after a failover starts a
 * new timeline; the old primary's last commits may not be in it, and their ids may be reused by
 * other transactions there.
 */
export interface TransactionId {
  /** `txid_current_if_assigned()`; null when the transaction wrote nothing. */
  readonly xid: string | null;
  /** `system_identifier` of `pg_control_system()`. */
  readonly system: string;
  /** The timeline the server was writing on, from `pg_walfile_name(pg_current_wal_lsn())`. */
  readonly timeline: number | null;
}

// When the connection is cut while COMMIT is in flight, the backend may still be finishing the
// transaction (or noticing the lost client and aborting it): 'in progress' is asked again.
const pollDelays = [0, 25, 50, 100, 200, 400, 800];

// pg_walfile_name raises an error during recovery; a standby has no timeline of its own to give.
const timeline =
  'case when pg_is_in_recovery() then null else pg_walfile_name(pg_current_wal_lsn()) end as wal';
const history = `(pg_control_system()).system_identifier::text as system, ${timeline}`;

// pg_control_system() reads the control file under ControlFileLock: measured here, it made every
// capture about 30 µs slower when idle and up to a millisecond under load. A server's identifier
// never changes while its postmaster runs, so the capture asks for it only when the postmaster's
// start (in memory; as epoch seconds, which no session's TimeZone or DateStyle changes) is not
// the last one seen.
let known = { postmaster: '-1', system: '' };

/**
 * The id of the open PostgreSQL transaction `trx` (null if it wrote nothing:
 * `txid_current_if_assigned()`, PostgreSQL 10+, assigns no id itself) and the cluster and
 * timeline it runs on, in one round trip; with `withBackend`, the same round trip also returns
 * the backend it runs on (for a session whose BEGIN did not note it).
 *
 * @example
 * const { id } = await captureTransactionId(trx); // id: { xid: '7482', system: '7315…', timeline: 1 }
 */
export async function captureTransactionId(
  trx: Knex.Transaction,
  withBackend = false,
): Promise<{ id: TransactionId; backend?: ServerSession | undefined }> {
  const backend = withBackend ? ', pg_backend_pid() as pid, now()::text as started' : '';
  // Inlined, not bound: without parameters pg sends the simple protocol, one message instead of
  // five. The value is the server's own output, checked against its shape when it was kept.
  const asked = known;
  const started = 'extract(epoch from pg_postmaster_start_time())';
  const result = (await trx.raw(
    'select txid_current_if_assigned()::text as xid, ' +
      `${started}::text as postmaster, ` +
      `case when ${started} = ${asked.postmaster} then null ` +
      `else (pg_control_system()).system_identifier::text end as system, ${timeline}${backend}`,
  )) as {
    rows: {
      xid: string | null;
      postmaster: string;
      system: string | null;
      wal: string | null;
      pid?: number;
      started?: string;
    }[];
  };
  const row = result.rows[0];
  // null: the server started when the one asked about did, so it is that server.
  const system = row === undefined ? '' : (row.system ?? asked.system);
  if (row?.system != null && /^[0-9.]+$/.test(row.postmaster)) {
    known = { postmaster: row.postmaster, system: row.system };
  }
  return {
    // An empty identifier (no row: it cannot happen) matches no server: the outcome is unknown.
    id: { xid: row?.xid ?? null, system, timeline: timelineOf(row?.wal) },
    backend:
      row?.pid === undefined
        ? undefined
        : { dialect: 'postgresql', pid: Number(row.pid), started: String(row.started) },
  };
}

/**
 * Asks PostgreSQL, on a fresh connection, whether transaction `id` committed (`txid_status`).
 * Only a primary of the same cluster, on the same timeline as when the id was noted, is
 * believed: a standby (`pg_is_in_recovery()`), another cluster or a promoted standby answers
 * `unknown`. Waits up to about 1.6 s while the transaction is still in progress; `unknown` if it
 * stays so, if the server no longer knows the id, or if it cannot be asked before `deadline`.
 *
 * @example
 * if ((await resolveCommitOutcome(knex, id, Date.now() + 10_000)) === 'committed') return result;
 */
export async function resolveCommitOutcome(
  knex: Knex,
  id: TransactionId,
  deadline: number,
): Promise<CommitOutcome> {
  if (id.xid === null || id.timeline === null) return 'unknown';
  let failures = 0;
  for (const delay of pollDelays) {
    if (delay > 0) await new Promise((resolve) => setTimeout(resolve, delay));
    let row:
      | { standby: boolean; system: string; wal: string | null; status: string | null }
      | undefined;
    try {
      [row] = (await withFreshConnection(knex, deadline, (query) =>
        query(
          `select pg_is_in_recovery() as standby, ${history}, ` +
            'case when pg_is_in_recovery() then null else txid_status(?::bigint) end as status',
          [id.xid],
        ),
      )) as NonNullable<typeof row>[];
    } catch (error) {
      // The server may be restarting or failing over; the fault may strike this connection too.
      if (isConnectionError(error) && ++failures < 3 && Date.now() < deadline) continue;
      return 'unknown';
    }
    if (row === undefined || row.standby) return 'unknown';
    if (String(row.system) !== id.system || timelineOf(row.wal) !== id.timeline) return 'unknown';
    if (row.status === 'committed' || row.status === 'aborted') return row.status;
    if (row.status !== 'in progress') return 'unknown';
  }
  return 'unknown';
}

/** The timeline in a WAL file name: its first 8 hex digits. */
function timelineOf(wal: string | null | undefined): number | null {
  return typeof wal === 'string' && wal.length >= 8 ? Number.parseInt(wal.slice(0, 8), 16) : null;
}
