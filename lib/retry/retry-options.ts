import type { Knex } from 'knex';
import type { Scope } from '../core/scope';
import { isConnectionError } from './is-connection-error';

/** What `retryTransaction` rolls back before a retry: a Knex transaction or a whole scope. */
export type RetrySessionTarget = Knex.Transaction | Scope;

/** Every way `retryTransaction` can end a failed attempt. */
export type RetryDecision =
  | 'retry'
  | 'give-up'
  | 'not-retryable'
  | 'unsafe-replay'
  | 'outcome-unknown'
  | 'aborted';

/** What `onRetry` receives after every failed attempt. */
export interface RetryEvent {
  /** `retry`: the attempt runs again after `delay` ms; every other decision rethrows. */
  readonly decision: RetryDecision;
  /** The error that ended the attempt (for `unsafe-replay`, the `cause` of the UnsafeRetryError). */
  readonly error: unknown;
  /** The attempt that failed, from 1. */
  readonly attempt: number;
  /** Milliseconds before the next attempt; 0 unless `decision` is `retry`. */
  readonly delay: number;
}

/**
 * How `retryTransaction` learns what became of a COMMIT whose connection died in flight:
 * `'auto'` asks PostgreSQL's `txid_status` (elsewhere the outcome stays unknown), `'xa'` commits
 * in two phases with MySQL/MariaDB's XA, `'marker'` writes a marker row in the transaction.
 */
export type CommitOutcomeMode = 'auto' | 'xa' | 'marker';

const commitOutcomeModes: readonly CommitOutcomeMode[] = ['auto', 'xa', 'marker'];

/** Options of `retryTransaction` (the seed's `transaction_retry` arguments, in milliseconds). */
export interface RetryOptions<This = unknown, A extends unknown[] = unknown[]> {
  /**
   * Rolled back before every retry and after the last failed attempt: a Knex transaction, a scope
   * (every session it holds), or a function of the wrapped function's arguments returning one,
   * called when an attempt fails: `(req) => req.db`, `(scope) => scope` for `db.wrap`.
   */
  readonly session?:
    | RetrySessionTarget
    | ((this: This, ...args: A) => RetrySessionTarget | null | undefined)
    | null
    | undefined;
  /** Retries after the first attempt; clamped to at least 1, as the seed does. @default 1 */
  readonly total?: number | undefined;
  /** Retry k ≥ 2 waits `backoffFactor · 2^(k−1)` ms; negative counts as 0. @default 0 */
  readonly backoffFactor?: number | undefined;
  /** Cap of every wait in ms; negative counts as 0; null means no cap. @default null */
  readonly backoffMax?: number | null | undefined;
  /** Which errors are retried. @default isConnectionError */
  readonly retryOn?: ((error: unknown) => boolean) | undefined;
  /**
   * Retry even when the failed attempt had already committed work, which the retry then does
   * again. Only for functions whose committed work is idempotent. @default false
   */
  readonly allowReplay?: boolean | undefined;
  /** No retry is started, and a wait is cut short, once this is aborted. */
  readonly signal?: AbortSignal | undefined;
  /** Told every decision taken after a failed attempt. */
  readonly onRetry?: ((event: RetryEvent) => void) | undefined;
  /** Waits `ms` before a retry; for tests and custom timers. Called with 0 too, as the seed does. */
  readonly sleep?: ((ms: number, signal: AbortSignal | undefined) => Promise<void>) | undefined;
  /**
   * How a COMMIT cut off in flight is resolved: `'auto'` (PostgreSQL's `txid_status`, elsewhere
   * CommitOutcomeUnknownError), `'xa'` (MySQL/MariaDB XA: PREPARE, then `XA RECOVER` decides),
   * `'marker'` (any engine: a marker row written in the transaction is looked up; needs the
   * table of `commitMarkerMigration`). @default 'auto'
   */
  readonly commitOutcome?: CommitOutcomeMode | undefined;
}

/** RetryOptions after validation, clamping and defaults. */
export interface NormalizedRetryOptions {
  readonly session: RetryOptions<unknown, unknown[]>['session'];
  readonly total: number;
  readonly backoffFactor: number;
  readonly backoffMax: number;
  readonly retryOn: (error: unknown) => boolean;
  readonly allowReplay: boolean;
  readonly signal: AbortSignal | undefined;
  readonly onRetry: ((event: RetryEvent) => void) | undefined;
  readonly sleep: (ms: number, signal: AbortSignal | undefined) => Promise<void>;
  readonly commitOutcome: CommitOutcomeMode;
}

const known = new Set([
  'session',
  'total',
  'backoffFactor',
  'backoffMax',
  'retryOn',
  'allowReplay',
  'signal',
  'onRetry',
  'sleep',
  'commitOutcome',
]);

/**
 * Validates `retryTransaction`'s options once, when the wrapper is made, and applies the seed's
 * clamping: `total` at least 1 (fractions rounded down), negative `backoffFactor` and `backoffMax`
 * as 0, `backoffMax: null` as no cap. A value of the wrong type, or an unknown option (a typo such
 * as `backoff_factor`), throws a TypeError naming it.
 *
 * @example
 * normalizeRetryOptions({ total: 0 }).total; // 1
 */
export function normalizeRetryOptions(options: unknown): NormalizedRetryOptions {
  if (options === undefined || options === null) options = {};
  if (typeof options !== 'object') {
    throw new TypeError(`retryTransaction: options must be an object, got ${describe(options)}`);
  }
  const o = options as Record<string, unknown>;
  for (const key of Object.keys(o)) {
    if (!known.has(key)) {
      throw new TypeError(
        `retryTransaction: unknown option "${key}"; the options are ${Array.from(known).join(', ')}`,
      );
    }
  }
  const total = numberOption(o, 'total', 1);
  const backoffFactor = numberOption(o, 'backoffFactor', 0);
  const backoffMax =
    o.backoffMax === null ? Number.POSITIVE_INFINITY : numberOption(o, 'backoffMax', Infinity);
  return {
    session: sessionOption(o.session),
    total: Math.max(Math.floor(total), 1),
    backoffFactor: Math.max(backoffFactor, 0),
    backoffMax: Math.max(backoffMax, 0),
    retryOn: functionOption(o, 'retryOn') ?? isConnectionError,
    allowReplay: booleanOption(o, 'allowReplay'),
    signal: signalOption(o.signal),
    onRetry: functionOption(o, 'onRetry'),
    sleep: functionOption(o, 'sleep') ?? sleep,
    commitOutcome: commitOutcomeOption(o.commitOutcome),
  };
}

/**
 * True for a Knex transaction (which is itself a function, so it must be told apart from a
 * function returning a session).
 *
 * @example
 * isKnexTransaction(await knex.transaction()); // true
 */
export function isKnexTransaction(value: unknown): value is Knex.Transaction {
  return (
    typeof value === 'function' && (value as { isTransaction?: unknown }).isTransaction === true
  );
}

function numberOption(o: Record<string, unknown>, key: string, fallback: number): number {
  const value = o[key];
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || Number.isNaN(value)) {
    throw new TypeError(
      `retryTransaction: option "${key}" must be a number, got ${describe(value)}`,
    );
  }
  return value;
}

function booleanOption(o: Record<string, unknown>, key: string): boolean {
  const value = o[key];
  if (value === undefined) return false;
  if (typeof value !== 'boolean') {
    throw new TypeError(
      `retryTransaction: option "${key}" must be a boolean, got ${describe(value)}`,
    );
  }
  return value;
}

function functionOption<T>(o: Record<string, unknown>, key: string): T | undefined {
  const value = o[key];
  if (value === undefined) return undefined;
  if (typeof value !== 'function') {
    throw new TypeError(
      `retryTransaction: option "${key}" must be a function, got ${describe(value)}`,
    );
  }
  return value as T;
}

function sessionOption(value: unknown): NormalizedRetryOptions['session'] {
  if (value === undefined || value === null || typeof value === 'function') {
    return value as NormalizedRetryOptions['session'];
  }
  if (
    typeof value === 'object' &&
    typeof (value as { rollback?: unknown }).rollback === 'function'
  ) {
    return value as Scope;
  }
  throw new TypeError(
    'retryTransaction: option "session" must be a Knex transaction, a scope, or a function ' +
      `returning one, got ${describe(value)}`,
  );
}

function commitOutcomeOption(value: unknown): CommitOutcomeMode {
  if (value === undefined) return 'auto';
  if (commitOutcomeModes.includes(value as CommitOutcomeMode)) return value as CommitOutcomeMode;
  throw new TypeError(
    `retryTransaction: option "commitOutcome" must be one of ${commitOutcomeModes
      .map((mode) => `'${mode}'`)
      .join(', ')}, got ${describe(value)}`,
  );
}

function signalOption(value: unknown): AbortSignal | undefined {
  if (value === undefined) return undefined;
  if (value instanceof AbortSignal) return value;
  throw new TypeError(
    `retryTransaction: option "signal" must be an AbortSignal, got ${describe(value)}`,
  );
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'string') return `the string ${JSON.stringify(value)}`;
  if (typeof value === 'object') return 'an object';
  return `${typeof value} ${String(value)}`;
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}
