// @ts-check
'use strict';
// What knex-scope's diagnostics channels and its OpenTelemetry instrumentation cost per request,
// counted in instructions without HTTP: each app handles N fabricated requests in-process (an
// IncomingMessage and a ServerResponse with no socket) under `valgrind --tool=callgrind`, and
// (I(high) − I(low)) / (high − low) is the cost of one request, for Express and Koa, a route
// without database and one with one SELECT in the lazy session (committed) on an in-memory SQLite
// database; requests run one after another. To compare two builds with nothing subscribed,
// instructions.js --in-process with BENCH_PACKAGE repeats better (BENCHMARKS.md).
//
//   npm run build && node scripts/bench/observability.js --lib=. --lib=/tmp/base
//       each --lib is a package folder (its dist/ is loaded): this branch against a build of main
//   node scripts/bench/observability.js --lib=. --otel      also: the OpenTelemetry SDK registered
//       (AsyncLocalStorage context manager, a BatchSpanProcessor and a metric reader whose
//       exporters discard) without and with instrumentKnexScope; --otel-only: only those two
//
// Options: --low=N (2000) --high=N (12000) --frameworks=express,koa --routes=plain,select
// --env=production|development (NODE_ENV of the children; production: nothing listens; the
// default onForgotten is 'warn' elsewhere) --json=FILE. Needs valgrind.
const { spawn } = require('node:child_process');
const { writeFileSync } = require('node:fs');
const { resolve } = require('node:path');

/** @param {string} name */
function options(name) {
  return process.argv
    .filter((a) => a.startsWith(`--${name}=`))
    .map((a) => a.slice(name.length + 3));
}

/** @param {string} name @param {string} fallback */
function option(name, fallback) {
  return options(name)[0] ?? fallback;
}

/**
 * The child: one app, `n` requests.
 * @param {{ lib: string; framework: string; route: string; otel: string }} side
 * @param {number} n
 */
async function child(side, n) {
  const http = require('node:http');
  const net = require('node:net');
  const { withDb } = require(resolve(side.lib, 'dist'));
  let instrumentation;
  if (side.otel !== 'none') {
    const { context } = require('@opentelemetry/api');
    const { AsyncLocalStorageContextManager } = require('@opentelemetry/context-async-hooks');
    const { BasicTracerProvider, BatchSpanProcessor } = require('@opentelemetry/sdk-trace-base');
    const { MeterProvider, PeriodicExportingMetricReader } = require('@opentelemetry/sdk-metrics');
    const discard = {
      export(/** @type {unknown} */ _items, /** @type {(r: { code: number }) => void} */ done) {
        done({ code: 0 });
      },
      async shutdown() {},
      async forceFlush() {},
    };
    context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
    const tracerProvider = new BasicTracerProvider({
      spanProcessors: [new BatchSpanProcessor(/** @type {never} */ (discard))],
    });
    const meterProvider = new MeterProvider({
      readers: [
        new PeriodicExportingMetricReader({
          exporter: /** @type {never} */ (discard),
          exportIntervalMillis: 1_000,
        }),
      ],
    });
    if (side.otel === 'instrumented') {
      const { instrumentKnexScope } = require(
        resolve(side.lib, 'dist/observability/opentelemetry'),
      );
      instrumentation = instrumentKnexScope({ tracerProvider, meterProvider });
    }
  }
  const db = withDb({
    client: 'better-sqlite3',
    connection: { filename: ':memory:' },
    useNullAsDefault: true,
  });
  /** @type {(req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse) => void} */
  let handle;
  if (side.framework === 'koa') {
    const Koa = require('koa');
    const app = new Koa();
    app.use(db);
    app.use(async (/** @type {any} */ ctx) => {
      if (ctx.path === '/select') {
        const trx = await ctx.db.session;
        const rows = await trx.raw('select 1 as one');
        await trx.commit();
        ctx.body = { rows: rows.length };
      } else ctx.body = { ok: true };
    });
    handle = app.callback();
  } else {
    const express = require('express');
    const app = express();
    app.disable('x-powered-by');
    app.disable('etag');
    app.use(db);
    app.get('/plain', (/** @type {unknown} */ _req, /** @type {any} */ res) => {
      res.json({ ok: true });
    });
    app.get('/select', async (/** @type {any} */ req, /** @type {any} */ res) => {
      const trx = await req.db.session;
      const rows = await trx.raw('select 1 as one');
      await trx.commit();
      res.json({ rows: rows.length });
    });
    handle = (req, res) =>
      /** @type {any} */ (app).handle(req, res, (/** @type {unknown} */ error) => {
        throw error ?? new Error('fell through');
      });
  }
  const socket = new net.Socket();
  let ended = 0;
  const path = side.route === 'select' ? '/select' : '/plain';
  for (let i = 0; i < n; i++) {
    const req = new http.IncomingMessage(socket);
    req.method = 'GET';
    req.url = path;
    req.headers = { host: 'localhost' };
    const res = new http.ServerResponse(req);
    handle(req, res);
    while (!res.writableEnded) await new Promise((done) => setImmediate(done));
    if (res.statusCode === 200) ended++;
  }
  instrumentation?.disable();
  await db.destroy();
  if (ended !== n) throw new Error(`${ended} of ${n} responses were 200`);
  process.exit(0);
}

/**
 * Total instructions of one child under callgrind.
 * @param {{ lib: string; framework: string; route: string; otel: string }} side
 * @param {number} n
 * @param {string} env
 * @returns {Promise<number>}
 */
function counted(side, n, env) {
  return new Promise((done, reject) => {
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
        JSON.stringify(side),
        String(n),
      ],
      { stdio: ['ignore', 'inherit', 'pipe'], env: { ...process.env, NODE_ENV: env } },
    );
    let stderr = '';
    proc.stderr.on('data', (chunk) => {
      stderr += chunk;
    });
    proc.on('error', reject);
    proc.on('close', (code) => {
      const match = /Collected : (\d+)/.exec(stderr);
      if (code !== 0 || match === null) {
        reject(new Error(`${JSON.stringify(side)} ${n}: exit ${code}\n${stderr.slice(-2000)}`));
      } else done(Number(match[1]));
    });
  });
}

async function main() {
  const low = Number(option('low', '2000'));
  const high = Number(option('high', '12000'));
  const libs = options('lib').length === 0 ? ['.'] : options('lib');
  const frameworks = option('frameworks', 'express,koa').split(',');
  const routes = option('routes', 'plain,select').split(',');
  const env = option('env', 'production');
  const otel = process.argv.includes('--otel') || process.argv.includes('--otel-only');
  console.log(
    `node ${process.version} --single-threaded --no-memory-reducer under callgrind, NODE_ENV=${env}, ` +
      `instructions per request = (I(${high}) − I(${low})) / ${high - low}`,
  );
  /** @type {{ lib: string; framework: string; route: string; otel: string; perRequest: number }[]} */
  const results = [];
  for (const framework of frameworks) {
    for (const route of routes) {
      const sides = process.argv.includes('--otel-only')
        ? []
        : libs.map((lib) => ({ lib, framework, route, otel: 'none' }));
      if (otel) {
        sides.push({ lib: libs[0] ?? '.', framework, route, otel: 'sdk' });
        sides.push({ lib: libs[0] ?? '.', framework, route, otel: 'instrumented' });
      }
      for (const side of sides) {
        const [a, b] = await Promise.all([counted(side, low, env), counted(side, high, env)]);
        const perRequest = (b - a) / (high - low);
        results.push({ ...side, perRequest });
        console.log(
          `  ${framework} ${route} lib=${side.lib} otel=${side.otel}: ${(perRequest / 1000).toFixed(1)}k`,
        );
      }
    }
  }
  const json = option('json', '');
  if (json !== '') writeFileSync(json, `${JSON.stringify({ low, high, env, results }, null, 2)}\n`);
}

const at = process.argv.indexOf('--child');
if (at !== -1) {
  const [side = '{}', n = '0'] = process.argv.slice(at + 1);
  child(JSON.parse(side), Number(n)).catch((error) => {
    console.error(error);
    process.exit(1);
  });
} else {
  main().catch((error) => {
    console.error(error);
    process.exit(1);
  });
}
