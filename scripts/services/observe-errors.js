// @ts-check
'use strict';
// Provokes the faults of the scale-out services (scripts/services/*.sh) through knex + pg / mysql2
// and prints what the client gets, as JSON lines. The results are recorded in
// __tests__/is-connection-error/observed-scale-out-errors.md.
//
//   node scripts/services/observe-errors.js [experiment ...]     (default: all of them)
//
// Experiments: galera-isolate galera-quorum galera-conflict galera-stall pgbouncer-wait
// pgbouncer-restart pgbouncer-set pgbouncer-searchpath. They kill, isolate and restart Galera
// nodes and restart PgBouncer, and heal everything before they end: run them alone, as root.
const { execFile, execFileSync } = require('node:child_process');
const { join } = require('node:path');
const { knex } = require('knex');
const { serviceUrls } = require('./probe.js');

const urls = serviceUrls();
/** @type {(import('knex').Knex)[]} */
const instances = [];
const quiet = { warn() {}, error() {}, debug() {}, deprecate() {} };

/** @param {string} script @param {string[]} args */
function control(script, ...args) {
  return execFileSync(join(__dirname, `${script}.sh`), args, { encoding: 'utf8' }).trim();
}

/** @param {string} script @param {string[]} args @returns {Promise<string>} */
function controlAsync(script, ...args) {
  return new Promise((resolve, reject) => {
    execFile(join(__dirname, `${script}.sh`), args, { encoding: 'utf8' }, (error, stdout) =>
      error ? reject(error) : resolve(stdout.trim()),
    );
  });
}

/** @param {number} ms */
const delay = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** @param {string} url @param {Partial<import('knex').Knex.Config>} [extra] */
function open(url, extra = {}) {
  const instance = knex({
    client: url.startsWith('mysql') ? 'mysql2' : 'pg',
    connection: url,
    pool: { min: 0, max: 2 },
    log: quiet,
    ...extra,
  });
  instances.push(instance);
  return instance;
}

/**
 * knex-scope's classification, from the build (npm run build) when there is one.
 * @type {{ isConnectionError(error: unknown): boolean; isTransientError(error: unknown): boolean } | undefined}
 */
const classify = (() => {
  try {
    return require(join(__dirname, '../../dist/is-connection-error.js'));
  } catch {
    return undefined;
  }
})();

/** The fields of an error that classification can use. @param {any} error */
function shape(error) {
  if (error === undefined) return undefined;
  /** @type {Record<string, unknown>} */
  const result = { name: error.name, message: error.message };
  for (const key of ['code', 'errno', 'sqlState', 'sqlMessage', 'fatal', 'severity', 'routine']) {
    if (error[key] !== undefined) result[key] = error[key];
  }
  if (error.cause !== undefined) result.cause = shape(error.cause);
  if (classify) {
    result.isConnectionError = classify.isConnectionError(error);
    result.isTransientError = classify.isTransientError(error);
  }
  return result;
}

/** Settles `promise`: its value or its error's shape, and how long it took. @param {Promise<unknown>} promise */
async function outcome(promise) {
  const started = Date.now();
  try {
    const value = await promise;
    return { ok: true, ms: Date.now() - started, value: summarize(value) };
  } catch (error) {
    return { ok: false, ms: Date.now() - started, error: shape(error) };
  }
}

/** @param {unknown} value */
function summarize(value) {
  if (Array.isArray(value) && Array.isArray(value[0])) return value[0]; // mysql2 raw: [rows, fields]
  if (value && typeof value === 'object' && 'rows' in value) return value.rows; // pg raw
  return value;
}

/** @param {string} title @param {unknown} observed */
function report(title, observed) {
  process.stdout.write(`${JSON.stringify({ title, observed }, null, 1).replace(/\n\s*/g, ' ')}\n`);
}

/** Node N's wsrep status, from a fresh connection. @param {1|2|3} node */
async function wsrep(node) {
  const mysql = require('mysql2/promise');
  const connection = await mysql.createConnection({ uri: urls.galera[node - 1] ?? '' });
  try {
    const [rows] = await connection.query(
      "SHOW GLOBAL STATUS WHERE Variable_name IN ('wsrep_cluster_status', 'wsrep_cluster_size', 'wsrep_ready')",
    );
    return Object.fromEntries(
      /** @type {{ Variable_name: string; Value: string }[]} */ (rows).map((row) => [
        row.Variable_name,
        row.Value,
      ]),
    );
  } finally {
    await connection.end();
  }
}

/** @param {() => Promise<boolean>} check @param {number} ms */
async function until(check, ms) {
  const started = Date.now();
  while (!(await check())) {
    if (Date.now() - started > ms) throw new Error(`not within ${ms} ms`);
    await delay(100);
  }
  return Date.now() - started;
}

/** Knex's raw connection of a pooled instance (pool max 1): its thread id, to tell reuse. @param {import('knex').Knex} db */
async function threadId(db) {
  const [rows] = await db.raw('select connection_id() as id');
  return Number(rows[0].id);
}

async function galeraTable() {
  const admin = open(urls.galera[0] ?? '');
  const table = `obs_${process.pid}`;
  await admin.schema.dropTableIfExists(table);
  await admin.schema.createTable(table, (t) => {
    t.integer('id').primary();
    t.integer('v').notNullable();
  });
  await admin(table).insert([
    { id: 1, v: 0 },
    { id: 2, v: 0 },
  ]);
  return { admin, table };
}

const experiments = {
  /** A node partitioned with gmcast.isolate=1 while transactions are open on it and after. */
  async 'galera-isolate'() {
    const { table } = await galeraTable();
    const url = urls.galera[2] ?? '';
    const before = open(url); // a transaction open when the partition starts
    const after = open(url); // transactions begun after it
    const afterId = await threadId(after);
    const open1 = await before.transaction();
    await open1.raw(`insert into ${table} values (10, 1)`);
    const started = Date.now();
    control('galera', 'isolate', '3');
    await until(async () => (await wsrep(3)).wsrep_cluster_status !== 'Primary', 30_000);
    const nonPrimaryAfter = Date.now() - started;
    report('galera isolate: node 3 turns non-Primary after (ms)', {
      ms: nonPrimaryAfter,
      status: await wsrep(3),
    });
    report('galera isolate: COMMIT of a transaction with a write, begun before', {
      commit: await outcome(open1.commit()),
      executionPromise: await outcome(open1.executionPromise),
    });
    /** @type {import('knex').Knex.Transaction | undefined} */
    let trx;
    const begin = await outcome(
      after.transaction().then((t) => {
        trx = t;
      }),
    );
    report('galera isolate: BEGIN (knex.transaction())', {
      ...begin,
      isCompleted: /** @type {any} */ (trx)?.isCompleted(),
    });
    if (trx) {
      const t = trx;
      report(
        'galera isolate: first statement, a SELECT from a table',
        await outcome(t.raw(`select * from ${table}`)),
      );
      report(
        'galera isolate: then an INSERT',
        await outcome(t.raw(`insert into ${table} values (11, 1)`)),
      );
      report('galera isolate: then COMMIT', {
        commit: await outcome(t.commit()),
        executionPromise: await outcome(t.executionPromise),
      });
    }
    const trx2 = await after.transaction();
    report(
      'galera isolate: first statement an INSERT (new transaction)',
      await outcome(trx2.raw(`insert into ${table} values (12, 1)`)),
    );
    report('galera isolate: COMMIT after it', {
      commit: await outcome(trx2.commit()),
      executionPromise: await outcome(trx2.executionPromise),
    });
    report(
      'galera isolate: knex.transaction(handler) whose handler runs a SELECT',
      await outcome(after.transaction((t) => t.raw(`select * from ${table}`))),
    );
    report(
      'galera isolate: autocommit SELECT from a table',
      await outcome(after.raw(`select count(*) as n from ${table}`)),
    );
    report('galera isolate: autocommit SELECT 1', await outcome(after.raw('select 1 as one')));
    report(
      'galera isolate: SHOW STATUS still answers',
      await outcome(after.raw("show status like 'wsrep_ready'")),
    );
    report('galera isolate: SET SESSION wsrep_dirty_reads=1 then SELECT', {
      set: await outcome(after.raw('set session wsrep_dirty_reads = 1')),
      select: await outcome(after.raw(`select count(*) as n from ${table}`)),
    });
    const pool = /** @type {any} */ (after.client).pool;
    report('galera isolate: knex pool after the errors', {
      used: pool.numUsed(),
      free: pool.numFree(),
    });
    control('galera', 'heal');
    const id = await outcome(threadId(after));
    report('galera isolate: after heal, the same pooled connection (thread id before / now)', {
      before: afterId,
      now: id,
    });
    const [state] = await before.raw('select @@in_transaction as inTransaction');
    const rows = await Promise.all(
      urls.galera.map(async (u) => {
        const db = open(u);
        await db.raw('set session wsrep_sync_wait = 1');
        const [found] = await db.raw(`select id from ${table} where id in (10, 11, 12)`);
        return found.map((/** @type {{ id: number }} */ r) => r.id);
      }),
    );
    report(
      'galera isolate: after heal, refused writes on nodes 1-3, and the COMMIT-refused connection',
      {
        rowsOnNodes: rows,
        inTransaction: state[0].inTransaction,
      },
    );
    // That connection went back to knex's pool still inside the refused transaction: what does
    // its next user get?
    const [own] = await before.raw(`select id from ${table} where id = 10`);
    const commitLater = await outcome(before.raw('commit'));
    const [seen] = await open(urls.galera[0] ?? '').raw(`select id from ${table} where id = 10`);
    report(
      'galera isolate: the next user of the COMMIT-refused connection sees row 10, and a COMMIT on it',
      {
        seesRow10: own.length === 1,
        commit: commitLater,
        row10OnNode1Afterwards: seen.length === 1,
      },
    );
  },

  /** Two nodes SIGKILLed: the survivor loses quorum. */
  async 'galera-quorum'() {
    const { table } = await galeraTable();
    const db = open(urls.galera[0] ?? '');
    const fresh = open(urls.galera[0] ?? '');
    await threadId(fresh);
    const trx = await db.transaction();
    await trx.raw(`insert into ${table} values (20, 1)`);
    const killed = Date.now();
    control('galera', 'kill', '2');
    control('galera', 'kill', '3');
    report('galera quorum lost: COMMIT right after two nodes were SIGKILLed', {
      commit: await outcome(trx.commit()),
      executionPromise: await outcome(trx.executionPromise),
      msSinceKill: Date.now() - killed,
    });
    report('galera quorum lost: status of the survivor', await wsrep(1));
    const trx2 = await fresh.transaction();
    report('galera quorum lost: BEGIN', {
      isCompleted: trx2.isCompleted(),
      executionPromise: await outcome(trx2.executionPromise),
    });
    report(
      'galera quorum lost: autocommit INSERT',
      await outcome(fresh.raw(`insert into ${table} values (21, 1)`)),
    );
    report(
      'galera quorum lost: autocommit SELECT',
      await outcome(fresh.raw(`select count(*) as n from ${table}`)),
    );
    control('galera', 'heal');
    report(
      'galera quorum lost: after heal, same pooled connection',
      await outcome(fresh.raw('select 1 as one')),
    );
    const [state] = await db.raw(`select @@in_transaction as inTransaction`);
    const rows = await Promise.all(
      urls.galera.map(async (u) => {
        const node = open(u);
        await node.raw('set session wsrep_sync_wait = 1');
        const [found] = await node.raw(`select id from ${table} where id in (20, 21)`);
        return found.map((/** @type {{ id: number }} */ r) => r.id);
      }),
    );
    report('galera quorum lost: after heal, rows 20/21 on nodes 1-3; the 1180 connection', {
      rowsOnNodes: rows,
      inTransaction: state[0].inTransaction,
    });
  },

  /** The same row updated on two nodes at once: certification. */
  async 'galera-conflict'() {
    const { admin, table } = await galeraTable();
    const one = open(urls.galera[0] ?? '');
    const two = open(urls.galera[1] ?? '');
    // 1. Both updated, node 1 commits first, then node 2 commits.
    let a = await one.transaction();
    let b = await two.transaction();
    await a.raw(`update ${table} set v = 1 where id = 1`);
    await b.raw(`update ${table} set v = 2 where id = 1`);
    report('galera conflict: first COMMIT (node 1)', await outcome(a.commit()));
    report('galera conflict: second COMMIT (node 2)', {
      commit: await outcome(b.commit()),
      executionPromise: await outcome(b.executionPromise),
    });
    report(
      'galera conflict: node 2 connection after it',
      await outcome(two.raw('select @@in_transaction as inTransaction')),
    );
    // 2. Node 2's transaction is brute-force aborted while idle; its next statement finds out.
    a = await one.transaction();
    b = await two.transaction();
    await b.raw(`update ${table} set v = 3 where id = 2`);
    await a.raw(`update ${table} set v = 4 where id = 2`);
    report(
      'galera conflict: COMMIT on node 1 while node 2 holds the row',
      await outcome(a.commit()),
    );
    await delay(200);
    report(
      'galera conflict: node 2 next statement after being aborted',
      await outcome(b.raw(`select v from ${table} where id = 2`)),
    );
    report(
      'galera conflict: node 2 still in a transaction after the 1213?',
      await outcome(b.raw('select @@in_transaction as inTransaction')),
    );
    report('galera conflict: node 2 COMMIT after that', await outcome(b.commit()));
    report('galera conflict: rows on node 1', await admin(table).select().orderBy('id'));
  },

  /** How long commits on the survivors stall when a node is SIGKILLed. */
  async 'galera-stall'() {
    const { table } = await galeraTable();
    for (const { writer, victim } of [
      { writer: 1, victim: 3 },
      { writer: 2, victim: 1 },
    ]) {
      const db = open(urls.galera[writer - 1] ?? '');
      /** @type {{ at: number; ms: number }[]} */
      const commits = [];
      const started = Date.now();
      let killedAt = 0;
      let id = 1_000_000 * writer;
      const stop = started + 14_000;
      const killing = delay(2_000).then(async () => {
        killedAt = Date.now() - started;
        await controlAsync('galera', 'kill', String(victim));
      });
      while (Date.now() < stop) {
        const t = Date.now();
        id += 1;
        await db.raw(`insert into ${table} values (?, 0)`, [id]);
        commits.push({ at: t - started, ms: Date.now() - t });
      }
      await killing;
      const longest = commits.reduce((max, c) => (c.ms > max.ms ? c : max));
      report(`galera stall: autocommit INSERTs on node ${writer}, node ${victim} SIGKILLed`, {
        killedAtMs: killedAt,
        commits: commits.length,
        longestMs: longest.ms,
        longestStartedAtMs: longest.at,
        overOneSecond: commits.filter((c) => c.ms > 1000).length,
        sizeAfter: await wsrep(/** @type {1|2|3} */ (writer)),
      });
      control('galera', 'heal');
    }
  },

  /** Saturated PgBouncer pool: a client waits query_wait_timeout, then … */
  async 'pgbouncer-wait'() {
    const url = new URL(urls.pgbouncer.url);
    url.pathname = '/postgres'; // a pool of its own (postgres/postgres), not the tests' `test` pool
    const warm = open(url.toString()); // its connection exists before the pool fills
    await warm.raw('select 1');
    const holders = Array.from({ length: 4 }, () => open(url.toString()));
    const held = await Promise.all(holders.map((h) => h.transaction()));
    await Promise.all(held.map((trx) => trx.raw('select pg_backend_pid()')));
    const waiter = open(url.toString()); // connects while the pool is full
    const { Client } = require('pg');
    const raw = new Client({ connectionString: url.toString() });
    /** @type {unknown[]} */
    const events = [];
    raw.on('error', (/** @type {unknown} */ error) => events.push(shape(error)));
    await raw.connect();
    const [knexResult, warmResult, warmTrx, rawResult] = await Promise.all([
      outcome(waiter.raw('select 1 as one')),
      outcome(warm.raw('select 1 as one')),
      outcome(warm.transaction((trx) => trx.raw('select 1 as one'))),
      outcome(raw.query('select 1 as one')),
    ]);
    report(
      'pgbouncer query_wait_timeout: knex, new connection (knex runs select version() on connect)',
      knexResult,
    );
    report('pgbouncer query_wait_timeout: knex, existing connection, a query', warmResult);
    report(
      'pgbouncer query_wait_timeout: knex, existing connection, transaction(handler)',
      warmTrx,
    );
    report('pgbouncer query_wait_timeout: pg Client query, and its error events', {
      query: rawResult,
      events,
      nextQuery: await outcome(raw.query('select 1 as one')),
    });
    await Promise.all(held.map((trx) => trx.commit()));
    report('pgbouncer query_wait_timeout: the knex instances once the pool is free again', {
      new: await outcome(waiter.raw('select 1 as one')),
      existing: await outcome(warm.raw('select 1 as one')),
    });
    await raw.end().catch(() => {});
  },

  /** PgBouncer restarted (immediate) while a client is in a transaction or mid-query. */
  async 'pgbouncer-restart'() {
    const idle = open(urls.pgbouncer.url);
    const busy = open(urls.pgbouncer.url);
    const { Client } = require('pg');
    const raw = new Client({ connectionString: urls.pgbouncer.url });
    /** @type {unknown[]} */
    const events = [];
    raw.on('error', (/** @type {unknown} */ error) => events.push(shape(error)));
    await raw.connect();
    await raw.query('begin');
    const trx = await idle.transaction();
    await trx.raw('select 1');
    const running = outcome(busy.raw('select pg_sleep(3)'));
    await delay(300);
    control('pgbouncer', 'restart');
    report('pgbouncer restart: statement running at the time (knex)', await running);
    report(
      'pgbouncer restart: next statement of a transaction idle at the time (knex)',
      await outcome(trx.raw('select 1 as one')),
    );
    report('pgbouncer restart: ROLLBACK of it', await outcome(trx.rollback()));
    report('pgbouncer restart: pg Client error events, then its next query', {
      events,
      nextQuery: await outcome(raw.query('select 1 as one')),
    });
    report('pgbouncer restart: the same knex instances afterwards', {
      idle: await outcome(idle.raw('select 1 as one')),
      busy: await outcome(busy.raw('select 1 as one')),
    });
    await raw.end().catch(() => {});
  },

  /** A session-level SET through transaction pooling. */
  async 'pgbouncer-set'() {
    const url = new URL(urls.pgbouncer.url);
    url.pathname = '/postgres';
    const a = open(url.toString());
    const b = open(url.toString());
    await a.raw('select 1');
    await b.raw('select 1');
    const pid = async (/** @type {import('knex').Knex} */ db) =>
      Number((await db.raw('select pg_backend_pid() as pid')).rows[0].pid);
    const setOn = await pid(a);
    await a.raw("set statement_timeout = '4321ms'");
    /** @type {{ client: string; backend: number; statement_timeout: string }[]} */
    const reads = [];
    for (let i = 0; i < 4; i += 1) {
      for (const [name, db] of /** @type {const} */ ([
        ['a', a],
        ['b', b],
      ])) {
        const { rows } = await db.raw(
          "select pg_backend_pid() as backend, current_setting('statement_timeout') as statement_timeout",
        );
        reads.push({
          client: name,
          backend: Number(rows[0].backend),
          statement_timeout: rows[0].statement_timeout,
        });
      }
    }
    report(
      'pgbouncer session SET: client a ran SET statement_timeout = 4321ms on a backend; later reads',
      {
        setOnBackend: setOn,
        reads,
      },
    );
    // Leave no setting behind on the pool's backends.
    const admin = open(urls.pgbouncer.adminUrl);
    await admin.raw('RECONNECT postgres').catch(() => {});
  },

  /** knex's searchPath (one SET search_path per new connection) through transaction pooling. */
  async 'pgbouncer-searchpath'() {
    const direct = open(process.env.KNEX_SCOPE_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test');
    const schemas = ['obs_a', 'obs_b'];
    for (const schema of schemas) {
      await direct.raw(`drop schema if exists ${schema} cascade`);
      await direct.raw(`create schema ${schema}`);
      await direct.raw(`create table ${schema}.t (v text)`);
      await direct.raw(`insert into ${schema}.t values (?)`, [schema]);
    }
    const dbs = schemas.map((schema) =>
      open(urls.pgbouncer.url, { searchPath: [schema], pool: { min: 0, max: 2 } }),
    );
    /** @type {{ wanted: string; search_path: string; read: string }[]} */
    const sessions = [];
    for (let round = 0; round < 4; round += 1) {
      await Promise.all(
        dbs.map(async (db, index) => {
          await db.transaction(async (trx) => {
            const { rows } = await trx.raw("select current_setting('search_path') as search_path");
            const read = await trx
              .raw('savepoint s; select v from t')
              .then((/** @type {any} */ results) => String(results[1]?.rows[0]?.v))
              .catch(async (/** @type {any} */ error) => {
                await trx.raw('rollback to savepoint s');
                return `${error.code}: ${error.message.replace(/^.* - /, '')}`;
              });
            sessions.push({ wanted: schemas[index] ?? '', search_path: rows[0].search_path, read });
          });
        }),
      );
    }
    report('pgbouncer knex searchPath: 8 sessions, two knex instances (obs_a, obs_b)', {
      wrong: sessions.filter((s) => s.wanted !== s.read).length,
      sessions,
    });
    for (const schema of schemas) await direct.raw(`drop schema ${schema} cascade`);
    await open(urls.pgbouncer.adminUrl)
      .raw('RECONNECT test')
      .catch(() => {});
  },
};

async function main() {
  const names = process.argv.slice(2);
  const chosen = names.length > 0 ? names : Object.keys(experiments);
  for (const name of chosen) {
    const experiment = /** @type {Record<string, () => Promise<void>>} */ (experiments)[name];
    if (experiment === undefined) throw new Error(`unknown experiment ${name}`);
    process.stdout.write(`# ${name}\n`);
    await experiment();
  }
}

main()
  .catch((error) => {
    console.error(error);
    process.exitCode = 1;
  })
  .finally(async () => {
    // A pool whose connection a fault left mid-acquire can keep destroy() waiting: cap it.
    const destroyed = Promise.all(instances.map((instance) => instance.destroy().catch(() => {})));
    await Promise.race([destroyed, delay(5_000)]);
    process.exit();
  });
