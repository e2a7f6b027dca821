// @ts-check
'use strict';
// The apps and the load generator of the leak soak, shared by scripts/bench/soak.js (tens of thousands
// of requests) and __tests__/db/soak.test.ts (a few hundred, on every test database). Every route
// uses the request's scope a different way, including every way of getting it wrong: a thrown
// error, a session never committed, and a client that goes away while the handler is awaiting
// inside a transaction. Afterwards the pool must be empty and the table must hold exactly one row
// per 201 response.
const { once } = require('node:events');
const http = require('node:http');

/**
 * @typedef {'commit' | 'throw' | 'forgotten' | 'lazy' | 'abort' | 'read' | 'plain'} ScopeRoute
 * @typedef {'auto' | 'auto-fail' | 'auto-throw'} AutoRoute
 * @typedef {ScopeRoute | AutoRoute} SoakRoute
 *
 * What the server saw. `unexpected` must stay empty: any error other than the routes' own.
 * @typedef {{
 *   committed: number;
 *   abortEntered: number;
 *   abortRejected: number;
 *   abortCommitted: number;
 *   abortFailed: number;
 *   abortLateNotice: number;
 *   unexpected: string[];
 * }} SoakServerStats
 *
 * What the client saw.
 * @typedef {{
 *   sent: number;
 *   created: number;
 *   aborted: number;
 *   failed: number;
 *   byRoute: Record<string, Record<string, number>>;
 *   errors: string[];
 * }} SoakLoadResult
 */

/**
 * The route mix, 20 requests long, repeated: 6 commits, 2 throws, 2 forgotten `getSession()`s,
 * 2 lazy sessions never committed, 1 client abort, 2 callback reads, 5 that never touch the
 * database.
 * @type {readonly SoakRoute[]}
 */
const defaultMix = [
  'commit',
  'plain',
  'throw',
  'commit',
  'forgotten',
  'plain',
  'lazy',
  'commit',
  'read',
  'abort',
  'commit',
  'plain',
  'throw',
  'commit',
  'forgotten',
  'plain',
  'lazy',
  'commit',
  'read',
  'plain',
];

/**
 * The default mix plus the routes of a `commit: 'on-success'` db (`autoHandlers`), 24 long: 2 that
 * succeed (201, committed by the middleware), 1 that answers 422 and 1 that throws (both rolled
 * back by it).
 * @type {readonly SoakRoute[]}
 */
const onSuccessMix = [...defaultMix, 'auto', 'auto-fail', 'auto', 'auto-throw'];

/**
 * What the client should see for each route: a status, or `aborted` for the socket it destroyed.
 * @type {Readonly<Record<SoakRoute, string>>}
 */
const expectedOutcome = {
  commit: '201',
  throw: '500',
  forgotten: '200',
  lazy: '200',
  abort: 'aborted',
  read: '200',
  plain: '200',
  auto: '201',
  'auto-fail': '422',
  'auto-throw': '500',
};

/**
 * The outcomes the client saw that the route should not produce, as `route status ×count`.
 * @param {SoakLoadResult} load
 * @returns {string[]}
 */
function unexpectedOutcomes(load) {
  const wrong = [];
  for (const [route, outcomes] of Object.entries(load.byRoute)) {
    for (const [outcome, n] of Object.entries(outcomes)) {
      if (expectedOutcome[/** @type {SoakRoute} */ (route)] !== outcome) {
        wrong.push(`${route} ${outcome} ×${n}`);
      }
    }
  }
  return wrong;
}

/** The error the `throw` route throws on purpose; anything else that reaches the error handler is counted as unexpected. */
class SoakError extends Error {
  constructor() {
    super('thrown on purpose by the soak route');
    this.name = 'SoakError';
  }
}

/**
 * Lets the client destroy its socket exactly while the `abort` handler is awaiting inside its
 * transaction: the handler calls `entered(id)`, the client waits for it with `wait(id, …)`.
 * Server and client must share one process (and one probe).
 */
class AbortProbe {
  constructor() {
    /** @type {Map<string, () => void>} */
    this.waiting = new Map();
    /** @type {Set<string>} */
    this.early = new Set();
  }

  /**
   * @param {string} id
   * @param {() => void} callback
   */
  wait(id, callback) {
    if (this.early.delete(id)) callback();
    else this.waiting.set(id, callback);
  }

  /** @param {string} id */
  cancel(id) {
    this.waiting.delete(id);
    this.early.delete(id);
  }

  /** @param {string} id */
  entered(id) {
    const callback = this.waiting.get(id);
    if (callback === undefined) {
      this.early.add(id);
      return;
    }
    this.waiting.delete(id);
    callback();
  }
}

/** @param {number} ms */
const delay = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Resolves when the scope ends, or after `ms` if it does not.
 * @param {import('knex-scope').Scope} scope
 * @param {number} ms
 */
async function endOf(scope, ms) {
  const timeout = AbortSignal.timeout(ms);
  await once(scope.signal, 'abort', { signal: timeout }).catch(() => {});
}

/** @returns {SoakServerStats} */
function emptyServerStats() {
  return {
    committed: 0,
    abortEntered: 0,
    abortRejected: 0,
    abortCommitted: 0,
    abortFailed: 0,
    abortLateNotice: 0,
    unexpected: [],
  };
}

/**
 * Creates the soak table `name (id, route)`.
 * @param {import('knex').Knex} knex
 * @param {string} name
 */
async function createSoakTable(knex, name) {
  await knex.schema.dropTableIfExists(name);
  await knex.schema.createTable(name, (t) => {
    t.increments('id');
    t.string('route', 20).notNullable();
  });
}

/**
 * The rows of `table` by route, read outside any scope.
 * @param {import('knex').Knex} knex
 * @param {string} table
 * @returns {Promise<Record<string, number>>}
 */
async function rowsByRoute(knex, table) {
  /** @type {{ route: string; n: number | string }[]} */
  const rows = await knex(table).select('route').count({ n: '*' }).groupBy('route');
  /** @type {Record<string, number>} */
  const result = {};
  for (const row of rows) result[row.route] = Number(row.n);
  return result;
}

/**
 * One handler per route, framework-neutral: `scope` is `req.db` / `ctx.db`, `id` the request's
 * x-soak-id header. Returns the status to respond with (the `throw` route throws instead).
 * @param {string} table
 * @param {SoakServerStats} stats
 * @param {{ probe?: AbortProbe | undefined; abortDelayMs?: number | undefined }} options
 * @returns {Record<ScopeRoute, (scope: import('knex-scope').Scope, id: string) => Promise<number>>}
 */
function soakHandlers(table, stats, options) {
  const abortDelayMs = options.abortDelayMs ?? 50;
  return {
    // Lazy session, committed before responding: the only route whose row must stay.
    async commit(scope) {
      const trx = await scope.session;
      await trx(table).insert({ route: 'commit' });
      await trx.commit();
      stats.committed++;
      return 201;
    },
    // Inserts, then throws: the framework answers 500 and the insert is rolled back.
    async throw(scope) {
      const trx = await scope.session;
      await trx(table).insert({ route: 'throw' });
      throw new SoakError();
    },
    // An explicit session the handler forgets: rolled back when the response ends.
    async forgotten(scope) {
      const trx = await scope.getSession();
      await trx(table).insert({ route: 'forgotten' });
      return 200;
    },
    // The lazy session, never committed: rolled back when the response ends.
    async lazy(scope) {
      const trx = await scope.session;
      await trx(table).insert({ route: 'lazy' });
      return 200;
    },
    // Inserts, tells the client (which then destroys its socket), awaits a delay inside the
    // transaction, then tries to write and commit: the scope ended with the client, so that must
    // fail. If the server has not noticed the disconnect when the delay is over (the process was
    // not scheduled for longer than the delay, and Node runs due timers before it polls sockets),
    // it waits for the scope to end first and counts a late notice: a handler that commits before
    // the server learns the client is gone commits, with any framework.
    async abort(scope, id) {
      const trx = await scope.session;
      await trx(table).insert({ route: 'abort' });
      stats.abortEntered++;
      const entered = Date.now();
      options.probe?.entered(id);
      await delay(abortDelayMs);
      if (!scope.ended) {
        stats.abortLateNotice++;
        await endOf(scope, 5_000);
      }
      try {
        await trx(table).insert({ route: 'abort' });
        await trx.commit();
      } catch (error) {
        if (error instanceof Error && error.name === 'ScopeClosedError') {
          stats.abortRejected++;
          return 409;
        }
        stats.abortFailed++;
        throw error;
      }
      stats.abortCommitted++;
      stats.unexpected.push(
        `abort ${id}: committed ${Date.now() - entered} ms after the client disconnected ` +
          `(scope.ended ${scope.ended}, scope.aborted ${scope.aborted})`,
      );
      return 200;
    },
    // A callback session that only reads: committed by the callback form.
    async read(scope) {
      await scope.getSession((trx) => trx(table).count({ n: '*' }));
      return 200;
    },
    // Never touches the database.
    async plain() {
      return 200;
    },
  };
}

/**
 * The routes of the `commit: 'on-success'` db: `scope` is its scope (`req.auto`), whose lazy
 * session the middleware commits when the handler succeeded with a status below 400, and rolls
 * back otherwise. Only `auto` may leave a row.
 * @param {string} table
 * @returns {Record<AutoRoute, (scope: import('knex-scope').Scope) => Promise<number>>}
 */
function autoHandlers(table) {
  return {
    async auto(scope) {
      const trx = await scope.session;
      await trx(table).insert({ route: 'auto' });
      return 201;
    },
    async 'auto-fail'(scope) {
      const trx = await scope.session;
      await trx(table).insert({ route: 'auto-fail' });
      return 422;
    },
    async 'auto-throw'(scope) {
      const trx = await scope.session;
      await trx(table).insert({ route: 'auto-throw' });
      throw new SoakError();
    },
  };
}

/**
 * Every route's handler as `(request's scopes, id) => status`: the scope routes read `scopes.db`,
 * the `auto` routes `scopes.auto` (present only when the app mounts a `commit: 'on-success'` db).
 * @param {string} table
 * @param {SoakServerStats} stats
 * @param {{ probe?: AbortProbe | undefined; abortDelayMs?: number | undefined; auto?: boolean }} options
 * @returns {Map<string, (scopes: () => { db: import('knex-scope').Scope; auto?: import('knex-scope').Scope | undefined }, id: string) => Promise<number>>}
 */
function allHandlers(table, stats, options) {
  const routes = new Map();
  for (const [route, handler] of Object.entries(soakHandlers(table, stats, options))) {
    routes.set(
      route,
      (/** @type {() => { db: import('knex-scope').Scope }} */ scopes, /** @type {string} */ id) =>
        handler(scopes().db, id),
    );
  }
  if (options.auto) {
    for (const [route, handler] of Object.entries(autoHandlers(table))) {
      routes.set(
        route,
        (/** @type {() => { auto?: import('knex-scope').Scope | undefined }} */ scopes) => {
          const auto = scopes().auto;
          if (auto === undefined)
            throw new Error(`route ${route} needs the commit: 'on-success' db`);
          return handler(auto);
        },
      );
    }
  }
  return routes;
}

/**
 * @param {unknown} error
 * @param {SoakServerStats} stats
 */
function noteError(error, stats) {
  if (error instanceof SoakError) return;
  if (stats.unexpected.length < 20) {
    stats.unexpected.push(
      error instanceof Error ? `${error.name}: ${error.message}` : String(error),
    );
  }
}

/**
 * The soak's Express app: `POST /<route>` for every route of the mix.
 * @param {import('knex-scope').Db} db
 * @param {{ table: string; probe?: AbortProbe; abortDelayMs?: number; express?: typeof import('express') }} options
 */
function createExpressSoakApp(db, options) {
  const express = options.express ?? require('express');
  const stats = emptyServerStats();
  const handlers = soakHandlers(options.table, stats, options);
  const app = express();
  app.disable('x-powered-by');
  app.disable('etag');
  app.use(db);
  for (const [route, handler] of Object.entries(handlers)) {
    // Express 4 does not catch rejected promises, so every handler passes its failure to next().
    app.post(`/${route}`, (req, res, next) => {
      handler(req.db, String(req.headers['x-soak-id'] ?? '')).then((status) => {
        res.status(status).end();
      }, next);
    });
  }
  /**
   * @param {unknown} error
   * @param {import('express').Request} _req
   * @param {import('express').Response} res
   * @param {import('express').NextFunction} _next
   */
  const onError = (error, _req, res, _next) => {
    noteError(error, stats);
    res.status(500).end();
  };
  app.use(onError);
  return { app, stats };
}

/**
 * The soak's Koa app: the same routes.
 * @param {import('knex-scope').Db} db
 * @param {{ table: string; probe?: AbortProbe; abortDelayMs?: number; Koa?: typeof import('koa') }} options
 */
function createKoaSoakApp(db, options) {
  const Koa = options.Koa ?? require('koa');
  const stats = emptyServerStats();
  const handlers = soakHandlers(options.table, stats, options);
  const app = new Koa();
  app.silent = true;
  app.use(async (ctx, next) => {
    try {
      await next();
    } catch (error) {
      noteError(error, stats);
      ctx.status = 500;
    }
  });
  app.use(db);
  app.use(async (ctx) => {
    const handler = handlers[/** @type {ScopeRoute} */ (ctx.path.slice(1))];
    if (ctx.method !== 'POST' || handler === undefined) {
      ctx.status = 404;
      return;
    }
    ctx.status = await handler(ctx.db, String(ctx.get('x-soak-id')));
    ctx.body = '';
  });
  return { app, stats };
}

/**
 * The soak's Fastify app (a Fastify 5 plugin from knex-scope/fastify): the same routes; with
 * `autoDb` (a `commit: 'on-success'` db on the `auto` property), the `auto` routes too.
 * @param {import('knex-scope/fastify').Db} db
 * @param {{ table: string; probe?: AbortProbe; abortDelayMs?: number; autoDb?: import('knex-scope/fastify').Db }} options
 * @returns {Promise<{ listener: http.RequestListener; stats: SoakServerStats }>}
 */
async function createFastifySoakApp(db, options) {
  const Fastify = require('fastify');
  const stats = emptyServerStats();
  const handlers = allHandlers(options.table, stats, {
    ...options,
    auto: options.autoDb !== undefined,
  });
  /** @type {http.RequestListener | undefined} */
  let listener;
  const app = Fastify({
    serverFactory: (handler) => {
      listener = handler;
      return http.createServer(handler);
    },
  });
  app.setErrorHandler((error, _request, reply) => {
    noteError(error, stats);
    reply.code(500).send();
  });
  await app.register(db);
  if (options.autoDb !== undefined) await app.register(options.autoDb);
  for (const [route, handler] of handlers) {
    app.post(`/${route}`, async (request, reply) => {
      const scopes = () => ({
        db: request.db,
        auto: /** @type {{ auto?: import('knex-scope').Scope }} */ (
          /** @type {unknown} */ (request)
        ).auto,
      });
      reply.code(await handler(scopes, String(request.headers['x-soak-id'] ?? '')));
      return '';
    });
  }
  await app.ready();
  if (listener === undefined) throw new Error('Fastify did not call serverFactory');
  return { listener, stats };
}

/**
 * The soak's Hono app on @hono/node-server's request listener: the same routes; with `autoDb`, the
 * `auto` routes too.
 * @param {import('knex-scope/hono').Db} db
 * @param {{ table: string; probe?: AbortProbe; abortDelayMs?: number; autoDb?: import('knex-scope/hono').Db<'auto'> }} options
 * @returns {{ listener: http.RequestListener; stats: SoakServerStats }}
 */
function createHonoSoakApp(db, options) {
  const { Hono } = require('hono');
  const { getRequestListener } = require('@hono/node-server');
  const stats = emptyServerStats();
  const handlers = allHandlers(options.table, stats, {
    ...options,
    auto: options.autoDb !== undefined,
  });
  const app = new Hono();
  app.onError((error, c) => {
    noteError(error, stats);
    return c.body(null, 500);
  });
  app.use(db);
  if (options.autoDb !== undefined) app.use(options.autoDb);
  for (const [route, handler] of handlers) {
    app.post(`/${route}`, async (c) => {
      const scopes = () => ({
        db: c.var.db,
        auto: /** @type {import('knex-scope').Scope | undefined} */ (
          c.get(/** @type {never} */ ('auto'))
        ),
      });
      const status = await handler(scopes, c.req.header('x-soak-id') ?? '');
      return c.body(null, /** @type {201} */ (status));
    });
  }
  return { listener: getRequestListener(app.fetch), stats };
}

/**
 * Listens on an ephemeral port of 127.0.0.1.
 * @param {http.RequestListener} listener
 * @returns {Promise<{ server: http.Server; url: string; close: () => Promise<void> }>}
 */
async function listen(listener) {
  const server = http.createServer(listener);
  await new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(undefined)));
  const { port } = /** @type {import('node:net').AddressInfo} */ (server.address());
  return {
    server,
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise((resolve, reject) => {
        server.close((error) => (error ? reject(error) : resolve()));
        server.closeAllConnections();
      }),
  };
}

/**
 * Sends `total` requests, `concurrency` at a time, cycling through `mix`, over keep-alive
 * connections. For `abort`, it destroys the socket once the handler says it is awaiting inside its
 * transaction (or after `abortFallbackMs` if it never says so).
 * @param {{
 *   url: string;
 *   total: number;
 *   concurrency: number;
 *   probe: AbortProbe;
 *   mix?: readonly SoakRoute[];
 *   abortFallbackMs?: number;
 *   requestTimeoutMs?: number;
 * }} options
 * @returns {Promise<SoakLoadResult>}
 */
async function runSoakLoad(options) {
  const mix = options.mix ?? defaultMix;
  const agent = new http.Agent({ keepAlive: true, maxSockets: options.concurrency });
  /** @type {SoakLoadResult} */
  const result = { sent: 0, created: 0, aborted: 0, failed: 0, byRoute: {}, errors: [] };
  let next = 0;
  /**
   * @param {string} route
   * @param {string} outcome
   */
  const count = (route, outcome) => {
    const counts = result.byRoute[route] ?? {};
    result.byRoute[route] = counts;
    counts[outcome] = (counts[outcome] ?? 0) + 1;
  };
  /**
   * @param {number} index
   * @returns {Promise<void>}
   */
  const send = (index) =>
    new Promise((resolve) => {
      const route = /** @type {SoakRoute} */ (mix[index % mix.length]);
      const id = `${process.pid}-${index}`;
      result.sent++;
      let settled = false;
      /** @type {NodeJS.Timeout | undefined} */
      let fallback;
      /** @param {string} outcome */
      const done = (outcome) => {
        if (settled) return;
        settled = true;
        if (fallback !== undefined) clearTimeout(fallback);
        options.probe.cancel(id);
        count(route, outcome);
        resolve();
      };
      const request = http.request(`${options.url}/${route}`, {
        method: 'POST',
        agent,
        headers: { 'x-soak-id': id, 'content-length': 0 },
        timeout: options.requestTimeoutMs ?? 30_000,
      });
      request.on('response', (response) => {
        response.resume();
        response.on('end', () => {
          const status = response.statusCode ?? 0;
          if (status === 201) result.created++;
          done(String(status));
        });
        response.on('error', () => done('response error'));
      });
      request.on('timeout', () => {
        if (result.errors.length < 20) result.errors.push(`${route}: timed out`);
        result.failed++;
        request.destroy();
      });
      request.on('error', (error) => {
        if (route === 'abort') {
          result.aborted++;
          done('aborted');
          return;
        }
        result.failed++;
        if (result.errors.length < 20) result.errors.push(`${route}: ${error.message}`);
        done('error');
      });
      if (route === 'abort') {
        const abort = () => request.destroy();
        options.probe.wait(id, abort);
        fallback = setTimeout(() => {
          options.probe.cancel(id);
          abort();
        }, options.abortFallbackMs ?? 5_000);
      }
      request.end();
    });

  const worker = async () => {
    for (;;) {
      const index = next++;
      if (index >= options.total) return;
      await send(index);
    }
  };
  try {
    await Promise.all(Array.from({ length: options.concurrency }, worker));
  } finally {
    agent.destroy();
  }
  return result;
}

/**
 * The pool's counters.
 * @param {import('knex').Knex} knex
 */
function poolCounters(knex) {
  const pool = /** @type {import('tarn').Pool<unknown>} */ (
    /** @type {{ pool: unknown }} */ (knex.client).pool
  );
  return {
    used: pool.numUsed(),
    free: pool.numFree(),
    pendingAcquires: pool.numPendingAcquires(),
    pendingCreates: pool.numPendingCreates(),
  };
}

/**
 * Polls until every `abort` handler that entered has finished (they outlive their requests), or
 * `timeoutMs` pass.
 * @param {SoakServerStats} stats
 * @param {number} [timeoutMs]
 */
async function settledHandlers(stats, timeoutMs = 5_000) {
  const deadline = Date.now() + timeoutMs;
  while (stats.abortEntered > stats.abortRejected + stats.abortCommitted + stats.abortFailed) {
    if (Date.now() > deadline) return false;
    await delay(10);
  }
  return true;
}

/**
 * Polls until the pool has nothing in use and nothing pending, or `timeoutMs` pass; returns the
 * last counters. The `abort` handlers may still be in their delay when the load ends.
 * @param {import('knex').Knex} knex
 * @param {number} [timeoutMs]
 */
async function settledPool(knex, timeoutMs = 5_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const counters = poolCounters(knex);
    const idle =
      counters.used === 0 && counters.pendingAcquires === 0 && counters.pendingCreates === 0;
    if (idle || Date.now() > deadline) return counters;
    await delay(10);
  }
}

module.exports = {
  AbortProbe,
  SoakError,
  createExpressSoakApp,
  createFastifySoakApp,
  createHonoSoakApp,
  createKoaSoakApp,
  createSoakTable,
  defaultMix,
  onSuccessMix,
  emptyServerStats,
  expectedOutcome,
  listen,
  poolCounters,
  rowsByRoute,
  runSoakLoad,
  settledHandlers,
  settledPool,
  unexpectedOutcomes,
};
