// @ts-check
'use strict';
// The scenarios of the benchmarks, one table each. To add one, add a row:
//
// `overhead`: what knex-scope costs per request, A against B (instructions.js: over HTTP, the figure
//   the targets are checked against, or --in-process; overhead.js: requests per second). A row
//   is two sides (apps.js: framework, middleware, route, database, currentDb) and a target for B/A
//   throughput (A's instructions per request over B's), or none for a diagnostic. A framework,
//   middleware or route that apps.js does not build yet goes there first (e.g. Fastify and Hono:
//   a builder beside expressApp and koaApp; observability on/off: a side option it honours).
// Recovery under faults has its own scripts: recovery.js (PostgreSQL and MariaDB, backends killed,
// every commitOutcome mode) and scale-out.js (PgBouncer, a failover pair, Galera).
const { answers, servers } = require('../probe-databases');

/**
 * @typedef {import('./apps').Side} Side
 * @typedef {{
 *   name: string;
 *   title: string;
 *   target?: number;
 *   a: Side;
 *   b: Side;
 * }} Scenario
 */

/** @type {Scenario[]} */
const overhead = [
  // The targets. a-…: a route that never touches the database, app.use(withDb) against a
  // middleware that only passes the request on (what any middleware costs the framework is not
  // knex-scope's). b-…: one SELECT in a transaction, through the lazy session against a
  // hand-written knex.transaction().
  ...['express', 'express4', 'koa'].map((framework) => ({
    name: `a-${framework}`,
    title: `${label(framework)}, route without database: withDb against a no-op middleware`,
    target: 0.99,
    a: side(framework, { middleware: 'noop', route: 'plain' }),
    b: side(framework, { middleware: 'withDb', route: 'plain' }),
  })),
  .../** @type {const} */ (['sqlite', 'postgres', 'mariadb']).map((database) => ({
    name: `b-${database}`,
    title: `Express 5, SELECT 1 in a transaction, ${label(database)}: req.db.session against knex.transaction()`,
    target: 0.97,
    a: side('express', { route: 'knex', database }),
    b: side('express', { middleware: 'withDb', route: 'scope', database }),
  })),
  // The same targets on Fastify 5 (the no-op is an onRequest hook calling done()) and Hono 4 (on
  // @hono/node-server), the transaction on SQLite and PostgreSQL.
  ...['fastify', 'hono'].map((framework) => ({
    name: `a-${framework}`,
    title: `${label(framework)}, route without database: withDb against a no-op ${framework === 'fastify' ? 'hook' : 'middleware'}`,
    target: 0.99,
    a: side(framework, { middleware: 'noop', route: 'plain' }),
    b: side(framework, { middleware: 'withDb', route: 'plain' }),
  })),
  ...['fastify', 'hono'].flatMap((framework) =>
    /** @type {const} */ (['sqlite', 'postgres']).map((database) => ({
      name: `b-${framework}-${database}`,
      title: `${label(framework)}, SELECT 1 in a transaction, ${label(database)}: request's db.session against knex.transaction()`,
      target: 0.97,
      a: side(framework, { route: 'knex', database }),
      b: side(framework, { middleware: 'withDb', route: 'scope', database }),
    })),
  ),

  // Diagnostics (--diagnose): the method's own spread, what one middleware costs the framework
  // (the floor under a-…), and what the currentDb option costs (Node 20's AsyncLocalStorage).
  // The b-… floor split in two: Knex's callback transaction against the same transaction taken
  // with `await knex.transaction()` and committed by hand (Knex alone, e-…), and that against the
  // lazy session (knex-scope's own share, f-…).
  ...['express', 'fastify', 'hono'].flatMap((framework) =>
    /** @type {const} */ (['sqlite', 'postgres']).flatMap((database) => [
      {
        name: `e-${framework}-${database}`,
        title: `${label(framework)}, SELECT 1, ${label(database)}: knex.transaction(callback) against await knex.transaction() + commit()`,
        a: side(framework, { route: 'knex', database }),
        b: side(framework, { route: 'knex-trx', database }),
      },
      {
        name: `f-${framework}-${database}`,
        title: `${label(framework)}, SELECT 1, ${label(database)}: await knex.transaction() + commit() against the lazy session`,
        a: side(framework, { route: 'knex-trx', database }),
        b: side(framework, { middleware: 'withDb', route: 'scope', database }),
      },
    ]),
  ),
  // What a-fastify's target leaves for knex-scope: the hooks any plugin that ends a scope
  // before the response is written must add (g-…), and withDb against them (h-…).
  {
    name: 'g-fastify-hooks',
    title: `${label('fastify')}, route without database: withDb's three hooks as no-ops against a no-op hook`,
    a: side('fastify', { middleware: 'noop', route: 'plain' }),
    b: side('fastify', { middleware: 'noop-hooks', route: 'plain' }),
  },
  {
    name: 'h-fastify-hooks',
    title: `${label('fastify')}, route without database: withDb against its three hooks as no-ops`,
    a: side('fastify', { middleware: 'noop-hooks', route: 'plain' }),
    b: side('fastify', { middleware: 'withDb', route: 'plain' }),
  },
  {
    name: 'c-twin',
    title: 'Express 5, route without database, two identical apps: the method’s own spread',
    a: side('express', { route: 'plain' }),
    b: side('express', { route: 'plain' }),
  },
  ...['express', 'koa'].map((framework) => ({
    name: `d-${framework}-noop`,
    title: `${label(framework)}, route without database: a no-op middleware against none`,
    a: side(framework, { route: 'plain' }),
    b: side(framework, { middleware: 'noop', route: 'plain' }),
  })),
  ...['express', 'koa'].map((framework) => ({
    name: `d-${framework}-context`,
    title: `${label(framework)}, route without database: withDb with currentDb: true against a no-op middleware`,
    a: side(framework, { middleware: 'noop', route: 'plain' }),
    b: side(framework, { middleware: 'withDb', route: 'plain', currentDb: true }),
  })),
  // The currentDb option alone: the same withDb without and with it, so that neither the
  // middleware layer nor the session's own cost is in the ratio (d-…-context have both).
  ...['express', 'koa'].map((framework) => ({
    name: `d-${framework}-option`,
    title: `${label(framework)}, route without database: withDb against withDb with currentDb: true`,
    a: side(framework, { middleware: 'withDb', route: 'plain' }),
    b: side(framework, { middleware: 'withDb', route: 'plain', currentDb: true }),
  })),
  {
    name: 'd-sqlite-option',
    title: 'Express 5, SELECT 1 in req.db.session, SQLite: without and with currentDb: true',
    a: side('express', { middleware: 'withDb', route: 'scope' }),
    b: side('express', { middleware: 'withDb', route: 'scope', currentDb: true }),
  },
  {
    name: 'd-sqlite-context',
    title: 'Express 5, SELECT 1 in a transaction, SQLite: req.db.session with currentDb: true',
    a: side('express', { route: 'knex' }),
    b: side('express', { middleware: 'withDb', route: 'scope', currentDb: true }),
  },
];

/**
 * @param {string} framework
 * @param {Omit<Side, 'framework'>} rest
 * @returns {Side}
 */
function side(framework, rest) {
  return /** @type {Side} */ ({ framework, ...rest });
}

/** @param {string} name */
function label(name) {
  return (
    {
      express: 'Express 5',
      express4: 'Express 4',
      koa: 'Koa 3',
      koa2: 'Koa 2',
      fastify: 'Fastify 5',
      hono: 'Hono 4',
      sqlite: 'SQLite (better-sqlite3, temp file)',
      postgres: 'PostgreSQL',
      mariadb: 'MariaDB',
    }[name] ?? name
  );
}

/**
 * The rows of `table` that `only` (a comma-separated list, `--only`) names; without `only`, the
 * rows with a target, and the others too if `all`. A name that is no row's is an error, not an
 * empty run that reports every target met.
 * @template {{ name: string; target?: number }} S
 * @param {S[]} rows
 * @param {{ only: string; all: boolean }} choice
 * @returns {S[]}
 */
function selectScenarios(rows, { only, all }) {
  if (only === '') return rows.filter((row) => all || row.target !== undefined);
  const names = only.split(',');
  const unknown = names.filter((name) => !rows.some((row) => row.name === name));
  if (unknown.length > 0) {
    throw new Error(
      `--only: no scenario named ${unknown.join(', ')}; there are ${rows.map((r) => r.name).join(', ')}`,
    );
  }
  return rows.filter((row) => names.includes(row.name));
}

/**
 * The URL of a server the scenario needs that does not answer, or undefined if it can run.
 * @param {Scenario} scenario
 * @returns {Promise<string | undefined>}
 */
async function missingServer(scenario) {
  for (const database of [scenario.a.database, scenario.b.database]) {
    if (database !== 'postgres' && database !== 'mariadb') continue;
    if (!(await answers(servers[database]))) return servers[database];
  }
  return undefined;
}

module.exports = { missingServer, overhead, selectScenarios };
