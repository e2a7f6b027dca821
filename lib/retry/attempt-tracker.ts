import type { Knex } from 'knex';
import type { CommitTracker } from '../core/commit-tracking';
import { CommitOutcomeUnknownError } from '../core/errors';
import { captureTransactionId, resolveCommitOutcome } from './commit-outcome';
import { isConnectionError, refusedByServer } from './is-connection-error';

function dialectOf(trx: Knex.Transaction): string {
  return (trx.client as { dialect?: string }).dialect ?? '';
}

/**
 * Watches the COMMITs of one `retryTransaction` attempt: counts those that succeeded (a retry
 * would do their work again), and decides what a COMMIT that lost its connection did. On
 * PostgreSQL it notes the transaction id right before COMMIT and asks the server afterwards;
 * elsewhere the outcome cannot be known. Internal to knex-scope.
 *
 * @example
 * const tracker = new AttemptTracker(commitTracking.getStore());
 * await commitTracking.run(tracker, () => fn());
 * if (tracker.commits > 0) // the attempt committed work
 */
export class AttemptTracker implements CommitTracker {
  commits = 0;
  readonly #ids = new WeakMap<Knex.Transaction, string | null>();
  readonly #outer: CommitTracker | undefined;

  /** `outer`: the tracker of an enclosing attempt, which a commit in this one concerns too. */
  constructor(outer?: CommitTracker) {
    this.#outer = outer;
  }

  async beforeCommit(trx: Knex.Transaction): Promise<void> {
    if (dialectOf(trx) === 'postgresql') this.#ids.set(trx, await captureTransactionId(trx));
  }

  committed(trx: Knex.Transaction): void {
    this.commits++;
    this.#outer?.committed(trx);
  }

  async commitFailed(trx: Knex.Transaction, error: unknown, knex: Knex): Promise<boolean> {
    // Any other failure of COMMIT (a deferred constraint, a serialization failure, a Galera node
    // outside the primary component) is an answer from the server: the transaction was rolled back.
    if (!isConnectionError(error) || refusedByServer(error)) return false;
    if (dialectOf(trx) !== 'postgresql') {
      throw new CommitOutcomeUnknownError(
        'The connection was lost while COMMIT was in flight, so the transaction may or may not ' +
          `have been applied; ${dialectOf(trx) === 'mysql' ? 'MySQL/MariaDB' : 'this database'} ` +
          'offers no way to ask afterwards. It was not retried: check whether its work is in the ' +
          'database before doing it again.',
        { cause: error },
      );
    }
    const id = this.#ids.get(trx);
    if (id === null) return false; // it wrote nothing, so it did nothing either way
    const outcome = id === undefined ? 'unknown' : await resolveCommitOutcome(knex, id);
    if (outcome === 'committed') return true;
    if (outcome === 'aborted') return false;
    throw new CommitOutcomeUnknownError(
      `The connection was lost while COMMIT was in flight and PostgreSQL could not tell whether ` +
        `transaction ${id ?? '(id unknown)'} committed. It was not retried: check whether its ` +
        'work is in the database before doing it again.',
      { cause: error },
    );
  }
}
