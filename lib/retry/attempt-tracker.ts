import type { Knex } from 'knex';
import type { CommitTracker } from '../core/commit-tracking';
import { type DriverConnection, isClosed } from '../core/connection-state';
import { CommitOutcomeUnknownError, CommitOutcomeUnsupportedError } from '../core/errors';
import { captureBackendAtBegin, observeBackendExit } from './capture-postgres-backend';
import { insertCommitMarker, lookUpCommitMarker, newMarkerToken } from './commit-marker';
import { captureTransactionId, resolveCommitOutcome, type TransactionId } from './commit-outcome';
import { outcomeUncertain } from './is-connection-error';
import { mysqlSessionInfo } from './mysql-session-info';
import { openTrackedTransaction } from './open-tracked-transaction';
import type { CommitOutcomeMode } from './retry-options';
import { endServerSession, type ServerSession } from './server-session';
import { type TxClient, useXaTransaction } from './use-xa-transaction';
import { newXid } from './xa-xid';

/** What is known about a session's transaction, from its BEGIN or right before its COMMIT. */
interface SessionRecord {
  readonly knex: Knex;
  connection: DriverConnection | undefined;
  /** The server session it runs on: ended from elsewhere if the client loses it. */
  server: ServerSession | undefined;
  /** Opened as an XA transaction (useXaTransaction settles its COMMIT itself). */
  readonly xa: boolean;
  /** A READ ONLY transaction: it can write no marker, and a lost COMMIT of it lost nothing. */
  readOnly: boolean;
  /** The marker row written right before COMMIT (`'marker'`). */
  marker?: string | undefined;
  /** PostgreSQL's transaction id, noted right before COMMIT (`'auto'`). */
  transactionId?: TransactionId | undefined;
  /**
   * Nothing of it can still run on the server: committed, its server session ended by us, or
   * the server said it is exiting (a PostgreSQL FATAL).
   */
  done: boolean;
}

const records = new WeakMap<Knex.Transaction, SessionRecord>();

/** Anything set on `__knex__disposed` means the connection is gone. */
const noMark = Symbol('none');

/** How long an outcome lookup may take (ending the old session included) before it is unknown. */
const lookupTimeout = 20_000;
/** How long a retry waits for the previous attempt's server sessions to end. */
const ghostTimeout = 10_000;

function dialectOf(knex: Knex | Knex.Transaction): string {
  return (knex.client as { dialect?: string }).dialect ?? '';
}

/** A session of the test kit's rollback isolation: a savepoint of the test's transaction. */
function isSavepoint(trx: Knex.Transaction): boolean {
  return (trx as { parentTransaction?: unknown }).parentTransaction !== undefined;
}

/**
 * Watches the sessions of one `retryTransaction` attempt. It opens them (noting the server
 * session each runs on, and in `'xa'` mode as XA transactions), counts the COMMITs that
 * succeeded (a retry would do their work again), decides what a COMMIT that lost its connection
 * did, and before a retry ends the server sessions the attempt's dead connections left running.
 * `'auto'`: on PostgreSQL the transaction id is noted right before COMMIT and asked afterwards;
 * elsewhere the outcome cannot be known. `'marker'`: a marker row is written right before COMMIT
 * and looked for. `'xa'`: useXaTransaction settles it. Internal to knex-scope.
 *
 * @example
 * const tracker = new AttemptTracker(commitTracking.getStore(), 'marker', '1a', 1);
 * await commitTracking.run(tracker, () => fn());
 * if (tracker.commits > 0) // the attempt committed work
 */
export class AttemptTracker implements CommitTracker {
  commits = 0;
  readonly #outer: CommitTracker | undefined;
  readonly #mode: CommitOutcomeMode;
  readonly #call: string;
  readonly #attempt: number;
  readonly #begun: SessionRecord[] = [];

  /**
   * `outer`: the tracker of an enclosing attempt, which a commit in this one concerns too;
   * `call` and `attempt` name the attempt in XA transaction ids.
   */
  constructor(outer?: CommitTracker, mode: CommitOutcomeMode = 'auto', call = '0', attempt = 1) {
    this.#outer = outer;
    this.#mode = mode;
    this.#call = call;
    this.#attempt = attempt;
  }

  begin(
    knex: Knex,
    config: Readonly<Knex.TransactionConfig> | undefined,
  ): Promise<Knex.Transaction> {
    const dialect = dialectOf(knex);
    // The test kit's sessions are savepoints of the test's transaction: nothing to note.
    if ((knex.client as { transacting?: boolean }).transacting === true) {
      return knex.transaction(config);
    }
    if (this.#mode === 'xa' && dialect !== 'mysql') {
      return Promise.reject(
        new CommitOutcomeUnsupportedError(
          `retryTransaction({ commitOutcome: 'xa' }) needs MySQL ≥ 5.7.7 or MariaDB ≥ 10.5.2, ` +
            `not ${dialect || 'this database'}: use 'marker'${dialect === 'postgresql' ? " or 'auto' (txid_status)" : ''}.`,
        ),
      );
    }
    const postgres =
      dialect === 'postgresql' && (knex.client as { driverName?: string }).driverName === 'pg';
    if (!postgres && dialect !== 'mysql') return knex.transaction(config);
    const record: SessionRecord = {
      knex,
      connection: undefined,
      server: undefined,
      xa: this.#mode === 'xa',
      readOnly: config?.readOnly === true,
      done: false,
    };
    this.#begun.push(record);
    return openTrackedTransaction(knex, config, async (trxClient, connection) => {
      record.connection = connection;
      if (postgres) {
        observeBackendExit(trxClient, connection, () => {
          record.done = true;
        });
        captureBackendAtBegin(trxClient, (server) => {
          record.server = server;
        });
        return;
      }
      const info = await mysqlSessionInfo(trxClient as TxClient & QueryClient, connection);
      if (!info.proxied) record.server = { dialect: 'mysql', id: info.id, server: info.server };
      if (!record.xa) return;
      if (!info.durableXa || info.proxied) {
        throw new CommitOutcomeUnsupportedError(
          `retryTransaction({ commitOutcome: 'xa' }) needs XA transactions that survive their ` +
            (info.proxied
              ? `connection and the server's own session ids, but this connection goes through a proxy (its thread id ${String((connection as { threadId?: unknown }).threadId)} is not the server's ${info.id}): use 'marker'.`
              : `connection: MariaDB ≥ 10.5.2 or MySQL ≥ 5.7.7, not ${info.version}: use 'marker'.`),
        );
      }
      useXaTransaction(trxClient, {
        xid: newXid(this.#call, this.#attempt),
        session: record.server as ServerSession,
        knex,
      });
    }).then((trx) => {
      records.set(trx, record);
      return trx;
    });
  }

  async beforeCommit(trx: Knex.Transaction): Promise<void> {
    const record = records.get(trx);
    if (this.#mode === 'xa') {
      if (record?.xa === true || isSavepoint(trx)) return;
      throw new CommitOutcomeUnsupportedError(
        "retryTransaction({ commitOutcome: 'xa' }) can only commit sessions opened inside the " +
          'attempt (scope.session, scope.getSession()): this one began before it, with a plain ' +
          "BEGIN (an eager withLegacySession session?). Use 'marker', or open the session inside.",
      );
    }
    const dialect = dialectOf(trx);
    if (this.#mode === 'marker') {
      const known = record ?? (await this.#recordOutside(trx, true));
      if (known.readOnly) return;
      const token = newMarkerToken();
      const backend = await insertCommitMarker(trx, token);
      if (backend === 'read only') {
        known.readOnly = true;
        return;
      }
      known.marker = token;
      known.server ??= backend;
      return;
    }
    if (dialect === 'postgresql') {
      const known = record ?? (await this.#recordOutside(trx));
      const { id, backend } = await captureTransactionId(trx, known.server === undefined);
      known.transactionId = id;
      known.server ??= backend;
    }
  }

  committed(trx: Knex.Transaction): void {
    this.commits++;
    const record = records.get(trx);
    if (record !== undefined) record.done = true;
    this.#outer?.committed(trx);
  }

  async commitFailed(trx: Knex.Transaction, error: unknown, knex: Knex): Promise<boolean> {
    // Any other failure of COMMIT (a deferred constraint, a serialization failure, a Galera node
    // outside the primary component) is an answer from the server: the transaction was rolled back.
    if (!outcomeUncertain(error)) return false;
    const record = records.get(trx);
    // useXaTransaction settled it already: a connection error left means it was never prepared.
    if (record?.xa === true) return false;
    // It could write nothing: whether its COMMIT arrived changes nothing, and a retry is safe.
    if (record?.readOnly === true) return false;
    const dialect = dialectOf(trx);
    const deadline = Date.now() + lookupTimeout;
    if (record?.marker !== undefined) {
      const server = dialect === 'postgresql' || dialect === 'mysql';
      if (server && !(await this.#ended(knex, record, deadline))) {
        throw unknown(
          'The connection was lost while COMMIT was in flight, and the server session that ran it ' +
            'could not be ended (or identified) in time: looking for the commit marker before it ' +
            'ends could answer wrongly.',
          error,
        );
      }
      const found = await lookUpCommitMarker(knex, record.marker, deadline);
      if (found === 'committed') return true;
      if (found === 'absent') return false;
      throw unknown(
        `The connection was lost while COMMIT was in flight and the commit marker ${record.marker} ` +
          'could not be looked up in time.',
        error,
      );
    }
    if (dialect !== 'postgresql') {
      throw unknown(
        'The connection was lost while COMMIT was in flight, so the transaction may or may not ' +
          `have been applied; ${dialect === 'mysql' ? 'MySQL/MariaDB' : 'this database'} ` +
          "offers no way to ask afterwards (commitOutcome 'xa' or 'marker' would).",
        error,
      );
    }
    const id = record?.transactionId;
    if (id?.xid === null) return false; // it wrote nothing, so it did nothing either way
    // txid_status's committed and aborted are final; ending the backend first keeps a COMMIT
    // still running there from being reported 'in progress' until the polling gives up.
    if (record !== undefined) await this.#ended(knex, record, deadline);
    const outcome = id === undefined ? 'unknown' : await resolveCommitOutcome(knex, id, deadline);
    if (outcome === 'committed') return true;
    if (outcome === 'aborted') return false;
    throw unknown(
      `The connection was lost while COMMIT was in flight and PostgreSQL could not tell whether ` +
        `transaction ${id?.xid ?? '(id unknown)'} committed (a standby, or a server whose history ` +
        "differs from the one that ran it, is not asked; commitOutcome 'marker' would know).",
      error,
    );
  }

  /**
   * Ends the server sessions of this attempt's transactions whose connection died while they
   * might still be running there, so that a retry never runs beside its predecessor. Never
   * rejects; waits at most 10 s, and no longer once `signal` is aborted (the ending goes on).
   */
  async endLostSessions(signal?: AbortSignal): Promise<void> {
    const deadline = Date.now() + ghostTimeout;
    const lost = this.#begun.filter(
      (r) => !r.done && r.connection !== undefined && isClosed(r.connection, noMark),
    );
    if (lost.length === 0 || signal?.aborted) return;
    const ending = Promise.all(lost.map((r) => this.#ended(r.knex, r, deadline)));
    if (signal === undefined) {
      await ending;
      return;
    }
    await new Promise<void>((resolve) => {
      const done = () => {
        signal.removeEventListener('abort', done);
        resolve();
      };
      signal.addEventListener('abort', done, { once: true });
      ending.then(done, done);
    });
  }

  /** Ends the record's server session once; true if it no longer runs. */
  async #ended(knex: Knex, record: SessionRecord, deadline: number): Promise<boolean> {
    if (record.done) return true;
    if (record.server === undefined) return false;
    const outcome = await endServerSession(knex, record.server, deadline).catch(
      () => 'unreachable' as const,
    );
    if (outcome === 'unreachable') return false;
    record.done = true;
    return true;
  }

  /**
   * A record for a session opened outside any attempt (an eager session), made at its COMMIT.
   * `marker`: on PostgreSQL it must also be known whether the transaction is READ ONLY (where the
   * marker's INSERT would fail and abort it), which costs a round trip, folded with the backend's
   * pid; MySQL/MariaDB refuses such an INSERT without aborting the transaction.
   */
  async #recordOutside(trx: Knex.Transaction, marker = false): Promise<SessionRecord> {
    const client = trx.client as unknown as TxClient &
      QueryClient & { acquireConnection(): Promise<DriverConnection> };
    const dialect = dialectOf(trx);
    // SQLite runs in-process: no connection to lose, no server session to end.
    const connection =
      dialect === 'mysql' || dialect === 'postgresql'
        ? await client.acquireConnection()
        : undefined;
    let server: ServerSession | undefined;
    let readOnly = false;
    if (dialect === 'mysql' && connection !== undefined) {
      const info = await mysqlSessionInfo(client, connection);
      if (!info.proxied) server = { dialect: 'mysql', id: info.id, server: info.server };
    } else if (dialect === 'postgresql' && marker) {
      const { rows } = (await trx.raw(
        "select current_setting('transaction_read_only') = 'on' as ro, pg_backend_pid() as pid, " +
          'now()::text as started',
      )) as { rows: { ro: boolean; pid: number; started: string }[] };
      const row = rows[0];
      readOnly = row?.ro === true;
      if (row !== undefined) {
        server = { dialect: 'postgresql', pid: Number(row.pid), started: row.started };
      }
    }
    const record: SessionRecord = {
      knex: trx,
      connection,
      server,
      xa: false,
      readOnly,
      done: false,
    };
    records.set(trx, record);
    return record;
  }
}

type QueryClient = Parameters<typeof mysqlSessionInfo>[0];

function unknown(message: string, cause: unknown): CommitOutcomeUnknownError {
  return new CommitOutcomeUnknownError(
    `${message} It was not retried: check whether its work is in the database before doing it again.`,
    { cause },
  );
}
