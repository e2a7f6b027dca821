// The jest global setup and teardown of the test kit, on real servers: nameko-sqlalchemy's
// db_connection fixture (schema built once per run, dropped at the end), grown into one database
// per jest worker. upstream: test/test_pytest_fixtures.py where noted.
import { spawnSync } from 'node:child_process';
import diagnostics from 'node:diagnostics_channel';
import { join } from 'node:path';
import { InvalidConfigError, isKnexScopeError, TestDatabaseError } from '../../lib';
import { createGlobalSetup, createGlobalTeardown } from '../../lib/jest';
import globalSetup from '../../lib/jest/global-setup';
import globalTeardown from '../../lib/jest/global-teardown';
import {
  ensureTestDatabase,
  testDatabaseConfig,
  testDatabaseUrl,
  testToxiproxy,
} from '../../lib/testing';
import { readTestRun, type TestRun, testEnvKey } from '../../lib/testing/test-env';
import { createTestRunName, hostTag, parseTestRunName } from '../../lib/testing/test-run-name';
import { availableTargets, type Target, uniqueName, withKnex } from './support';

// Each test creates and drops several databases: about 0.5 s apiece on PostgreSQL, several times
// that while the machine is busy.
jest.setTimeout(30_000);

const fixtures = join(__dirname, 'fixtures');
const migrations = join(fixtures, 'migrations');
const schema = join(fixtures, 'schema.js');

function runOf(namespace: string): TestRun {
  const run = readTestRun(namespace);
  if (run === undefined) throw new Error(`no run for ${namespace}`);
  return run;
}

function ofRun(databases: string[], run: TestRun): string[] {
  return databases.filter((name) => name === run.name || name.startsWith(`${run.name}_w`)).sort();
}

async function tableNames(url: string): Promise<string[]> {
  return withKnex(url, async (knex) => {
    const names = await Promise.all(
      ['users', 'orders', 'knex_migrations'].map(async (table) =>
        (await knex.schema.hasTable(table)) ? table : undefined,
      ),
    );
    return names.filter((name) => name !== undefined);
  });
}

async function userNames(url: string): Promise<string[]> {
  return withKnex(url, (knex) => knex('users').orderBy('id').pluck('name'));
}

function asWorker<T>(id: number, work: () => T): T {
  const previous = process.env.JEST_WORKER_ID;
  process.env.JEST_WORKER_ID = String(id);
  try {
    return work();
  } finally {
    process.env.JEST_WORKER_ID = previous;
  }
}

describe.each(availableTargets())('the global setup on $name', ({ name, open }) => {
  let target: Target;
  let namespace: string;

  beforeAll(() => {
    target = open();
  });

  beforeEach(() => {
    namespace = uniqueName('ns');
  });

  afterEach(async () => {
    await createGlobalTeardown({ namespace })();
  });

  afterAll(async () => {
    await target.close();
  });

  it('creates a database for the run and one per worker, and drops them all at teardown', async () => {
    await createGlobalSetup({ url: target.url, namespace, workers: 2, migrations })();
    const run = runOf(namespace);
    expect(parseTestRunName(run.name)).toMatchObject({ host: hostTag(), pid: process.pid });
    expect(ofRun(await target.databases(), run)).toEqual([
      run.name,
      `${run.name}_w1`,
      `${run.name}_w2`,
    ]);

    await createGlobalTeardown({ namespace })();
    expect(ofRun(await target.databases(), run)).toEqual([]);
    expect(process.env[testEnvKey('KNEX_SCOPE_TEST_RUN', namespace)]).toBeUndefined();
  });

  // upstream: db_connection's create_all, from knex migrations
  it('builds the schema once from a migrations folder; every worker gets tables and rows', async () => {
    await createGlobalSetup({ url: target.url, namespace, workers: 2, migrations })();
    for (const id of [1, 2]) {
      const url = asWorker(id, () => testDatabaseUrl({ namespace }));
      expect(await tableNames(url)).toEqual(['users', 'orders', 'knex_migrations']);
      expect(await userNames(url)).toEqual(['seeded']);
      expect(
        await withKnex(url, (knex) => knex('knex_migrations').orderBy('id').pluck('name')),
      ).toEqual(['20260101000000_users.js', '20260101000001_orders.js']);
    }
  });

  // upstream: db_connection's create_all on model_base.metadata
  it('builds the schema from a schema module, or a function', async () => {
    await createGlobalSetup({ url: target.url, namespace, workers: 1, schema })();
    const url = asWorker(1, () => testDatabaseUrl({ namespace }));
    expect(await tableNames(url)).toEqual(['users', 'orders']);
    expect(await userNames(url)).toEqual(['seeded']);
    await createGlobalTeardown({ namespace })();

    await createGlobalSetup({
      url: target.url,
      namespace,
      workers: 1,
      schema: join(fixtures, 'schema-ts.ts'),
    })();
    expect(await tableNames(asWorker(1, () => testDatabaseUrl({ namespace })))).toEqual(['users']);
  });

  // upstream: test_requires_override_model_base
  it('refuses a schema module that exports no function, leaving nothing behind', async () => {
    const before = await target.databases();
    const setup = createGlobalSetup({
      url: target.url,
      namespace,
      workers: 1,
      schema: join(fixtures, 'no-schema.js'),
    });
    await expect(setup()).rejects.toThrow(InvalidConfigError);
    await expect(setup()).rejects.toThrow(/exports no function/);
    expect((await target.databases()).sort()).toEqual(before.sort());
    expect(readTestRun(namespace)).toBeUndefined();
  });

  it("isolates the workers: one worker's rows are not in another's database", async () => {
    await createGlobalSetup({ url: target.url, namespace, workers: 2, schema })();
    const [first, second] = [1, 2].map((id) => asWorker(id, () => testDatabaseUrl({ namespace })));
    expect(first).not.toEqual(second);
    await withKnex(first ?? '', (knex) => knex('users').insert({ name: 'only in w1' }));
    expect(await userNames(first ?? '')).toEqual(['seeded', 'only in w1']);
    expect(await userNames(second ?? '')).toEqual(['seeded']);
  });

  it('creates the database of a worker beyond those prepared on first use; teardown drops it', async () => {
    await createGlobalSetup({ url: target.url, namespace, workers: 1, migrations })();
    const run = runOf(namespace);
    const url = await asWorker(3, () => ensureTestDatabase({ namespace }));
    expect(url).toBe(asWorker(3, () => testDatabaseUrl({ namespace })));
    expect(await userNames(url)).toEqual(['seeded']);
    expect(ofRun(await target.databases(), run)).toEqual([
      run.name,
      `${run.name}_w1`,
      `${run.name}_w3`,
    ]);
    await createGlobalTeardown({ namespace })();
    expect(ofRun(await target.databases(), run)).toEqual([]);
  });

  it('publishes every database it creates and drops on knex-scope:test-database', async () => {
    let events: unknown[] = [];
    const record = (event: unknown) => events.push(event);
    diagnostics.subscribe('knex-scope:test-database', record);
    try {
      await createGlobalSetup({ url: target.url, namespace, workers: 1, migrations })();
      const run = runOf(namespace);
      await asWorker(2, () => ensureTestDatabase({ namespace }));
      await createGlobalTeardown({ namespace })();
      const engine = name === 'mariadb' ? 'mysql' : name;
      // Leftovers of crashed runs may be dropped first (see the next test): only this run's.
      events = events.filter((event) => (event as { name: string }).name.startsWith(run.name));
      expect(events.slice(0, 3)).toEqual([
        { action: 'created', role: 'template', name: run.name, engine },
        { action: 'created', role: 'worker', name: `${run.name}_w1`, worker: 1, engine },
        { action: 'created', role: 'worker', name: `${run.name}_w2`, worker: 2, engine },
      ]);
      expect(events.slice(3, 5)).toEqual(
        expect.arrayContaining(
          [`${run.name}_w1`, `${run.name}_w2`].map((worker) => ({
            action: 'dropped',
            role: 'worker',
            name: worker,
            engine,
          })),
        ),
      );
      expect(events.slice(5)).toEqual([
        { action: 'dropped', role: 'template', name: run.name, engine },
      ]);
    } finally {
      diagnostics.unsubscribe('knex-scope:test-database', record);
    }
    // Three databases made and dropped: over the 5 s default when the server is busy.
  }, 30_000);

  it("removes a dead process's leftovers, never a live run's, another machine's or a foreign database", async () => {
    const child = spawnSync(process.execPath, ['-e', '']);
    const dead = createTestRunName(child.pid, Date.now() - 60_000);
    const live = createTestRunName(process.pid, Date.now() - 60_000);
    const otherHost = createTestRunName(child.pid, Date.now() - 60_000, hostTag('elsewhere'));
    const foreign = [`knex_scope_testing_${child.pid}`, 'knex_scope_test_'];
    const planted = [dead, `${dead}_w1`, `${dead}_w2`, live, `${live}_w1`, otherHost, ...foreign];
    // A run of this test that was cut off left its fixed-name databases behind.
    for (const name of foreign) await target.dropDatabase(name);
    for (const name of planted) await target.createDatabase(name);
    try {
      await createGlobalSetup({ url: target.url, namespace, workers: 1 })();
      const left = await target.databases();
      expect(left).not.toContain(dead);
      expect(left).not.toContain(`${dead}_w1`);
      expect(left).not.toContain(`${dead}_w2`);
      expect(left).toEqual(expect.arrayContaining([live, `${live}_w1`, otherHost, ...foreign]));
    } finally {
      for (const name of planted) await target.dropDatabase(name);
    }
  });

  it('leaves nothing open: a process that runs the setup and the teardown exits by itself', () => {
    const child = spawnSync(
      process.execPath,
      [join(fixtures, 'setup-and-teardown.js'), target.url, namespace],
      { encoding: 'utf8', timeout: 30_000 },
    );
    expect(child.stderr).toBe('');
    expect(child.signal).toBeNull();
    expect(child.status).toBe(0);
    const published = JSON.parse(child.stdout) as string[];
    expect(published).toContain(testEnvKey('KNEX_SCOPE_TEST_RUN', namespace));
  });

  if (name !== 'sqlite') {
    it("starts the fault proxy in front of the server and aims it at each worker's database", async () => {
      await createGlobalSetup({ url: target.url, namespace, workers: 1, schema })();
      const proxy = asWorker(1, () => testToxiproxy({ namespace }));
      expect(proxy).toMatchObject({
        apiUrl: expect.stringMatching(/^http:\/\/127\.0\.0\.1:\d+$/),
        proxyName: `knex_scope_${namespace}`,
      });
      const direct = new URL(asWorker(1, () => testDatabaseUrl({ namespace })));
      const proxied = new URL(proxy?.dbUrl ?? '');
      expect(proxied.pathname).toBe(direct.pathname);
      expect(proxied.port).not.toBe(direct.port);
      expect(await userNames(proxied.toString())).toEqual(['seeded']);

      await createGlobalTeardown({ namespace })();
      expect(testToxiproxy({ namespace })).toBeUndefined();
      await expect(fetch(`${proxy?.apiUrl}/version`)).rejects.toThrow();
    });
  }
});

describe('createGlobalSetup', () => {
  it('rejects a worker count that is not a positive integer', () => {
    expect(() => createGlobalSetup({ workers: 0 })).toThrow(InvalidConfigError);
    expect(() => createGlobalSetup({ workers: 1.5 })).toThrow(
      /"workers" must be a positive integer/,
    );
  });

  it('fails with TestDatabaseError, without the password, when the server does not answer', async () => {
    const setup = createGlobalSetup({
      url: 'postgres://app:s3cret@127.0.0.1:1/test',
      namespace: uniqueName('ns'),
    });
    const error = await setup().catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(TestDatabaseError);
    expect(isKnexScopeError(error) && error.code).toBe('ERR_TEST_DATABASE');
    expect(String((error as Error).message)).toContain('postgres://app:***@127.0.0.1:1/test');
    expect(String((error as Error).message)).not.toContain('s3cret');
  });

  it('refuses to set up one namespace twice in a run', async () => {
    const namespace = uniqueName('ns');
    const target = availableTargets()[0]?.open();
    const url = target?.url ?? '';
    await createGlobalSetup({ url, namespace, workers: 1 })();
    try {
      await expect(createGlobalSetup({ url, namespace, workers: 1 })()).rejects.toThrow(
        /already ran/,
      );
    } finally {
      await createGlobalTeardown({ namespace })();
      await target?.close();
    }
  });
});

describe('knex-scope/jest/global-setup and global-teardown (zero-config)', () => {
  const saved = { ...process.env };
  afterEach(() => {
    process.env = { ...saved };
  });

  it("ignore jest's arguments and take their options from the environment", async () => {
    const target = availableTargets()[0]?.open();
    process.env.TEST_DB_URL = target?.url;
    process.env.KNEX_SCOPE_TEST_WORKERS = '1';
    process.env.KNEX_SCOPE_TEST_SCHEMA = schema;
    // What jest passes: (globalConfig, projectConfig).
    const jestArgs = [{ maxWorkers: 4, rootDir: '/elsewhere' }, { globals: {} }];
    await (globalSetup as (...args: unknown[]) => Promise<void>)(...jestArgs);
    try {
      const run = runOf('');
      expect(run.workers).toBe(1);
      expect(await userNames(testDatabaseUrl())).toEqual(['seeded']);
      expect(testDatabaseConfig().client).toBe('better-sqlite3');
    } finally {
      await (globalTeardown as (...args: unknown[]) => Promise<void>)(...jestArgs);
      await target?.close();
    }
    expect(readTestRun(undefined)).toBeUndefined();
  });
});
