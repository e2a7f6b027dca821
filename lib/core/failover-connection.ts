import { InvalidConfigError } from './errors';
import { parseDatabaseUrl } from './parse-database-url';
import { redactUrl } from './redact-url';

const brand = Symbol.for('knex-scope.failover-connection');

/** Options of `failoverConnection`. */
export interface FailoverOptions {
  /**
   * How long to wait for each candidate's probe connection, in milliseconds.
   * @default 1_000
   */
  readonly connectTimeout?: number;
}

/** What knex receives as the config of one new connection. */
export type FailoverConnectionConfig = Record<string, unknown> & {
  expirationChecker: () => boolean;
};

/**
 * A knex `connection` function that connects to whichever of several servers can take writes, and
 * looks again after a connection to it failed. Made by `failoverConnection`.
 */
export interface FailoverConnection {
  (): Promise<FailoverConnectionConfig>;
  /** The knex client the URLs need: `pg` or `mysql2`. */
  readonly client: 'pg' | 'mysql2';
  /** The URL new connections go to, or undefined before the first connection. */
  readonly current: string | undefined;
  /** Makes the next new connection look for a healthy server again (done for you by `withDb`). */
  markStale(): void;
}

type Probe = (url: string, timeout: number) => Promise<string | undefined>;

/**
 * A knex `connection` function for a PostgreSQL primary with standbys, or a MySQL/MariaDB server
 * set such as a Galera cluster: each new connection goes to the first server, in the order given,
 * that takes writes — on PostgreSQL one not in recovery (`pg_is_in_recovery()`); on MySQL/MariaDB
 * one with `read_only` off that, under Galera, is synced and in the primary component
 * (`wsrep_ready`, `wsrep_cluster_status`, `wsrep_local_state_comment`). The choice is kept until a
 * connection to it fails: `withDb` watches knex's pool and queries for that (a failed connect, a
 * connection error, Galera's 1047) and the next new connection looks again. When no server takes
 * writes, it rejects with an error `isConnectionError` accepts, so `retryTransaction` retries
 * after its backoff: give it enough retries to span your failover.
 *
 * URLs are validated here (InvalidConfigError); they must all be PostgreSQL or all MySQL/MariaDB.
 *
 * @example
 * const db = withDb({
 *   client: 'pg',
 *   connection: failoverConnection(['postgres://app@db1/shop', 'postgres://app@db2/shop']),
 * });
 */
export function failoverConnection(
  urls: readonly string[],
  options: FailoverOptions = {},
): FailoverConnection {
  const client = clientOf(urls);
  const timeout = options.connectTimeout ?? 1_000;
  if (!(typeof timeout === 'number' && timeout > 0 && timeout < Infinity)) {
    throw new InvalidConfigError('"connectTimeout" must be a positive number of milliseconds.');
  }
  const probe = client === 'pg' ? probePostgres : probeMysql;
  let current: string | undefined;
  let stale = true;
  const expirationChecker = () => stale;
  const connection = (async () => {
    const failures: unknown[] = [];
    for (const url of urls) {
      try {
        const refusal = await probe(url, timeout);
        if (refusal === undefined) {
          current = url;
          stale = false;
          return { ...settingsOf(client, url), expirationChecker };
        }
        failures.push(notWritable(client, url, refusal));
      } catch (error) {
        failures.push(error);
      }
    }
    throw Object.assign(
      new AggregateError(
        failures,
        `None of ${urls.length} servers takes writes: ${failures
          .map((failure) => (failure as Error).message)
          .join('; ')}`,
      ),
      { code: (failures[0] as { code?: unknown }).code },
    );
  }) as FailoverConnection;
  Object.defineProperties(connection, {
    client: { value: client },
    current: { get: () => current },
    markStale: {
      value: () => {
        stale = true;
      },
    },
    [brand]: { value: true },
  });
  return connection;
}

/**
 * Tells whether a knex `connection` setting was made by `failoverConnection`.
 *
 * @example
 * if (isFailoverConnection(config.connection)) config.connection.markStale();
 */
export function isFailoverConnection(value: unknown): value is FailoverConnection {
  return (
    typeof value === 'function' && (value as unknown as Record<symbol, unknown>)[brand] === true
  );
}

function clientOf(urls: readonly string[]): 'pg' | 'mysql2' {
  if (!Array.isArray(urls) || urls.length === 0 || urls.some((url) => typeof url !== 'string')) {
    throw new InvalidConfigError('failoverConnection needs a non-empty array of connection URLs.');
  }
  const clients = new Set(urls.map((url) => parseDatabaseUrl(url).client));
  const [client] = clients;
  if (clients.size !== 1 || (client !== 'pg' && client !== 'mysql2')) {
    throw new InvalidConfigError(
      `failoverConnection needs URLs of one server kind, PostgreSQL or MySQL/MariaDB: got ${urls
        .map(redactUrl)
        .join(', ')}.`,
    );
  }
  return client;
}

function settingsOf(client: 'pg' | 'mysql2', url: string): Record<string, unknown> {
  const connection = parseDatabaseUrl(url).connection as string;
  return client === 'pg' ? { connectionString: connection } : { uri: connection };
}

// The error a server that answers but takes no writes gives: one `isConnectionError` accepts,
// as the server's own refusal would be (PostgreSQL 57P03 cannot_connect_now, Galera's 1047).
function notWritable(client: 'pg' | 'mysql2', url: string, why: string): Error {
  const error = new Error(`${redactUrl(url)} ${why}`);
  return client === 'pg'
    ? Object.assign(error, { code: '57P03' })
    : Object.assign(error, { errno: 1047, sqlState: '08S01' });
}

const probePostgres: Probe = async (url, timeout) => {
  const { Client } = require('pg') as typeof import('pg');
  const probe = new Client({ connectionString: url, connectionTimeoutMillis: timeout });
  probe.on('error', () => {});
  try {
    await probe.connect();
    const { rows } = await probe.query<{ standby: boolean }>(
      'select pg_is_in_recovery() as standby',
    );
    return rows[0]?.standby === false ? undefined : 'is a standby (in recovery)';
  } finally {
    await probe.end().catch(() => {});
  }
};

const probeMysql: Probe = async (url, timeout) => {
  const mysql = require('mysql2/promise') as typeof import('mysql2/promise');
  const probe = await mysql.createConnection({
    uri: parseDatabaseUrl(url).connection as string,
    connectTimeout: timeout,
  });
  probe.on('error', () => {});
  try {
    const variables = await showGlobal(probe, 'variables', ['read_only', 'wsrep_on']);
    if (variables.get('read_only') !== 'OFF') return 'is read-only';
    if (variables.get('wsrep_on') !== 'ON') return undefined;
    const status = await showGlobal(probe, 'status', [
      'wsrep_ready',
      'wsrep_cluster_status',
      'wsrep_local_state_comment',
    ]);
    const ready =
      status.get('wsrep_ready') === 'ON' &&
      status.get('wsrep_cluster_status') === 'Primary' &&
      status.get('wsrep_local_state_comment') === 'Synced';
    return ready
      ? undefined
      : `is not a synced Galera node in the primary component (${Array.from(status.values()).join(', ')})`;
  } finally {
    await probe.end().catch(() => {});
  }
};

async function showGlobal(
  connection: import('mysql2/promise').Connection,
  what: 'variables' | 'status',
  names: readonly string[],
): Promise<Map<string, string>> {
  const [rows] = await connection.query(
    `show global ${what} where Variable_name in (${names.map(() => '?').join(', ')})`,
    [...names],
  );
  return new Map(
    (rows as { Variable_name: string; Value: string }[]).map((row) => [
      row.Variable_name.toLowerCase(),
      row.Value,
    ]),
  );
}
