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
// `recovery`: where recovery.js kills connections under load (a server, how the app connects to
//   it, how to kill every connection of the app). PgBouncer, Galera or a failover pair is a row
//   with its own URL and kill; a row whose URL does not answer is skipped.
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

  // Diagnostics (--diagnose): the method's own spread, what one middleware costs the framework
  // (the floor under a-…), and what the currentDb option costs (Node 20's AsyncLocalStorage).
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
  {
    name: 'd-sqlite-context',
    title: 'Express 5, SELECT 1 in a transaction, SQLite: req.db.session with currentDb: true',
    a: side('express', { route: 'knex' }),
    b: side('express', { middleware: 'withDb', route: 'scope', currentDb: true }),
  },
];

/**
 * @typedef {{
 *   name: string;
 *   url: string;
 *   app: (url: string, poolMax: number) => import('knex').Knex.Config;
 *   admin: (url: string) => import('knex').Knex.Config;
 *   prepare?: (admin: import('knex').Knex, url: string) => Promise<void>;
 *   killAll: (admin: import('knex').Knex) => Promise<number>;
 *   cleanup?: (admin: import('knex').Knex) => Promise<void>;
 * }} RecoveryTarget
 * app:     the config of the app under test (it must be told apart from the admin connection)
 * admin:   the connection that creates the table, kills, and counts rows afterwards
 * killAll: kills every connection of the app now; resolves to how many there were
 */

/** The app's application_name on PostgreSQL, which pg_stat_activity shows for each of its backends. */
const pgAppName = `knex-scope-bench-recovery-${process.pid}`;
/** The app's user on MariaDB: KILL CONNECTION USER ends every connection it has, and only those. */
const mariadbUser = 'knex_scope_recovery';

/** @type {RecoveryTarget[]} */
const recovery = [
  {
    name: 'postgres',
    url: servers.postgres,
    app: (url, poolMax) => ({
      client: 'pg',
      connection: { connectionString: url, application_name: pgAppName },
      pool: { min: 0, max: poolMax },
    }),
    admin: (url) => ({
      client: 'pg',
      connection: { connectionString: url, application_name: `${pgAppName}-admin` },
      pool: { min: 0, max: 1 },
    }),
    killAll: async (admin) => {
      const { rows } = await admin.raw(
        'select count(*)::int as n from (select pg_terminate_backend(pid) from pg_stat_activity ' +
          'where application_name = ? and pid <> pg_backend_pid()) killed',
        [pgAppName],
      );
      return rows[0].n;
    },
  },
  {
    name: 'mariadb',
    url: servers.mariadb,
    app: (url, poolMax) => {
      const { hostname, port, pathname } = new URL(url);
      return {
        client: 'mysql2',
        connection: {
          host: hostname,
          port: Number(port || 3306),
          user: mariadbUser,
          password: '',
          database: decodeURIComponent(pathname.slice(1)),
        },
        pool: { min: 0, max: poolMax },
      };
    },
    admin: (url) => ({ client: 'mysql2', connection: url, pool: { min: 0, max: 1 } }),
    prepare: async (admin, url) => {
      const name = decodeURIComponent(new URL(url).pathname.slice(1));
      await admin.raw(`create user if not exists '${mariadbUser}'@'%'`);
      await admin.raw(`grant all on \`${name}\`.* to '${mariadbUser}'@'%'`);
    },
    killAll: async (admin) => {
      const [rows] = await admin.raw(
        'select count(*) as n from information_schema.processlist where user = ?',
        [mariadbUser],
      );
      await admin.raw('kill connection user ?', [mariadbUser]);
      return Number(rows[0].n);
    },
    cleanup: async (admin) => {
      await admin.raw(`drop user if exists '${mariadbUser}'@'%'`);
    },
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

module.exports = { missingServer, overhead, recovery, selectScenarios };
