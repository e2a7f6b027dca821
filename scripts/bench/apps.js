// @ts-check
'use strict';
// The apps the overhead benchmarks compare: one side of a scenario (scenarios.js) is one app with
// one route, GET /, built here as a Node request listener, which server.js serves over HTTP or
// hands fabricated requests in-process (drive.js). A new framework is a new case in `createApp`;
// a new kind of route or middleware, a new value of `route` or `middleware` handled in each
// framework's builder.
const { mkdtempSync, rmSync } = require('node:fs');
const os = require('node:os');
const { join, resolve } = require('node:path');
const { servers } = require('../probe-databases');

/**
 * @typedef {'express' | 'express4' | 'koa' | 'koa2' | 'fastify' | 'hono'} Framework
 * @typedef {'sqlite' | 'postgres' | 'mariadb'} Database
 * @typedef {{
 *   framework: Framework;
 *   middleware?: 'noop' | 'noop-hooks' | 'withDb' | undefined;
 *   route: 'plain' | 'knex' | 'knex-trx' | 'scope';
 *   database?: Database | undefined;
 *   currentDb?: boolean | undefined;
 * }} Side
 *
 * framework   express and koa are Express 5 and Koa 3; express4 and koa2 the older majors, installed
 *             under those aliases; fastify is Fastify 5, hono Hono 4 on @hono/node-server's listener
 * middleware  what the app gets before the route: nothing (undefined), a middleware that only
 *             passes the request on (`(req, res, next) => next()`, Koa `async (ctx, next) =>
 *             next()`, a Fastify `onRequest` hook calling `done()`, Hono `async (c, next) => {
 *             await next(); }`), or `withDb(config)` from the framework's entry; Fastify only:
 *             noop-hooks, withDb's three hooks (onRequest, onError, onSend), each a no-op, with
 *             its request decorator declared: the floor any plugin that ends a scope before the
 *             response is written stands on
 * route       plain: answers { ok: true } without touching the database
 *             knex:  SELECT 1 in a hand-written `knex.transaction(async (trx) => …)`
 *             knex-trx: SELECT 1 in `const trx = await knex.transaction()`, committed by hand
 *                    (rolled back on error): what the lazy session does, with Knex alone
 *             scope: SELECT 1 through `const s = await req.db.session` (`ctx.db`), then commit;
 *                    needs middleware withDb
 * database    sqlite (default: a temp file of the process's own), postgres, mariadb
 *             (scripts/probe-databases.js); every side holds a Knex instance, used or not
 * currentDb   withDb(config, { currentDb: true })
 */

/**
 * A framework by name; the older majors are installed under aliases.
 * @param {Framework} name
 * @returns {any}
 */
function loadFramework(name) {
  if (!['express', 'express4', 'koa', 'koa2', 'fastify', 'hono'].includes(name)) {
    throw new Error(`unknown framework ${name} (express, express4, koa, koa2, fastify or hono)`);
  }
  return require(name);
}

/**
 * knex-scope's entry for `framework` (`knex-scope`, `knex-scope/fastify`, `knex-scope/hono`): the
 * build in dist/ (`npm run build`), or the one BENCH_PACKAGE names, so that two builds of the
 * library can be measured against each other
 * (`npx tsc -p tsconfig.build.json --outDir .tmp/builds/x`, then `BENCH_PACKAGE=.tmp/builds/x`).
 * @param {Framework} [framework]
 * @returns {typeof import('knex-scope')}
 */
function loadKnexScope(framework = 'express') {
  const dir = process.env.BENCH_PACKAGE;
  const own = framework === 'fastify' || framework === 'hono';
  if (dir === undefined || dir === '')
    return require(own ? `knex-scope/${framework}` : 'knex-scope');
  return require(own ? resolve(dir, 'adapters', framework) : resolve(dir));
}

/**
 * The Knex config of `database`; SQLite files go in `dir`.
 * @param {Database} database
 * @param {{ dir: string; poolMax: number }} options
 * @returns {import('knex').Knex.Config}
 * @example
 *   databaseConfig('postgres', { dir: tmp, poolMax: 10 });
 */
function databaseConfig(database, { dir, poolMax }) {
  if (database === 'sqlite') {
    return {
      client: 'better-sqlite3',
      connection: { filename: join(dir, 'bench.sqlite') },
      useNullAsDefault: true,
    };
  }
  if (database === 'postgres' || database === 'mariadb') {
    return {
      client: database === 'postgres' ? 'pg' : 'mysql2',
      connection: servers[database],
      pool: { min: 0, max: poolMax },
    };
  }
  throw new Error(`unknown database ${database} (sqlite, postgres or mariadb)`);
}

/**
 * What a side is, in a few words, for the tables.
 * @param {Side} side
 */
function describeSide(side) {
  const use =
    side.middleware === undefined
      ? 'no middleware'
      : side.middleware === 'noop'
        ? `no-op ${side.framework === 'fastify' ? 'hook' : 'middleware'}`
        : side.middleware === 'noop-hooks'
          ? 'no-op onRequest, onError and onSend hooks'
          : `withDb${side.currentDb === true ? ' currentDb' : ''}`;
  const route = {
    plain: '',
    knex: ', knex.transaction(callback)',
    'knex-trx': ', await knex.transaction() + commit()',
    scope: ', db.session',
  }[side.route];
  return `${use}${route}`;
}

/**
 * Builds one side's app. `counters` counts what the app did since it was last zeroed: requests
 * that failed in the handler, pool acquires and queries.
 * @param {Side} side
 * @param {{ poolMax?: number }} [options]
 * @example
 *   const app = await createApp({ framework: 'koa', middleware: 'withDb', route: 'plain' });
 *   http.createServer(app.listener).listen(0);
 *   …; await app.close();
 */
async function createApp(side, options = {}) {
  if (side.route === 'scope' && side.middleware !== 'withDb') {
    throw new Error('route scope needs middleware withDb');
  }
  const { knex: createKnex } = require('knex');
  const dir = mkdtempSync(join(os.tmpdir(), 'knex-scope-bench-'));
  const config = databaseConfig(side.database ?? 'sqlite', {
    dir,
    poolMax: options.poolMax ?? 10,
  });
  const db =
    side.middleware === 'withDb'
      ? loadKnexScope(side.framework).withDb(config, { currentDb: side.currentDb === true })
      : undefined;
  /** @type {import('knex').Knex} */
  const knex = db?.knex ?? createKnex(config);
  const counters = { errors: 0, acquires: 0, queries: 0 };
  const pool = /** @type {import('tarn').Pool<unknown>} */ (
    /** @type {{ pool: unknown }} */ (knex.client).pool
  );
  pool.on('acquireSuccess', () => {
    counters.acquires++;
  });
  knex.on('query', () => {
    counters.queries++;
  });
  const build = side.framework.startsWith('koa')
    ? koaApp
    : side.framework === 'fastify'
      ? fastifyApp
      : side.framework === 'hono'
        ? honoApp
        : expressApp;
  return {
    listener: await build(side, { db, knex, counters }),
    knex,
    pool,
    counters,
    async close() {
      if (db !== undefined) await db.destroy();
      else await knex.destroy();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * @typedef {{
 *   db: import('knex-scope').Db | undefined;
 *   knex: import('knex').Knex;
 *   counters: { errors: number };
 * }} Parts
 */

/**
 * @param {Side} side
 * @param {Parts} parts
 * @returns {import('node:http').RequestListener}
 */
function expressApp(side, { db, knex, counters }) {
  const express = loadFramework(side.framework);
  const app = express();
  app.disable('x-powered-by');
  app.disable('etag');
  if (side.middleware === 'noop') {
    app.use(
      (/** @type {unknown} */ _req, /** @type {unknown} */ _res, /** @type {() => void} */ next) =>
        next(),
    );
  }
  if (db !== undefined) app.use(db);
  /** @type {Record<'knex' | 'knex-trx' | 'scope', (req: import('express').Request) => Promise<unknown>>} */
  const query = {
    knex: () => knex.transaction(async (trx) => trx.select(trx.raw('1 as one'))),
    'knex-trx': () => byHand(knex),
    scope: async (/** @type {import('express').Request} */ req) => {
      const s = await req.db.session;
      const rows = await s.select(s.raw('1 as one'));
      await s.commit();
      return rows;
    },
  };
  if (side.route === 'plain') {
    app.get('/', (/** @type {unknown} */ _req, /** @type {import('express').Response} */ res) => {
      res.json({ ok: true });
    });
  } else {
    // Express 4 does not catch rejected promises: both majors route failures to next() the same way.
    app.get(
      '/',
      (
        /** @type {import('express').Request} */ req,
        /** @type {import('express').Response} */ res,
        /** @type {import('express').NextFunction} */ next,
      ) => {
        query[/** @type {'knex' | 'knex-trx' | 'scope'} */ (side.route)](req).then(
          (rows) => res.json(rows),
          next,
        );
      },
    );
  }
  // autocannon ends a round by closing its connections, requests in flight included: their scopes
  // end with the client (as they should) and the handlers' next query fails with ScopeClosedError.
  // Counted and answered quietly instead of logged.
  app.use(
    (
      /** @type {unknown} */ _error,
      /** @type {unknown} */ _req,
      /** @type {import('express').Response} */ res,
      /** @type {unknown} */ _next,
    ) => {
      counters.errors++;
      res.status(500).end();
    },
  );
  return app;
}

/**
 * @param {Side} side
 * @param {Parts} parts
 * @returns {import('node:http').RequestListener}
 */
function koaApp(side, { db, knex, counters }) {
  const Koa = loadFramework(side.framework);
  const app = new Koa();
  app.silent = true;
  app.on('error', () => {
    counters.errors++;
  });
  if (side.middleware === 'noop') {
    app.use(async (/** @type {unknown} */ _ctx, /** @type {() => Promise<void>} */ next) => next());
  }
  if (db !== undefined) app.use(db);
  app.use(async (/** @type {import('koa').Context} */ ctx) => {
    if (side.route === 'plain') ctx.body = { ok: true };
    else if (side.route === 'knex') {
      ctx.body = await knex.transaction(async (trx) => trx.select(trx.raw('1 as one')));
    } else if (side.route === 'knex-trx') ctx.body = await byHand(knex);
    else {
      const s = await ctx.db.session;
      const rows = await s.select(s.raw('1 as one'));
      await s.commit();
      ctx.body = rows;
    }
  });
  return app.callback();
}

/**
 * @param {Side} side
 * @param {Parts} parts
 * @returns {Promise<import('node:http').RequestListener>} Fastify's own request handler, taken
 *   from `serverFactory`, once the app is ready
 */
async function fastifyApp(side, { db, knex, counters }) {
  const Fastify = loadFramework('fastify');
  /** @type {import('node:http').RequestListener | undefined} */
  let listener;
  const app = Fastify({
    serverFactory: (/** @type {import('node:http').RequestListener} */ handler) => {
      listener = handler;
      return require('node:http').createServer(handler);
    },
  });
  if (side.middleware === 'noop') {
    app.addHook(
      'onRequest',
      (
        /** @type {unknown} */ _req,
        /** @type {unknown} */ _reply,
        /** @type {() => void} */ done,
      ) => done(),
    );
  }
  if (side.middleware === 'noop-hooks') {
    if (side.framework !== 'fastify') throw new Error('middleware noop-hooks is Fastify only');
    // BENCH_NOOP_HOOKS=slot,onError,onSend (the default: all three) picks the parts, to weigh
    // them one at a time; the onRequest hook is always there, keeping the reply only with slot.
    const parts = (process.env.BENCH_NOOP_HOOKS ?? 'slot,onError,onSend').split(',');
    const slot = Symbol('slot');
    if (parts.includes('slot')) {
      app.decorateRequest(slot, null);
      app.addHook(
        'onRequest',
        (
          /** @type {any} */ request,
          /** @type {unknown} */ reply,
          /** @type {() => void} */ done,
        ) => {
          request[slot] = reply;
          done();
        },
      );
    } else {
      app.addHook(
        'onRequest',
        (
          /** @type {unknown} */ _req,
          /** @type {unknown} */ _reply,
          /** @type {() => void} */ done,
        ) => done(),
      );
    }
    if (parts.includes('onError')) {
      app.addHook(
        'onError',
        (
          /** @type {unknown} */ _req,
          /** @type {unknown} */ _reply,
          /** @type {unknown} */ _error,
          /** @type {() => void} */ done,
        ) => done(),
      );
    }
    if (parts.includes('onSend')) {
      app.addHook(
        'onSend',
        (
          /** @type {unknown} */ _req,
          /** @type {unknown} */ _reply,
          /** @type {unknown} */ _payload,
          /** @type {() => void} */ done,
        ) => done(),
      );
    }
  }
  if (db !== undefined) await app.register(db);
  app.setErrorHandler(
    (/** @type {unknown} */ _error, /** @type {unknown} */ _request, /** @type {any} */ reply) => {
      counters.errors++;
      reply.code(500).send();
    },
  );
  app.get('/', async (/** @type {any} */ request) => {
    if (side.route === 'plain') return { ok: true };
    if (side.route === 'knex') {
      return knex.transaction(async (trx) => trx.select(trx.raw('1 as one')));
    }
    if (side.route === 'knex-trx') return byHand(knex);
    const s = await request.db.session;
    const rows = await s.select(s.raw('1 as one'));
    await s.commit();
    return rows;
  });
  await app.ready();
  if (listener === undefined) throw new Error('Fastify did not call serverFactory');
  return listener;
}

/**
 * @param {Side} side
 * @param {Parts} parts
 * @returns {import('node:http').RequestListener}
 */
function honoApp(side, { db, knex, counters }) {
  const { Hono } = loadFramework('hono');
  const { getRequestListener } = require('@hono/node-server');
  const app = new Hono();
  app.onError((/** @type {unknown} */ _error, /** @type {any} */ c) => {
    counters.errors++;
    return c.body(null, 500);
  });
  if (side.middleware === 'noop') {
    app.use(async (/** @type {unknown} */ _c, /** @type {() => Promise<void>} */ next) => {
      await next();
    });
  }
  if (db !== undefined) app.use(db);
  app.get('/', async (/** @type {any} */ c) => {
    if (side.route === 'plain') return c.json({ ok: true });
    if (side.route === 'knex') {
      return c.json(await knex.transaction(async (trx) => trx.select(trx.raw('1 as one'))));
    }
    if (side.route === 'knex-trx') return c.json(await byHand(knex));
    const s = await c.var.db.session;
    const rows = await s.select(s.raw('1 as one'));
    await s.commit();
    return c.json(rows);
  });
  return getRequestListener(app.fetch);
}

/**
 * SELECT 1 in a transaction taken with `await knex.transaction()` and committed by hand, rolled
 * back if anything fails: the lazy session's work written with Knex alone.
 * @param {import('knex').Knex} knex
 */
async function byHand(knex) {
  const trx = await knex.transaction();
  try {
    const rows = await trx.select(trx.raw('1 as one'));
    await trx.commit();
    return rows;
  } catch (error) {
    await trx.rollback();
    throw error;
  }
}

module.exports = { createApp, databaseConfig, describeSide, loadFramework, loadKnexScope };
