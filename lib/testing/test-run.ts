import { knex as createKnex, type Knex } from 'knex';
import { parseDatabaseUrl } from '../core/parse-database-url';
import { buildTestSchema, type TestSchemaOptions } from './build-test-schema';
import { published } from './published';
import type { TestDatabaseServer } from './test-database-server';
import type { TestRun } from './test-env';
import { createTestRunName, workerDatabaseName } from './test-run-name';

/**
 * How a worker database is made from the template on MySQL/MariaDB: `copy` replays the template's
 * tables and rows (the default: faster for any schema that takes more than a few statements),
 * `schema` runs the migrations and schema function again. PostgreSQL always clones with
 * `TEMPLATE`, SQLite copies the file.
 */
export type MysqlCopyStrategy = 'copy' | 'schema';

/** Options of `createTestRun`. */
export interface CreateTestRunOptions extends TestSchemaOptions {
  /** How many worker databases to create now. */
  readonly workers: number;
  /** @default 'copy' */
  readonly mysqlCopy?: MysqlCopyStrategy;
}

/**
 * Creates a run on `server`: a uniquely named template database with the schema built once, and
 * `workers` copies of it, `<name>_w1` … `<name>_wN`. If anything fails, whatever it created is
 * dropped before the error propagates.
 *
 * @example
 * const run = await createTestRun(server, { workers: 2, migrations: 'db/migrations' });
 * run.name; // 'knex_scope_test_a41f0c_12345_mgz1k2pq'
 */
export async function createTestRun(
  server: TestDatabaseServer,
  options: CreateTestRunOptions,
): Promise<TestRun> {
  const name = createTestRunName();
  const run: TestRun = {
    kind: server.kind,
    server: server.url,
    ...(server.dir === undefined ? {} : { dir: server.dir }),
    name,
    workers: options.workers,
    ...(typeof options.schema === 'string' ? { schema: options.schema } : {}),
    ...(typeof options.migrations === 'string' ? { migrations: options.migrations } : {}),
  };
  try {
    await server.create(name);
    published(server, { action: 'created', role: 'template', name });
    await buildInto(server, name, options);
    for (let id = 1; id <= options.workers; id++) {
      await provisionWorkerDatabase(server, run, id, options);
    }
  } catch (error) {
    await dropTestRun(server, run).catch(() => {});
    throw error;
  }
  return run;
}

/**
 * Creates worker `id`'s database of `run` from the run's template.
 *
 * @example
 * await provisionWorkerDatabase(server, run, 3, { migrations: run.migrations });
 */
export async function provisionWorkerDatabase(
  server: TestDatabaseServer,
  run: TestRun,
  id: number,
  options: TestSchemaOptions & { readonly mysqlCopy?: MysqlCopyStrategy },
): Promise<string> {
  const name = workerDatabaseName(run.name, id);
  if (options.mysqlCopy !== 'schema' || server.kind !== 'mysql') {
    if (await server.copy(run.name, name)) {
      published(server, { action: 'created', role: 'worker', name, worker: id });
      return name;
    }
  }
  await server.create(name);
  published(server, { action: 'created', role: 'worker', name, worker: id });
  await buildInto(server, name, options);
  return name;
}

/**
 * Drops every database of `run` on `server`: the workers' (also those created on demand) and the
 * template.
 *
 * @example
 * await dropTestRun(server, run);
 */
export async function dropTestRun(server: TestDatabaseServer, run: TestRun): Promise<void> {
  const workerName = new RegExp(`^${run.name}_w\\d+$`);
  const names = (await server.list()).filter((name) => workerName.test(name));
  for (const name of names) {
    await server.drop(name);
    published(server, { action: 'dropped', role: 'worker', name });
  }
  await server.drop(run.name);
  published(server, { action: 'dropped', role: 'template', name: run.name });
}

/**
 * A Knex config for database `name` on `server`, for short admin work (one connection).
 *
 * @example
 * const knex = knex(databaseConfig(server, 'knex_scope_test_…_w1'));
 */
export function databaseConfig(server: TestDatabaseServer, name: string): Knex.Config {
  return { ...parseDatabaseUrl(server.urlOf(name)), pool: { min: 0, max: 1 } };
}

async function buildInto(
  server: TestDatabaseServer,
  name: string,
  options: TestSchemaOptions,
): Promise<void> {
  if (options.migrations === undefined && options.schema === undefined) return;
  const knex = createKnex(databaseConfig(server, name));
  try {
    await buildTestSchema(knex, options);
  } finally {
    await knex.destroy();
  }
}
