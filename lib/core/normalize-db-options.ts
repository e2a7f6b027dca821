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
    /**
     * PostgreSQL run-time settings for every session, set right after BEGIN with
     * `set_config(name, value, true)` (`SET LOCAL`): they last until COMMIT or ROLLBACK, so they
     * are right through a transaction pooler such as PgBouncer, unlike knex's `searchPath` or a
     * session-level `SET`, which stay on whichever server connection ran them.
     * @default {}
     * @example { search_path: 'tenant_a,public', statement_timeout: '5s' }
     */
    readonly settings?: Readonly<Record<string, string | number | boolean>>;
  };
  /**
   * The most sessions one scope may hold at once; asking for more fails at once with
   * SessionLimitError. Defaults to the pool's `max`; set it to the server-side limit when a
   * transaction pooler (PgBouncer's `default_pool_size`) allows fewer, so that a request that
   * would wait for itself against the pooler fails fast instead of at `query_wait_timeout`.
   * @default pool.max
   */
  readonly maxSessionsPerScope?: number;
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
   * `'on-success'`: when the handler finished without an error and with a status below 400, the
   * lazy session (or `withLegacySession`'s eager one) is committed before the response is sent;
   * otherwise it is rolled back (Django's `ATOMIC_REQUESTS`). `'explicit'`: nothing is committed
   * unless you commit it. Explicit sessions (`scope.getSession()`) stay yours either way.
   * @default 'explicit'
   */
  readonly commit?: CommitMode;
  /**
   * Told of every session rolled back because its scope ended while it was still open: a
   * function, `'warn'` (a process warning the first time each route loses uncommitted writes in
   * each kind of session), or `false`.
   * @default 'warn' unless NODE_ENV is 'production', then false
   */
  readonly onForgotten?: ((report: ForgottenSession) => void) | 'warn' | false;
}

/** When a scope's lazy (or eager) session is committed: see `DbOptions.commit`. */
export type CommitMode = 'explicit' | 'on-success';

/** DbOptions after validation and defaults. */
export interface NormalizedDbOptions {
  readonly transaction: Readonly<Knex.TransactionConfig> | undefined;
  /** `transaction.settings` as name/value pairs, or undefined when there are none. */
  readonly settings: readonly (readonly [string, string])[] | undefined;
  readonly property: string;
  readonly currentDb: boolean;
  readonly maxSessionsPerScope: number;
  readonly commit: CommitMode;
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
 * // { transaction: { isolationLevel: 'serializable' }, property: 'db', …, commit: 'explicit' }
 */
export function normalizeDbOptions(
  options: unknown = {},
  defaultProperty: string,
): NormalizedDbOptions {
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    throw new InvalidConfigError('The options must be an object.');
  }
  const {
    transaction,
    property = defaultProperty,
    currentDb = false,
    maxSessionsPerScope = Number.POSITIVE_INFINITY,
    commit = 'explicit',
    onForgotten,
    ...rest
  } = options as DbOptions;
  const unknown = Object.keys(rest);
  if (unknown.length > 0) {
    throw new InvalidConfigError(
      `Unknown option ${unknown.map((key) => `"${key}"`).join(', ')}; the options are "transaction", "property", "currentDb", "maxSessionsPerScope", "commit" and "onForgotten".`,
    );
  }
  if (
    !(Number.isInteger(maxSessionsPerScope) && maxSessionsPerScope >= 1) &&
    maxSessionsPerScope !== Number.POSITIVE_INFINITY
  ) {
    throw new InvalidConfigError('"maxSessionsPerScope" must be a positive integer.');
  }
  if (typeof currentDb !== 'boolean') {
    throw new InvalidConfigError('"currentDb" must be a boolean.');
  }
  if (commit !== 'explicit' && commit !== 'on-success') {
    throw new InvalidConfigError(
      `"commit" must be "explicit" or "on-success", got ${typeof commit === 'string' ? `"${commit}"` : typeof commit}.`,
    );
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
    settings: normalizeSettings(transaction),
    property,
    currentDb,
    maxSessionsPerScope,
    commit,
    onForgotten: normalizeOnForgotten(onForgotten),
  };
}

// A PostgreSQL parameter name, optionally with a custom prefix (`app.tenant_id`).
const settingName = /^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$/;

function normalizeSettings(transaction: DbOptions['transaction']): NormalizedDbOptions['settings'] {
  const settings = transaction?.settings;
  if (settings === undefined) return undefined;
  if (typeof settings !== 'object' || settings === null || Array.isArray(settings)) {
    throw new InvalidConfigError('"transaction.settings" must be an object of names and values.');
  }
  const pairs = Object.entries(settings).map(([name, value]): readonly [string, string] => {
    if (!settingName.test(name)) {
      throw new InvalidConfigError(
        `"transaction.settings" has an invalid parameter name ${JSON.stringify(name)}.`,
      );
    }
    if (!['string', 'number', 'boolean'].includes(typeof value)) {
      throw new InvalidConfigError(
        `"transaction.settings.${name}" must be a string, a number or a boolean.`,
      );
    }
    return [name, String(value)];
  });
  return pairs.length === 0 ? undefined : pairs;
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
  const {
    isolationLevel,
    readOnly,
    settings: _settings,
    ...rest
  } = transaction as NonNullable<DbOptions['transaction']>;
  const unknown = Object.keys(rest);
  if (unknown.length > 0) {
    throw new InvalidConfigError(
      `Unknown transaction option ${unknown.map((key) => `"${key}"`).join(', ')}; they are "isolationLevel", "readOnly" and "settings".`,
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

/**
 * Checks `transaction.settings` against the database: only PostgreSQL has settings that end with
 * the transaction (`SET LOCAL`). MySQL/MariaDB and SQLite would keep them on the connection, where
 * the next user of the pooled connection (or, through a proxy, another client) would inherit them.
 *
 * @example
 * settingsFor(knex, [['search_path', 'app']]); // on MySQL: throws InvalidConfigError
 */
export function settingsFor(
  knex: Knex,
  settings: NormalizedDbOptions['settings'],
): NormalizedDbOptions['settings'] {
  if (settings === undefined) return undefined;
  const dialect = (knex.client as { dialect?: string }).dialect;
  if (dialect !== 'postgresql') {
    throw new InvalidConfigError(
      '"transaction.settings" needs PostgreSQL: this database has no settings that end with the ' +
        'transaction, and a connection-level SET would outlive the session.',
    );
  }
  return settings;
}
