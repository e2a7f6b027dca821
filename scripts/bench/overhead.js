// @ts-check
'use strict';
// The overhead scenarios (scenarios.js) in requests per second: both sides' servers (server.js,
// `--procs` per side) loaded at once by autocannon on one pinned CPU, for several rounds after a
// warm-up, reporting medians and the median of the per-round B/A ratios. On a shared VM a server's
// throughput moves by ±15 % from round to round, more than the targets, which are therefore
// checked in instructions (instructions.js); this is the figure in time, for a machine of your own.
//
//   npm run build && node scripts/bench/overhead.js            # 10 rounds × 4 s, 8 s warm-up
//   node scripts/bench/overhead.js --quick                     # 4 rounds × 2 s, 3 s warm-up
//
// Options (flags or environment):
//   --only=LIST      BENCH_ONLY         scenarios (default: those with a target); --diagnose: all
//   --rounds=N       BENCH_ROUNDS       measured rounds (default 10)
//   --duration=S     BENCH_DURATION     seconds per round (default 4)
//   --warmup=S       BENCH_WARMUP       warm-up seconds, all servers at once (default 8)
//   --procs=N        BENCH_PROCS        server processes per side (default 2): one process's JIT
//                                       luck moved it by ±3 % against an identical twin
//   --connections=N  BENCH_CONNECTIONS  autocannon connections per server process (default 16)
//   --pool=N         BENCH_POOL         pool.max for PostgreSQL and MariaDB (default 10)
//   --no-pin                            do not pin autocannon to CPU 0 and the servers to CPU 1
//   --json=FILE                         also write the raw numbers as JSON
//   BENCH_PACKAGE=DIR                   load knex-scope from DIR instead of dist/ (see apps.js)
const os = require('node:os');
const autocannon = require('autocannon');
const { describeSide } = require('./apps');
const { flag, numberOption, option } = require('./options');
const { machine, median, markdownTable, writeJson } = require('./report');
const { missingServer, overhead, selectScenarios } = require('./scenarios');
const { pinTo, startSide } = require('./side');

const quick = flag('quick');
const rounds = numberOption('rounds', 'BENCH_ROUNDS', quick ? 4 : 10);
const duration = numberOption('duration', 'BENCH_DURATION', quick ? 2 : 4);
const warmup = numberOption('warmup', 'BENCH_WARMUP', quick ? 3 : 8);
const procs = numberOption('procs', 'BENCH_PROCS', 2);
const connections = numberOption('connections', 'BENCH_CONNECTIONS', 16);
const poolMax = numberOption('pool', 'BENCH_POOL', 10);
// The load generator on CPU 0, every server on CPU 1: on a two-core machine an unpinned autocannon
// and server keep trading cores, which moved single rounds by ±20 %. Linux only (taskset).
const pin = !flag('no-pin') && os.availableParallelism() >= 2 && pinTo(process.pid, 0);

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

/**
 * One round: autocannon against every server of both sides at once, for `seconds`, with each
 * server's CPU time over it. Sides that share one CPU and one window see the same machine: on a
 * shared VM, rounds run one after the other moved by ±15 % between rounds, which no number of
 * rounds averaged away; run together, the B/A ratio of one round stays within a few percent.
 * @param {Server[]} servers
 * @param {number} seconds
 * @returns {Promise<Round[]>} one per server
 */
async function measureAll(servers, seconds) {
  await Promise.all(servers.map((server) => server.reset()));
  const results = await Promise.all(
    servers.map((server) =>
      autocannon({ url: `${server.url}/`, connections, duration: seconds, pipelining: 1 }),
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
  const cpu = pin ? 1 : undefined;
  try {
    for (let i = 0; i < procs; i++) {
      a.push(await startSide(scenario.a, { poolMax, cpu }));
      b.push(await startSide(scenario.b, { poolMax, cpu }));
    }
    const all = [...a, ...b];
    await measureAll(all, warmup);
    /** @type {Round[]} */
    const roundsA = [];
    /** @type {Round[]} */
    const roundsB = [];
    for (let round = 0; round < rounds; round++) {
      const results = await measureAll(all, duration);
      const lastA = combine(results.slice(0, procs));
      const lastB = combine(results.slice(procs));
      roundsA.push(lastA);
      roundsB.push(lastB);
      console.log(
        `  ${scenario.name} round ${round + 1}/${rounds}: A ${lastA.rps.toFixed(0)} req/s, ` +
          `B ${lastB.rps.toFixed(0)} req/s (${(lastB.rps / lastA.rps).toFixed(3)}×; ` +
          `CPU µs/req ${lastA.cpuUsPerRequest.toFixed(0)} → ${lastB.cpuUsPerRequest.toFixed(0)})`,
      );
    }
    const after = await Promise.all(b.map((server) => server.stats()));
    const poolAfter = after.reduce((n, stat) => n + stat.poolUsed + stat.poolPending, 0);
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
  const chosen = selectScenarios(overhead, {
    only: option('only', 'BENCH_ONLY', ''),
    all: flag('diagnose'),
  });
  console.log(`knex-scope overhead benchmark: ${machine()}`);
  console.log(
    `autocannon: ${connections} connections per server, ${procs} server processes per side, both sides at once, ` +
      `${rounds} rounds × ${duration} s after ${warmup} s warm-up; pool.max ${poolMax} on PostgreSQL/MariaDB; ` +
      `${pin ? 'autocannon pinned to CPU 0, servers to CPU 1' : 'not pinned'}\n`,
  );
  /** @type {(string | number)[][]} */
  const rows = [];
  /** @type {string[]} */
  const notes = [];
  const results = [];
  let failed = 0;
  for (const scenario of chosen) {
    const missing = await missingServer(scenario);
    if (missing !== undefined) {
      console.log(`  ${scenario.name}: skipped, no server answers at ${missing}`);
      continue;
    }
    const { roundsA, roundsB, poolAfter } = await runScenario(scenario);
    const sa = summarize(roundsA);
    const sb = summarize(roundsB);
    const ratios = roundsB.map((r, i) => r.rps / /** @type {Round} */ (roundsA[i]).rps);
    const paired = median(ratios);
    const cost = median(
      roundsB.map((r, i) => /** @type {Round} */ (roundsA[i]).cpuUsPerRequest / r.cpuUsPerRequest),
    );
    const met = scenario.target === undefined || paired >= scenario.target;
    const zeroDb = scenario.b.route !== 'plain' || (sb.acquires === 0 && sb.queries === 0);
    if (!met || !zeroDb) failed++;
    rows.push([
      scenario.name,
      describeSide(scenario.a),
      sa.rps.toFixed(0),
      describeSide(scenario.b),
      sb.rps.toFixed(0),
      `**${paired.toFixed(3)}**`,
      `${Math.min(...ratios).toFixed(3)}–${Math.max(...ratios).toFixed(3)}`,
      cost.toFixed(3),
      `${sa.p99} / ${sb.p99}`,
      scenario.target === undefined
        ? 'diagnostic'
        : `≥ ${scenario.target} ${met ? 'met' : 'MISSED'}`,
    ]);
    notes.push(
      `${scenario.name} (${scenario.title}): B served ${sb.requests} requests with ${sb.acquires} pool acquires ` +
        `and ${sb.queries} queries (A: ${sa.requests} requests, ${sa.acquires} acquires, ${sa.queries} queries); ` +
        `non-2xx/errors A ${sa.bad}, B ${sb.bad}; handlers cut off by the end of a round A ${sa.cutOff}, B ${sb.cutOff}; ` +
        `B's pool afterwards: ${poolAfter} used or pending` +
        (scenario.b.route === 'plain' ? `; zero connections: ${zeroDb ? 'yes' : 'NO'}` : ''),
    );
    results.push({ scenario: scenario.name, roundsA, roundsB });
  }
  console.log(
    `\n${markdownTable(
      [
        'scenario',
        'A',
        'A req/s:',
        'B',
        'B req/s:',
        'B/A req/s, median of rounds:',
        'range:',
        'A/B CPU per request:',
        'p99 ms A / B:',
        'target',
      ],
      rows,
    )}\n`,
  );
  for (const note of notes) console.log(`- ${note}`);
  writeJson(option('json', '', ''), { connections, procs, rounds, duration, warmup, results });
  console.log(failed === 0 ? '\nall targets met' : `\n${failed} scenario(s) missed a target`);
  if (failed > 0) process.exitCode = 1;
}

main().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
