import type { Knex } from 'knex';
import { openTransaction } from './commit-tracking';
import { scopeStorage } from './scope-storage';

const noop = () => {};

/**
 * Makes the function a scope core opens its transactions with: `knex.transaction(config)` (or
 * the active CommitTracker's `begin`: openTransaction) outside
 * every scope's async context (so that the pool's promises and timers, which outlive the request,
 * do not keep the scope reachable), then, on PostgreSQL, `transaction.settings` applied with
 * `set_config(name, value, true)` in one round trip. A setting the server rejects rolls the
 * transaction back and rejects with the server's error.
 *
 * @example
 * const begin = transactionStarter(knex, { isolationLevel: 'serializable' }, [['search_path', 'app']]);
 * const trx = await begin(); // BEGIN; SET TRANSACTION …; select set_config('search_path', 'app', true)
 */
export function transactionStarter(
  knex: Knex,
  config: Readonly<Knex.TransactionConfig> | undefined,
  settings: readonly (readonly [string, string])[] | undefined,
): () => Promise<Knex.Transaction> {
  // run(undefined, …), not exit(…): the same context, but on Node 20 exit() switches the storage's
  // promise hooks off and on again, 1.7 % of the CPU of a SQLite route with currentDb: true
  // (BENCHMARKS.md, "Overhead in time").
  if (settings === undefined) {
    // Outside every currentDb scope (the storage holds nothing) there is nothing to leave: run()
    // would only cost a rest array and an apply per session.
    const open = () => openTransaction(knex, config);
    return () =>
      scopeStorage.getStore() === undefined ? open() : scopeStorage.run(undefined, open);
  }
  const sql = `select ${settings.map(() => 'set_config(?, ?, true)').join(', ')}`;
  const bindings = settings.flat();
  return () =>
    scopeStorage.run(undefined, async () => {
      const trx = await openTransaction(knex, config);
      // BEGIN failed (knex resolves all the same): the session reports BEGIN's error.
      if (trx.isCompleted()) return trx;
      try {
        await trx.raw(sql, bindings);
      } catch (error) {
        trx.executionPromise.catch(noop);
        await trx.rollback();
        throw error;
      }
      return trx;
    });
}
