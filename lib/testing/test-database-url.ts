import type { Knex } from 'knex';
import { TestDatabaseError } from '../core/errors';
import { parseDatabaseUrl } from '../core/parse-database-url';
import { redactUrl } from '../core/redact-url';
import { openTestDatabaseServer } from './open-test-database-server';
import {
  defaultTestDbUrl,
  readTestEnv,
  readTestRun,
  resolveNamespace,
  testEnv,
  workerId,
} from './test-env';
import { provisionWorkerDatabase } from './test-run';
import { workerDatabaseName } from './test-run-name';

/** Which test database to use, when several jest projects set up their own. */
export interface TestDatabaseTarget {
  /**
   * The namespace the global setup was given.
   * @default process.env.KNEX_SCOPE_TEST_NAMESPACE ?? none
   */
  readonly namespace?: string;
}

/**
 * The URL of this jest worker's own test database (nameko's `db_url` fixture): the copy the global
 * setup made for `JEST_WORKER_ID`. Without the global setup, `TEST_DB_URL` itself (default
 * in-memory SQLite), shared by whatever uses it. For SQLite the URL is the database file's path.
 * A worker beyond the ones the setup prepared must `await ensureTestDatabase()` first
 * (`useTestDatabase` does).
 *
 * @example
 * const db = withDb(testDatabaseUrl());
 */
export function testDatabaseUrl(target: TestDatabaseTarget = {}): string {
  const namespace = resolveNamespace(target.namespace);
  const run = readTestRun(namespace);
  if (run === undefined) return readTestEnv(testEnv.dbUrl, namespace) ?? defaultTestDbUrl;
  return openTestDatabaseServer(run.server, run.dir).urlOf(
    workerDatabaseName(run.name, workerId()),
  );
}

/**
 * A Knex config for this worker's test database, with `engineOptions` (nameko's
 * `db_engine_options`: pool, timeouts, `log`, … any Knex config key) laid over it; `pool` and an
 * object `connection` are merged key by key.
 *
 * @example
 * const knex = knex(testDatabaseConfig({ engineOptions: { pool: { max: 2 } } }));
 */
export function testDatabaseConfig(
  options: TestDatabaseTarget & { readonly engineOptions?: Readonly<Partial<Knex.Config>> } = {},
): Knex.Config {
  return mergeEngineOptions(parseDatabaseUrl(testDatabaseUrl(options)), options.engineOptions);
}

/**
 * Makes sure this worker's test database exists, creating it from the run's template when the
 * global setup prepared fewer databases than jest started workers. Resolves to its URL.
 *
 * @example
 * beforeAll(() => ensureTestDatabase());
 */
export async function ensureTestDatabase(target: TestDatabaseTarget = {}): Promise<string> {
  const namespace = resolveNamespace(target.namespace);
  const run = readTestRun(namespace);
  const id = workerId();
  if (run === undefined || id <= run.workers) return testDatabaseUrl(target);
  const server = openTestDatabaseServer(run.server, run.dir);
  try {
    const name = workerDatabaseName(run.name, id);
    if (!(await server.exists(name))) {
      await provisionWorkerDatabase(server, run, id, {
        ...(run.migrations === undefined ? {} : { migrations: run.migrations }),
        ...(run.schema === undefined ? {} : { schema: run.schema }),
      });
    }
    return server.urlOf(name);
  } catch (error) {
    throw new TestDatabaseError(
      `The test kit could not create the database of jest worker ${id} on ${redactUrl(run.server)}: ` +
        `${(error as Error).message}`,
      { cause: error },
    );
  } finally {
    await server.close();
  }
}

/**
 * `config` with `extra` laid over it: top-level keys replace, `pool` and an object `connection`
 * merge key by key.
 *
 * @example
 * mergeEngineOptions({ client: 'pg', pool: { min: 0 } }, { pool: { max: 2 } });
 * // { client: 'pg', pool: { min: 0, max: 2 } }
 */
export function mergeEngineOptions(
  config: Knex.Config,
  extra: Readonly<Partial<Knex.Config>> | undefined,
): Knex.Config {
  if (extra === undefined) return config;
  const merged: Knex.Config = { ...config, ...extra };
  if (config.pool !== undefined || extra.pool !== undefined) {
    merged.pool = { ...config.pool, ...extra.pool };
  }
  if (isObject(config.connection) && isObject(extra.connection)) {
    merged.connection = {
      ...config.connection,
      ...extra.connection,
    } as Knex.StaticConnectionConfig;
  }
  return merged;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
