import { InvalidConfigError } from '../core/errors';
import { parseDatabaseUrl } from '../core/parse-database-url';
import { jestHooks } from './jest-hooks';
import { type TestDatabaseTarget, testDatabaseUrl } from './test-database-url';
import { readTestEnv, readTestRun, resolveNamespace, testEnv } from './test-env';
import { createToxiproxyController, type ToxiproxyController } from './toxiproxy-controller';

/** Where the fault proxy of this test run is (nameko's `toxiproxy_api_url` / `toxiproxy_db_url`). */
export interface TestToxiproxy {
  /** The Toxiproxy API, `TOXIPROXY_API_URL`. */
  readonly apiUrl: string;
  /** This worker's test database through the proxy: `TOXIPROXY_DB_URL`'s host and port. */
  readonly dbUrl: string;
  /** The proxy's name, `TOXIPROXY_PROXY` (the global setup finds it when not given). */
  readonly proxyName: string;
}

/**
 * The fault proxy in front of this worker's test database, or undefined when there is none (on
 * SQLite, or when the global setup did not run and `TOXIPROXY_API_URL` / `TOXIPROXY_DB_URL` are
 * not set). nameko's fault tests skip in that case.
 *
 * @example
 * const describeWithProxy = testToxiproxy() ? describe : describe.skip;
 */
export function testToxiproxy(target: TestDatabaseTarget = {}): TestToxiproxy | undefined {
  const namespace = resolveNamespace(target.namespace);
  const apiUrl = readTestEnv(testEnv.toxiproxyApiUrl, namespace);
  const proxied = readTestEnv(testEnv.toxiproxyDbUrl, namespace);
  if (apiUrl === undefined || proxied === undefined) return undefined;
  const run = readTestRun(namespace);
  const database = testDatabaseUrl(target);
  if (client(proxied) !== client(database)) return undefined;
  const dbUrl = run === undefined ? proxied : withHostOf(database, proxied);
  const proxyName = readTestEnv(testEnv.toxiproxyProxy, namespace);
  if (proxyName === undefined) return undefined;
  return { apiUrl, dbUrl, proxyName };
}

/** What `useToxiproxy` returns. */
export interface ToxiproxyFixture {
  /** False when there is no proxy: skip the fault tests then. */
  readonly available: boolean;
  /** This worker's test database through the proxy. */
  readonly dbUrl: string;
  /** Drives the proxy: `disable()`, `enable()`, `disconnect()`, `addToxic()`, … */
  readonly controller: ToxiproxyController;
}

/**
 * nameko's `toxiproxy` test fixture: a controller for the proxy in front of this worker's test
 * database, reset (enabled, toxics removed) before and after every test.
 *
 * @example
 * const toxiproxy = useToxiproxy();
 * const describeFaults = toxiproxy.available ? describe : describe.skip;
 *
 * describeFaults('after a dropped connection', () => {
 *   it('retries', async () => {
 *     const db = withDb(toxiproxy.dbUrl);
 *     await toxiproxy.controller.disconnect();
 *     // …
 *     await db.destroy();
 *   });
 * });
 */
export function useToxiproxy(target: TestDatabaseTarget = {}): ToxiproxyFixture {
  const found = testToxiproxy(target);
  const controller =
    found === undefined
      ? undefined
      : createToxiproxyController({ apiUrl: found.apiUrl, proxyName: found.proxyName });
  if (controller !== undefined) {
    const { beforeEach, afterEach } = jestHooks();
    beforeEach(() => controller.reset());
    afterEach(() => controller.reset());
  }
  const missing = (): never => {
    throw new InvalidConfigError(
      'No Toxiproxy for this test database: it is SQLite, or neither the global setup nor ' +
        'TOXIPROXY_API_URL and TOXIPROXY_DB_URL provide one. Check `available` first.',
    );
  };
  return {
    available: found !== undefined,
    get dbUrl() {
      return found?.dbUrl ?? missing();
    },
    get controller() {
      return controller ?? missing();
    },
  };
}

function client(url: string): unknown {
  try {
    return parseDatabaseUrl(url).client;
  } catch {
    return undefined;
  }
}

function withHostOf(url: string, proxied: string): string {
  const from = new URL(proxied);
  const parsed = new URL(url);
  parsed.hostname = from.hostname;
  parsed.port = from.port;
  return parsed.toString();
}
