import type { Knex } from 'knex';
import type { ForgottenSession } from '../observability/forgotten-channel';
import { InvalidConfigError } from './errors';
import { warnForgotten } from './warn-forgotten';

/** Options of `withDb` (nameko's `session_options`, plus where the scope goes on the request). */
export interface DbOptions {
  /**
   * Applied to every session the scope opens.
   * @default {}
   */
  readonly transaction?: {
    readonly isolationLevel?: Knex.IsolationLevels;
    readonly readOnly?: boolean;
  };
  /**
   * The request property that receives the scope: `req[property]` (Express), `ctx[property]` (Koa).
   * @default 'db'
   */
  readonly property?: string;
  /**
   * Runs every scope in an AsyncLocalStorage, so that `currentDb()` finds it anywhere in the
   * handler's async call tree. Off by default: on Node 20 an active AsyncLocalStorage taxes every
   * promise the process creates (BENCHMARKS.md), which apps that pass `req.db` along never need.
   * @default false
   */
  readonly currentDb?: boolean;
  /**
   * Told of every session rolled back because its scope ended while it was still open: a
   * function, `'warn'` (a process warning the first time each route loses uncommitted writes in
   * each kind of session), or `false`.
   * @default 'warn' unless NODE_ENV is 'production', then false
   */
  readonly onForgotten?: ((report: ForgottenSession) => void) | 'warn' | false;
}

/** DbOptions after validation and defaults. */
export interface NormalizedDbOptions {
  readonly transaction: Readonly<Knex.TransactionConfig> | undefined;
  readonly property: string;
  readonly currentDb: boolean;
  readonly onForgotten: ((report: ForgottenSession) => void) | undefined;
}

const isolationLevels: readonly string[] = [
  'read uncommitted',
  'read committed',
  'snapshot',
  'repeatable read',
  'serializable',
];

/**
 * Validates the options of `withDb` / `withLegacySession` once, at construction, and fills in the
 * defaults. Throws InvalidConfigError naming the option.
 *
 * @example
 * normalizeDbOptions({ transaction: { isolationLevel: 'serializable' } }, 'db');
 * // { transaction: { isolationLevel: 'serializable' }, property: 'db' }
 */
export function normalizeDbOptions(options: unknown, defaultProperty: string): NormalizedDbOptions {
  if (options === undefined) {
    return {
      transaction: undefined,
      property: defaultProperty,
      currentDb: false,
      onForgotten: normalizeOnForgotten(undefined),
    };
  }
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    throw new InvalidConfigError('The options must be an object.');
  }
  const {
    transaction,
    property = defaultProperty,
    currentDb = false,
    onForgotten,
    ...rest
  } = options as DbOptions;
  const unknown = Object.keys(rest);
  if (unknown.length > 0) {
    throw new InvalidConfigError(
      `Unknown option ${unknown.map((key) => `"${key}"`).join(', ')}; the options are "transaction", "property", "currentDb" and "onForgotten".`,
    );
  }
  if (typeof currentDb !== 'boolean') {
    throw new InvalidConfigError('"currentDb" must be a boolean.');
  }
  if (typeof property !== 'string' || property === '') {
    throw new InvalidConfigError('"property" must be a non-empty string.');
  }
  if (property === 'session') {
    throw new InvalidConfigError(
      '"property" must not be "session": express-session and koa-session own req.session / ctx.session.',
    );
  }
  return {
    transaction: normalizeTransaction(transaction),
    property,
    currentDb,
    onForgotten: normalizeOnForgotten(onForgotten),
  };
}

function normalizeOnForgotten(value: unknown): NormalizedDbOptions['onForgotten'] {
  if (value === undefined) value = process.env.NODE_ENV === 'production' ? false : 'warn';
  if (value === false) return undefined;
  if (value === 'warn') return warnForgotten();
  if (typeof value === 'function') return value as (report: ForgottenSession) => void;
  throw new InvalidConfigError('"onForgotten" must be a function, "warn" or false.');
}

function normalizeTransaction(transaction: unknown): Readonly<Knex.TransactionConfig> | undefined {
  if (transaction === undefined) return undefined;
  if (typeof transaction !== 'object' || transaction === null || Array.isArray(transaction)) {
    throw new InvalidConfigError('"transaction" must be an object.');
  }
  const { isolationLevel, readOnly, ...rest } = transaction as NonNullable<
    DbOptions['transaction']
  >;
  const unknown = Object.keys(rest);
  if (unknown.length > 0) {
    throw new InvalidConfigError(
      `Unknown transaction option ${unknown.map((key) => `"${key}"`).join(', ')}; they are "isolationLevel" and "readOnly".`,
    );
  }
  if (isolationLevel !== undefined && !isolationLevels.includes(isolationLevel)) {
    throw new InvalidConfigError(
      `"transaction.isolationLevel" must be one of ${isolationLevels.map((level) => `"${level}"`).join(', ')}.`,
    );
  }
  if (readOnly !== undefined && typeof readOnly !== 'boolean') {
    throw new InvalidConfigError('"transaction.readOnly" must be a boolean.');
  }
  const config: Knex.TransactionConfig = {};
  if (isolationLevel !== undefined) config.isolationLevel = isolationLevel;
  if (readOnly !== undefined) config.readOnly = readOnly;
  return Object.keys(config).length === 0 ? undefined : Object.freeze(config);
}

/**
 * Checks the transaction options against the database the Knex instance talks to, and returns
 * what to pass to knex. SQLite is always serializable and knex cannot make its transactions
 * read-only; knex sends invalid SQL on MySQL/MariaDB when both options are set. Each case is an
 * InvalidConfigError rather than a silently weaker transaction.
 *
 * @example
 * transactionFor(knex, { isolationLevel: 'serializable' }); // on SQLite: undefined (already so)
 */
export function transactionFor(
  knex: Knex,
  transaction: Readonly<Knex.TransactionConfig> | undefined,
): Readonly<Knex.TransactionConfig> | undefined {
  if (transaction === undefined) return undefined;
  const dialect = (knex.client as { dialect?: string }).dialect;
  if (dialect === 'sqlite3') {
    if (transaction.readOnly === true) {
      throw new InvalidConfigError(
        '"transaction.readOnly" cannot be enforced on SQLite through knex; remove it.',
      );
    }
    if (transaction.isolationLevel !== undefined && transaction.isolationLevel !== 'serializable') {
      throw new InvalidConfigError(
        `SQLite transactions are always serializable; "transaction.isolationLevel" cannot be "${transaction.isolationLevel}".`,
      );
    }
    return undefined;
  }
  if (
    dialect === 'mysql' &&
    transaction.isolationLevel !== undefined &&
    transaction.readOnly === true
  ) {
    // knex sends "SET TRANSACTION ISOLATION LEVEL x READ ONLY", without the comma MySQL requires.
    throw new InvalidConfigError(
      'On MySQL/MariaDB knex cannot combine "transaction.isolationLevel" with "transaction.readOnly"; set one of them.',
    );
  }
  return transaction;
}
