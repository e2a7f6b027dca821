// @ts-check
'use strict';
// What knex-scope costs per request over HTTP, counted in machine instructions instead of seconds:
// the benchmark the targets are checked with. Each side of an overhead scenario (scenarios.js) is
// served by server.js under valgrind's callgrind, which counts every instruction the process
// executes (JIT code, garbage collector, libuv, the drivers); the count for the same work is the
// same whatever else the host is doing. A CPU-bound server's throughput is inversely proportional
// to its CPU cost per request, so A's instructions per request over B's estimates B/A throughput.
//
//   npm run build && node scripts/bench/instructions.js          # the targets, about an hour
//   node scripts/bench/instructions.js --only=a-express,b-postgres --procs=2
//   node scripts/bench/instructions.js --in-process --only=a-express --sides=b   # to compare builds:
//   BENCH_PACKAGE=.tmp/builds/x node scripts/bench/instructions.js --in-process --only=a-express --sides=b
//
// Each side, on its own: the server under `valgrind --tool=callgrind --instr-atstart=no`, running
// `node --single-threaded --no-memory-reducer` (callgrind.js); `--warmup` rounds of `--requests`
// requests with counting off, one round counted but not used (the first still cost 5–8 % more),
// then `--rounds` rounds, each counted from zero (`callgrind_control -z`) and read from its own
// dump (`-d`). autocannon sends the requests over 16 connections; both sides of a scenario run at
// once (the counts do not depend on it). V8's major collections cost as much as hundreds of
// requests and a round of 1,000 either holds one or not, so the figure checked is the mean over
// the rounds that held none and no incremental marking either (`cleanMean`); the mean over all
// rounds is printed beside it.
//
// `--in-process` counts the same apps without HTTP: the server handles each round's requests as
// fabricated request/response pairs, one after the other (drive.js), so no parser, socket or
// event-loop turn between requests is counted. Its clean rounds repeat to a few hundred
// instructions where the HTTP rounds of two processes differ by 1 %: the way to compare two
// versions of the code (BENCH_PACKAGE); the targets are checked over HTTP.
//
// Options (flags or environment):
//   --only=LIST      BENCH_ONLY         scenarios (default: those with a target); --diagnose: all
//   --in-process                        requests without HTTP (above)
//   --sides=a,b      BENCH_SIDES        which sides to count (default both; B alone to compare builds)
//   --requests=N     BENCH_REQUESTS     requests per round (default 1000)
//   --rounds=N       BENCH_ROUNDS       counted rounds (default 16)
//   --warmup=N       BENCH_WARMUP       warm-up rounds, not counted (default 10)
//   --connections=N  BENCH_CONNECTIONS  autocannon connections (default 16)
//   --procs=N        BENCH_PROCS        server processes per side, one after the other, their rounds
//                                       pooled (default 1): one process's JIT and memory layout
//                                       moved its count by about 1 %
//   --pool=N         BENCH_POOL         pool.max on PostgreSQL and MariaDB (default 10)
//   --json=FILE                         also write the raw numbers as JSON
//   BENCH_PACKAGE=DIR                   load knex-scope from DIR instead of dist/ (see apps.js)
//   BENCH_NOOP_HOOKS=slot,onError,onSend  which no-op hooks the Fastify noop-hooks side has (apps.js)
// For profiling (a dump per round, read with callgrind_annotate):
//   BENCH_KEEP=1                        keep the dumps
//   BENCH_VALGRIND_ARGS='--separate-callers=8'   more valgrind options
//   BENCH_NODE_ARGS='--perf-basic-prof-only-functions'   more node options (that one writes
//                                       /tmp/perf-PID.map, which names the JIT code's addresses)
// Needs valgrind (`apt-get install valgrind`).
const { execFileSync } = require('node:child_process');
const { mkdtempSync, readdirSync, readFileSync, rmSync } = require('node:fs');
const os = require('node:os');
const { join } = require('node:path');
const autocannon = require('autocannon');
const { describeSide } = require('./apps');
const { requireValgrind, valgrindArgs } = require('./callgrind');
const { flag, listOption, numberOption, option } = require('./options');
const { k, machine, markdownTable, writeJson } = require('./report');
const { missingServer, overhead, selectScenarios } = require('./scenarios');
const { startSide } = require('./side');

const requests = numberOption('requests', 'BENCH_REQUESTS', 1000);
const rounds = numberOption('rounds', 'BENCH_ROUNDS', 16);
const warmup = numberOption('warmup', 'BENCH_WARMUP', 10);
const connections = numberOption('connections', 'BENCH_CONNECTIONS', 16);
const procs = numberOption('procs', 'BENCH_PROCS', 1);
const poolMax = numberOption('pool', 'BENCH_POOL', 10);
const inProcess = flag('in-process');
const sides = listOption('sides', 'BENCH_SIDES', 'a,b');

/**
 * @typedef {{ instructions: number; requests: number; perRequest: number; majorGcs: number; marked: boolean; acquires: number; queries: number; errors: number }} Count
 */

const tmp = mkdtempSync(join(os.tmpdir(), 'knex-scope-instructions-'));

/**
 * One server process of a side: its instructions round by round.
 * @param {import('./apps').Side} side
 * @param {string} name  for the dump files
 * @returns {Promise<Count[]>}
 */
async function countProcess(side, name) {
  const dir = mkdtempSync(join(tmp, `${name}-`));
  const server = await startSide(side, {
    poolMax,
    execPath: 'valgrind',
    execArgv: valgrindArgs([
      '--instr-atstart=no',
      `--callgrind-out-file=${join(dir, 'callgrind.out')}`,
      `--log-file=${join(dir, 'valgrind.log')}`,
    ]),
  });
  const pid = String(server.pid);
  /** @param {string} what */
  const control = (what) => execFileSync('callgrind_control', [what, pid], { stdio: 'ignore' });
  const load = async () => {
    if (inProcess) {
      const { failed } = await server.drive(requests);
      return { non2xx: failed, errors: 0, timeouts: 0 };
    }
    const result = await autocannon({ url: `${server.url}/`, connections, amount: requests });
    await server.settle();
    return result;
  };
  /** @type {Count[]} */
  const counts = [];
  try {
    // Several runs, not one long one: code that runs once per connection (16 per run) is compiled
    // by V8's optimizing compiler only after a few runs, and counted rounds still paid for it.
    for (let run = 0; run < warmup; run++) await load();
    control('--instr=on');
    await load();
    for (let round = 1; round <= rounds; round++) {
      control('--zero');
      await server.reset();
      const result = await load();
      // Dump first: a collection that falls between the two is then reported but not counted,
      // which only drops a clean round, instead of counted but not reported, which once made a
      // round 25 % dearer pass for clean.
      control('--dump');
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
  return counts;
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
 * Instructions per request over all rounds.
 * @param {Count[]} counts
 */
function allRounds(counts) {
  const sum = (/** @type {(c: Count) => number} */ pick) => counts.reduce((n, c) => n + pick(c), 0);
  return sum((c) => c.instructions) / sum((c) => c.requests);
}

/**
 * The mean of instructions per request over the rounds during which V8 neither collected the old
 * generation nor marked it incrementally. Without valgrind, the two sides of every scenario
 * collected equally often and each collection took as long (`--trace-gc`), so leaving collections
 * out of both sides moves the ratio away from 1, never towards it. Over repeated runs of the same
 * code its ratio moved by about 1 %; the median of the same rounds moved more (they fall into two
 * groups about 3 % apart), and a least-squares price per collection moved from 97M to 241M
 * instructions (method v2, in BENCHMARKS.md's history).
 * @param {Count[]} counts
 */
function cleanMean(counts) {
  const clean = counts.filter((c) => c.majorGcs === 0 && !c.marked);
  if (clean.length === 0) return Number.NaN;
  return clean.reduce((n, c) => n + c.perRequest, 0) / clean.length;
}

async function main() {
  requireValgrind();
  const chosen = selectScenarios(overhead, {
    only: option('only', 'BENCH_ONLY', ''),
    all: flag('diagnose'),
  });
  console.log(
    `knex-scope instruction benchmark${inProcess ? ', in-process' : ''} (${process.env.BENCH_PACKAGE || 'dist'}): ` +
      `${machine()}; under callgrind, ${procs} server process(es) ` +
      `per side, each ${rounds} counted rounds × ${requests} requests after ${warmup} warm-up rounds, ` +
      `${inProcess ? 'one request at a time' : `${connections} connections`}; pool.max ${poolMax} on PostgreSQL/MariaDB\n`,
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
    const started = Date.now();
    /** @param {'a' | 'b'} which */
    const side = async (which) => {
      /** @type {Count[]} */
      const all = [];
      if (!sides.includes(which)) return all;
      for (let i = 0; i < procs; i++) {
        all.push(...(await countProcess(scenario[which], `${scenario.name}-${which}${i}`)));
      }
      return all;
    };
    const [a, b] = await Promise.all([side('a'), side('b')]);
    const show = (/** @type {Count[]} */ counts) =>
      counts
        .map(
          (c) => `${k(c.perRequest)}${'*'.repeat(c.majorGcs)}${c.marked && !c.majorGcs ? '~' : ''}`,
        )
        .join(' ');
    console.log(
      `  ${scenario.name} (${((Date.now() - started) / 1000).toFixed(0)} s; * = a major collection in the round, ~ = incremental marking)\n` +
        `    A ${describeSide(scenario.a)}: ${show(a)}\n` +
        `    B ${describeSide(scenario.b)}: ${show(b)}`,
    );
    const ratio = cleanMean(a) / cleanMean(b);
    const met = scenario.target === undefined || Number.isNaN(ratio) || ratio >= scenario.target;
    const zeroDb = scenario.b.route !== 'plain' || b.every((c) => c.acquires === 0);
    const errors = [...a, ...b].reduce((n, c) => n + c.errors, 0);
    if (!met || !zeroDb || errors > 0) failed++;
    rows.push([
      scenario.name,
      describeSide(scenario.a),
      k(cleanMean(a)),
      describeSide(scenario.b),
      k(cleanMean(b)),
      k(cleanMean(b) - cleanMean(a)),
      Number.isNaN(ratio) ? '–' : `**${ratio.toFixed(4)}**`,
      (allRounds(a) / allRounds(b)).toFixed(4),
      `${a.filter((c) => !c.majorGcs && !c.marked).length}/${b.filter((c) => !c.majorGcs && !c.marked).length}`,
      scenario.target === undefined
        ? 'diagnostic'
        : `≥ ${scenario.target}${Number.isNaN(ratio) ? '' : met ? ' met' : ' MISSED'}`,
    ]);
    const sum = (/** @type {(c: Count) => number} */ pick) => b.reduce((n, c) => n + pick(c), 0);
    notes.push(
      `${scenario.name} (${scenario.title}): B served ${sum((c) => c.requests)} counted requests with ` +
        `${sum((c) => c.acquires)} pool acquires and ${sum((c) => c.queries)} queries; errors ${errors}` +
        (scenario.b.route === 'plain' ? `; zero connections: ${zeroDb ? 'yes' : 'NO'}` : ''),
    );
    results.push({ scenario: scenario.name, a, b, ratio });
  }
  console.log(
    `\n${markdownTable(
      [
        'scenario',
        'A',
        'A per request:',
        'B',
        'B per request:',
        'B − A:',
        'A/B = B/A throughput:',
        'A/B, all rounds:',
        'clean rounds A/B:',
        'target',
      ],
      rows,
    )}\n`,
  );
  for (const note of notes) console.log(`- ${note}`);
  writeJson(option('json', '', ''), {
    build: process.env.BENCH_PACKAGE || 'dist',
    inProcess,
    requests,
    rounds,
    warmup,
    connections,
    procs,
    results,
  });
  console.log(
    failed === 0 ? '\nall targets met' : `\n${failed} scenario(s) missed a target or had errors`,
  );
  if (failed > 0) process.exitCode = 1;
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
