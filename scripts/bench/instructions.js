// @ts-check
'use strict';
// What knex-scope costs per request, counted in machine instructions instead of seconds: each
// server of scripts/bench/overhead.js's scenarios runs under valgrind's callgrind, which counts
// every instruction the process executes (JIT code, garbage collector, libuv, the drivers), and
// the count for the same work is the same whatever else the host is doing. On a shared VM, where
// a server's throughput moves by ±15 % between rounds, that is the stable figure: a CPU-bound
// server's throughput is inversely proportional to its CPU cost per request, so A's instructions
// per request divided by B's estimates B/A throughput, and the targets are checked against it.
//
//   npm run build && node scripts/bench/instructions.js
//   node scripts/bench/instructions.js --only=a-express,b-postgres --requests=2000 --rounds=3
//
// Each side, on its own:
//   1. the server without valgrind (`node --single-threaded --no-memory-reducer`): `warmup` rounds, then one
//      continuous run of `rateRequests` requests that counts V8's major (mark-compact) collections;
//   2. the server under `valgrind --tool=callgrind --instr-atstart=no`, running the same `node`
//      (`--single-threaded`: V8's compiler and collector on the main thread, where their work is
//      counted the same way every run): `warmup` rounds with counting off, then `rounds` rounds,
//      each counted from zero (`callgrind_control -z`) and read from its dump (`-d`).
// autocannon sends the requests, 16 connections as in bench-overhead.js. Both sides of a
// scenario run at once; the counts do not depend on it. A major collection costs as much as
// hundreds of requests and comes every few thousand, so the figure the targets are checked against
// is the mean over the rounds that held none, nor any of its marking (see `cleanMean`). Also
// printed: the plain average over the rounds, and a fit that prices each side's collections at its
// long-run rate (`estimate`).
//
// Options (flags or environment):
//   --requests=N     BENCH_REQUESTS     requests per counted round (default 1000)
//   --rounds=N       BENCH_ROUNDS       counted rounds (default 16)
//   --warmup=N       BENCH_WARMUP       warm-up rounds of `requests` requests, not counted (default 10)
//   --rate-requests=N  BENCH_RATE_REQUESTS  requests of the continuous run without valgrind that
//                                       counts major collections (default 100000): one run, not
//                                       rounds, because every round's end (autocannon closing its
//                                       connections, the server settling) drew collections of its own
//   --connections=N  BENCH_CONNECTIONS  autocannon connections (default 16)
//   --procs=N        BENCH_PROCS        server processes per side, one after the other, their rounds
//                                       pooled (default 1): two processes running the same code
//                                       differed by up to 1 % (JIT and memory layout)
//   --pool=N         BENCH_POOL         pool.max for PostgreSQL and MariaDB (default 10)
//   --only=LIST      BENCH_ONLY         scenarios, any of them, d-… and c-twin included (default:
//                                       the a-… and b-… ones); an unknown name is an error
//   --diagnose                          also the d-… scenarios and c-twin, two identical servers:
//                                       the method's own spread
//   --json=FILE                         also write the raw numbers as JSON
// For profiling (a dump per round, read with callgrind_annotate):
//   BENCH_KEEP=1                        keep the dumps
//   BENCH_VALGRIND_ARGS='--separate-callers=8'   more valgrind options
//   BENCH_NODE_ARGS='--perf-basic-prof-only-functions'   more node options (that one writes
//                                       /tmp/perf-PID.map, which names the JIT code's addresses)
const { execFileSync } = require('node:child_process');
const { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } = require('node:fs');
const os = require('node:os');
const { join } = require('node:path');
const autocannon = require('autocannon');
const { benchScenarios, instance, selectScenarios } = require('./scenarios');
const { startSide } = require('./side');
const { probeDatabases, servers } = require('../probe-databases');

/**
 * @param {string} name
 * @param {string} env
 * @param {string} fallback
 */
function option(name, env, fallback) {
  const flag = process.argv.find((arg) => arg.startsWith(`--${name}=`));
  return flag?.slice(name.length + 3) ?? process.env[env] ?? fallback;
}

const requests = Number(option('requests', 'BENCH_REQUESTS', '1000'));
const rounds = Number(option('rounds', 'BENCH_ROUNDS', '16'));
const warmup = Number(option('warmup', 'BENCH_WARMUP', '10'));
const rateRequests = Number(option('rate-requests', 'BENCH_RATE_REQUESTS', '100000'));
const connections = Number(option('connections', 'BENCH_CONNECTIONS', '16'));
const procs = Number(option('procs', 'BENCH_PROCS', '1'));
const poolMax = Number(option('pool', 'BENCH_POOL', '10'));
const only = option('only', 'BENCH_ONLY', '');
const jsonFile = option('json', 'BENCH_JSON', '');
const diagnose = process.argv.includes('--diagnose');

/**
 * @typedef {import('./scenarios').Scenario} Scenario
 * @typedef {{ instructions: number; requests: number; perRequest: number; majorGcs: number; marked: boolean; acquires: number; queries: number; errors: number }} Count
 */

const tmp = mkdtempSync(join(os.tmpdir(), 'knex-scope-instructions-'));
const { scenarios, diagnostics } = benchScenarios({ tmp, poolMax });

/** @type {Scenario} */
const twin = {
  name: 'c-twin',
  title: 'Express 5, route without database, two identical servers (the method’s own spread)',
  path: '/plain',
  target: 0,
  a: {
    label: 'no knex-scope',
    side: {
      framework: 'express',
      variant: 'plain',
      connection: {
        client: 'better-sqlite3',
        connection: { filename: join(tmp, 'twin-a.sqlite') },
        useNullAsDefault: true,
      },
    },
  },
  b: {
    label: 'the same',
    side: {
      framework: 'express',
      variant: 'plain',
      connection: {
        client: 'better-sqlite3',
        connection: { filename: join(tmp, 'twin-b.sqlite') },
        useNullAsDefault: true,
      },
    },
  },
};

/** @param {string[]} args */
function callgrindControl(args) {
  execFileSync('callgrind_control', args, { stdio: 'ignore' });
}

/**
 * A bench-server.js side, run as `node --single-threaded`, under callgrind when `dir` is given.
 * @param {import('./server').BenchSide} side
 * @param {string} path
 * @param {string | undefined} dir  where callgrind writes its dumps
 */
async function startCounted(side, path, dir) {
  // V8's memory reducer starts major collections when the allocation rate drops, which under
  // valgrind it always seems to; a server under load never triggers it.
  const node = [
    '--single-threaded',
    '--no-memory-reducer',
    ...(process.env.BENCH_NODE_ARGS?.split(' ') ?? []),
  ];
  const server = await startSide(
    side,
    dir === undefined
      ? { execArgv: node }
      : {
          execPath: 'valgrind',
          execArgv: [
            '--tool=callgrind',
            '--instr-atstart=no',
            `--callgrind-out-file=${join(dir, 'callgrind.out')}`,
            `--log-file=${join(dir, 'valgrind.log')}`,
            ...(process.env.BENCH_VALGRIND_ARGS?.split(' ') ?? []),
            process.execPath,
            ...node,
          ],
        },
  );
  /** @param {number} amount */
  const load = async (amount) => {
    const result = await autocannon({
      url: `${server.url}${path}`,
      connections,
      amount,
      pipelining: 1,
    });
    await server.settle();
    return result;
  };
  // Several runs, not one long one: code that runs once per connection (16 per run) is compiled
  // by V8's optimizing compiler only after a few runs, and counted rounds still paid for it.
  for (let run = 0; run < warmup; run++) await load(requests);
  return { server, load };
}

/**
 * One side of a scenario: its major collections per request over a long run without valgrind,
 * then its instructions round by round under callgrind.
 * @param {import('./server').BenchSide} side
 * @param {string} path
 * @param {string} name  for the dump files
 * @returns {Promise<{ rounds: Count[]; gcRate: { requests: number; majorGcs: number } }>}
 */
async function countSide(side, path, name) {
  const native = await startCounted(side, path, undefined);
  let gcRate;
  try {
    await native.server.reset();
    await native.load(rateRequests);
    const stats = await native.server.stats();
    gcRate = { requests: stats.requests, majorGcs: stats.majorGcs };
  } finally {
    await native.server.stop();
  }

  const dir = mkdtempSync(join(tmp, `${name}-`));
  const { server, load } = await startCounted(side, path, dir);
  const pid = String(server.pid);
  /** @type {Count[]} */
  const counts = [];
  try {
    callgrindControl(['--instr=on', pid]);
    // The first round under instrumentation still cost 5–8 % more than the later ones (Koa, where
    // no major collection blurs it): one more round, not counted.
    await load(requests);
    for (let round = 1; round <= rounds; round++) {
      callgrindControl(['--zero', pid]);
      await server.reset();
      const result = await load(requests);
      // Dump first: a collection that falls between the two is then reported but not counted,
      // which only drops a clean round, instead of counted but not reported, which made a round
      // 25 % dearer pass for clean.
      callgrindControl(['--dump', pid]);
      const stats = await server.stats();
      const instructions = readTotal(dir, round);
      counts.push({
        instructions,
        requests: stats.requests,
        perRequest: instructions / stats.requests,
        majorGcs: stats.majorGcs,
        marked: stats.markedDuring,
        acquires: stats.acquires,
        queries: stats.queries,
        errors: result.non2xx + result.errors + result.timeouts + stats.errors,
      });
    }
  } finally {
    await server.stop();
  }
  return { rounds: counts, gcRate };
}

/**
 * Instructions per request with V8's major collections priced in at their long-run rate (method
 * v2, printed beside `cleanMean`, which the targets are checked against since v3).
 *
 * A major (mark-compact) collection comes every few thousand requests and costs as much as
 * hundreds of them, so whether a counted round held one was luck: identical Express servers
 * differed by ±3 % over 16,000 requests. Instead, each round's count is fitted as
 * `perRequest × requests + perCollection × collections` (least squares over the rounds, which
 * hold 0, 1 or 2 collections), and the estimate is `perRequest + perCollection × rate`, with
 * `rate` the collections per request of the same server in one continuous run of `rateRequests`
 * requests without valgrind, where they are cheap to count. Not rounds: on PostgreSQL, 100 rounds
 * of 500 requests drew 29–39 collections per 50,000 requests, 25 rounds of 2,000 21–25, and one
 * run of 50,000 15–16; a server under steady load has no round ends.
 * @param {Count[]} counts
 * @param {{ requests: number; majorGcs: number }} gcRate
 */
function estimate(counts, gcRate) {
  const rate = gcRate.majorGcs / gcRate.requests;
  const n = counts.map((c) => c.requests);
  const m = counts.map((c) => c.majorGcs);
  const y = counts.map((c) => c.instructions);
  const dot = (/** @type {number[]} */ u, /** @type {number[]} */ v) =>
    u.reduce((sum, x, i) => sum + x * /** @type {number} */ (v[i]), 0);
  const nn = dot(n, n);
  const mm = dot(m, m);
  const nm = dot(n, m);
  const det = nn * mm - nm * nm;
  if (mm === 0 || Math.abs(det) < 1e-9 * nn * mm) {
    // No round held a collection (or every round held as many per request): the plain average.
    const total = dot(y, Array(y.length).fill(1)) / dot(n, Array(n.length).fill(1));
    return { perRequest: total, perCollection: Number.NaN, rate, estimate: total };
  }
  const ny = dot(n, y);
  const my = dot(m, y);
  const perRequest = (mm * ny - nm * my) / det;
  const perCollection = (nn * my - nm * ny) / det;
  return { perRequest, perCollection, rate, estimate: perRequest + perCollection * rate };
}

/**
 * The instruction total of dump number `n` (callgrind writes callgrind.out.N for the Nth dump).
 * @param {string} dir
 * @param {number} n
 */
function readTotal(dir, n) {
  const file = readdirSync(dir).find((f) => f.startsWith('callgrind.out') && f.endsWith(`.${n}`));
  if (file === undefined) throw new Error(`callgrind wrote no dump ${n} in ${dir}`);
  const match = /^(?:totals|summary): (\d+)/m.exec(readFileSync(join(dir, file), 'utf8'));
  if (match === null) throw new Error(`no totals in ${join(dir, file)}`);
  return Number(match[1]);
}

/**
 * Instructions per request over all counted rounds of a side. Not a median of rounds: V8 runs a
 * major garbage collection every few thousand requests, worth 5–15 % of a 2,000-request round,
 * and a round either holds one or not; over all rounds each side pays for its own collections,
 * give or take the one that straddles the end.
 * @param {Count[]} counts
 */
function perRequest(counts) {
  const sum = (/** @type {(c: Count) => number} */ pick) => counts.reduce((n, c) => n + pick(c), 0);
  return sum((c) => c.instructions) / sum((c) => c.requests);
}

/**
 * The mean of instructions per request over the rounds during which V8 neither collected the old
 * generation nor marked it incrementally: what a request costs the server apart from mark-compact
 * collections, which the fit of `estimate` prices poorly. Over repeated runs of the same code
 * (2026-12-03) the fit's per-collection term moved from 97M to 241M instructions and the median of
 * these rounds by up to 2 % (the rounds fall into two groups about 3 % apart), their mean by about
 * 1 %. Without valgrind, the two sides of every scenario collected equally often and each
 * collection took as long (`--trace-gc`), so leaving collections out of both sides moves the ratio
 * away from 1, never towards it.
 * @param {Count[]} counts
 */
function cleanMean(counts) {
  const clean = counts.filter((c) => c.majorGcs === 0 && !c.marked);
  if (clean.length === 0) return Number.NaN;
  return clean.reduce((n, c) => n + c.perRequest, 0) / clean.length;
}

async function main() {
  try {
    execFileSync('valgrind', ['--version'], { stdio: 'ignore' });
  } catch {
    throw new Error('valgrind is not installed (Debian/Ubuntu: apt-get install valgrind)');
  }
  const available = new Set((await probeDatabases()).map((database) => database.name));
  const chosen = selectScenarios(
    only,
    [...scenarios, twin, ...diagnostics],
    [...scenarios, ...(diagnose ? [twin, ...diagnostics] : [])],
  );
  const cpus = os.cpus();
  console.log(
    `knex-scope instruction benchmark: node ${process.version} --single-threaded --no-memory-reducer under valgrind --tool=callgrind, ` +
      `${cpus[0]?.model ?? 'unknown CPU'}; ${procs} server process(es) per side, each ${rounds} counted rounds × ${requests} requests after ${warmup} warm-up ` +
      `rounds, ${connections} connections; pool.max ${poolMax} on PostgreSQL/MariaDB, 1 on SQLite\n`,
  );

  const results = [];
  for (const scenario of chosen) {
    if (scenario.needs !== undefined && !available.has(scenario.needs)) {
      console.log(`  ${scenario.name}: skipped, no server answers at ${servers[scenario.needs]}`);
      continue;
    }
    const started = Date.now();
    /** @param {'a' | 'b'} which */
    const side = async (which) => {
      /** @type {Count[]} */
      const all = [];
      const gcRate = { requests: 0, majorGcs: 0 };
      for (let i = 0; i < procs; i++) {
        const one = await countSide(
          instance(scenario[which].side, i),
          scenario.path,
          `${scenario.name}-${which}${i}`,
        );
        all.push(...one.rounds);
        gcRate.requests += one.gcRate.requests;
        gcRate.majorGcs += one.gcRate.majorGcs;
      }
      return { rounds: all, gcRate };
    };
    const [a, b] = await Promise.all([side('a'), side('b')]);
    const ea = estimate(a.rounds, a.gcRate);
    const eb = estimate(b.rounds, b.gcRate);
    const show = (/** @type {Count[]} */ counts) =>
      counts
        .map(
          (c) =>
            `${(c.perRequest / 1000).toFixed(1)}k${'*'.repeat(c.majorGcs)}${c.marked && c.majorGcs === 0 ? '~' : ''}`,
        )
        .join(' ');
    console.log(
      `  ${scenario.name} (${((Date.now() - started) / 1000).toFixed(0)} s; * = a major collection in the round, ~ = incremental marking without one)\n` +
        `    A ${scenario.a.label}: ${show(a.rounds)}; ${a.gcRate.majorGcs} major collections in ${a.gcRate.requests} requests without valgrind\n` +
        `    B ${scenario.b.label}: ${show(b.rounds)}; ${b.gcRate.majorGcs} major collections in ${b.gcRate.requests} requests without valgrind\n` +
        `    estimate A ${ea.estimate.toFixed(0)}, B ${eb.estimate.toFixed(0)} instructions per request: A/B ${(ea.estimate / eb.estimate).toFixed(4)}; ` +
        `rounds without a major collection: A/B ${(cleanMean(a.rounds) / cleanMean(b.rounds)).toFixed(4)}`,
    );
    results.push({ scenario, a, b, ea, eb });
  }

  const lines = [
    '| scenario | side | instructions per request, all rounds | mean of rounds without major GC | without major GC (fit) | per major GC (fit) | major GCs per 1000 requests | estimate | A/B rounds without major GC = B/A throughput | A/B estimate | A/B all rounds | target |',
    '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |',
  ];
  /** @type {string[]} */
  const notes = [];
  let failed = 0;
  const k = (/** @type {number} */ x) => (Number.isNaN(x) ? '–' : `${(x / 1000).toFixed(1)}k`);
  const m = (/** @type {number} */ x) => (Number.isNaN(x) ? '–' : `${(x / 1e6).toFixed(0)}M`);
  for (const { scenario, a, b, ea, eb } of results) {
    const ratio = cleanMean(a.rounds) / cleanMean(b.rounds);
    const fitted = ea.estimate / eb.estimate;
    const plain = perRequest(a.rounds) / perRequest(b.rounds);
    const met = ratio >= scenario.target;
    const zeroDb =
      scenario.path === '/plain'
        ? b.rounds.every((c) => c.acquires === 0 && c.queries === 0)
        : true;
    const errors = [...a.rounds, ...b.rounds].reduce((n, c) => n + c.errors, 0);
    if (!met || !zeroDb || errors > 0) failed++;
    const target =
      scenario.target === 0 ? 'diagnostic' : `≥ ${scenario.target} ${met ? 'met' : 'MISSED'}`;
    lines.push(
      `| ${scenario.name} | A: ${scenario.a.label} | ${k(perRequest(a.rounds))} | ${k(cleanMean(a.rounds))} | ${k(ea.perRequest)} | ${m(ea.perCollection)} | ${(ea.rate * 1000).toFixed(2)} | ${k(ea.estimate)} | | | | |`,
      `| | B: ${scenario.b.label} | ${k(perRequest(b.rounds))} | ${k(cleanMean(b.rounds))} | ${k(eb.perRequest)} | ${m(eb.perCollection)} | ${(eb.rate * 1000).toFixed(2)} | ${k(eb.estimate)} | **${ratio.toFixed(4)}×** | ${fitted.toFixed(4)}× | ${plain.toFixed(4)}× | ${target} |`,
    );
    const sum = (/** @type {(c: Count) => number} */ pick) =>
      b.rounds.reduce((n, c) => n + pick(c), 0);
    notes.push(
      `${scenario.name} (${scenario.title}): B served ${sum((c) => c.requests)} counted requests with ` +
        `${sum((c) => c.acquires)} pool acquires and ${sum((c) => c.queries)} queries; errors ${errors}` +
        (scenario.path === '/plain' ? ` → zero connections: ${zeroDb ? 'yes' : 'NO'}` : ''),
    );
  }
  console.log(`\n${lines.join('\n')}\n`);
  for (const note of notes) console.log(`- ${note}`);
  if (jsonFile !== '') {
    writeFileSync(
      jsonFile,
      `${JSON.stringify({ node: process.version, requests, rounds, warmup, rateRequests, connections, procs, results }, null, 2)}\n`,
    );
  }
  console.log(
    failed === 0 ? '\nall targets met' : `\n${failed} scenario(s) missed a target or had errors`,
  );
}

main()
  .catch((error) => {
    console.error(error);
    process.exitCode = 1;
  })
  .finally(() => {
    if (process.env.BENCH_KEEP === undefined) rmSync(tmp, { recursive: true, force: true });
    else console.log(`callgrind's dumps are in ${tmp}`);
  });
