import { commitTracking } from '../core/commit-tracking';
import { isKnexScopeError, UnsafeRetryError } from '../core/errors';
import { Scope, scopeControl } from '../core/scope';
import { scopeStorage } from '../core/scope-storage';
import { sessionOwner } from '../core/session';
import {
  type AttemptTrace,
  cancelAttempt,
  decide,
  runAttempt,
  traceAttempt,
} from './attempt-trace';
import { AttemptTracker } from './attempt-tracker';
import { backoffDelay } from './backoff-delay';
import {
  isKnexTransaction,
  type NormalizedRetryOptions,
  normalizeRetryOptions,
  type RetryDecision,
  type RetryOptions,
  type RetrySessionTarget,
} from './retry-options';

/** A function wrapped by `retryTransaction`: same parameters and `this`, always async. */
export type Retrying<This, A extends unknown[], R> = (
  this: This,
  ...args: A
) => Promise<Awaited<R>>;

/** What `retryTransaction(options)` returns: wraps the function it is given. */
export type RetryDecorator = <This, A extends unknown[], R>(
  fn: (this: This, ...args: A) => R,
) => Retrying<This, A, R>;

const noop = () => {};

let attemptsInFlight = 0;
/** Numbers the calls of this process, so that XA transaction ids say which call made them. */
let calls = 0;

/**
 * Re-runs `fn` with the same arguments and `this` when it fails with a connection error
 * (nameko-sqlalchemy's `transaction_retry`), rolling back `options.session` first so the retry
 * runs on a fresh connection. `total` retries (default 1, at least 1); the first retry is
 * immediate, retry k ≥ 2 waits `backoffFactor · 2^(k−1)` ms capped at `backoffMax`; after the
 * last attempt its error is rethrown unchanged. Any other error is rethrown at once.
 *
 * Beyond the seed, it never duplicates work: if the attempt had already committed a transaction
 * opened through knex-scope, it throws UnsafeRetryError instead of retrying (unless
 * `allowReplay`); if the connection died during COMMIT it finds out whether the commit happened
 * (and returns normally if it did) as `commitOutcome` says — `'auto'`: PostgreSQL's
 * `txid_status`, elsewhere CommitOutcomeUnknownError; `'xa'`: MySQL/MariaDB XA; `'marker'`: a
 * marker row — and before any retry or lookup it ends the failed attempt's server sessions that
 * may still be running. It stops once the request's scope has ended (client gone) or
 * `options.signal` is aborted.
 *
 * @example
 * app.get('/orders/count', retryTransaction(async (req, res) => {
 *   const trx = await req.db.session;
 *   const [{ n }] = await trx('orders').count({ n: '*' });
 *   await trx.commit();
 *   res.json({ n });
 * }, { session: (req) => req.db, total: 3, backoffFactor: 100 }));
 *
 * const withRetry = retryTransaction({ total: 5, backoffFactor: 100, backoffMax: 1000 });
 * const countOrders = withRetry(async (scope: Scope) => { ... });
 */
export function retryTransaction<This, A extends unknown[], R>(
  fn: (this: This, ...args: A) => R,
  options?: RetryOptions<This, A>,
): Retrying<This, A, R>;
export function retryTransaction(options?: RetryOptions<any, any[]>): RetryDecorator;
export function retryTransaction(first?: unknown, second?: unknown): unknown {
  if (typeof first === 'function' && !isKnexTransaction(first)) {
    return wrap(first as (...args: unknown[]) => unknown, normalizeRetryOptions(second));
  }
  if (isKnexTransaction(first) || first instanceof Scope) {
    throw new TypeError(
      'retryTransaction: the first argument is a session, not the function to retry; ' +
        'pass it as retryTransaction(fn, { session })',
    );
  }
  if (first !== undefined && (typeof first !== 'object' || first === null)) {
    throw new TypeError('retryTransaction: expected a function to retry or an options object');
  }
  if (second !== undefined) {
    throw new TypeError('retryTransaction: with options first, pass the function in a second call');
  }
  const options = normalizeRetryOptions(first);
  return (fn: unknown) => {
    if (typeof fn !== 'function' || isKnexTransaction(fn)) {
      throw new TypeError('retryTransaction(options): expected the function to retry');
    }
    return wrap(fn as (...args: unknown[]) => unknown, options);
  };
}

function wrap(fn: (...args: unknown[]) => unknown, options: NormalizedRetryOptions) {
  const retrying = function (this: unknown, ...args: unknown[]) {
    return run(fn, this, args, options);
  };
  Object.defineProperty(retrying, 'name', { value: fn.name });
  Object.defineProperty(retrying, 'length', { value: fn.length });
  return retrying;
}

async function run(
  fn: (...args: unknown[]) => unknown,
  self: unknown,
  args: unknown[],
  options: NormalizedRetryOptions,
): Promise<unknown> {
  const ambient = scopeStorage.getStore(); // undefined unless the scope's db has currentDb: true
  const { onRetry } = options;
  let reopen: Promise<void> | undefined;
  let trace: AttemptTrace | undefined;
  calls = (calls + 1) % Number.MAX_SAFE_INTEGER;
  const call = calls.toString(36);
  for (let attempt = 1; ; attempt++) {
    const tracker = new AttemptTracker(
      commitTracking.getStore(),
      options.commitOutcome,
      call,
      attempt,
    );
    let error: unknown;
    attemptsInFlight++;
    trace = traceAttempt(attempt, fn, trace);
    try {
      const attemptFn = async () => {
        if (reopen !== undefined) await reopen;
        return fn.apply(self, args);
      };
      return await (trace === undefined
        ? commitTracking.run(tracker, attemptFn)
        : runAttempt(trace, () => commitTracking.run(tracker, attemptFn)));
    } catch (caught) {
      error = caught;
    } finally {
      // On Node 20 an enabled AsyncLocalStorage keeps promise hooks on for the whole process;
      // switching it off between attempts lets the rest of the app run without them.
      if (--attemptsInFlight === 0) commitTracking.disable();
    }
    reopen = undefined;
    const report = (decision: RetryDecision, delay = 0) =>
      decide(trace, onRetry, { decision, error, attempt, delay });

    if (isKnexScopeError(error) && error.code === 'ERR_COMMIT_OUTCOME_UNKNOWN') {
      report('outcome-unknown');
      throw error;
    }
    if (!options.retryOn(error)) {
      report('not-retryable');
      throw error;
    }
    const target = resolveTarget(options, self, args);
    ({ reopen } = await rollBack(target));

    if (!options.allowReplay && tracker.commits > 0) {
      report('unsafe-replay');
      throw new UnsafeRetryError(
        `Not retried: attempt ${attempt} had already committed a transaction before it failed, ` +
          'so a retry would do that work again. Retry around a single transaction, or pass ' +
          'allowReplay: true if the committed work is idempotent.',
        { cause: error },
      );
    }
    const signal = abortSignal(options.signal, ambient, scopeOf(target));
    if (signal?.aborted) {
      report('aborted');
      throw error;
    }
    if (attempt > options.total) {
      report('give-up');
      throw error;
    }
    const delay = backoffDelay(attempt, options.backoffFactor, options.backoffMax);
    report('retry', delay);
    // A statement (or COMMIT) of this attempt may still run on the server after its connection
    // was cut: end it before the retry runs beside it.
    await Promise.all([options.sleep(delay, signal), tracker.endLostSessions(signal)]);
    if (signal?.aborted) {
      decide(cancelAttempt(attempt + 1, fn, trace), onRetry, {
        decision: 'aborted',
        error,
        attempt,
        delay: 0,
      });
      throw error;
    }
  }
}

function resolveTarget(
  options: NormalizedRetryOptions,
  self: unknown,
  args: unknown[],
): RetrySessionTarget | undefined {
  const { session } = options;
  if (session === undefined || session === null) return undefined;
  if (isKnexTransaction(session) || session instanceof Scope) return session;
  if (typeof session === 'function') {
    const target = (session as (...a: unknown[]) => unknown).apply(self, args);
    if (target === undefined || target === null) return undefined;
    if (isKnexTransaction(target) || target instanceof Scope) return target;
    throw new TypeError(
      'retryTransaction: the "session" function must return a Knex transaction or a scope',
    );
  }
  return session;
}

function scopeOf(target: RetrySessionTarget | undefined): Scope | undefined {
  if (target === undefined || target instanceof Scope) return target;
  const owner = sessionOwner(target);
  return owner instanceof Scope ? owner : undefined;
}

/** Aborted with the caller's signal, or when the request of the scope the attempt ran in ends. */
function abortSignal(
  signal: AbortSignal | undefined,
  ...scopes: (Scope | undefined)[]
): AbortSignal | undefined {
  const signals = Array.from(new Set(scopes), (scope) => scope?.signal).filter(
    (scopeSignal) => scopeSignal !== undefined,
  );
  if (signal !== undefined) signals.push(signal);
  return signals.length <= 1 ? signals[0] : AbortSignal.any(signals);
}

/**
 * Rolls back what failed; a rollback that fails on the dead connection is swallowed. Returns the
 * re-opening of an eager (legacy) session, which the next attempt awaits first, so that a
 * failure to re-open counts as that attempt's failure.
 */
async function rollBack(
  target: RetrySessionTarget | undefined,
): Promise<{ reopen?: Promise<void> | undefined }> {
  if (target === undefined) return {};
  if (target instanceof Scope) {
    await target.rollback().catch(noop);
    return {};
  }
  if (!target.isCompleted()) {
    target.executionPromise.catch(noop);
    await Promise.resolve(target.rollback()).catch(noop);
  }
  const owner = scopeOf(target);
  const reopen = owner === undefined ? undefined : scopeControl.reopen(owner, target);
  reopen?.catch(noop);
  return { reopen };
}
