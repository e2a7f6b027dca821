import { AsyncLocalStorage } from 'node:async_hooks';
import type { Knex } from 'knex';

/**
 * Told about every COMMIT a knex-scope session sends inside its async context. `retryTransaction`
 * installs one per attempt, to know whether the attempt already committed work and what happened
 * to a COMMIT whose connection died.
 */
export interface CommitTracker {
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
