import type { Knex } from 'knex';
import type { DriverConnection } from '../core/connection-state';
import type { TxClient } from './use-xa-transaction';

/** The parts of knex's Transaction (lib/execution/transaction.js) used here. */
interface KnexTransaction {
  trxClient: TxClient;
  begin(connection: DriverConnection): Promise<unknown>;
  catch(onRejected: (error: unknown) => void): unknown;
}

/**
 * Opens a transaction as `knex.transaction(config)` does, but calls `beforeBegin` with knex's
 * transaction client and the connection once the connection is acquired, right before BEGIN is
 * sent: there it can ask the server about the connection, or change what knex sends through the
 * client. If it throws, no BEGIN is sent, the connection goes back to the pool and the promise
 * rejects with its error. Internal to knex-scope.
 *
 * @example
 * const trx = await openTrackedTransaction(knex, undefined, async (trxClient, connection) => {
 *   useXaTransaction(trxClient, branch);
 * });
 */
export function openTrackedTransaction(
  knex: Knex,
  config: Readonly<Knex.TransactionConfig> | undefined,
  beforeBegin: (trxClient: TxClient, connection: DriverConnection) => Promise<void> | void,
): Promise<Knex.Transaction> {
  return new Promise((resolve, reject) => {
    // What knex.transaction(config) does (knex-builder/make-knex.js): it hands `resolve` to the
    // client as the transaction's container, which knex calls with the transaction once begun.
    const client = knex.client as unknown as {
      transaction(container: unknown, config: Knex.TransactionConfig): KnexTransaction;
    };
    const transaction = client.transaction(resolve, {
      ...config,
      userParams: (knex as { userParams?: Record<string, unknown> }).userParams ?? {},
      doNotRejectOnRollback: config?.doNotRejectOnRollback ?? true,
    });
    // knex acquires the connection and calls begin() a microtask later, on this very object.
    const begin = transaction.begin;
    transaction.begin = async function (this: KnexTransaction, connection) {
      await beforeBegin(this.trxClient, connection);
      return begin.call(this, connection);
    };
    transaction.catch(reject);
  });
}
