import { knex as createKnexInstance, type Knex } from 'knex';
import { isConnectionError } from '../retry/is-connection-error';
import { InvalidConfigError } from './errors';
import { type FailoverConnection, isFailoverConnection } from './failover-connection';
import { parseDatabaseUrl } from './parse-database-url';
import { redactUrl } from './redact-url';

/**
 * What `withDb` and `withLegacySession` accept: a Knex config object, a connection URL, or an
 * existing Knex instance (which knex-scope then never destroys).
 */
export type DbConfig = Knex | Knex.Config | string;

/** A Knex instance and whether knex-scope created it (and so destroys it on `db.destroy()`). */
export interface OwnedKnex {
  readonly knex: Knex;
  readonly owned: boolean;
}

/**
 * Validates `config` and builds the Knex instance it describes, or adopts the instance it is.
 * Every mistake that can be found without connecting is an InvalidConfigError here, and no
 * message or `cause` it throws contains the password.
 *
 * @example
 * const { knex, owned } = createKnex('postgres://app@127.0.0.1/shop'); // owned === true
 * createKnex({ client: 'pg', pool: { min: 5, max: 2 } }); // throws InvalidConfigError
 */
export function createKnex(config: DbConfig): OwnedKnex {
  if (isKnex(config)) return { knex: watchFailover(config), owned: false };
  if (typeof config === 'string') return { knex: build(parseDatabaseUrl(config)), owned: true };
  if (typeof config !== 'object' || config === null || Array.isArray(config)) {
    throw new InvalidConfigError(
      `Expected a Knex config object, a connection URL or a Knex instance, got ${describe(config)}.`,
    );
  }
  return { knex: watchFailover(build(validate(withFailoverClient(config)))), owned: true };
}

const watched = new WeakSet<Knex>();

// A failoverConnection keeps its server until told that a connection to it failed: a connect that
// failed (tarn's createFail), or a statement that failed with a connection error, which is how a
// Galera node outside the primary component (1047) shows, its socket still open.
function watchFailover(knex: Knex): Knex {
  const connection = (knex.client as { config?: Knex.Config }).config?.connection;
  if (!isFailoverConnection(connection) || watched.has(knex)) return knex;
  watched.add(knex);
  const failover: FailoverConnection = connection;
  const pool = (knex.client as { pool?: { on(event: string, listener: () => void): void } }).pool;
  pool?.on('createFail', () => failover.markStale());
  knex.on('query-error', (error: unknown) => {
    if (isConnectionError(error)) failover.markStale();
  });
  return knex;
}

function withFailoverClient(config: Knex.Config): Knex.Config {
  const { connection } = config;
  if (!isFailoverConnection(connection)) return config;
  if (config.client === undefined) return { ...config, client: connection.client };
  const client = typeof config.client === 'string' ? config.client : '';
  const family = ['pg', 'postgres', 'postgresql'].includes(client) ? 'pg' : client;
  if (family !== connection.client) {
    throw new InvalidConfigError(
      `The failoverConnection's URLs need the "${connection.client}" client, not "${client}".`,
    );
  }
  return config;
}

/**
 * Tells whether `value` is a Knex instance (or a Knex transaction, which is one too).
 *
 * @example
 * isKnex(knex({ client: 'pg' })); // true
 */
export function isKnex(value: unknown): value is Knex {
  return (
    typeof value === 'function' &&
    typeof (value as Partial<Knex>).transaction === 'function' &&
    typeof (value as Partial<Knex>).client === 'object'
  );
}

function validate(config: Knex.Config): Knex.Config {
  if (config.client === undefined || config.client === null || config.client === '') {
    throw new InvalidConfigError(
      'The Knex config has no "client" (for example "pg", "mysql2" or "better-sqlite3").',
    );
  }
  if (typeof config.connection === 'string' && /^[a-z][a-z0-9+.-]+:\/\//i.test(config.connection)) {
    if (!URL.canParse(config.connection)) {
      throw new InvalidConfigError(
        `The connection URL ${redactUrl(config.connection)} is not a valid URL.`,
      );
    }
  }
  const pool = config.pool;
  if (pool !== undefined) {
    if (typeof pool !== 'object' || pool === null) {
      throw new InvalidConfigError('"pool" must be an object.');
    }
    for (const key of ['min', 'max'] as const) {
      const value = pool[key];
      if (value !== undefined && !(Number.isInteger(value) && value >= 0)) {
        throw new InvalidConfigError(
          `"pool.${key}" must be a non-negative integer, got ${describe(value)}.`,
        );
      }
    }
    if (pool.max === 0) throw new InvalidConfigError('"pool.max" must be at least 1.');
    if (pool.min !== undefined && pool.max !== undefined && pool.min > pool.max) {
      throw new InvalidConfigError(
        `"pool.min" (${pool.min}) must not exceed "pool.max" (${pool.max}).`,
      );
    }
    if (pool.propagateCreateError === false) {
      // knex/knex#3455, #6300: without it, connection errors stay hidden until the acquire timeout.
      throw new InvalidConfigError(
        '"pool.propagateCreateError: false" hides connection errors until the acquire timeout; remove it.',
      );
    }
  }
  const timeout = config.acquireConnectionTimeout;
  if (
    timeout !== undefined &&
    !(typeof timeout === 'number' && timeout > 0 && timeout < Infinity)
  ) {
    throw new InvalidConfigError(
      `"acquireConnectionTimeout" must be a positive number of milliseconds, got ${describe(timeout)}.`,
    );
  }
  return config;
}

function build(config: Knex.Config): Knex {
  const isSqlite = config.client === 'better-sqlite3' || config.client === 'sqlite3';
  const effective =
    isSqlite && config.useNullAsDefault === undefined
      ? { ...config, useNullAsDefault: true }
      : config;
  try {
    return createKnexInstance(effective);
  } catch (error) {
    const secrets = passwordsOf(config);
    const message = scrub(error instanceof Error ? error.message : String(error), secrets);
    if (error instanceof Error) {
      error.message = message;
      if (error.stack !== undefined) error.stack = scrub(error.stack, secrets);
    }
    const summary = message.split('\nRequire stack')[0]?.replace(/\s*\n\s*/g, ' ');
    throw new InvalidConfigError(`Knex rejected the config: ${summary}`, {
      cause: error,
    });
  }
}

function passwordsOf(config: Knex.Config): string[] {
  const connection = config.connection as unknown;
  if (typeof connection === 'string') {
    const password = URL.canParse(connection) ? new URL(connection).password : '';
    return password === '' ? [] : [password, decodeURIComponent(password)];
  }
  if (typeof connection === 'object' && connection !== null) {
    const password = (connection as { password?: unknown }).password;
    return typeof password === 'string' && password !== '' ? [password] : [];
  }
  return [];
}

function scrub(text: string, secrets: readonly string[]): string {
  return secrets.reduce((result, secret) => result.split(secret).join('***'), redactUrl(text));
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'string')
    return `the string "${value.length > 40 ? `${value.slice(0, 40)}…` : value}"`;
  if (typeof value === 'object' || typeof value === 'function') return `a ${typeof value}`;
  return `${typeof value} ${String(value)}`;
}
