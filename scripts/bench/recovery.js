// @ts-check
'use strict';
// Recovery benchmark (issue 3): what retryTransaction buys when the database connections keep
// dying under steady load. An Express 5 app (in a child process of its own, so that the killer and
// the load generator do not share its event loop) serves POST /orders/:requestId, which inserts one
// row carrying the client's request id through `req.db.session` and commits, then answers 201.
// A closed-loop client keeps `--connections` requests in flight, each with a fresh request id, and
// records every response's status. Meanwhile an admin connection kills EVERY backend of the app
// every `--interval` seconds: on PostgreSQL `pg_terminate_backend` of every pid whose
// application_name is the app's; on MariaDB `KILL CONNECTION USER` of a user only the app uses.
// Each database runs once per mode: the route wrapped in `retryTransaction(handler, { session:
// (req) => req.db, total, backoffFactor, commitOutcome })` with commitOutcome 'auto' (the default),
// 'xa' (MariaDB only) or 'marker' (the marker table is created by knex-scope's migration if
// missing), and `plain`, without retryTransaction.
// Afterwards the table is compared with the responses: no request id may have two rows, every 201
// must have its row, and a row whose request was answered with an error is "committed but
// reported failed". A COMMIT whose outcome cannot be known (MariaDB in 'auto', or PostgreSQL when
// the outcome cannot be asked) is answered 503. The app's CPU time is divided by its 201s.
//
//   npm run build && node scripts/bench/recovery.js               # 30 s per run, a kill every 2 s
//   node scripts/bench/recovery.js --duration 10                  # quick
//
// Options (`--name=value` or `--name value`, or environment):
//   --duration=S     BENCH_DURATION     seconds of load per run (default 30)
//   --interval=S     BENCH_INTERVAL     seconds between kills; 0 = no kills (default 2)
//   --connections=N  BENCH_CONNECTIONS  requests in flight (default 20)
//   --pool=N         BENCH_POOL         the app's pool.max (default 10)
//   --total=N        BENCH_TOTAL        retryTransaction's total (default 3)
//   --backoff=MS     BENCH_BACKOFF      retryTransaction's backoffFactor (default 100)
//   --rounds=N       BENCH_ROUNDS       runs per database and mode, alternating modes (default 1)
//   --databases=LIST BENCH_DATABASES    postgres,mariadb (default both)
//   --modes=LIST     BENCH_MODES        auto,xa,marker,plain (default auto,plain; retry = auto)
//   --timeout=MS     BENCH_TIMEOUT      client-side request timeout (default 30000)
//   --json=FILE                         also write the raw numbers as JSON
//   --otel                              the app runs knex-scope/opentelemetry with the SDK;
//                                       its span and metric counts are printed beside the app's own
//   KNEX_SCOPE_PG_URL, KNEX_SCOPE_MYSQL_URL   the servers (see scripts/probe-databases.js)
// Exits non-zero if a request id has two rows or a 201 has no row.
const { fork } = require('node:child_process');
const { writeFileSync } = require('node:fs');
const http = require('node:http');
const os = require('node:os');
const { performance } = require('node:perf_hooks');

/**
 * @param {string} name
 * @param {string} env
 * @param {string} fallback
 */
function option(name, env, fallback) {
  const at = process.argv.indexOf(`--${name}`);
  const spaced = at >= 0 ? process.argv[at + 1] : undefined;
  const flag = process.argv.find((arg) => arg.startsWith(`--${name}=`));
  return flag?.slice(name.length + 3) ?? spaced ?? process.env[env] ?? fallback;
}

/**
 * @typedef {'postgres' | 'mariadb'} Database
 * @typedef {'auto' | 'xa' | 'marker' | 'plain'} Mode
 * @typedef {{
 *   database: Database;
 *   mode: Mode;
 *   table: string;
 *   config: import('knex').Knex.Config;
 *   total: number;
 *   backoff: number;
 *   otel?: boolean;
 * }} ServerSpec
 * @typedef {{
 *   type: 'stats';
 *   requests: number;
 *   attempts: number;
 *   commitErrors: Record<string, number>;
 *   commitsResolved: number;
 *   cpuMs: number;
 *   decisions: Record<string, number>;
 *   errors: Record<string, number>;
 *   discarded: number;
 *   poolUsed: number;
 *   poolPending: number;
 *   inFlight: number;
 *   otel?: { spans: Record<string, number>; events: Record<string, number>; metrics: Record<string, number> };
 * }} ServerStats
 * @typedef {{ status: number; code: string; ms: number }} Outcome
 */

/** The app's user on MariaDB: KILL CONNECTION USER ends every connection it has, and only those. */
const mariadbUser = 'knex_scope_recovery';
/** The app's application_name on PostgreSQL, which pg_stat_activity shows for each of its backends. */
const appName = `knex-scope-bench-recovery-${process.pid}`;

// ─── the app (child process) ─────────────────────────────────────────────────────────────────

/** @param {ServerSpec} spec */
function serve(spec) {
  const express = require('express');
  const { retryTransaction, withDb } = require('knex-scope');
  const otel = spec.otel === true ? require('./otel-counts').startOtelCounts() : undefined;

  // knex warns "Connection Error: …" for every dead connection its pool discards: counted instead.
  let discarded = 0;
  const db = withDb({
    ...spec.config,
    log: {
      warn: (/** @type {unknown} */ message) => {
        if (String(message).startsWith('Connection Error')) discarded++;
        else console.warn(message);
      },
    },
  });
  const pool = /** @type {import('tarn').Pool<unknown>} */ (
    /** @type {{ pool: unknown }} */ (db.knex.client).pool
  );
  /** @type {Omit<ServerStats, 'type' | 'discarded' | 'poolUsed' | 'poolPending' | 'inFlight' | 'cpuMs'>} */
  const stats = {
    requests: 0,
    attempts: 0,
    commitErrors: {},
    commitsResolved: 0,
    decisions: {},
    errors: {},
  };
  /** @type {WeakMap<object, number>} */
  const attempts = new WeakMap();
  const cpuAtStart = process.cpuUsage();

  /**
   * One attempt: insert the request's row in the lazy session and commit.
   * @param {import('express').Request} req
   * @param {import('express').Response} res
   */
  async function insertOrder(req, res) {
    const attempt = (attempts.get(req) ?? 0) + 1;
    attempts.set(req, attempt);
    stats.attempts++;
    const trx = await req.db.session;
    let commitFailed = false;
    trx.on('query-error', (/** @type {unknown} */ error, /** @type {{ sql?: string }} */ query) => {
      if (query.sql !== 'COMMIT;' && !query.sql?.startsWith('XA ')) return;
      commitFailed = true;
      const key = errorLabel(error);
      stats.commitErrors[key] = (stats.commitErrors[key] ?? 0) + 1;
    });
    await trx(spec.table).insert({ request_id: req.params.id, attempt });
    await trx.commit();
    // COMMIT lost its connection, yet commit() resolved: it was found to have committed.
    if (commitFailed) stats.commitsResolved++;
    res.status(201).json({ attempt });
  }

  const handler =
    spec.mode === 'plain'
      ? insertOrder
      : retryTransaction(insertOrder, {
          session: (req) => req.db,
          total: spec.total,
          backoffFactor: spec.backoff,
          commitOutcome: spec.mode,
          onRetry: ({ decision }) => {
            stats.decisions[decision] = (stats.decisions[decision] ?? 0) + 1;
          },
        });

  const app = express();
  app.disable('x-powered-by');
  app.disable('etag');
  app.use(db);
  app.post('/orders/:id', handler);
  /**
   * Every failure is answered with its cause; an unknown COMMIT outcome with 503.
   * @param {unknown} error
   * @param {import('express').Request} _req
   * @param {import('express').Response} res
   * @param {import('express').NextFunction} _next
   */
  function answerError(error, _req, res, _next) {
    const code = errorLabel(error);
    const status = code === 'ERR_COMMIT_OUTCOME_UNKNOWN' ? 503 : 500;
    const key = `${status} ${code}`;
    stats.errors[key] = (stats.errors[key] ?? 0) + 1;
    res.status(status).json({ code });
  }
  app.use(answerError);

  let inFlight = 0;
  const server = http.createServer(app);
  server.on('request', (_req, res) => {
    stats.requests++;
    inFlight++;
    res.once('close', () => {
      inFlight--;
    });
  });

  const send = (/** @type {unknown} */ message) => process.send?.(message);
  process.on('message', async (/** @type {{ type: string }} */ message) => {
    if (message.type === 'stats') {
      send({
        type: 'stats',
        ...stats,
        otel: await otel?.counts(),
        discarded,
        poolUsed: pool.numUsed(),
        poolPending: pool.numPendingAcquires() + pool.numPendingCreates(),
        inFlight,
        cpuMs: ((cpu) => (cpu.user + cpu.system) / 1000)(process.cpuUsage(cpuAtStart)),
      });
    } else if (message.type === 'stop') {
      server.close();
      server.closeAllConnections();
      db.destroy().then(
        () => process.disconnect?.(),
        (error) => {
          console.error(error);
          process.exit(1);
        },
      );
    }
  });
  process.on('disconnect', () => {
    server.close();
    server.closeAllConnections();
    void db.destroy();
  });
  server.listen(0, '127.0.0.1', () => {
    const { port } = /** @type {import('node:net').AddressInfo} */ (server.address());
    send({ type: 'ready', port });
  });
}

/**
 * A short name for why a request failed: knex-scope's code, the SQLSTATE / driver code, or the end
 * of the driver's message (knex prefixes it with the SQL and " - ").
 * @param {unknown} error
 */
function errorLabel(error) {
  const { code, message } = /** @type {{ code?: unknown; message?: unknown }} */ (error ?? {});
  if (typeof code === 'string' || typeof code === 'number') return String(code);
  const text = typeof message === 'string' ? message : String(error);
  const sql = text.lastIndexOf(' - ');
  return (sql < 0 ? text : text.slice(sql + 3)).trim();
}

// ─── the benchmark (parent process) ──────────────────────────────────────────────────────────

/**
 * @param {ServerSpec} spec
 */
async function startServer(spec) {
  const child = fork(__filename, ['--serve', JSON.stringify(spec)], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  /** @type {Map<string, (message: any) => void>} */
  const waiting = new Map();
  child.on('message', (/** @type {{ type: string }} */ message) => {
    const resolve = waiting.get(message.type);
    waiting.delete(message.type);
    resolve?.(message);
  });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  /**
   * @param {string} type
   * @param {boolean} [sendIt]
   * @returns {Promise<any>}
   */
  const ask = (type, sendIt = true) =>
    Promise.race([
      new Promise((resolve) => {
        waiting.set(type, resolve);
        if (sendIt) child.send({ type });
      }),
      exited.then((code) => {
        throw new Error(`the app exited (${code}) before answering ${type}`);
      }),
    ]);
  const { port } = await ask('ready', false);
  return {
    port,
    /** @returns {Promise<ServerStats>} */
    stats: () => ask('stats'),
    stop: async () => {
      if (child.connected) child.send({ type: 'stop' });
      await exited;
    },
  };
}

/**
 * The closed-loop client: `connections` workers, each sending POST /orders/<fresh id> as soon as
 * its previous response arrived, until `seconds` have passed. Records every request's outcome.
 * @param {number} port
 * @param {string} tag
 * @param {{ connections: number; seconds: number; timeout: number }} load
 */
async function runLoad(port, tag, { connections, seconds, timeout }) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: connections });
  /** @type {Map<string, Outcome>} */
  const outcomes = new Map();
  const end = performance.now() + seconds * 1000;
  /** @param {string} id @returns {Promise<Outcome>} */
  const post = (id) =>
    new Promise((resolve) => {
      const started = performance.now();
      const done = (/** @type {number} */ status, /** @type {string} */ code) =>
        resolve({ status, code, ms: performance.now() - started });
      const req = http.request(
        {
          agent,
          host: '127.0.0.1',
          port,
          method: 'POST',
          path: `/orders/${id}`,
          headers: { 'content-length': '0' },
          timeout,
        },
        (res) => {
          /** @type {Buffer[]} */
          const chunks = [];
          res.on('data', (chunk) => chunks.push(chunk));
          res.on('error', () => done(0, 'response error'));
          res.on('end', () => {
            const status = res.statusCode ?? 0;
            let code = '';
            if (status !== 201) {
              try {
                code = String(JSON.parse(Buffer.concat(chunks).toString()).code);
              } catch {
                code = 'unparsable body';
              }
            }
            done(status, code);
          });
        },
      );
      req.on('timeout', () => req.destroy(new Error('client timeout')));
      req.on('error', (error) => done(0, error.message));
      req.end();
    });
  const worker = async (/** @type {number} */ w) => {
    for (let seq = 0; performance.now() < end; seq++) {
      const id = `${tag}-${w}-${seq}`;
      outcomes.set(id, await post(id));
    }
  };
  const started = performance.now();
  await Promise.all(Array.from({ length: connections }, (_, w) => worker(w)));
  const elapsed = (performance.now() - started) / 1000;
  agent.destroy();
  return { outcomes, elapsed };
}

/**
 * @param {Database} database
 * @param {string} url
 * @param {number} poolMax
 * @returns {import('knex').Knex.Config}
 */
function appConfig(database, url, poolMax) {
  const pool = { min: 0, max: poolMax };
  if (database === 'postgres') {
    return {
      client: 'pg',
      connection: { connectionString: url, application_name: appName },
      pool,
    };
  }
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
    pool,
  };
}

/**
 * Kills every backend of the app now; resolves to how many there were.
 * @param {Database} database
 * @param {import('knex').Knex} admin
 * @returns {Promise<number>}
 */
async function killAll(database, admin) {
  if (database === 'postgres') {
    const { rows } = await admin.raw(
      'select count(*)::int as n from (select pg_terminate_backend(pid) from pg_stat_activity ' +
        'where application_name = ? and pid <> pg_backend_pid()) killed',
      [appName],
    );
    return rows[0].n;
  }
  const [rows] = await admin.raw(
    'select count(*) as n from information_schema.processlist where user = ?',
    [mariadbUser],
  );
  await admin.raw('kill connection user ?', [mariadbUser]);
  return Number(rows[0].n);
}

/** @param {number[]} sorted @param {number} q */
function percentile(sorted, q) {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)] ?? Number.NaN;
}

/**
 * @typedef {{
 *   database: Database;
 *   mode: Mode;
 *   round: number;
 *   seconds: number;
 *   kills: number[];
 *   requests: number;
 *   ok: number;
 *   byStatus: Record<string, number>;
 *   byCode: Record<string, number>;
 *   rows: number;
 *   distinctIds: number;
 *   duplicatedIds: number;
 *   extraRows: number;
 *   committedButFailed: Record<string, number>;
 *   lost: number;
 *   strangers: number;
 *   p50: number;
 *   p99: number;
 *   p99ok: number;
 *   max: number;
 *   server: ServerStats;
 * }} Run
 */

/**
 * One run: fresh table contents, a fresh app, the load, the kills, then the reconciliation.
 * @param {{ database: Database; mode: Mode; round: number; url: string; admin: import('knex').Knex; table: string }} run
 * @param {{ seconds: number; interval: number; connections: number; timeout: number; poolMax: number; total: number; backoff: number; otel: boolean }} settings
 * @returns {Promise<Run>}
 */
async function runOnce({ database, mode, round, url, admin, table }, settings) {
  await admin(table).truncate();
  const app = await startServer({
    database,
    mode,
    table,
    config: appConfig(database, url, settings.poolMax),
    total: settings.total,
    backoff: settings.backoff,
    otel: settings.otel,
  });
  /** @type {number[]} */
  const kills = [];
  let killing = true;
  const killer = (async () => {
    if (settings.interval <= 0) return;
    const start = performance.now();
    for (let k = 1; ; k++) {
      const at = start + k * settings.interval * 1000;
      if (at >= start + settings.seconds * 1000) return;
      await new Promise((resolve) => setTimeout(resolve, at - performance.now()));
      if (!killing) return;
      kills.push(await killAll(database, admin));
    }
  })();
  const tag = `${database[0]}${mode[0]}${round}`;
  const { outcomes, elapsed } = await runLoad(app.port, tag, {
    connections: settings.connections,
    seconds: settings.seconds,
    timeout: settings.timeout,
  });
  killing = false;
  await killer;
  let server = await app.stats();
  for (let i = 0; i < 100 && (server.inFlight > 0 || server.poolUsed > 0); i++) {
    await new Promise((resolve) => setTimeout(resolve, 50));
    server = await app.stats();
  }
  await app.stop();

  /** @type {{ request_id: string; n: number | string }[]} */
  const grouped = await admin(table).select('request_id').count({ n: '*' }).groupBy('request_id');
  const [dupRow] = await admin
    .from(admin(table).select('request_id').groupBy('request_id').havingRaw('count(*) > 1').as('d'))
    .count({ n: '*' });
  const duplicatedIds = Number(dupRow?.n);

  /** @type {Record<string, number>} */
  const byStatus = {};
  /** @type {Record<string, number>} */
  const byCode = {};
  /** @type {number[]} */
  const all = [];
  /** @type {number[]} */
  const okLatencies = [];
  let ok = 0;
  for (const { status, code, ms } of outcomes.values()) {
    const key = status === 0 ? 'no response' : String(status);
    byStatus[key] = (byStatus[key] ?? 0) + 1;
    if (status === 201) {
      ok++;
      okLatencies.push(ms);
    } else byCode[`${key} ${code}`] = (byCode[`${key} ${code}`] ?? 0) + 1;
    all.push(ms);
  }
  all.sort((x, y) => x - y);
  okLatencies.sort((x, y) => x - y);

  let rows = 0;
  let strangers = 0;
  /** @type {Record<string, number>} */
  const committedButFailed = {};
  const inTable = new Set();
  for (const { request_id: id, n } of grouped) {
    rows += Number(n);
    inTable.add(id);
    const outcome = outcomes.get(id);
    if (outcome === undefined) strangers++;
    else if (outcome.status !== 201) {
      const key = outcome.status === 0 ? 'no response' : String(outcome.status);
      committedButFailed[key] = (committedButFailed[key] ?? 0) + 1;
    }
  }
  let lost = 0;
  for (const [id, { status }] of outcomes) if (status === 201 && !inTable.has(id)) lost++;

  return {
    database,
    mode,
    round,
    seconds: elapsed,
    kills,
    requests: outcomes.size,
    ok,
    byStatus,
    byCode,
    rows,
    distinctIds: grouped.length,
    duplicatedIds,
    extraRows: rows - grouped.length,
    committedButFailed,
    lost,
    strangers,
    p50: percentile(all, 0.5),
    p99: percentile(all, 0.99),
    p99ok: percentile(okLatencies, 0.99),
    max: all.at(-1) ?? Number.NaN,
    server,
  };
}

/** @param {Record<string, number>} counts */
function list(counts) {
  const entries = Object.entries(counts).sort(([, x], [, y]) => y - x);
  return entries.length === 0 ? '–' : entries.map(([key, n]) => `${key}: ${n}`).join(', ');
}

/** @param {Record<string, number>} counts */
const sum = (counts) => Object.values(counts).reduce((total, n) => total + n, 0);

async function main() {
  const { knex: createKnex } = require('knex');
  const { commitMarkerMigration, commitMarkerTable } = require('knex-scope');
  const { servers } = require('../probe-databases');

  const seconds = Number(option('duration', 'BENCH_DURATION', '30'));
  const interval = Number(option('interval', 'BENCH_INTERVAL', '2'));
  const connections = Number(option('connections', 'BENCH_CONNECTIONS', '20'));
  const poolMax = Number(option('pool', 'BENCH_POOL', '10'));
  const total = Number(option('total', 'BENCH_TOTAL', '3'));
  const backoff = Number(option('backoff', 'BENCH_BACKOFF', '100'));
  const rounds = Number(option('rounds', 'BENCH_ROUNDS', '1'));
  const timeout = Number(option('timeout', 'BENCH_TIMEOUT', '30000'));
  const databases = /** @type {Database[]} */ (
    option('databases', 'BENCH_DATABASES', 'postgres,mariadb').split(',')
  );
  const modes = /** @type {Mode[]} */ (
    option('modes', 'BENCH_MODES', 'auto,plain')
      .split(',')
      .map((mode) => (mode === 'retry' ? 'auto' : mode))
  );
  for (const mode of modes) {
    if (!['auto', 'xa', 'marker', 'plain'].includes(mode)) {
      throw new Error(`--modes: unknown mode ${mode}; the modes are auto, xa, marker, plain`);
    }
  }
  const jsonFile = option('json', 'BENCH_JSON', '');
  const otel = process.argv.includes('--otel');
  const settings = { seconds, interval, connections, timeout, poolMax, total, backoff, otel };

  const cpus = os.cpus();
  console.log(
    `knex-scope recovery benchmark: node ${process.version}, ${os.availableParallelism()} cores ` +
      `(${cpus[0]?.model ?? 'unknown CPU'}), load average ${os
        .loadavg()
        .map((n) => n.toFixed(2))
        .join(' ')}`,
  );
  console.log(
    `${connections} connections closed-loop for ${seconds} s per run; every backend of the app ` +
      `killed every ${interval} s; app pool.max ${poolMax}; retry mode: retryTransaction(handler, ` +
      `{ session: (req) => req.db, total: ${total}, backoffFactor: ${backoff} })\n`,
  );

  /** @type {Run[]} */
  const runs = [];
  for (const database of databases) {
    const url = servers[database];
    const admin = createKnex(
      database === 'postgres'
        ? {
            client: 'pg',
            connection: { connectionString: url, application_name: `${appName}-admin` },
            pool: { min: 0, max: 1 },
          }
        : { client: 'mysql2', connection: url, pool: { min: 0, max: 1 } },
    );
    const table = `bench_recovery_${process.pid}`;
    let createdMarkers = false;
    try {
      await admin.schema.dropTableIfExists(table);
      await admin.schema.createTable(table, (t) => {
        t.increments('id');
        t.string('request_id', 64).notNullable(); // deliberately not unique: duplicates must show
        t.integer('attempt').notNullable();
      });
      if (database === 'mariadb') {
        const name = new URL(url).pathname.slice(1);
        await admin.raw(`create user if not exists '${mariadbUser}'@'%'`);
        await admin.raw(`grant all on \`${name}\`.* to '${mariadbUser}'@'%'`);
      }
      createdMarkers =
        modes.includes('marker') && !(await admin.schema.hasTable(commitMarkerTable));
      if (createdMarkers) await commitMarkerMigration.up(admin);
      for (let round = 1; round <= rounds; round++) {
        const order = round % 2 === 1 ? modes : [...modes].reverse();
        for (const mode of order) {
          if (mode === 'xa' && database !== 'mariadb') continue;
          const run = await runOnce({ database, mode, round, url, admin, table }, settings);
          runs.push(run);
          console.log(
            `  ${database} ${mode} round ${round}: ${run.requests} requests, ${run.ok} × 201, ` +
              `${run.kills.length} kills (${run.kills.join(' ')} backends), ${run.rows} rows, ` +
              `${run.duplicatedIds} duplicated ids, ${run.lost} 201s without a row`,
          );
        }
      }
    } finally {
      await admin.schema.dropTableIfExists(table).catch(() => {});
      if (createdMarkers) await commitMarkerMigration.down(admin).catch(() => {});
      if (database === 'mariadb') {
        await admin.raw(`drop user if exists '${mariadbUser}'@'%'`).catch(() => {});
      }
      await admin.destroy();
    }
  }

  const lines = [
    '| database | mode | requests | req/s | 201 | errors by status | rows | rows = 201s | duplicated ids | committed but reported failed | outcome unknown (503) | p50 ms | p99 ms | p99 of 201s ms | app CPU µs per 201 |',
    '| --- | --- | ---: | ---: | ---: | --- | ---: | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |',
  ];
  /** @type {string[]} */
  const notes = [];
  let failed = 0;
  for (const run of runs) {
    const errors = { ...run.byStatus };
    delete errors['201'];
    const reportedFailed = sum(run.committedButFailed);
    const equal = run.rows === run.ok && reportedFailed === 0 && run.lost === 0;
    if (run.duplicatedIds > 0 || run.lost > 0 || run.strangers > 0) failed++;
    lines.push(
      `| ${run.database} | ${run.mode === 'plain' ? 'no retry' : `retryTransaction '${run.mode}'`} | ${run.requests} | ` +
        `${(run.requests / run.seconds).toFixed(0)} | ${((100 * run.ok) / run.requests).toFixed(2)} % (${run.ok}) | ` +
        `${list(errors)} | ${run.rows} | ${equal ? 'yes' : 'no'} | ${run.duplicatedIds} | ` +
        `${reportedFailed === 0 ? '0' : `${reportedFailed} (${list(run.committedButFailed)})`} | ` +
        `${run.byStatus['503'] ?? 0} | ` +
        `${run.p50.toFixed(1)} | ${run.p99.toFixed(1)} | ${run.p99ok.toFixed(1)} | ` +
        `${((1000 * run.server.cpuMs) / run.ok).toFixed(0)} |`,
    );
    const s = run.server;
    notes.push(
      `${run.database} ${run.mode} round ${run.round}: ${run.kills.length} kills ending ` +
        `${run.kills.reduce((x, y) => x + y, 0)} backends; errors by cause: ${list(run.byCode)}; ` +
        `server: ${s.requests} requests, ${s.attempts} attempts, retry decisions {${list(s.decisions)}}, ` +
        `COMMITs that failed ${sum(s.commitErrors)} {${list(s.commitErrors)}}, of which resolved as committed ${s.commitsResolved}; ` +
        `dead connections discarded by the pool ${s.discarded}; ` +
        `201s without a row ${run.lost}; rows of unknown ids ${run.strangers}; max latency ${run.max.toFixed(0)} ms; ` +
        `pool after: ${s.poolUsed} used, ${s.poolPending} pending` +
        (s.otel === undefined
          ? ''
          : `; OpenTelemetry: spans {${list(s.otel.spans)}}, retry events {${list(s.otel.events)}}, ` +
            `metrics {${list(s.otel.metrics)}}`),
    );
  }
  console.log(`\n${lines.join('\n')}\n`);
  for (const note of notes) console.log(`- ${note}`);
  if (jsonFile !== '') {
    writeFileSync(
      jsonFile,
      `${JSON.stringify({ node: process.version, cores: os.availableParallelism(), settings, runs }, null, 2)}\n`,
    );
  }
  console.log(
    failed === 0
      ? '\nno duplicated request id, every 201 has its row'
      : `\n${failed} run(s) with duplicated ids, 201s without a row or rows of unknown ids`,
  );
  process.exitCode = failed === 0 ? 0 : 1;
}

if (process.argv[2] === '--serve') serve(JSON.parse(process.argv[3] ?? '{}'));
else {
  main().catch((error) => {
    console.error(error);
    process.exitCode = 1;
  });
}
