// @ts-check
'use strict';
// The overhead scenarios (scenarios.js) counted in instructions in-process, without HTTP: each side's
// app (apps.js) handles fabricated requests, one after the other, under callgrind. It repeats to
// about 2,000 instructions per request, where instructions.js, over real connections, moves by
// about 1 % between server processes: the tool for comparing two versions of the code. The
// targets are checked with instructions.js.
//
//   npm run build && node scripts/bench/layer.js --only=a-express        # about 10 minutes
//   node scripts/bench/layer.js --only=a-express,b-sqlite --sides=b      # B only, to compare builds:
//   BENCH_PACKAGE=.tmp/builds/x node scripts/bench/layer.js --only=a-express --sides=b
//
// Each side runs twice, with `--low` and `--high` requests, in processes of their own (`node
// --single-threaded --no-memory-reducer` under `valgrind --tool=callgrind`); the difference of
// the two totals over the difference in requests is the cost per request, so start-up, loading,
// connecting and the JIT's first compilations cancel out. A request is an IncomingMessage and a
// ServerResponse on a socket that accepts every write; after `finish` the response is detached
// and closed as Node's HTTP server does it. A route without database that acquires a connection,
// or any answer but 200, fails the run.
//
// Options (flags or environment):
//   --only=LIST      BENCH_ONLY     scenarios (default: those with a target); --diagnose: all
//   --low=N          BENCH_LOW      requests of the shorter run (default 4000)
//   --high=N         BENCH_HIGH     requests of the longer run (default 36000): one major collection
//                                   more or less moves a figure by about 2 % over 10,000
//   --sides=a,b      BENCH_SIDES    which sides to count (default both)
//   --pool=N         BENCH_POOL     pool.max on PostgreSQL and MariaDB (default 10)
//   --json=FILE                     also write the numbers as JSON
//   BENCH_PACKAGE=DIR               load knex-scope from DIR instead of dist/ (see apps.js)
// Needs valgrind (`apt-get install valgrind`).
const { spawn } = require('node:child_process');
const http = require('node:http');
const net = require('node:net');
const { Writable } = require('node:stream');
const { createApp, describeSide } = require('./apps');
const { requireValgrind, valgrindArgs } = require('./callgrind');
const { flag, listOption, numberOption, option } = require('./options');
const { k, machine, markdownTable, writeJson } = require('./report');
const { missingServer, overhead, selectScenarios } = require('./scenarios');

/**
 * The child: one side's app, `n` requests.
 * @param {import('./apps').Side} side
 * @param {number} n
 * @param {number} poolMax
 */
async function child(side, n, poolMax) {
  const app = createApp(side, { poolMax });
  const socket = new net.Socket();
  // Accepts every write at once, as a socket with room in its buffer does.
  const out = new Writable({
    write(_chunk, _encoding, callback) {
      callback();
    },
  });
  /** @returns {Promise<number>} the status */
  const request = () =>
    new Promise((resolve) => {
      const req = new http.IncomingMessage(socket);
      req.method = 'GET';
      req.url = '/';
      req.headers = { host: 'localhost' };
      req.push(null);
      const res = new http.ServerResponse(req);
      res.assignSocket(/** @type {import('node:net').Socket} */ (/** @type {unknown} */ (out)));
      res.once('finish', () => {
        // What Node's server does when a response has finished (resOnFinish, emitCloseNT).
        res.detachSocket(/** @type {import('node:net').Socket} */ (/** @type {unknown} */ (out)));
        process.nextTick(() => {
          res.destroyed = true;
          res.emit('close');
          resolve(res.statusCode);
        });
      });
      app.listener(req, res);
    });
  let failed = 0;
  for (let i = 0; i < n; i++) if ((await request()) !== 200) failed++;
  const { acquires } = app.counters;
  await app.close();
  if (failed > 0) throw new Error(`${failed} of ${n} requests were not answered 200`);
  if (side.route === 'plain' && acquires > 0) {
    throw new Error(`${acquires} connections acquired on a route without database`);
  }
}

/**
 * Total instructions of one child under callgrind.
 * @param {import('./apps').Side} side
 * @param {number} n
 * @param {number} poolMax
 * @returns {Promise<number>}
 */
function counted(side, n, poolMax) {
  return new Promise((resolve, reject) => {
    const proc = spawn(
      'valgrind',
      [
        ...valgrindArgs(['--callgrind-out-file=/dev/null']),
        __filename,
        '--child',
        JSON.stringify(side),
        String(n),
        String(poolMax),
      ],
      { stdio: ['ignore', 'inherit', 'pipe'] },
    );
    let stderr = '';
    proc.stderr.on('data', (chunk) => {
      stderr += chunk;
    });
    proc.on('error', reject);
    proc.on('close', (code) => {
      const match = /Collected : (\d+)/.exec(stderr);
      if (code !== 0 || match === null) {
        reject(new Error(`${describeSide(side)}, ${n}: exit ${code}\n${stderr.slice(-2000)}`));
      } else resolve(Number(match[1]));
    });
  });
}

async function main() {
  requireValgrind();
  const low = numberOption('low', 'BENCH_LOW', 4000);
  const high = numberOption('high', 'BENCH_HIGH', 36000);
  if (high <= low) throw new Error('--high must be above --low');
  const poolMax = numberOption('pool', 'BENCH_POOL', 10);
  const sides = listOption('sides', 'BENCH_SIDES', 'a,b');
  const chosen = selectScenarios(overhead, {
    only: option('only', 'BENCH_ONLY', ''),
    all: flag('diagnose'),
  });
  const build = process.env.BENCH_PACKAGE || 'dist';
  console.log(
    `knex-scope in-process instructions (${build}): ${machine()}; under callgrind, instructions per ` +
      `request = (I(${high}) − I(${low})) / ${high - low}\n`,
  );
  /** @type {(string | number)[][]} */
  const rows = [];
  const results = [];
  for (const scenario of chosen) {
    const missing = await missingServer(scenario);
    if (missing !== undefined) {
      console.log(`  ${scenario.name}: skipped, no server answers at ${missing}`);
      continue;
    }
    /** @type {Record<string, number>} */
    const perRequest = {};
    for (const which of /** @type {const} */ (['a', 'b'])) {
      if (!sides.includes(which)) continue;
      const side = scenario[which];
      const started = Date.now();
      const [x, y] = await Promise.all([counted(side, low, poolMax), counted(side, high, poolMax)]);
      perRequest[which] = (y - x) / (high - low);
      console.log(
        `  ${scenario.name} ${which.toUpperCase()} (${describeSide(side)}): ` +
          `${k(perRequest[which] ?? Number.NaN)} (${((Date.now() - started) / 1000).toFixed(0)} s)`,
      );
    }
    const a = perRequest.a ?? Number.NaN;
    const b = perRequest.b ?? Number.NaN;
    const ratio = a / b;
    const target =
      scenario.target === undefined
        ? 'diagnostic'
        : Number.isNaN(ratio)
          ? `≥ ${scenario.target}`
          : `≥ ${scenario.target} ${ratio >= scenario.target ? 'met' : 'MISSED'}`;
    rows.push([
      scenario.name,
      describeSide(scenario.a),
      k(a),
      describeSide(scenario.b),
      k(b),
      k(b - a),
      Number.isNaN(ratio) ? '–' : ratio.toFixed(4),
      target,
    ]);
    results.push({ scenario: scenario.name, a, b });
  }
  console.log(
    `\n${markdownTable(['scenario', 'A', 'A per request:', 'B', 'B per request:', 'B − A:', 'A/B:', 'target'], rows)}`,
  );
  writeJson(option('json', '', ''), { build, low, high, results });
}

const at = process.argv.indexOf('--child');
if (at !== -1) {
  const [side = '{}', n = '0', poolMax = '10'] = process.argv.slice(at + 1);
  child(JSON.parse(side), Number(n), Number(poolMax)).catch((error) => {
    console.error(error);
    process.exit(1);
  });
} else {
  main().catch((error) => {
    console.error(error);
    process.exitCode = 1;
  });
}
