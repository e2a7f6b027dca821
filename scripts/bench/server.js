// @ts-check
'use strict';
// One side of an overhead benchmark, run by scripts/bench/overhead.js in a process of its own so
// that the load generator and the server do not share a CPU. It listens on an ephemeral port and
// answers its parent's messages:
//   { type: 'reset' }  → starts counting: CPU time, requests, pool acquires, queries
//   { type: 'settle' } → answers once no request is in flight and the pool is idle (at most 5 s)
//   { type: 'stats' }  → { type: 'stats', cpuUs, requests, acquires, queries, majorGcs, markedDuring, poolUsed,
//                          poolPending }  (majorGcs: V8's mark-compact collections since reset;
//                          markedDuring: whether incremental marking ran at any time since)
//   { type: 'stop' }   → closes the server and the pool, then exits
// The side is given as JSON in argv[2]: { framework, variant, connection? } (see BenchSide).
const http = require('node:http');
const v8 = require('node:v8');
const { knex: createKnex } = require('knex');
const { withDb } = require('knex-scope');

/**
 * @typedef {{
 *   framework: 'express' | 'koa';
 *   variant: 'plain' | 'withDb' | 'scope' | 'knex';
 *   noop?: boolean;
 *   currentDb?: boolean;
 *   connection?: import('knex').Knex.Config | undefined;
 * }} BenchSide
 *
 * plain:  no knex-scope, GET /plain answers { ok: true } without touching the database; with a
 *         connection the process holds a Knex instance all the same, as an app with a database does
 * withDb: app.use(withDb(config)), the same GET /plain
 * scope:  app.use(withDb(config)), GET /select: `const s = await req.db.session`, SELECT 1, commit
 * knex:   no knex-scope, GET /select: SELECT 1 in `knex.transaction(async (trx) => …)`
 * noop:      a middleware that only calls next(): what any middleware costs the framework
 * currentDb: (withDb and scope) withDb(config, { currentDb: true }): every request in an
 *            AsyncLocalStorage, which Node 20 makes every promise of the process pay for
 */

/** @type {BenchSide} */
const side = JSON.parse(process.argv[2] ?? '{}');

/** @type {import('knex-scope').Db | undefined} */
let db;
/** @type {import('knex').Knex | undefined} */
let knex;
if (side.variant === 'plain' || side.variant === 'knex') {
  if (side.connection !== undefined) knex = createKnex(side.connection);
  else if (side.variant === 'knex') throw new Error('knex needs a connection');
} else {
  if (side.connection === undefined) throw new Error(`${side.variant} needs a connection`);
  db = withDb(side.connection, { currentDb: side.currentDb === true });
  knex = db.knex;
}

const pool = /** @type {import('tarn').Pool<unknown> | undefined} */ (
  knex === undefined ? undefined : /** @type {{ pool?: unknown }} */ (knex.client).pool
);
let acquires = 0;
let queries = 0;
let requests = 0;
let errors = 0;
pool?.on('acquireSuccess', () => {
  acquires++;
});
knex?.on('query', () => {
  queries++;
});

/** @returns {http.RequestListener} */
function expressApp() {
  const express = require('express');
  const app = express();
  app.disable('x-powered-by');
  app.disable('etag');
  if (side.noop === true) app.use((_req, _res, next) => next());
  if (db !== undefined) app.use(db);
  app.get('/plain', (_req, res) => {
    res.json({ ok: true });
  });
  if (side.variant === 'scope') {
    app.get('/select', async (req, res) => {
      const s = await req.db.session;
      const rows = await s.select(s.raw('1 as one'));
      await s.commit();
      res.json(rows);
    });
  }
  if (side.variant === 'knex') {
    const root = /** @type {import('knex').Knex} */ (knex);
    app.get('/select', async (_req, res) => {
      const rows = await root.transaction(async (trx) => trx.select(trx.raw('1 as one')));
      res.json(rows);
    });
  }
  // autocannon ends a round by closing its connections, requests in flight included: their scopes
  // end with the client (as they should) and the handlers' next query fails with ScopeClosedError.
  // Answer quietly instead of logging every such stack, as Express's default handler would.
  /**
   * @param {unknown} _error
   * @param {import('express').Request} _req
   * @param {import('express').Response} res
   * @param {import('express').NextFunction} _next
   */
  const onError = (_error, _req, res, _next) => {
    errors++;
    res.status(500).end();
  };
  app.use(onError);
  return app;
}

/** @returns {http.RequestListener} */
function koaApp() {
  const Koa = require('koa');
  const app = new Koa();
  if (side.noop === true) app.use((_ctx, next) => next());
  if (db !== undefined) app.use(db);
  app.silent = true;
  app.use((ctx) => {
    if (ctx.path === '/plain') ctx.body = { ok: true };
  });
  return app.callback();
}

const server = http.createServer(side.framework === 'koa' ? koaApp() : expressApp());
let inFlight = 0;
server.on('request', (_req, res) => {
  requests++;
  inFlight++;
  res.once('close', () => {
    inFlight--;
  });
});
let cpuStart = process.cpuUsage();

// Counted synchronously when asked (a PerformanceObserver hears of a collection only later).
let gcProfiler = new v8.GCProfiler();
gcProfiler.start();
let majorGcs = 0;
// Whether incremental marking ran during the counted period: a round can hold marking steps, which
// cost as much as a good part of a collection, and still end before the collection does.
let marking = false;
let markedDuring = false;
function readCollections() {
  const { statistics } = gcProfiler.stop();
  for (const gc of statistics) {
    if (gc.gcType === 'IncrementalMarking') {
      marking = true;
      markedDuring = true;
    } else if (gc.gcType === 'MarkSweepCompact') {
      majorGcs++;
      marking = false;
      markedDuring = true;
    }
  }
  gcProfiler = new v8.GCProfiler();
  gcProfiler.start();
}

/**
 * Waits (up to 5 s) for the requests autocannon left in flight to finish and for the pool to be
 * idle again: a request cut off by the client ends at once, its ROLLBACK a moment later.
 */
async function settle() {
  const deadline = Date.now() + 5_000;
  const busy = () =>
    inFlight > 0 ||
    (pool !== undefined &&
      pool.numUsed() + pool.numPendingAcquires() + pool.numPendingCreates() > 0);
  while (busy() && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

// Lets the handlers autocannon left in flight finish before the pool goes away.
async function stop() {
  gcProfiler.stop();
  const closed = new Promise((resolve) => server.close(() => resolve(undefined)));
  server.closeIdleConnections();
  await settle();
  server.closeAllConnections();
  await closed;
  if (db !== undefined) await db.destroy();
  else await knex?.destroy();
  process.disconnect?.();
}

const send = (/** @type {unknown} */ message) => process.send?.(message);

process.on('message', (/** @type {{ type: string }} */ message) => {
  if (message.type === 'reset') {
    requests = 0;
    errors = 0;
    acquires = 0;
    queries = 0;
    readCollections();
    majorGcs = 0;
    markedDuring = marking;
    cpuStart = process.cpuUsage();
    send({ type: 'reset' });
  } else if (message.type === 'stats') {
    const cpu = process.cpuUsage(cpuStart);
    readCollections();
    send({
      type: 'stats',
      cpuUs: cpu.user + cpu.system,
      requests,
      errors,
      acquires,
      queries,
      majorGcs,
      markedDuring,
      poolUsed: pool?.numUsed() ?? 0,
      poolPending: (pool?.numPendingAcquires() ?? 0) + (pool?.numPendingCreates() ?? 0),
    });
  } else if (message.type === 'settle') {
    settle().then(() => send({ type: 'settle' }));
  } else if (message.type === 'stop') {
    stop().catch((error) => {
      console.error(error);
      process.exit(1);
    });
  }
});
// If the parent goes away, do not linger.
process.on('disconnect', () => {
  server.close();
  server.closeAllConnections();
  void (db?.destroy() ?? knex?.destroy());
});

server.listen(0, '127.0.0.1', () => {
  const { port } = /** @type {import('node:net').AddressInfo} */ (server.address());
  send({ type: 'ready', port });
});
