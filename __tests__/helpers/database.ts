import { randomBytes } from 'node:crypto';
import { knex as createKnex, type Knex } from 'knex';
import { ensureTestDatabase, testDatabaseUrl } from '../../lib/testing';
import { readTestRun } from '../../lib/testing/test-env';

export { poolStats } from './pool-stats';

export type Dialect = 'sqlite' | 'postgres' | 'mariadb';

/** The database this test file runs on (one jest project per database). */
export const dialect = (process.env.KNEX_SCOPE_TEST_DIALECT ?? 'sqlite') as Dialect;

// The test kit's global setup (__tests__/setup/global-setup.ts) gave this jest worker a database
// of its own on the project's server; a worker beyond those it prepared creates its own here.
if (readTestRun(dialect) === undefined) {
  throw new Error(
    `No test database for "${dialect}": run the database tests through jest.config.js, whose ` +
      'globalSetup creates them.',
  );
}
beforeAll(() => ensureTestDatabase({ namespace: dialect }));

/** A Knex config for this worker's database; SQLite is a file, so a second connection can verify. */
export function testConfig(pool?: Knex.PoolConfig): Knex.Config {
  if (dialect === 'sqlite') {
    return {
      client: 'better-sqlite3',
      connection: { filename: testUrl() },
      useNullAsDefault: true,
      ...(pool === undefined ? {} : { pool }),
    };
  }
  return {
    client: dialect === 'postgres' ? 'pg' : 'mysql2',
    connection: testUrl(),
    pool: { min: 0, max: 10, ...pool },
  };
}

/** A URL for this worker's database (SQLite: its file). */
export function testUrl(): string {
  return testDatabaseUrl({ namespace: dialect });
}

let counter = 0;

/** A name no other test (in any worker) uses. */
export function uniqueName(prefix = 't'): string {
  counter += 1;
  return `${prefix}_${process.pid}_${counter}_${randomBytes(3).toString('hex')}`;
}

/** Creates `items (id, name)` under a unique name and returns the name. */
export async function createItemsTable(knex: Knex): Promise<string> {
  const table = uniqueName('items');
  await knex.schema.createTable(table, (t) => {
    t.increments('id');
    t.string('name', 100).notNullable();
  });
  return table;
}

/** Number of rows in `table`, read through `knex` outside any transaction. */
export async function countRows(knex: Knex, table: string): Promise<number> {
  const [row] = await knex(table).count<{ n: number | string }[]>({ n: '*' });
  return Number(row?.n);
}

/** Names of the rows in `table`, sorted. */
export async function names(knex: Knex, table: string): Promise<string[]> {
  const rows = await knex(table).select('name').orderBy('id');
  return rows.map((row: { name: string }) => row.name);
}

/** Records every SQL statement `knex` sends (transactions included), in order. */
export function recordSql(knex: Knex): string[] {
  const sent: string[] = [];
  knex.on('query', (query: { sql: string }) => {
    sent.push(query.sql);
  });
  return sent;
}

/** The server-side id of the connection a transaction runs on (PostgreSQL pid, MariaDB thread id). */
export async function backendId(trx: Knex | Knex.Transaction): Promise<number> {
  if (dialect === 'postgres') {
    const { rows } = await trx.raw('select pg_backend_pid() as id');
    return Number(rows[0].id);
  }
  if (dialect === 'mariadb') {
    const [rows] = await trx.raw('select connection_id() as id');
    return Number(rows[0].id);
  }
  throw new Error('SQLite has no server backend');
}

/** Kills a server backend from another connection: pg_terminate_backend / KILL. */
export async function killBackend(admin: Knex, id: number): Promise<void> {
  if (dialect === 'postgres') await admin.raw('select pg_terminate_backend(?)', [id]);
  else await admin.raw(`KILL ${Number(id)}`);
}

/** A Knex instance for test setup and verification, destroyed by `afterAll`. */
export function openKnex(config: Knex.Config = testConfig()): Knex {
  return createKnex(config);
}

/** Resolves after `ms` milliseconds. */
export function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls `check` until it returns true or `timeout` ms pass; returns the last result. */
export async function eventually(
  check: () => boolean | Promise<boolean>,
  timeout = 2_000,
): Promise<boolean> {
  const deadline = Date.now() + timeout;
  for (;;) {
    if (await check()) return true;
    if (Date.now() > deadline) return false;
    await delay(5);
  }
}
