import type { Knex } from 'knex';
import type { DriverConnection } from '../core/connection-state';
import { CommitOutcomeUnknownError } from '../core/errors';
import { isConnectionError, outcomeUncertain } from './is-connection-error';
import type { ServerSession } from './server-session';
import { settleXaBranch } from './settle-xa-branch';
import { type Xid, xidSql } from './xa-xid';

/** A knex transaction client (knex's `makeTxClient`): what knex sends BEGIN, COMMIT, ROLLBACK through. */
export interface TxClient {
  query(connection: DriverConnection, sql: unknown): Promise<unknown>;
  /** knex emits query-error for every statement the driver failed, before it rejects. */
  on(event: 'query-error', listener: (error: unknown) => void): unknown;
}

/** One XA transaction: its id, the server session it runs on, and where to settle it from. */
export interface XaBranch {
  readonly xid: Xid;
  readonly session: ServerSession;
  /** The Knex instance whose config a fresh connection is made from. */
  readonly knex: Knex;
}

/** How long a COMMIT cut off after `XA PREPARE` may take to settle before it is reported unknown. */
const settleTimeout = 20_000;

/**
 * Turns the knex transaction on `trxClient` into XA transaction `branch.xid`, before its BEGIN
 * is sent: knex's `BEGIN;` becomes `XA START`, `COMMIT;` becomes `XA END` + `XA PREPARE` +
 * `XA COMMIT`, `ROLLBACK` becomes `XA END` + `XA ROLLBACK`. A COMMIT whose connection dies is
 * settled here, so that it is settled whoever commits (even outside the attempt): before
 * PREPARE was sent nothing can have been applied and the connection error is rethrown; after,
 * the transaction is committed once from a fresh connection (settleXaBranch) and COMMIT
 * resolves, or the connection error is rethrown if it was never prepared; CommitOutcomeUnknownError
 * if that cannot be known in 20 s. Never one-phase: a transaction's writes cannot be known from
 * its statements (a SELECT may call a function that writes; nested savepoints bypass the session).
 * Internal to knex-scope.
 *
 * @example
 * useXaTransaction(transaction.trxClient, { xid: newXid(call, attempt), session, knex });
 */
export function useXaTransaction(trxClient: TxClient, branch: XaBranch): void {
  const inner = trxClient.query;
  // knex marks the transaction complete as soon as COMMIT or ROLLBACK is handed over, and its
  // client then refuses statements: the protocol's later ones go to the prototype's query.
  const direct = (Object.getPrototypeOf(trxClient) as TxClient).query;
  const xid = xidSql(branch.xid);
  trxClient.query = function (this: TxClient, connection, sql) {
    if (sql === 'BEGIN;') return inner.call(this, connection, `XA START ${xid}`);
    if (sql === 'COMMIT;') return commit(this, connection);
    if (sql === 'ROLLBACK') return rollback(this, connection);
    return inner.call(this, connection, sql);
  };

  async function commit(client: TxClient, connection: DriverConnection): Promise<unknown> {
    let step: 'end' | 'prepare' | 'commit' = 'end';
    try {
      await direct.call(client, connection, `XA END ${xid}`);
      step = 'prepare';
      await direct.call(client, connection, `XA PREPARE ${xid}`);
      step = 'commit';
      return await direct.call(client, connection, `XA COMMIT ${xid}`);
    } catch (error) {
      if (step !== 'commit' && !outcomeUncertain(error)) {
        // The server refused END or PREPARE (a deadlock, XA_RB*, a Galera node outside the
        // primary component): not prepared, so not applied.
        await direct.call(client, connection, `XA ROLLBACK ${xid}`).catch(() => {
          connection.__knex__disposed ??= error; // the server rolls it back with the connection
        });
        throw error;
      }
      // Whatever this connection's state, it must not be used again.
      connection.__knex__disposed ??= error;
      if (step === 'end') throw error; // never prepared: the server rolls it back with the connection
      const settled = await settleXaBranch(
        branch.knex,
        branch.xid,
        branch.session,
        Date.now() + settleTimeout,
      );
      if (settled === 'committed' || (settled === 'absent' && step === 'commit')) {
        return { sql: `XA COMMIT ${xid}`, response: [] };
      }
      if (settled === 'absent') throw error;
      throw new CommitOutcomeUnknownError(
        `The connection was lost after XA PREPARE of transaction ${xid} and the server could not ` +
          'be asked how it ended before the time limit. It may still be prepared: ' +
          'resolvePreparedTransactions(knex) commits it. It was not retried.',
        { cause: error },
      );
    }
  }

  async function rollback(client: TxClient, connection: DriverConnection): Promise<unknown> {
    try {
      await direct.call(client, connection, `XA END ${xid}`);
    } catch (error) {
      // Already ended, or rolled back by the server (XA_RBDEADLOCK): XA ROLLBACK still applies.
      if (isConnectionError(error)) throw error;
    }
    return direct.call(client, connection, `XA ROLLBACK ${xid}`);
  }
}
