// @ts-check
'use strict';
// The scenarios of the overhead benchmarks, shared by scripts/bench/overhead.js (throughput under
// autocannon) and scripts/bench/instructions.js (instructions per request under callgrind), so
// that both measure the same two servers per scenario.
const { join } = require('node:path');
const { servers } = require('../probe-databases');

/**
 * @typedef {import('./server').BenchSide} BenchSide
 * @typedef {{
 *   name: string;
 *   title: string;
 *   path: string;
 *   target: number;
 *   a: { label: string; side: BenchSide };
 *   b: { label: string; side: BenchSide };
 *   needs?: 'postgres' | 'mariadb';
 * }} Scenario
 */

/**
 * The target scenarios (a-…, b-…) and the attribution ones (d-…).
 * @param {{ tmp: string; poolMax: number }} options  tmp: a folder for the SQLite files
 * @returns {{ scenarios: Scenario[]; diagnostics: Scenario[] }}
 */
function benchScenarios({ tmp, poolMax }) {
  /**
   * @param {string} file
   * @returns {import('knex').Knex.Config}
   */
  const sqlite = (file) => ({
    client: 'better-sqlite3',
    connection: { filename: join(tmp, file) },
    useNullAsDefault: true,
  });
  /**
   * @param {'pg' | 'mysql2'} client
   * @param {string} url
   * @returns {import('knex').Knex.Config}
   */
  const server = (client, url) => ({ client, connection: url, pool: { min: 0, max: poolMax } });

  /** @type {Scenario[]} */
  const scenarios = [
    {
      name: 'a-express',
      title: 'Express 5, route without database',
      path: '/plain',
      target: 0.98,
      a: {
        label: 'no knex-scope',
        side: { framework: 'express', variant: 'plain', connection: sqlite('plain-1.sqlite') },
      },
      b: {
        label: 'app.use(withDb)',
        side: { framework: 'express', variant: 'withDb', connection: sqlite('a-express.sqlite') },
      },
    },
    {
      name: 'a-koa',
      title: 'Koa 3, route without database',
      path: '/plain',
      target: 0.98,
      a: {
        label: 'no knex-scope',
        side: { framework: 'koa', variant: 'plain', connection: sqlite('plain-2.sqlite') },
      },
      b: {
        label: 'app.use(withDb)',
        side: { framework: 'koa', variant: 'withDb', connection: sqlite('a-koa.sqlite') },
      },
    },
    ...[
      /** @type {const} */ (['sqlite', 'SQLite (better-sqlite3, temp file)']),
      /** @type {const} */ (['postgres', 'PostgreSQL']),
      /** @type {const} */ (['mariadb', 'MariaDB']),
    ].map(([database, title]) => {
      /** @param {string} variant */
      const connection = (variant) =>
        database === 'sqlite'
          ? sqlite(`b-${variant}.sqlite`)
          : server(database === 'postgres' ? 'pg' : 'mysql2', servers[database]);
      /** @type {Scenario} */
      const scenario = {
        name: `b-${database}`,
        title: `Express 5, SELECT 1 in a transaction, ${title}`,
        path: '/select',
        target: 0.97,
        a: {
          label: 'knex.transaction',
          side: { framework: 'express', variant: 'knex', connection: connection('knex') },
        },
        b: {
          label: 'req.db.session',
          side: { framework: 'express', variant: 'scope', connection: connection('scope') },
        },
      };
      if (database !== 'sqlite') scenario.needs = database;
      return scenario;
    }),
  ];

  // Attribution (--diagnose): what any middleware costs the framework (the floor under the a-…
  // targets), and what the `currentDb` option costs (Node 20's AsyncLocalStorage).
  /** @type {Scenario[]} */
  const diagnostics = [
    {
      name: 'd-express-noop',
      title: 'Express 5, route without database: a middleware that only calls next()',
      path: '/plain',
      target: 0,
      a: {
        label: 'no middleware',
        side: { framework: 'express', variant: 'plain', connection: sqlite('plain-3.sqlite') },
      },
      b: {
        label: 'no-op middleware',
        side: {
          framework: 'express',
          variant: 'plain',
          noop: true,
          connection: sqlite('plain-4.sqlite'),
        },
      },
    },
    {
      name: 'd-express-scope',
      title: 'Express 5, route without database: app.use(withDb) against a no-op middleware',
      path: '/plain',
      target: 0,
      a: {
        label: 'no-op middleware',
        side: {
          framework: 'express',
          variant: 'plain',
          noop: true,
          connection: sqlite('plain-5.sqlite'),
        },
      },
      b: {
        label: 'app.use(withDb)',
        side: { framework: 'express', variant: 'withDb', connection: sqlite('d-scope.sqlite') },
      },
    },
    {
      name: 'd-koa-noop',
      title: 'Koa 3, route without database: a middleware that only calls next()',
      path: '/plain',
      target: 0,
      a: {
        label: 'no middleware',
        side: { framework: 'koa', variant: 'plain', connection: sqlite('plain-6.sqlite') },
      },
      b: {
        label: 'no-op middleware',
        side: {
          framework: 'koa',
          variant: 'plain',
          noop: true,
          connection: sqlite('plain-7.sqlite'),
        },
      },
    },
    {
      name: 'd-express-context',
      title: 'Express 5, route without database, withDb(config, { currentDb: true })',
      path: '/plain',
      target: 0,
      a: {
        label: 'no knex-scope',
        side: { framework: 'express', variant: 'plain', connection: sqlite('plain-8.sqlite') },
      },
      b: {
        label: 'currentDb: true',
        side: {
          framework: 'express',
          variant: 'withDb',
          currentDb: true,
          connection: sqlite('d-express.sqlite'),
        },
      },
    },
    {
      name: 'd-koa-context',
      title: 'Koa 3, route without database, withDb(config, { currentDb: true })',
      path: '/plain',
      target: 0,
      a: {
        label: 'no knex-scope',
        side: { framework: 'koa', variant: 'plain', connection: sqlite('plain-9.sqlite') },
      },
      b: {
        label: 'currentDb: true',
        side: {
          framework: 'koa',
          variant: 'withDb',
          currentDb: true,
          connection: sqlite('d-koa.sqlite'),
        },
      },
    },
    {
      name: 'd-sqlite-context',
      title: 'SELECT 1, SQLite, withDb(config, { currentDb: true })',
      path: '/select',
      target: 0,
      a: {
        label: 'knex.transaction',
        side: { framework: 'express', variant: 'knex', connection: sqlite('d-knex.sqlite') },
      },
      b: {
        label: 'currentDb: true',
        side: {
          framework: 'express',
          variant: 'scope',
          currentDb: true,
          connection: sqlite('d-context.sqlite'),
        },
      },
    },
  ];
  return { scenarios, diagnostics };
}

/**
 * A side's server number `index`: SQLite sides get a database file each.
 * @param {BenchSide} side
 * @param {number} index
 * @returns {BenchSide}
 */
function instance(side, index) {
  const connection = /** @type {{ connection?: { filename?: string } } | undefined} */ (
    side.connection
  )?.connection;
  if (side.connection === undefined || typeof connection?.filename !== 'string') return side;
  return {
    ...side,
    connection: {
      ...side.connection,
      connection: { filename: connection.filename.replace(/\.sqlite$/, `-${index}.sqlite`) },
    },
  };
}

/**
 * The scenarios `only` (a comma-separated list, `--only`) names, from `all`, diagnostics included;
 * `defaults` when it is empty. A name that is no scenario's is an error, not an empty run that
 * reports every target met.
 * @template {{ name: string }} S
 * @param {string} only
 * @param {S[]} all
 * @param {S[]} defaults
 * @returns {S[]}
 */
function selectScenarios(only, all, defaults) {
  if (only === '') return defaults;
  const names = only.split(',');
  const unknown = names.filter((name) => !all.some((scenario) => scenario.name === name));
  if (unknown.length > 0) {
    throw new Error(
      `--only: no scenario named ${unknown.join(', ')}; there are ${all.map((s) => s.name).join(', ')}`,
    );
  }
  return all.filter((scenario) => names.includes(scenario.name));
}

module.exports = { benchScenarios, instance, selectScenarios };
