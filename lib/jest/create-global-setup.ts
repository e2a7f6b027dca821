import { availableParallelism } from 'node:os';
import { InvalidConfigError, isKnexScopeError, TestDatabaseError } from '../core/errors';
import { parseDatabaseUrl } from '../core/parse-database-url';
import { redactUrl } from '../core/redact-url';
import type { TestSchemaOptions } from '../testing/build-test-schema';
import { openTestDatabaseServer } from '../testing/open-test-database-server';
import { removeTestLeftovers } from '../testing/remove-test-leftovers';
import {
  defaultTestDbUrl,
  readTestEnv,
  resolveNamespace,
  testEnv,
  testEnvKey,
} from '../testing/test-env';
import { createTestRun, dropTestRun, type MysqlCopyStrategy } from '../testing/test-run';
import { findProxyName, startTestProxy, type TestProxy } from './start-test-proxy';
import { testRunRegistry } from './test-run-registry';

/** Options of `createGlobalSetup`. */
export interface GlobalSetupOptions extends TestSchemaOptions {
  /**
   * The server to create the run's databases on (its database is only the maintenance database
   * the kit connects to), or SQLite's file.
   * @default process.env.TEST_DB_URL ?? 'sqlite::memory:'
   */
  readonly url?: string;
  /**
   * How many worker databases to create up front. A worker with a higher `JEST_WORKER_ID` gets
   * its database created on first use (`useTestDatabase` does it), so this only moves work.
   * @default process.env.KNEX_SCOPE_TEST_WORKERS ?? jest's default, availableParallelism() - 1
   */
  readonly workers?: number;
  /**
   * Keeps the environment variables of this setup apart from other setups of the same jest run
   * (one per project): `KNEX_SCOPE_TEST_RUN__<NAMESPACE>`, `TOXIPROXY_DB_URL__<NAMESPACE>`, …
   * Test files then say which one they use, by `KNEX_SCOPE_TEST_NAMESPACE` (in the project's
   * `setupFiles`) or the `namespace` option of the testing functions.
   * @default process.env.KNEX_SCOPE_TEST_NAMESPACE ?? none
   */
  readonly namespace?: string;
  /**
   * Start a Toxiproxy-compatible fault proxy in front of the server when `TOXIPROXY_API_URL`
   * and `TOXIPROXY_DB_URL` are not given (PostgreSQL and MySQL only).
   * @default true
   */
  readonly toxiproxy?: boolean;
  /**
   * How MySQL/MariaDB worker databases are made from the template.
   * @default 'copy'
   */
  readonly mysqlCopy?: MysqlCopyStrategy;
  /** Receives one line per step; quiet by default. */
  readonly log?: (message: string) => void;
}

/**
 * Builds a jest `globalSetup` function (it ignores the arguments jest passes). It creates a
 * uniquely named database for the run on the server that `TEST_DB_URL` names
 * (`knex_scope_test_<host>_<pid>_<time>`), builds the schema there once (migrations, then the
 * schema function: nameko's `model_base`), and gives every jest worker its own copy (PostgreSQL
 * `CREATE DATABASE … TEMPLATE`, MySQL table copies, SQLite file copies). It first drops what
 * crashed runs of this machine left behind, and never any database it did not name. Unless
 * Toxiproxy is given, it starts the fault proxy in front of the server. Workers find everything
 * through `process.env`; `knex-scope/testing` reads it. Always pair it with `createGlobalTeardown`
 * (same namespace): besides dropping the databases, it stops the fault proxy, whose server would
 * otherwise keep jest's process alive. jest runs one `globalSetup` path once per run even when
 * several projects name it, so give each project its own file (and namespace).
 *
 * @example
 * // test/global-setup.ts, with globalSetup: '<rootDir>/test/global-setup.ts' in jest.config.js
 * import { createGlobalSetup } from 'knex-scope/jest';
 * export default createGlobalSetup({ migrations: 'db/migrations' });
 */
export function createGlobalSetup(options: GlobalSetupOptions = {}): () => Promise<void> {
  const workers = options.workers ?? workersFromEnv() ?? Math.max(availableParallelism() - 1, 1);
  if (!Number.isInteger(workers) || workers < 1) {
    throw new InvalidConfigError(`"workers" must be a positive integer, got ${String(workers)}.`);
  }
  return async function globalSetup(): Promise<void> {
    const namespace = resolveNamespace(options.namespace);
    const url = options.url ?? readTestEnv(testEnv.dbUrl, namespace) ?? defaultTestDbUrl;
    const log = options.log ?? (() => {});
    const registry = testRunRegistry();
    if (registry.has(namespace ?? '')) {
      throw new InvalidConfigError(
        `A knex-scope global setup already ran for ${namespace === undefined ? 'no namespace' : `namespace "${namespace}"`} ` +
          'in this jest run: give each project its own "namespace".',
      );
    }
    const server = openTestDatabaseServer(url);
    const envKeys: string[] = [];
    const set = (key: string, value: string): void => {
      process.env[key] = value;
      envKeys.push(key);
    };
    let proxy: TestProxy | undefined;
    let created: Awaited<ReturnType<typeof createTestRun>> | undefined;
    try {
      const removed = await removeTestLeftovers(server);
      if (removed.length > 0) log(`dropped leftovers of crashed runs: ${removed.join(', ')}`);
      const started = Date.now();
      created = await createTestRun(server, { ...options, workers });
      log(`created ${created.name} and ${workers} worker copies in ${Date.now() - started} ms`);
      if (server.kind !== 'sqlite') {
        proxy = await setUpProxy(url, server.kind, namespace, options, set);
      }
      set(testEnvKey(testEnv.run, namespace), JSON.stringify(created));
      registry.set(namespace ?? '', { envKeys, proxy });
    } catch (error) {
      if (created !== undefined) await dropTestRun(server, created).catch(() => {});
      await proxy?.close().catch(() => {});
      for (const key of envKeys) delete process.env[key];
      if (isKnexScopeError(error)) throw error;
      throw new TestDatabaseError(
        `The test kit could not set up the test databases on ${redactUrl(url)}: ${(error as Error).message}`,
        { cause: error },
      );
    } finally {
      await server.close();
    }
  };
}

async function setUpProxy(
  url: string,
  kind: string,
  namespace: string | undefined,
  options: GlobalSetupOptions,
  set: (key: string, value: string) => void,
): Promise<TestProxy | undefined> {
  const apiUrl = readTestEnv(testEnv.toxiproxyApiUrl, namespace);
  const given = readTestEnv(testEnv.toxiproxyDbUrl, namespace);
  const dbUrl = given !== undefined && sameClient(given, url) ? given : undefined;
  if (apiUrl !== undefined && dbUrl !== undefined) {
    if (readTestEnv(testEnv.toxiproxyProxy, namespace) === undefined) {
      const name = await findProxyName(apiUrl, dbUrl);
      if (name !== undefined) set(testEnvKey(testEnv.toxiproxyProxy, namespace), name);
    }
    return undefined;
  }
  if (options.toxiproxy === false) return undefined;
  const label = namespace ?? kind;
  const name = `knex_scope_${String(label).replace(/[^a-z0-9]+/gi, '_')}${apiUrl === undefined ? '' : `_${process.pid}`}`;
  const proxy = await startTestProxy(url, name, apiUrl);
  if (apiUrl === undefined) set(testEnvKey(testEnv.toxiproxyApiUrl, namespace), proxy.apiUrl);
  set(testEnvKey(testEnv.toxiproxyDbUrl, namespace), proxy.dbUrl);
  set(testEnvKey(testEnv.toxiproxyProxy, namespace), proxy.proxyName);
  return proxy;
}

function sameClient(a: string, b: string): boolean {
  try {
    return parseDatabaseUrl(a).client === parseDatabaseUrl(b).client;
  } catch {
    return false;
  }
}

function workersFromEnv(): number | undefined {
  const value = process.env[testEnv.workers];
  return value === undefined || value === '' ? undefined : Number(value);
}
