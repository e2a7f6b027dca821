// @ts-check
'use strict';
// Recovery on the scale-out services (issue 13's proof): 30 s of steady load per topology while
// faults strike, once with every request wrapped in retryTransaction and once without. The load is
// in-process: `--workers` loops, each calling a db.wrap handler that inserts the row of a fresh
// key through the lazy session and commits (a route's work without HTTP around it). Afterwards the
// table is compared with the outcomes: a key may have at most one row, every success must have
// its row, a failure other than CommitOutcomeUnknownError must have none ("committed but reported
// failed" otherwise).
//
// Topologies (scripts/services/ must be running: scripts/services/all.sh start):
//   pgbouncer-kill     through PgBouncer; every 2 s every server backend of the app is killed
//                      (pg_terminate_backend by application_name, from a direct connection)
//   pgbouncer-restart  through PgBouncer; PgBouncer restarted every 10 s
//   failover           the failover pair; at 10 s the primary is stopped and the standby promoted
//                      (failoverConnection); the pair is rebuilt afterwards
//   galera-kill        Galera through failoverConnection; at 10 s the node in use is SIGKILLed
//   galera-partition   Galera; at 10 s the node in use is isolated (gmcast.isolate)
//
//   npm run build && node scripts/bench/scale-out.js                 # everything, ~6 min
//   node scripts/bench/scale-out.js --only=galera-kill --duration=15
//
// Options: --duration=S (30), --workers=N (8), --only=LIST, --modes=retry,plain, --json=FILE.
// Exits non-zero if a key has two rows or a success has none.
const { execFileSync } = require('node:child_process');
const { writeFileSync } = require('node:fs');
const { join } = require('node:path');
const { performance } = require('node:perf_hooks');
const { knex: createKnex } = require('knex');
const { failoverConnection, isKnexScopeError, retryTransaction, withDb } = require('knex-scope');
const { serviceUrls } = require('../services/probe.js');

const services = join(__dirname, '..', 'services');
const argument = (/** @type {string} */ name, /** @type {string} */ fallback) =>
  process.argv.find((arg) => arg.startsWith(`--${name}=`))?.slice(name.length + 3) ?? fallback;
const duration = Number(argument('duration', '30')) * 1000;
const workers = Number(argument('workers', '8'));
const only = argument('only', '').split(',').filter(Boolean);
const modes = argument('modes', 'retry,plain').split(',');
const jsonFile = argument('json', '');
const urls = serviceUrls();
const application = 'knex-scope-scale-out-bench';

/** @param {string} script @param {...string} args */
function control(script, ...args) {
  execFileSync(join(services, `${script}.sh`), args, { stdio: 'ignore', timeout: 300_000 });
}

/** @param {number} ms */
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * @typedef {{
 *   name: string;
 *   client: 'pg' | 'mysql2';
 *   connection: () => unknown;
 *   admin: string;
 *   heal?: () => void;
 * }} Topology
 */

/** @type {Topology[]} */
const topologies = [
  {
    name: 'pgbouncer-kill',
    client: 'pg',
    connection: () => `${urls.pgbouncer.url}?application_name=${application}`,
    admin: 'postgres://postgres@127.0.0.1:5432/test',
  },
  {
    name: 'pgbouncer-restart',
    client: 'pg',
    connection: () => urls.pgbouncer.url,
    admin: 'postgres://postgres@127.0.0.1:5432/test',
  },
  {
    name: 'failover',
    client: 'pg',
    connection: () => failoverConnection(urls.failover),
    admin: urls.failover[0] ?? '',
    heal: () => control('pg-failover', 'reset'),
  },
  {
    name: 'galera-kill',
    client: 'mysql2',
    connection: () => failoverConnection(urls.galera),
    admin: urls.galera[1] ?? '',
    heal: () => control('galera', 'heal'),
  },
  {
    name: 'galera-partition',
    client: 'mysql2',
    connection: () => failoverConnection(urls.galera),
    admin: urls.galera[1] ?? '',
    heal: () => control('galera', 'heal'),
  },
];

/**
 * The faults of one run, as a loop that runs until `stop` is set. Returns when it is done.
 * @param {Topology} topology
 * @param {import('knex').Knex} admin
 * @param {{ stop: boolean; faultAt?: number }} state
 */
async function strike(topology, admin, state) {
  const started = performance.now();
  const at = (/** @type {number} */ ms) => performance.now() - started >= ms;
  switch (topology.name) {
    case 'pgbouncer-kill':
      while (!state.stop) {
        await sleep(2_000);
        if (state.stop) return;
        state.faultAt ??= performance.now();
        await admin.raw(
          'select pg_terminate_backend(pid) from pg_stat_activity where application_name = ?',
          [application],
        );
      }
      return;
    case 'pgbouncer-restart':
      while (!state.stop) {
        await sleep(10_000);
        if (state.stop) return;
        state.faultAt ??= performance.now();
        control('pgbouncer', 'restart');
      }
      return;
    default:
      while (!at(10_000) && !state.stop) await sleep(100);
      if (state.stop) return;
      state.faultAt = performance.now();
      if (topology.name === 'failover') {
        control('pg-failover', 'stop', 'primary');
        control('pg-failover', 'promote');
      } else if (topology.name === 'galera-kill') control('galera', 'kill', '1');
      else control('galera', 'isolate', '1');
  }
}

/**
 * @param {Topology} topology
 * @param {'retry' | 'plain'} mode
 */
async function run(topology, mode) {
  const table = `scale_out_${process.pid}_${Date.now()}`;
  const admin = createKnex({
    client: topology.client,
    connection: topology.admin,
    pool: { min: 0, max: 2 },
  });
  await admin.schema.createTable(table, (t) => {
    t.string('k', 64).primary();
  });
  const db = withDb(
    {
      client: topology.client,
      connection: /** @type {any} */ (topology.connection()),
      pool: { min: 0, max: 10 },
      acquireConnectionTimeout: 10_000,
    },
    { onForgotten: false },
  );
  /** @param {import('knex-scope').Scope} scope @param {string} key */
  const insert = async (scope, key) => {
    const trx = await scope.session;
    await trx(table).insert({ k: key });
    await trx.commit();
  };
  const handler = db.wrap(
    mode === 'retry'
      ? retryTransaction(insert, {
          session: (scope) => scope,
          total: 20,
          backoffFactor: 100,
          backoffMax: 500,
        })
      : insert,
  );
  /** @type {string[]} */
  const ok = [];
  /** @type {string[]} */
  const unknown = [];
  /** @type {{ key: string; error: unknown }[]} */
  const failed = [];
  /** @type {number[]} */
  const latencies = [];
  /** @type {{ stop: boolean; faultAt?: number }} */
  const state = { stop: false };
  let lastSuccess = performance.now();
  let longestStall = 0;
  const loop = async (/** @type {number} */ worker) => {
    for (let i = 0; !state.stop; i++) {
      const key = `w${worker}-${i}`;
      const started = performance.now();
      try {
        await handler(key);
        const now = performance.now();
        latencies.push(now - started);
        if (state.faultAt !== undefined) longestStall = Math.max(longestStall, now - lastSuccess);
        lastSuccess = now;
        ok.push(key);
      } catch (error) {
        latencies.push(performance.now() - started);
        if (isKnexScopeError(error) && error.code === 'ERR_COMMIT_OUTCOME_UNKNOWN')
          unknown.push(key);
        else failed.push({ key, error });
        // Without retries a fault fails requests at full speed: pace them as a client would.
        if (mode === 'plain') await sleep(20);
      }
    }
  };
  const faults = strike(topology, admin, state);
  const loops = Array.from({ length: workers }, (_, worker) => loop(worker));
  await sleep(duration);
  state.stop = true;
  await Promise.all([...loops, faults]);
  if (state.faultAt !== undefined)
    longestStall = Math.max(longestStall, performance.now() - lastSuccess);
  const poolUsed = /** @type {any} */ (db.knex.client).pool.numUsed();
  await db.destroy();

  // The rows, read where they ended up: the promoted standby, a Galera node that stayed up.
  const reader =
    topology.name === 'failover'
      ? createKnex({ client: 'pg', connection: urls.failover[1] ?? '' })
      : admin;
  if (topology.client === 'mysql2') await reader.raw('set session wsrep_sync_wait = 1');
  const rows = /** @type {{ k: string }[]} */ (await reader(table).select('k'));
  if (reader !== admin) await reader.destroy();
  const keys = rows.map((row) => row.k);
  const present = new Set(keys);
  const duplicated = keys.length - present.size;
  const lost = ok.filter((key) => !present.has(key)).length;
  const committedButFailed = failed.filter(({ key }) => present.has(key)).length;
  const unknownCommitted = unknown.filter((key) => present.has(key)).length;
  if (topology.name !== 'failover') await admin.schema.dropTableIfExists(table);
  await admin.destroy();
  topology.heal?.();
  latencies.sort((a, b) => a - b);
  const pick = (/** @type {number} */ q) =>
    latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? 0;
  const requests = ok.length + unknown.length + failed.length;
  const errors = /** @type {Record<string, number>} */ ({});
  for (const { error } of failed) {
    const e = /** @type {{ code?: unknown; errno?: unknown; message?: unknown }} */ (error);
    const label = String(e.code ?? e.errno ?? String(e.message).slice(0, 40));
    errors[label] = (errors[label] ?? 0) + 1;
  }
  return {
    topology: topology.name,
    mode,
    requests,
    success: requests === 0 ? 0 : ok.length / requests,
    ok: ok.length,
    unknown: unknown.length,
    unknownCommitted,
    failed: failed.length,
    duplicated,
    lost,
    committedButFailed,
    p50: pick(0.5),
    p99: pick(0.99),
    longestStall,
    poolUsed,
    errors,
  };
}

async function main() {
  const chosen = topologies.filter((t) => only.length === 0 || only.includes(t.name));
  /** @type {Awaited<ReturnType<typeof run>>[]} */
  const results = [];
  for (const topology of chosen) {
    for (const mode of modes) {
      const result = await run(topology, /** @type {'retry' | 'plain'} */ (mode));
      results.push(result);
      console.log(JSON.stringify(result));
    }
  }
  const ms = (/** @type {number} */ value) => `${Math.round(value)} ms`;
  console.log(
    `\n${duration / 1000} s per run, ${workers} workers, node ${process.version}, ${new Date().toISOString()}\n`,
  );
  console.log(
    '| topology | mode | requests | success | outcome unknown (of which committed) | failed | duplicated | lost | committed but reported failed | p50 | p99 | longest stall |',
  );
  console.log(
    '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  );
  for (const r of results) {
    console.log(
      `| ${r.topology} | ${r.mode} | ${r.requests} | ${(r.success * 100).toFixed(2)} % | ${r.unknown} (${r.unknownCommitted}) | ${r.failed} | ${r.duplicated} | ${r.lost} | ${r.committedButFailed} | ${ms(r.p50)} | ${ms(r.p99)} | ${ms(r.longestStall)} |`,
    );
  }
  if (jsonFile !== '') writeFileSync(jsonFile, JSON.stringify(results, null, 2));
  const broken = results.filter((r) => r.duplicated > 0 || r.lost > 0);
  if (broken.length > 0) {
    console.error(
      `Rows duplicated or lost in: ${broken.map((r) => `${r.topology}/${r.mode}`).join(', ')}`,
    );
    process.exitCode = 1;
  }
}

main().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
