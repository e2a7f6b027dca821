import { InvalidConfigError } from '../core/errors';

/** What kind of database a test run lives on. */
export type TestDatabaseKind = 'postgres' | 'mysql' | 'sqlite';

/**
 * What the jest global setup tells the workers about a test run, through `process.env` (the only
 * channel from jest's parent process to its workers). Internal to the test kit.
 */
export interface TestRun {
  readonly kind: TestDatabaseKind;
  /** `TEST_DB_URL` as the setup used it: the server (and its maintenance database), or SQLite's. */
  readonly server: string;
  /** For SQLite: the folder that holds the run's files. */
  readonly dir?: string;
  /** The run's template database; worker k's database is `${name}_w${k}`. */
  readonly name: string;
  /** How many worker databases the setup created (1…workers); others are created on demand. */
  readonly workers: number;
  /** The schema module or migrations folder, so a worker can build a database the same way. */
  readonly schema?: string;
  readonly migrations?: string;
}

/**
 * The environment variables of the test kit, nameko-sqlalchemy's pytest options:
 * `--test-db-url`, `--toxiproxy-api-url` and `--toxiproxy-db-url`.
 *
 * @example
 * process.env[testEnv.dbUrl] = 'postgres://postgres@127.0.0.1:5432/test'; // TEST_DB_URL
 */
export const testEnv = {
  /** The database server to test on, or SQLite's file; default in-memory SQLite. */
  dbUrl: 'TEST_DB_URL',
  /** The Toxiproxy HTTP API (`http://host:port` or nameko's bare `host:port`). */
  toxiproxyApiUrl: 'TOXIPROXY_API_URL',
  /** A database URL whose host and port are a Toxiproxy proxy in front of the test server. */
  toxiproxyDbUrl: 'TOXIPROXY_DB_URL',
  /** The name of that proxy (found from TOXIPROXY_DB_URL's port when not given). */
  toxiproxyProxy: 'TOXIPROXY_PROXY',
  /** The run the global setup created (JSON; internal). */
  run: 'KNEX_SCOPE_TEST_RUN',
  /** Which configuration a test file belongs to, when several share one jest run. */
  namespace: 'KNEX_SCOPE_TEST_NAMESPACE',
  /** For the zero-config global setup: the migrations folder. */
  migrations: 'KNEX_SCOPE_TEST_MIGRATIONS',
  /** For the zero-config global setup: the schema module. */
  schema: 'KNEX_SCOPE_TEST_SCHEMA',
  /** For the zero-config global setup: how many worker databases to create up front. */
  workers: 'KNEX_SCOPE_TEST_WORKERS',
} as const;

/**
 * The default test database: in-memory SQLite (nameko's `sqlite://`). The kit keeps its
 * per-worker copies in a RAM-backed folder, so that several connections share one.
 *
 * @example
 * const url = process.env.TEST_DB_URL ?? defaultTestDbUrl;
 */
export const defaultTestDbUrl = 'sqlite::memory:';

/**
 * The environment variable `base` for `namespace`: `TEST_DB_URL` without one,
 * `TEST_DB_URL__POSTGRES` for namespace `postgres`. Several global setups in one jest run (one per
 * project) use distinct namespaces so their variables do not overwrite each other.
 *
 * @example
 * testEnvKey('TOXIPROXY_DB_URL', 'mariadb'); // 'TOXIPROXY_DB_URL__MARIADB'
 */
export function testEnvKey(base: string, namespace: string | undefined): string {
  if (namespace === undefined || namespace === '') return base;
  return `${base}__${namespace.toUpperCase().replace(/[^A-Z0-9]+/g, '_')}`;
}

/**
 * The namespace a test file uses: the one given, else `KNEX_SCOPE_TEST_NAMESPACE` (set it in a
 * project's `setupFiles`), else none.
 *
 * @example
 * resolveNamespace(undefined); // process.env.KNEX_SCOPE_TEST_NAMESPACE, or undefined
 */
export function resolveNamespace(namespace: string | undefined): string | undefined {
  const value = namespace ?? process.env[testEnv.namespace];
  return value === '' ? undefined : value;
}

/**
 * Reads `base` for `namespace`, falling back to the variable without a namespace.
 *
 * @example
 * readTestEnv('TOXIPROXY_API_URL', 'postgres'); // TOXIPROXY_API_URL__POSTGRES ?? TOXIPROXY_API_URL
 */
export function readTestEnv(base: string, namespace: string | undefined): string | undefined {
  const value = process.env[testEnvKey(base, namespace)] ?? process.env[base];
  return value === '' ? undefined : value;
}

/**
 * The test run the global setup published for `namespace`, or undefined when none ran.
 *
 * @example
 * const run = readTestRun('postgres'); // { kind: 'postgres', name: 'knex_scope_test_…', … }
 */
export function readTestRun(namespace: string | undefined): TestRun | undefined {
  const json = process.env[testEnvKey(testEnv.run, namespace)];
  if (json === undefined || json === '') return undefined;
  try {
    return JSON.parse(json) as TestRun;
  } catch (error) {
    throw new InvalidConfigError(
      `${testEnvKey(testEnv.run, namespace)} is not the JSON the test kit's global setup writes.`,
      { cause: error },
    );
  }
}

/**
 * The 1-based id of this jest worker (`JEST_WORKER_ID`; `1` under `--runInBand` and outside jest).
 *
 * @example
 * workerId(); // 2 in jest's second worker
 */
export function workerId(): number {
  const id = Number(process.env.JEST_WORKER_ID ?? '1');
  return Number.isInteger(id) && id > 0 ? id : 1;
}
