#!/usr/bin/env node
// @ts-check
'use strict';
// What the test kit costs, on a 10-table schema (built by 10 knex migrations):
// 1. provisioning N worker databases (N = 2, 4) on PostgreSQL and MariaDB/MySQL: the kit's way
//    (migrate a template once, then copy it: PostgreSQL CREATE DATABASE … TEMPLATE, MySQL table
//    copies) against migrating every worker database from scratch;
// 2. per-test isolation: one test's work (3 rows in 3 tables, committed) and its undo, with
//    rollback isolation (test transaction + savepoint session) and with delete-all (nameko's).
// Every database it creates is dropped again.
//
//   npm run build && node scripts/bench/provision.js [--rounds=3] [--tests=200]
const { mkdtempSync, rmSync, writeFileSync } = require('node:fs');
const os = require('node:os');
const { join } = require('node:path');
const { knex: createKnex } = require('knex');
const { probeDatabases } = require('../probe-databases');
const { numberOption } = require('./options');
const { machine, median } = require('./report');

const dist = join(__dirname, '..', '..', 'dist');
const { openTestDatabaseServer } = require(join(dist, 'testing/open-test-database-server.js'));
const { createTestRun, dropTestRun } = require(join(dist, 'testing/test-run.js'));
const { createTestRunName } = require(join(dist, 'testing/test-run-name.js'));
const { deleteAllRows } = require(join(dist, 'testing/delete-all-rows.js'));
const { parseDatabaseUrl } = require(join(dist, 'core/parse-database-url.js'));

const rounds = numberOption('rounds', 'BENCH_ROUNDS', 3);
const tests = numberOption('tests', 'BENCH_TESTS', 200);
const tables = Array.from({ length: 10 }, (_, i) => `bench_t${i}`);

/** Ten migrations, one table each; every table references the previous one. */
function writeMigrations() {
  const dir = mkdtempSync(join(os.tmpdir(), 'knex-scope-bench-migrations-'));
  tables.forEach((table, i) => {
    const parent =
      i === 0
        ? ''
        : `t.integer('parent_id').unsigned().references('id').inTable('${tables[i - 1]}');`;
    writeFileSync(
      join(dir, `2026010100000${i}_${table}.js`),
      `exports.up = (knex) => knex.schema.createTable('${table}', (t) => {
  t.increments('id');
  t.string('name', 100).notNullable().index();
  t.integer('quantity').notNullable().defaultTo(0);
  t.timestamp('created_at').notNullable().defaultTo(knex.fn.now());
  ${parent}
});
exports.down = (knex) => knex.schema.dropTable('${table}');
`,
    );
  });
  return dir;
}

/** @param {() => Promise<unknown>} work */
async function timed(work) {
  const started = process.hrtime.bigint();
  await work();
  return Number(process.hrtime.bigint() - started) / 1e6;
}

/** @param {number} ms */
const ms = (ms) => `${ms.toFixed(ms < 10 ? 2 : 0)} ms`;

/**
 * @param {any} server
 * @param {string} migrations
 * @param {number} workers
 */
async function fromScratch(server, migrations, workers) {
  const run = createTestRunName();
  const names = Array.from({ length: workers }, (_, i) => `${run}_w${i + 1}`);
  const elapsed = await timed(async () => {
    for (const name of names) {
      await server.create(name);
      const knex = createKnex({
        ...parseDatabaseUrl(server.urlOf(name)),
        pool: { min: 0, max: 1 },
      });
      try {
        await knex.migrate.latest({ directory: migrations });
      } finally {
        await knex.destroy();
      }
    }
  });
  for (const name of names) await server.drop(name);
  return elapsed;
}

/**
 * @param {any} server
 * @param {object} options
 */
async function withKit(server, options) {
  /** @type {any} */
  let run;
  const elapsed = await timed(async () => {
    run = await createTestRun(server, options);
  });
  await dropTestRun(server, run);
  return elapsed;
}

/** @param {{ name: string, url: string }} database @param {string} migrations */
async function provisioning(database, migrations) {
  const server = openTestDatabaseServer(database.url);
  try {
    await withKit(server, { workers: 1, migrations }); // warm-up
    for (const workers of [2, 4]) {
      const kit = [];
      const scratch = [];
      const rebuild = [];
      for (let round = 0; round < rounds; round++) {
        kit.push(await withKit(server, { workers, migrations }));
        scratch.push(await fromScratch(server, migrations, workers));
        if (server.kind === 'mysql') {
          rebuild.push(await withKit(server, { workers, migrations, mysqlCopy: 'schema' }));
        }
      }
      const copyLabel =
        server.kind === 'postgres' ? 'template + TEMPLATE clones' : 'template + table copies';
      console.log(
        `  ${database.name}, ${workers} workers: ${copyLabel} ${ms(median(kit))}` +
          (rebuild.length > 0 ? ` | template + re-migrate each ${ms(median(rebuild))}` : '') +
          ` | migrate each from scratch ${ms(median(scratch))}`,
      );
    }
  } finally {
    await server.close();
  }
}

/** @param {{ name: string, url: string }} database @param {string} migrations */
async function isolation(database, migrations) {
  const server = openTestDatabaseServer(database.url);
  const run = await createTestRun(server, { workers: 1, migrations });
  const knex = createKnex({
    ...parseDatabaseUrl(server.urlOf(`${run.name}_w1`)),
    pool: { min: 0 },
  });
  const [first = '', second = ''] = tables;
  const last = tables.at(-1) ?? '';
  /** @param {import('knex').Knex} trx */
  const work = async (trx) => {
    await trx(first).insert({ name: 'a' });
    const [parent] = await trx(first).max({ id: 'id' });
    await trx(second).insert({ name: 'b', parent_id: parent?.id });
    await trx(last).insert({ name: 'c' });
  };
  const quiet = knex.client.logger;
  quiet.warn = () => {};
  try {
    const results = {
      rollback: { total: /** @type {number[]} */ ([]), undo: /** @type {number[]} */ ([]) },
      delete: { total: /** @type {number[]} */ ([]), undo: /** @type {number[]} */ ([]) },
    };
    for (let i = 0; i < tests; i++) {
      let undo = 0;
      results.rollback.total.push(
        await timed(async () => {
          const outer = await knex.transaction();
          const session = await outer.transaction();
          await work(session);
          await session.commit();
          undo = await timed(() => outer.rollback());
        }),
      );
      results.rollback.undo.push(undo);
      results.delete.total.push(
        await timed(async () => {
          const session = await knex.transaction();
          await work(session);
          await session.commit();
          undo = await timed(() => deleteAllRows(knex));
        }),
      );
      results.delete.undo.push(undo);
    }
    const mean = (/** @type {number[]} */ values) =>
      values.slice(10).reduce((sum, value) => sum + value, 0) / (values.length - 10);
    console.log(
      `  ${database.name}: rollback ${ms(mean(results.rollback.total))} per test (undo ${ms(mean(results.rollback.undo))})` +
        ` | delete-all ${ms(mean(results.delete.total))} per test (undo ${ms(mean(results.delete.undo))})`,
    );
  } finally {
    await knex.destroy();
    await dropTestRun(server, run);
    await server.close();
  }
}

async function main() {
  const migrations = writeMigrations();
  const sqliteDir = mkdtempSync(join(os.tmpdir(), 'knex-scope-bench-sqlite-'));
  try {
    const databases = await probeDatabases();
    const servers = databases.filter((database) => database.name !== 'sqlite');
    console.log(`knex-scope test-kit benchmark: ${machine()}; ${rounds} rounds (median)`);
    console.log('Provisioning worker databases for a 10-table schema (10 migrations):');
    for (const database of servers) await provisioning(database, migrations);
    console.log(`Per-test isolation on the 10-table schema (mean of ${tests - 10} tests):`);
    for (const database of [...servers, { name: 'sqlite', url: join(sqliteDir, 'bench.sqlite') }]) {
      await isolation(database, migrations);
    }
  } finally {
    rmSync(migrations, { recursive: true, force: true });
    rmSync(sqliteDir, { recursive: true, force: true });
  }
}

main().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
