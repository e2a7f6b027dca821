// @ts-check
'use strict';
// Tells which scale-out services (scripts/services/*.sh) are up, with a TCP probe and one cheap
// query each: `node scripts/services/probe.js` prints the result as JSON. __tests__/helpers/
// services.ts runs it synchronously, so a test file can choose between describe and describe.skip
// while jest collects tests.
//
// URLs (override them to test services elsewhere; the control scripts stay local):
//   KNEX_SCOPE_PGBOUNCER_URL  default postgres://postgres@127.0.0.1:6432/test
//   KNEX_SCOPE_FAILOVER_URLS  primary,standby; default postgres://postgres@127.0.0.1:5434/test,
//                             postgres://postgres@127.0.0.1:5435/test
//   KNEX_SCOPE_GALERA_URLS    node 1,2,3; default mysql://root@127.0.0.1:3311/test, …:3312, …:3313
const { answers } = require('../probe-databases');

/** @param {string | undefined} value @param {string[]} fallback */
function list(value, fallback) {
  const items = (value ?? '')
    .split(',')
    .map((item) => item.trim())
    .filter(Boolean);
  return items.length > 0 ? items : fallback;
}

function serviceUrls() {
  const pgbouncer =
    process.env.KNEX_SCOPE_PGBOUNCER_URL ?? 'postgres://postgres@127.0.0.1:6432/test';
  const admin = new URL(pgbouncer);
  admin.pathname = '/pgbouncer';
  return {
    pgbouncer: { url: pgbouncer, adminUrl: admin.toString() },
    failover: list(process.env.KNEX_SCOPE_FAILOVER_URLS, [
      'postgres://postgres@127.0.0.1:5434/test',
      'postgres://postgres@127.0.0.1:5435/test',
    ]),
    galera: list(process.env.KNEX_SCOPE_GALERA_URLS, [
      'mysql://root@127.0.0.1:3311/test',
      'mysql://root@127.0.0.1:3312/test',
      'mysql://root@127.0.0.1:3313/test',
    ]),
  };
}

/**
 * Runs one simple-protocol query on PostgreSQL (or PgBouncer's console) and returns its rows.
 * @param {string} url
 * @param {string} sql
 * @returns {Promise<Record<string, unknown>[]>}
 */
async function pgQuery(url, sql) {
  const { Client } = require('pg');
  const client = new Client({ connectionString: url, connectionTimeoutMillis: 2_000 });
  client.on('error', () => {});
  try {
    await client.connect();
    return (await client.query(sql)).rows;
  } finally {
    await client.end().catch(() => {});
  }
}

/**
 * Runs one query on MariaDB and returns its rows.
 * @param {string} url
 * @param {string} sql
 * @returns {Promise<Record<string, unknown>[]>}
 */
async function mysqlQuery(url, sql) {
  const mysql = require('mysql2/promise');
  const connection = await mysql.createConnection({ uri: url, connectTimeout: 2_000 });
  connection.on('error', () => {});
  try {
    const [rows] = await connection.query(sql);
    return /** @type {Record<string, unknown>[]} */ (rows);
  } finally {
    await connection.end().catch(() => {});
  }
}

/** @param {unknown} error */
function describeError(error) {
  const { code, message } = /** @type {{ code?: unknown; message?: unknown }} */ (error);
  return `${code ? `${code}: ` : ''}${String(message)}`;
}

/**
 * Probes a service: its URLs must accept connections, then `check` says what is wrong, if anything.
 * @param {string[]} urls
 * @param {() => Promise<string | undefined>} check
 * @returns {Promise<{ up: boolean; reason?: string }>}
 */
async function probe(urls, check) {
  for (const url of urls) {
    if (!(await answers(url))) {
      const { host } = new URL(url);
      return { up: false, reason: `nothing accepts connections at ${host}` };
    }
  }
  try {
    const problem = await check();
    return problem === undefined ? { up: true } : { up: false, reason: problem };
  } catch (error) {
    return { up: false, reason: describeError(error) };
  }
}

async function probeServices() {
  const urls = serviceUrls();
  const [pgbouncer, failover, galera] = await Promise.all([
    probe([urls.pgbouncer.url], async () => {
      const pools = await pgQuery(urls.pgbouncer.adminUrl, 'SHOW CONFIG');
      const mode = pools.find((row) => row.key === 'pool_mode')?.value;
      if (mode !== 'transaction') return `pool_mode is ${mode}, not transaction`;
      await pgQuery(urls.pgbouncer.url, 'select 1');
      return undefined;
    }),
    probe(urls.failover, async () => {
      const [primary, standby] = await Promise.all(
        urls.failover.map(async (url) => {
          const [row] = await pgQuery(url, 'select pg_is_in_recovery() as standby');
          return row?.standby;
        }),
      );
      if (primary !== false || standby !== true) {
        return 'not a primary + standby pair (after a failover: scripts/services/pg-failover.sh reset)';
      }
      return undefined;
    }),
    probe(urls.galera, async () => {
      const problems = await Promise.all(
        urls.galera.map(async (url, index) => {
          const rows = await mysqlQuery(
            url,
            "SHOW GLOBAL STATUS WHERE Variable_name IN ('wsrep_cluster_size', 'wsrep_ready', 'wsrep_local_state_comment')",
          );
          const status = Object.fromEntries(rows.map((row) => [row.Variable_name, row.Value]));
          const whole =
            status.wsrep_ready === 'ON' &&
            status.wsrep_cluster_size === String(urls.galera.length) &&
            status.wsrep_local_state_comment === 'Synced';
          return whole
            ? undefined
            : `node ${index + 1} is not in a whole cluster (wsrep_ready=${status.wsrep_ready}, wsrep_cluster_size=${status.wsrep_cluster_size}, ${status.wsrep_local_state_comment}): scripts/services/galera.sh heal`;
        }),
      );
      return problems.find((problem) => problem !== undefined);
    }),
  ]);
  return { pgbouncer, failover, galera };
}

module.exports = { probeServices, serviceUrls };

if (require.main === module) {
  probeServices().then((result) => process.stdout.write(`${JSON.stringify(result)}\n`));
}
