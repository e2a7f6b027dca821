// @ts-check
'use strict';
// What knex-scope costs per request, measured with autocannon against servers that differ only in
// knex-scope (child processes: scripts/bench/server.js, `procs` per side), both sides loaded at
// once on the same pinned CPU for several rounds after a warm-up, reporting medians and the
// median of the per-round B/A ratios (the figure the targets are checked against):
//   a-express, a-koa   a route that never touches the database, without vs with app.use(withDb(…));
//                      the withDb side must acquire no connection and send no query
//   b-sqlite, b-postgres, b-mariadb
//                      SELECT 1 in a hand-written knex.transaction(async (trx) => …) vs through
//                      `const s = await req.db.session; await s.select(…); await s.commit()`
//
//   npm run build && node scripts/bench/overhead.js            # 10 rounds × 4 s, 8 s warm-up
//   node scripts/bench/overhead.js --quick                     # 4 rounds × 2 s, 3 s warm-up
//
// Options (flags or environment):
//   --rounds=N       BENCH_ROUNDS       measured rounds (default 10)
//   --duration=S     BENCH_DURATION     seconds per round (default 4)
//   --warmup=S       BENCH_WARMUP       warm-up seconds, all servers at once (default 8)
//   --procs=N        BENCH_PROCS        server processes per side (default 2): one process's JIT
//                                       luck moved it by ±3 % against an identical twin
//   --connections=N  BENCH_CONNECTIONS  autocannon connections per server process (default 16)
//   --no-pin                            do not pin autocannon to CPU 0 and the servers to CPU 1
//   --pool=N         BENCH_POOL         pool.max for PostgreSQL and MariaDB (default 10)
//   --only=LIST      BENCH_ONLY         scenarios, e.g. a-express,d-express-noop, d-… included
//                                       (default: the a-… and b-… ones); an unknown name is an error
//   --json=FILE                         also write the raw numbers as JSON
//   --diagnose                          also run the attribution scenarios (d-…): a no-op
//                                       middleware (the framework's own cost of any middleware)
//                                       and withDb(config, { currentDb: true })
//   KNEX_SCOPE_PG_URL, KNEX_SCOPE_MYSQL_URL   the servers (see scripts/probe-databases.js);
//   a scenario whose server does not answer is skipped.
const { mkdtempSync, rmSync, writeFileSync } = require('node:fs');
const os = require('node:os');
const { join } = require('node:path');
const autocannon = require('autocannon');
const { probeDatabases, servers } = require('../probe-databases');
const { benchScenarios, instance, selectScenarios } = require('./scenarios');
const { pinTo, startSide } = require('./side');

/**
 * @param {string} name
 * @param {string} env
 * @param {string} fallback
 */
function option(name, env, fallback) {
  const flag = process.argv.find((arg) => arg.startsWith(`--${name}=`));
  return flag?.slice(name.length + 3) ?? process.env[env] ?? fallback;
}

const quick = process.argv.includes('--quick');
const rounds = Number(option('rounds', 'BENCH_ROUNDS', quick ? '4' : '10'));
const duration = Number(option('duration', 'BENCH_DURATION', quick ? '2' : '4'));
const warmup = Number(option('warmup', 'BENCH_WARMUP', quick ? '3' : '8'));
const procs = Number(option('procs', 'BENCH_PROCS', '2'));
const connections = Number(option('connections', 'BENCH_CONNECTIONS', '16'));
const poolMax = Number(option('pool', 'BENCH_POOL', '10'));
const only = option('only', 'BENCH_ONLY', '');
const jsonFile = option('json', 'BENCH_JSON', '');
const diagnose = process.argv.includes('--diagnose');
// The load generator on CPU 0, every server on CPU 1: on a two-core machine an unpinned autocannon
// and server keep trading cores, which moved single rounds by ±20 %. Linux only (taskset).
const cores = os.availableParallelism();
const pin = !process.argv.includes('--no-pin') && cores >= 2 && pinTo(process.pid, 0);

/**
 * @typedef {import('./scenarios').Scenario} Scenario
 * @typedef {{
 *   rps: number;
 *   p50: number;
 *   p99: number;
 *   cpuUs: number;
 *   cpuUsPerRequest: number;
 *   requests: number;
 *   acquires: number;
 *   queries: number;
 *   non2xx: number;
 *   errors: number;
 *   serverErrors: number;
 * }} Round
 * @typedef {Awaited<ReturnType<typeof startSide>>} Server
 */

const tmp = mkdtempSync(join(os.tmpdir(), 'knex-scope-bench-'));
const { scenarios, diagnostics } = benchScenarios({ tmp, poolMax });

/**
 * One round: autocannon against every server of both sides at once, for `seconds`, with each
 * server's CPU time over it. Sides that share one CPU and one window see the same machine: on a
 * shared VM, rounds run one after the other moved by ±15 % between rounds, which no number of
 * rounds averaged away; run together, the B/A ratio of one round stays within a few percent.
 * @param {Server[]} servers
 * @param {string} path
 * @param {number} seconds
 * @returns {Promise<Round[]>} one per server
 */
async function measureAll(servers, path, seconds) {
  await Promise.all(servers.map((server) => server.reset()));
  const results = await Promise.all(
    servers.map((server) =>
      autocannon({ url: `${server.url}${path}`, connections, duration: seconds, pipelining: 1 }),
    ),
  );
  await Promise.all(servers.map((server) => server.settle()));
  const stats = await Promise.all(servers.map((server) => server.stats()));
  return results.map((result, i) => {
    const stat = /** @type {(typeof stats)[number]} */ (stats[i]);
    return {
      rps: result.requests.total / seconds,
      p50: result.latency.p50,
      p99: result.latency.p99,
      cpuUs: stat.cpuUs,
      cpuUsPerRequest: stat.requests === 0 ? 0 : stat.cpuUs / stat.requests,
      requests: stat.requests,
      acquires: stat.acquires,
      queries: stat.queries,
      non2xx: result.non2xx,
      errors: result.errors + result.timeouts,
      serverErrors: stat.errors,
    };
  });
}

/**
 * The servers of one side in one round, as one: requests and CPU summed, latencies the median.
 * @param {Round[]} list
 * @returns {Round}
 */
function combine(list) {
  const sum = (/** @type {(r: Round) => number} */ pick) => list.reduce((n, r) => n + pick(r), 0);
  const requests = sum((r) => r.requests);
  const cpuUs = sum((r) => r.cpuUs);
  return {
    rps: sum((r) => r.rps),
    p50: median(list.map((r) => r.p50)),
    p99: median(list.map((r) => r.p99)),
    cpuUs,
    cpuUsPerRequest: requests === 0 ? 0 : cpuUs / requests,
    requests,
    acquires: sum((r) => r.acquires),
    queries: sum((r) => r.queries),
    non2xx: sum((r) => r.non2xx),
    errors: sum((r) => r.errors),
    serverErrors: sum((r) => r.serverErrors),
  };
}

/** @param {number[]} values */
function median(values) {
  const sorted = [...values].sort((x, y) => x - y);
  const middle = Math.floor(sorted.length / 2);
  const upper = sorted[middle] ?? Number.NaN;
  return sorted.length % 2 === 1 ? upper : ((sorted[middle - 1] ?? Number.NaN) + upper) / 2;
}

/**
 * Runs one scenario: `procs` servers per side, all loaded at once for a warm-up and then for
 * `rounds` rounds.
 * @param {Scenario} scenario
 */
async function runScenario(scenario) {
  /** @type {Server[]} */
  const a = [];
  /** @type {Server[]} */
  const b = [];
  try {
    for (let i = 0; i < procs; i++) {
      a.push(await startSide(instance(scenario.a.side, i), { cpu: pin ? 1 : undefined }));
      b.push(await startSide(instance(scenario.b.side, i), { cpu: pin ? 1 : undefined }));
    }
    const all = [...a, ...b];
    await measureAll(all, scenario.path, warmup);
    /** @type {Round[]} */
    const roundsA = [];
    /** @type {Round[]} */
    const roundsB = [];
    for (let round = 0; round < rounds; round++) {
      const results = await measureAll(all, scenario.path, duration);
      const lastA = combine(results.slice(0, procs));
      const lastB = combine(results.slice(procs));
      roundsA.push(lastA);
      roundsB.push(lastB);
      console.log(
        `  ${scenario.name} round ${round + 1}/${rounds}: ` +
          `${scenario.a.label} ${lastA.rps.toFixed(0)} req/s, ${scenario.b.label} ${lastB.rps.toFixed(0)} req/s ` +
          `(${(lastB.rps / lastA.rps).toFixed(3)}×; CPU µs/req ${lastA.cpuUsPerRequest.toFixed(0)} → ${lastB.cpuUsPerRequest.toFixed(0)})`,
      );
    }
    const after = await Promise.all(b.map((server) => server.stats()));
    const poolAfter = {
      poolUsed: after.reduce((n, stat) => n + stat.poolUsed, 0),
      poolPending: after.reduce((n, stat) => n + stat.poolPending, 0),
    };
    return { scenario, roundsA, roundsB, poolAfter };
  } finally {
    await Promise.all([...a, ...b].map((server) => server.stop()));
  }
}

/**
 * @param {Round[]} list
 */
function summarize(list) {
  return {
    rps: median(list.map((r) => r.rps)),
    p50: median(list.map((r) => r.p50)),
    p99: median(list.map((r) => r.p99)),
    cpu: median(list.map((r) => r.cpuUsPerRequest)),
    requests: list.reduce((sum, r) => sum + r.requests, 0),
    acquires: list.reduce((sum, r) => sum + r.acquires, 0),
    queries: list.reduce((sum, r) => sum + r.queries, 0),
    bad: list.reduce((sum, r) => sum + r.non2xx + r.errors, 0),
    cutOff: list.reduce((sum, r) => sum + r.serverErrors, 0),
  };
}

async function main() {
  const available = new Set((await probeDatabases()).map((database) => database.name));
  const chosen = selectScenarios(
    only,
    [...scenarios, ...diagnostics],
    [...scenarios, ...(diagnose ? diagnostics : [])],
  );
  const cpus = os.cpus();
  console.log(
    `knex-scope overhead benchmark: node ${process.version}, ${cores} cores ` +
      `(${cpus[0]?.model ?? 'unknown CPU'}), load average ${os
        .loadavg()
        .map((n) => n.toFixed(2))
        .join(' ')}`,
  );
  console.log(
    `autocannon: ${connections} connections per server, ${procs} server processes per side, both sides at once, ` +
      `${rounds} rounds × ${duration} s after ${warmup} s warm-up; pool.max ${poolMax} on PostgreSQL/MariaDB, 1 on SQLite; ` +
      `${pin ? 'autocannon pinned to CPU 0, servers to CPU 1' : 'not pinned'}\n`,
  );

  const results = [];
  for (const scenario of chosen) {
    if (scenario.needs !== undefined && !available.has(scenario.needs)) {
      console.log(`  ${scenario.name}: skipped, no server answers at ${servers[scenario.needs]}`);
      continue;
    }
    results.push(await runScenario(scenario));
  }

  const lines = [
    '| scenario | side | req/s (median) | B/A req/s, median of rounds | range | server CPU µs/req | A/B CPU per request, median | p50 ms | p99 ms | target (median B/A req/s) |',
    '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |',
  ];
  /** @type {string[]} */
  const notes = [];
  let failed = 0;
  for (const { scenario, roundsA, roundsB, poolAfter } of results) {
    const sa = summarize(roundsA);
    const sb = summarize(roundsB);
    const ratios = roundsB.map((r, i) => r.rps / /** @type {Round} */ (roundsA[i]).rps);
    const paired = median(ratios);
    const range = `${Math.min(...ratios).toFixed(3)}–${Math.max(...ratios).toFixed(3)}`;
    const cost = median(
      roundsB.map((r, i) => /** @type {Round} */ (roundsA[i]).cpuUsPerRequest / r.cpuUsPerRequest),
    );
    const met = paired >= scenario.target;
    const targetText =
      scenario.target === 0 ? 'diagnostic' : `≥ ${scenario.target} ${met ? 'met' : 'MISSED'}`;
    const zeroDb = scenario.path === '/plain' ? sb.acquires === 0 && sb.queries === 0 : true;
    if (!met || !zeroDb) failed++;
    lines.push(
      `| ${scenario.name} | A: ${scenario.a.label} | ${sa.rps.toFixed(0)} | | | ${sa.cpu.toFixed(0)} | | ${sa.p50} | ${sa.p99} | |`,
      `| | B: ${scenario.b.label} | ${sb.rps.toFixed(0)} | **${paired.toFixed(3)}×** | ${range} | ${sb.cpu.toFixed(0)} | ${cost.toFixed(3)}× | ${sb.p50} | ${sb.p99} | ${targetText} |`,
    );
    notes.push(
      `${scenario.name} (${scenario.title}): B served ${sb.requests} requests with ${sb.acquires} pool acquires ` +
        `and ${sb.queries} queries (A: ${sa.requests} requests, ${sa.acquires} acquires, ${sa.queries} queries); ` +
        `non-2xx/errors A ${sa.bad}, B ${sb.bad}; handlers cut off by the end of a round A ${sa.cutOff}, B ${sb.cutOff}; B's pool afterwards: ${poolAfter.poolUsed} used, ${poolAfter.poolPending} pending` +
        (scenario.path === '/plain' ? ` → zero connections: ${zeroDb ? 'yes' : 'NO'}` : ''),
    );
  }
  console.log(`\n${lines.join('\n')}\n`);
  for (const note of notes) console.log(`- ${note}`);
  if (jsonFile !== '') {
    writeFileSync(
      jsonFile,
      `${JSON.stringify({ node: process.version, cores, connections, procs, rounds, duration, warmup, results }, null, 2)}\n`,
    );
  }
  console.log(failed === 0 ? '\nall targets met' : `\n${failed} scenario(s) missed a target`);
}

main()
  .catch((error) => {
    console.error(error);
    process.exitCode = 1;
  })
  .finally(() => {
    rmSync(tmp, { recursive: true, force: true });
  });
