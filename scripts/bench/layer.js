// @ts-check
'use strict';
// What one middleware costs Express per request, counted in instructions without HTTP: the floor
// under the a-express target of scripts/bench/instructions.js. For Express 5 and 4, three apps
// with the same `GET /plain` route (`res.json({ ok: true })`):
//   plain    no middleware
//   noop     app.use((req, res, next) => next())
//   withDb   app.use(withDb(knex))   (knex on an in-memory SQLite database, never touched)
// Each app handles N fabricated requests in-process (`app.handle(req, res)` on an IncomingMessage
// and a ServerResponse with no socket), under `valgrind --tool=callgrind`. Two runs per app, with
// `--low` and `--high` requests, and the difference of their totals divided by the difference in
// requests is the cost per request: start-up, loading and the JIT's first compilations cancel out.
// Without sockets, HTTP parsing and the event loop, it repeats to about 2,000 instructions where
// bench-instructions.js, over real connections, moves by 1 % (5,000) between processes.
//
//   npm run build && node scripts/bench/layer.js            # about 10 minutes on two cores
//   node scripts/bench/layer.js --frameworks=express,express4   # about 20 minutes
//   node scripts/bench/layer.js --low=2000 --high=12000     # quicker: one major collection more or
//                                                           # less moves it by about 2 %
//
// Options: --low=N (4000) --high=N (36000) --frameworks=express,express4 (express) --json=FILE
// Needs valgrind (`apt-get install valgrind`).
const { spawn } = require('node:child_process');
const { writeFileSync } = require('node:fs');

/** @typedef {'plain' | 'noop' | 'withDb'} Variant */
/** @type {Variant[]} */
const variants = ['plain', 'noop', 'withDb'];

/**
 * @param {string} name
 * @param {string} fallback
 */
function option(name, fallback) {
  const arg = process.argv.find((a) => a.startsWith(`--${name}=`));
  return arg === undefined ? fallback : arg.slice(name.length + 3);
}

/**
 * @param {string} name
 * @param {number} fallback
 */
function count(name, fallback) {
  const value = Number(option(name, String(fallback)));
  if (!Number.isInteger(value) || value < 0) throw new Error(`--${name} must be an integer ≥ 0`);
  return value;
}

/**
 * The child: one app, `n` requests.
 * @param {string} framework
 * @param {Variant} variant
 * @param {number} n
 */
async function child(framework, variant, n) {
  const http = require('node:http');
  const net = require('node:net');
  const express = require(framework);
  const { withDb } = require('knex-scope');
  const knex = require('knex')({
    client: 'better-sqlite3',
    connection: { filename: ':memory:' },
    useNullAsDefault: true,
  });
  let acquires = 0;
  knex.client.pool.on('acquireRequest', () => {
    acquires++;
  });
  const app = express();
  if (variant === 'noop')
    app.use(
      (/** @type {unknown} */ _req, /** @type {unknown} */ _res, /** @type {() => void} */ next) =>
        next(),
    );
  if (variant === 'withDb') app.use(withDb(knex));
  app.get(
    '/plain',
    (/** @type {unknown} */ _req, /** @type {{ json(body: unknown): void }} */ res) => {
      res.json({ ok: true });
    },
  );
  const socket = new net.Socket();
  let ended = 0;
  for (let i = 0; i < n; i++) {
    const req = new http.IncomingMessage(socket);
    req.method = 'GET';
    req.url = '/plain';
    req.headers = { host: 'localhost' };
    const res = new http.ServerResponse(req);
    app.handle(req, res, (/** @type {unknown} */ error) => {
      throw error ?? new Error('GET /plain fell through');
    });
    if (res.writableEnded) ended++;
  }
  await knex.destroy();
  if (ended !== n) throw new Error(`${ended} of ${n} responses ended`);
  if (acquires !== 0) throw new Error(`${acquires} connections acquired`);
}

/**
 * Total instructions of one child under callgrind.
 * @param {string} framework
 * @param {Variant} variant
 * @param {number} n
 * @returns {Promise<number>}
 */
function counted(framework, variant, n) {
  return new Promise((resolve, reject) => {
    const proc = spawn(
      'valgrind',
      [
        '--tool=callgrind',
        '--callgrind-out-file=/dev/null',
        process.execPath,
        '--single-threaded',
        '--no-memory-reducer',
        __filename,
        '--child',
        framework,
        variant,
        String(n),
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
        reject(new Error(`${framework} ${variant} ${n}: exit ${code}\n${stderr.slice(-2000)}`));
      } else resolve(Number(match[1]));
    });
  });
}

async function main() {
  const low = count('low', 4000);
  const high = count('high', 36000);
  if (high <= low) throw new Error('--high must be above --low');
  const frameworks = option('frameworks', 'express').split(',');
  console.log(
    `Express middleware floor: node ${process.version} --single-threaded --no-memory-reducer under callgrind, ` +
      `instructions per request = (I(${high}) − I(${low})) / ${high - low}`,
  );
  /** @type {Record<string, Record<string, number>>} */
  const results = {};
  for (const framework of frameworks) {
    results[framework] = {};
    for (const variant of variants) {
      const [a, b] = await Promise.all([
        counted(framework, variant, low),
        counted(framework, variant, high),
      ]);
      const perRequest = (b - a) / (high - low);
      results[framework][variant] = perRequest;
      console.log(`  ${framework} ${variant}: ${(perRequest / 1000).toFixed(1)}k`);
    }
  }
  console.log(
    '\n| framework | plain | noop | withDb | plain / noop | plain / withDb | noop / withDb |',
  );
  console.log('| --- | ---: | ---: | ---: | ---: | ---: | ---: |');
  for (const [framework, r] of Object.entries(results)) {
    const { plain = Number.NaN, noop = Number.NaN, withDb = Number.NaN } = r;
    const k = (/** @type {number} */ x) => `${(x / 1000).toFixed(1)}k`;
    console.log(
      `| ${framework} | ${k(plain)} | ${k(noop)} | ${k(withDb)} | ${(plain / noop).toFixed(4)} | ` +
        `${(plain / withDb).toFixed(4)} | ${(noop / withDb).toFixed(4)} |`,
    );
  }
  const json = option('json', '');
  if (json !== '') writeFileSync(json, `${JSON.stringify({ low, high, results }, null, 2)}\n`);
}

const at = process.argv.indexOf('--child');
if (at !== -1) {
  const [framework = '', variant = 'plain', n = '0'] = process.argv.slice(at + 1);
  child(framework, /** @type {Variant} */ (variant), Number(n)).catch((error) => {
    console.error(error);
    process.exit(1);
  });
} else {
  main().catch((error) => {
    console.error(error);
    process.exit(1);
  });
}
