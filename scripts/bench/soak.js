// @ts-check
'use strict';
// Leak soak: tens of thousands of requests against Express, Koa, Fastify and Hono apps using
// knex-scope (the built package: run `npm run build` first), mixing commits, throws, forgotten
// sessions, client aborts mid-transaction and routes that never touch the database; the Fastify and
// Hono apps also mount a `commit: 'on-success'` db whose routes succeed, answer 422 or throw. Then
// it checks that no connection is in use or pending, that the table holds exactly one row per 201
// response, and that the heap came back to where it was after warm-up. Exits non-zero if a check
// fails.
//
//   npm run build && node --expose-gc scripts/bench/soak.js
//
// Options (flags or environment):
//   --requests=N       SOAK_REQUESTS      requests per app and database (default 12000)
//   --concurrency=N    SOAK_CONCURRENCY   requests in flight (default 50)
//   --warmup=N         SOAK_WARMUP        warm-up requests before the heap baseline (default 2000)
//   --databases=LIST   SOAK_DATABASES     postgres,mariadb,sqlite (default postgres,mariadb)
//   --frameworks=LIST  SOAK_FRAMEWORKS    express,express4,koa,koa2,fastify,hono
//                                         (default express,koa,fastify,hono)
//   --pool=N           SOAK_POOL          pool.max (default 10)
//   --abort-delay=MS   SOAK_ABORT_DELAY   how long the abort route awaits inside its transaction (50)
//   --heap-mb=N        SOAK_HEAP_MB       allowed heap growth in MB (default 10)
//   DATABASE_URL       replaces the database list with this one URL
//   KNEX_SCOPE_PG_URL, KNEX_SCOPE_MYSQL_URL   the servers (see scripts/probe-databases.js)
const { mkdtempSync, rmSync } = require('node:fs');
const { tmpdir } = require('node:os');
const { join } = require('node:path');
const { databaseConfig, loadFramework, loadKnexScope } = require('./apps');
const { listOption, numberOption } = require('./options');
const { machine } = require('./report');
const {
  AbortProbe,
  createExpressSoakApp,
  createFastifySoakApp,
  createHonoSoakApp,
  createKoaSoakApp,
  createSoakTable,
  defaultMix,
  emptyServerStats,
  listen,
  onSuccessMix,
  rowsByRoute,
  runSoakLoad,
  settledHandlers,
  settledPool,
  unexpectedOutcomes,
} = require('./soak-apps');

const requests = numberOption('requests', 'SOAK_REQUESTS', 12000);
const concurrency = numberOption('concurrency', 'SOAK_CONCURRENCY', 50);
const warmup = numberOption('warmup', 'SOAK_WARMUP', 2000);
const poolMax = numberOption('pool', 'SOAK_POOL', 10);
const abortDelayMs = numberOption('abort-delay', 'SOAK_ABORT_DELAY', 50);
const heapLimitMb = numberOption('heap-mb', 'SOAK_HEAP_MB', 10);
const frameworks = listOption('frameworks', 'SOAK_FRAMEWORKS', 'express,koa,fastify,hono');
const databaseNames = listOption('databases', 'SOAK_DATABASES', 'postgres,mariadb');

const gc = /** @type {(() => void) | undefined} */ (/** @type {any} */ (globalThis).gc);

/** @type {string | undefined} */
let sqliteDir;

/**
 * @param {string} name
 * @returns {import('knex').Knex.Config}
 */
function configFor(name) {
  sqliteDir ??= mkdtempSync(join(tmpdir(), 'knex-scope-soak-'));
  return databaseConfig(/** @type {import('./apps').Database} */ (name), {
    dir: sqliteDir,
    poolMax,
  });
}

/** @returns {{ label: string; config: import('knex').Knex.Config | string }[]} */
function databases() {
  const url = process.env.DATABASE_URL;
  if (url !== undefined && url !== '') return [{ label: redact(url), config: url }];
  return databaseNames.map((name) => ({ label: name, config: configFor(name) }));
}

/** @param {string} url */
function redact(url) {
  return url.replace(/\/\/([^:@/]*):[^@/]*@/, '//$1:***@');
}

/** Heap in use after full collections. */
async function settledHeap() {
  for (let i = 0; i < 4; i++) {
    gc?.();
    await new Promise((resolve) => setImmediate(resolve));
  }
  return process.memoryUsage().heapUsed;
}

const mb = (/** @type {number} */ bytes) => (bytes / 1024 / 1024).toFixed(2);

/**
 * The app of `framework` on a new `db` for `config`; Fastify and Hono also mount a `commit:
 * 'on-success'` db (sharing the first one's Knex instance, so one pool is checked) on `auto`.
 * @param {string} framework
 * @param {import('knex').Knex.Config | string} config
 * @param {string} table
 * @param {InstanceType<typeof AbortProbe>} probe
 * @returns {Promise<{ knex: import('knex').Knex; destroy: () => Promise<void>; listener: import('node:http').RequestListener; stats: import('./soak-apps').SoakServerStats; mix: readonly import('./soak-apps').SoakRoute[] }>}
 */
async function appFor(framework, config, table, probe) {
  if (framework === 'fastify') {
    const { withDb: fastifyDb } = require('knex-scope/fastify');
    const db = fastifyDb(config);
    const autoDb = fastifyDb(db.knex, { commit: 'on-success', property: 'auto' });
    const app = await createFastifySoakApp(db, { table, probe, abortDelayMs, autoDb });
    return { knex: db.knex, destroy: db.destroy, ...app, mix: onSuccessMix };
  }
  if (framework === 'hono') {
    const { withDb: honoDb } = require('knex-scope/hono');
    const db = honoDb(config);
    const autoDb = honoDb(db.knex, { commit: 'on-success', property: 'auto' });
    const app = createHonoSoakApp(db, { table, probe, abortDelayMs, autoDb });
    return { knex: db.knex, destroy: db.destroy, ...app, mix: onSuccessMix };
  }
  const db = loadKnexScope().withDb(config);
  return { knex: db.knex, destroy: db.destroy, ...expressOrKoa(framework, db, table, probe) };
}

/**
 * @param {string} framework
 * @param {import('knex-scope').Db} db
 * @param {string} table
 * @param {InstanceType<typeof AbortProbe>} probe
 */
function expressOrKoa(framework, db, table, probe) {
  if (framework === 'express' || framework === 'express4') {
    /** @type {typeof import('express')} */
    const express = loadFramework(framework);
    const { app, stats } = createExpressSoakApp(db, { table, probe, express, abortDelayMs });
    return {
      listener: /** @type {import('node:http').RequestListener} */ (app),
      stats,
      mix: defaultMix,
    };
  }
  if (framework === 'koa' || framework === 'koa2') {
    /** @type {typeof import('koa')} */
    const Koa = loadFramework(framework);
    const { app, stats } = createKoaSoakApp(db, { table, probe, Koa, abortDelayMs });
    return { listener: app.callback(), stats, mix: defaultMix };
  }
  throw new Error(`unknown framework ${framework} (express, express4, koa, koa2, fastify or hono)`);
}

/**
 * One soak: one framework on one database. Returns the failed checks.
 * @param {string} framework
 * @param {{ label: string; config: import('knex').Knex.Config | string }} database
 * @returns {Promise<string[]>}
 */
async function soak(framework, database) {
  const table = `soak_${framework}_${process.pid}`;
  /** @type {string[]} */
  const failures = [];
  const probe = new AbortProbe();
  const db = await appFor(framework, database.config, table, probe);
  const { listener, stats, mix } = db;
  await createSoakTable(db.knex, table);
  const server = await listen(listener);
  try {
    const title = `${framework} on ${database.label}`;
    console.log(
      `\n== ${title}: ${warmup} warm-up + ${requests} requests, concurrency ${concurrency}`,
    );

    await runSoakLoad({ url: server.url, total: warmup, concurrency, probe, mix });
    await settledHandlers(stats);
    await settledPool(db.knex);
    await db.knex(table).delete();
    Object.assign(stats, emptyServerStats());
    const heapBefore = await settledHeap();

    const started = process.hrtime.bigint();
    const load = await runSoakLoad({ url: server.url, total: requests, concurrency, probe, mix });
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    const handlersDone = await settledHandlers(stats);
    const pool = await settledPool(db.knex);
    const rows = await rowsByRoute(db.knex, table);
    const totalRows = Object.values(rows).reduce((sum, n) => sum + n, 0);
    const heapAfter = await settledHeap();
    const growth = heapAfter - heapBefore;

    console.log(
      `   ${load.sent} requests in ${seconds.toFixed(2)} s = ${(load.sent / seconds).toFixed(0)} req/s`,
    );
    for (const [route, outcomes] of Object.entries(load.byRoute).sort()) {
      const text = Object.entries(outcomes)
        .map(([outcome, n]) => `${outcome} ×${n}`)
        .join(', ');
      console.log(`   ${route.padEnd(10)} ${text}`);
    }
    console.log(
      `   server: ${stats.committed} commits; abort route: ${stats.abortEntered} entered, ` +
        `${stats.abortRejected} rejected with ScopeClosedError, ${stats.abortCommitted} committed; ` +
        `${stats.abortLateNotice} still open after the ${abortDelayMs} ms delay (disconnect noticed late)`,
    );

    /**
     * @param {string} what
     * @param {boolean} ok
     * @param {string} detail
     */
    const check = (what, ok, detail) => {
      console.log(`   ${ok ? 'ok  ' : 'FAIL'} ${what}: ${detail}`);
      if (!ok) failures.push(`${title}: ${what}: ${detail}`);
    };
    check('connections in use', pool.used === 0, `numUsed() = ${pool.used}`);
    check(
      'pending acquires',
      pool.pendingAcquires === 0,
      `numPendingAcquires() = ${pool.pendingAcquires}`,
    );
    check(
      'pending creates',
      pool.pendingCreates === 0,
      `numPendingCreates() = ${pool.pendingCreates}`,
    );
    // `commit` rows are committed by the handler, `auto` rows by the commit: 'on-success' db.
    check(
      'committed rows == 201 responses',
      totalRows === load.created && (rows.commit ?? 0) + (rows.auto ?? 0) === totalRows,
      `${totalRows} rows (${JSON.stringify(rows)}), ${load.created} responses 201`,
    );
    const wrong = unexpectedOutcomes(load);
    check(
      'every route answered as designed',
      wrong.length === 0,
      wrong.length === 0 ? 'yes' : wrong.join(', '),
    );
    check(
      'client errors',
      load.failed === 0,
      load.failed === 0 ? 'none' : `${load.failed}: ${load.errors.join('; ')}`,
    );
    check(
      'unexpected server errors',
      stats.unexpected.length === 0,
      stats.unexpected.length === 0 ? 'none' : stats.unexpected.join('; '),
    );
    check(
      'aborted handlers could not commit',
      handlersDone && stats.abortCommitted === 0 && stats.abortFailed === 0,
      `${stats.abortCommitted} of ${stats.abortEntered} committed, ${stats.abortFailed} failed otherwise` +
        (handlersDone ? '' : ', some still running after 5 s'),
    );
    check(
      `heap growth ≤ ${heapLimitMb} MB`,
      gc !== undefined && growth <= heapLimitMb * 1024 * 1024,
      gc === undefined
        ? 'not measured: run with node --expose-gc'
        : `${mb(heapBefore)} MB after warm-up, ${mb(heapAfter)} MB after the soak (${growth >= 0 ? '+' : ''}${mb(growth)} MB)`,
    );
    return failures;
  } finally {
    await server.close();
    await db.knex.schema.dropTableIfExists(table).catch(() => {});
    await db.destroy();
  }
}

async function main() {
  const started = Date.now();
  console.log(
    `knex-scope soak: ${machine()}, ` + `pool.max ${poolMax}, frameworks ${frameworks.join(', ')}`,
  );
  if (gc === undefined) console.log('(no --expose-gc: the heap check will fail)');
  /** @type {string[]} */
  const failures = [];
  let total = 0;
  for (const database of databases()) {
    for (const framework of frameworks) {
      failures.push(...(await soak(framework, database)));
      total += warmup + requests;
    }
  }
  const seconds = (Date.now() - started) / 1000;
  console.log(
    `\n${total} requests in ${seconds.toFixed(1)} s overall (${(total / seconds).toFixed(0)} req/s including setup and checks)`,
  );
  if (failures.length > 0) {
    console.log(`\n${failures.length} check(s) failed:`);
    for (const failure of failures) console.log(`  - ${failure}`);
    process.exitCode = 1;
  } else {
    console.log('all checks passed');
  }
}

main()
  .catch((error) => {
    console.error(error);
    process.exitCode = 1;
  })
  .finally(() => {
    if (sqliteDir !== undefined) rmSync(sqliteDir, { recursive: true, force: true });
  });
