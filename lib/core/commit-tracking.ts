import { AsyncLocalStorage } from 'node:async_hooks';
import type { Knex } from 'knex';

/**
 * Told about every COMMIT a knex-scope session sends inside its async context. `retryTransaction`
 * installs one per attempt, to know whether the attempt already committed work and what happened
 * to a COMMIT whose connection died.
 */
export interface CommitTracker {
  /**
   * Opens the transaction of a knex-scope session that begins inside this tracker's context, in
   * place of `knex.transaction(config)`: how `retryTransaction` notes the server session and
   * opens XA transactions. Resolves to the transaction once it has begun.
   */
  begin?(
    knex: Knex,
    config: Readonly<Knex.TransactionConfig> | undefined,
  ): Promise<Knex.Transaction>;
  /** Runs on the still-open transaction right before COMMIT is sent. */
  beforeCommit?(trx: Knex.Transaction): Promise<void>;
  committed(trx: Knex.Transaction): void;
  /**
   * COMMIT failed with `error`. Resolves true if the transaction was applied all the same (the
   * session then counts as committed), false if it was not; rejects when that cannot be known.
   */
  commitFailed(trx: Knex.Transaction, error: unknown, knex: Knex): Promise<boolean>;
}

/**
 * The async context that carries the active CommitTracker. Internal to knex-scope.
 *
 * @example
 * commitTracking.run(tracker, () => fn()); // every session committed inside fn reports to tracker
 */
export const commitTracking = new AsyncLocalStorage<CommitTracker>();

/**
 * Opens a knex-scope session's transaction: through the active CommitTracker's `begin` when it
 * has one, else `knex.transaction(config)`. Internal to knex-scope.
 *
 * @example
 * const trx = await openTransaction(knex, { isolationLevel: 'serializable' });
 */
export function openTransaction(
  knex: Knex,
  config: Readonly<Knex.TransactionConfig> | undefined,
): Promise<Knex.Transaction> {
  const tracker = commitTracking.getStore();
  return tracker?.begin === undefined ? knex.transaction(config) : tracker.begin(knex, config);
}
