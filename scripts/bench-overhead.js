// @ts-check
'use strict';
// What knex-scope costs per request, measured with autocannon against two servers that differ only
// in knex-scope (each in a child process: scripts/bench-server.js), alternating A and B for several
// rounds after a warm-up, and reporting medians:
//   a-express, a-koa   a route that never touches the database, without vs with app.use(withDb(…));
//                      the withDb side must acquire no connection and send no query
//   b-sqlite, b-postgres, b-mariadb
//                      SELECT 1 in a hand-written knex.transaction(async (trx) => …) vs through
//                      `const s = await req.db.session; await s.select(…); await s.commit()`
//
//   npm run build && node scripts/bench-overhead.js            # 5 rounds × 5 s, 3 s warm-up
//   node scripts/bench-overhead.js --quick                     # 3 rounds × 2 s, 1 s warm-up
//
// Options (flags or environment):
//   --rounds=N       BENCH_ROUNDS       measured rounds per side (default 5)
//   --duration=S     BENCH_DURATION     seconds per round (default 5)
//   --warmup=S       BENCH_WARMUP       warm-up seconds per side (default 3)
//   --connections=N  BENCH_CONNECTIONS  autocannon connections (default 32)
//   --pool=N         BENCH_POOL         pool.max for PostgreSQL and MariaDB (default 10)
//   --only=LIST      BENCH_ONLY         scenarios, e.g. a-express,b-postgres (default: all)
//   --json=FILE                         also write the raw numbers as JSON
//   --diagnose                          also run the attribution scenarios (d-…): the same pairs
//                                       with Node's AsyncLocalStorage alone on the baseline side,
//                                       to separate its cost from knex-scope's own code
//   KNEX_SCOPE_PG_URL, KNEX_SCOPE_MYSQL_URL   the servers (see scripts/probe-databases.js);
//   a scenario whose server does not answer is skipped.
const { fork } = require('node:child_process');
const { mkdtempSync, rmSync, writeFileSync } = require('node:fs');
const os = require('node:os');
const { join } = require('node:path');
const autocannon = require('autocannon');
const { probeDatabases, servers } = require('./probe-databases');

/**
 * @param {string} name
 * @param {string} env
 * @param {string} fallback
 */
function option(name, env, fallback) {
  const flag = process.argv.find((arg) => arg.startsWith(`--${name}=`));
  return flag?.slice(name.length + 3) ?? process.env[env] ?? fallback;
}

const quick = process.argv.includes('--quick');
const rounds = Number(option('rounds', 'BENCH_ROUNDS', quick ? '3' : '5'));
const duration = Number(option('duration', 'BENCH_DURATION', quick ? '2' : '5'));
const warmup = Number(option('warmup', 'BENCH_WARMUP', quick ? '1' : '3'));
const connections = Number(option('connections', 'BENCH_CONNECTIONS', '32'));
const poolMax = Number(option('pool', 'BENCH_POOL', '10'));
const only = option('only', 'BENCH_ONLY', '');
const jsonFile = option('json', 'BENCH_JSON', '');
const diagnose = process.argv.includes('--diagnose');

/**
 * @typedef {import('./bench-server').BenchSide} BenchSide
 * @typedef {{
 *   name: string;
 *   title: string;
 *   path: string;
 *   target: number;
 *   a: { label: string; side: BenchSide };
 *   b: { label: string; side: BenchSide };
 *   needs?: 'postgres' | 'mariadb';
 * }} Scenario
 * @typedef {{
 *   rps: number;
 *   p50: number;
 *   p99: number;
 *   cpuUsPerRequest: number;
 *   requests: number;
 *   acquires: number;
 *   queries: number;
 *   non2xx: number;
 *   errors: number;
 *   serverErrors: number;
 * }} Round
 */

const tmp = mkdtempSync(join(os.tmpdir(), 'knex-scope-bench-'));

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
    a: { label: 'no knex-scope', side: { framework: 'express', variant: 'plain' } },
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
    a: { label: 'no knex-scope', side: { framework: 'koa', variant: 'plain' } },
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

// Attribution: how much of each gap is AsyncLocalStorage (which knex-scope needs for currentDb()
// and which, on Node 20, slows every promise once enabled) and how much is knex-scope's own code.
/** @type {Scenario[]} */
const diagnostics = [
  {
    name: 'd-express-als',
    title: 'Express 5, route without database: cost of AsyncLocalStorage.run alone',
    path: '/plain',
    target: 0,
    a: { label: 'no knex-scope', side: { framework: 'express', variant: 'plain' } },
    b: { label: 'storage.run only', side: { framework: 'express', variant: 'plain', als: true } },
  },
  {
    name: 'd-express-scope',
    title: 'Express 5, route without database: knex-scope beyond AsyncLocalStorage',
    path: '/plain',
    target: 0,
    a: { label: 'storage.run only', side: { framework: 'express', variant: 'plain', als: true } },
    b: {
      label: 'app.use(withDb)',
      side: { framework: 'express', variant: 'withDb', connection: sqlite('d-express.sqlite') },
    },
  },
  {
    name: 'd-koa-als',
    title: 'Koa 3, route without database: cost of AsyncLocalStorage.run alone',
    path: '/plain',
    target: 0,
    a: { label: 'no knex-scope', side: { framework: 'koa', variant: 'plain' } },
    b: { label: 'storage.run only', side: { framework: 'koa', variant: 'plain', als: true } },
  },
  {
    name: 'd-koa-scope',
    title: 'Koa 3, route without database: knex-scope beyond AsyncLocalStorage',
    path: '/plain',
    target: 0,
    a: { label: 'storage.run only', side: { framework: 'koa', variant: 'plain', als: true } },
    b: {
      label: 'app.use(withDb)',
      side: { framework: 'koa', variant: 'withDb', connection: sqlite('d-koa.sqlite') },
    },
  },
  {
    name: 'd-sqlite-als',
    title: 'SELECT 1, SQLite: cost of AsyncLocalStorage.run alone',
    path: '/select',
    target: 0,
    a: {
      label: 'knex.transaction',
      side: { framework: 'express', variant: 'knex', connection: sqlite('d-knex.sqlite') },
    },
    b: {
      label: 'same + storage.run',
      side: {
        framework: 'express',
        variant: 'knex',
        als: true,
        connection: sqlite('d-als.sqlite'),
      },
    },
  },
  {
    name: 'd-sqlite-scope',
    title: 'SELECT 1, SQLite: knex-scope beyond AsyncLocalStorage',
    path: '/select',
    target: 0,
    a: {
      label: 'knex.transaction + storage.run',
      side: {
        framework: 'express',
        variant: 'knex',
        als: true,
        connection: sqlite('d-als2.sqlite'),
      },
    },
    b: {
      label: 'req.db.session',
      side: { framework: 'express', variant: 'scope', connection: sqlite('d-scope.sqlite') },
    },
  },
];

/**
 * A bench-server.js child.
 * @param {BenchSide} side
 */
async function startSide(side) {
  const child = fork(join(__dirname, 'bench-server.js'), [JSON.stringify(side)], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  /** @type {Map<string, { resolve: (message: any) => void; reject: (error: Error) => void }>} */
  const waiting = new Map();
  child.on('message', (/** @type {{ type: string }} */ message) => {
    const pending = waiting.get(message.type);
    waiting.delete(message.type);
    pending?.resolve(message);
  });
  const exited = new Promise((resolve) => {
    child.once('exit', (code) => {
      for (const [type, pending] of waiting) {
        pending.reject(new Error(`bench server exited (${code}) before answering ${type}`));
      }
      waiting.clear();
      resolve(code);
    });
  });
  /**
   * @param {string} type
   * @param {boolean} [sendIt]
   * @returns {Promise<any>}
   */
  const ask = (type, sendIt = true) =>
    new Promise((resolve, reject) => {
      waiting.set(type, { resolve, reject });
      if (sendIt) child.send({ type });
    });
  const { port } = await ask('ready', false);
  return {
    url: `http://127.0.0.1:${port}`,
    reset: () => ask('reset'),
    settle: () => ask('settle'),
    /** @returns {Promise<{ cpuUs: number; requests: number; errors: number; acquires: number; queries: number; poolUsed: number; poolPending: number }>} */
    stats: () => ask('stats'),
    stop: async () => {
      if (child.connected) child.send({ type: 'stop' });
      await exited;
    },
  };
}

/**
 * One autocannon run against a side, with the server's CPU time over it.
 * @param {Awaited<ReturnType<typeof startSide>>} side
 * @param {string} path
 * @param {number} seconds
 * @returns {Promise<Round>}
 */
async function measure(side, path, seconds) {
  await side.reset();
  const result = await autocannon({
    url: `${side.url}${path}`,
    connections,
    duration: seconds,
    pipelining: 1,
  });
  await side.settle();
  const stats = await side.stats();
  return {
    rps: result.requests.total / seconds,
    p50: result.latency.p50,
    p99: result.latency.p99,
    cpuUsPerRequest: stats.requests === 0 ? 0 : stats.cpuUs / stats.requests,
    requests: stats.requests,
    acquires: stats.acquires,
    queries: stats.queries,
    non2xx: result.non2xx,
    errors: result.errors + result.timeouts,
    serverErrors: stats.errors,
  };
}

/** @param {number[]} values */
function median(values) {
  const sorted = [...values].sort((x, y) => x - y);
  const middle = Math.floor(sorted.length / 2);
  const upper = sorted[middle] ?? Number.NaN;
  return sorted.length % 2 === 1 ? upper : ((sorted[middle - 1] ?? Number.NaN) + upper) / 2;
}

/**
 * Runs one scenario: both sides up, a warm-up each, then `rounds` rounds alternating the order.
 * @param {Scenario} scenario
 */
async function runScenario(scenario) {
  const a = await startSide(scenario.a.side);
  const b = await startSide(scenario.b.side);
  try {
    await measure(a, scenario.path, warmup);
    await measure(b, scenario.path, warmup);
    /** @type {Round[]} */
    const roundsA = [];
    /** @type {Round[]} */
    const roundsB = [];
    for (let round = 0; round < rounds; round++) {
      const order = round % 2 === 0 ? /** @type {const} */ (['a', 'b']) : ['b', 'a'];
      for (const which of order) {
        const result = await measure(which === 'a' ? a : b, scenario.path, duration);
        (which === 'a' ? roundsA : roundsB).push(result);
      }
      const lastA = /** @type {Round} */ (roundsA.at(-1));
      const lastB = /** @type {Round} */ (roundsB.at(-1));
      console.log(
        `  ${scenario.name} round ${round + 1}/${rounds}: ` +
          `${scenario.a.label} ${lastA.rps.toFixed(0)} req/s, ${scenario.b.label} ${lastB.rps.toFixed(0)} req/s ` +
          `(${(lastB.rps / lastA.rps).toFixed(3)}×)`,
      );
    }
    const bStats = await b.stats();
    return { scenario, roundsA, roundsB, poolAfter: bStats };
  } finally {
    await a.stop();
    await b.stop();
  }
}

/**
 * @param {Round[]} list
 */
function summarize(list) {
  return {
    rps: median(list.map((r) => r.rps)),
    p50: median(list.map((r) => r.p50)),
    p99: median(list.map((r) => r.p99)),
    cpu: median(list.map((r) => r.cpuUsPerRequest)),
    requests: list.reduce((sum, r) => sum + r.requests, 0),
    acquires: list.reduce((sum, r) => sum + r.acquires, 0),
    queries: list.reduce((sum, r) => sum + r.queries, 0),
    bad: list.reduce((sum, r) => sum + r.non2xx + r.errors, 0),
    cutOff: list.reduce((sum, r) => sum + r.serverErrors, 0),
  };
}

async function main() {
  const available = new Set((await probeDatabases()).map((database) => database.name));
  const chosen = [...scenarios, ...(diagnose ? diagnostics : [])].filter(
    (scenario) => only === '' || only.split(',').includes(scenario.name),
  );
  const cpus = os.cpus();
  console.log(
    `knex-scope overhead benchmark: node ${process.version}, ${os.availableParallelism()} cores ` +
      `(${cpus[0]?.model ?? 'unknown CPU'}), load average ${os
        .loadavg()
        .map((n) => n.toFixed(2))
        .join(' ')}`,
  );
  console.log(
    `autocannon: ${connections} connections, ${rounds} rounds × ${duration} s per side after ${warmup} s warm-up, ` +
      `A/B order alternating; pool.max ${poolMax} on PostgreSQL/MariaDB, 1 on SQLite\n`,
  );

  const results = [];
  for (const scenario of chosen) {
    if (scenario.needs !== undefined && !available.has(scenario.needs)) {
      console.log(`  ${scenario.name}: skipped, no server answers at ${servers[scenario.needs]}`);
      continue;
    }
    results.push(await runScenario(scenario));
  }

  const lines = [
    '| scenario | side | req/s (median) | ratio B/A | paired ratio (median) | p50 ms | p99 ms | server CPU µs/req | target |',
    '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |',
  ];
  /** @type {string[]} */
  const notes = [];
  let failed = 0;
  for (const { scenario, roundsA, roundsB, poolAfter } of results) {
    const sa = summarize(roundsA);
    const sb = summarize(roundsB);
    const ratio = sb.rps / sa.rps;
    const paired = median(roundsB.map((r, i) => r.rps / /** @type {Round} */ (roundsA[i]).rps));
    const met = ratio >= scenario.target;
    const targetText =
      scenario.target === 0 ? 'diagnostic' : `≥ ${scenario.target} ${met ? 'met' : 'MISSED'}`;
    const zeroDb = scenario.path === '/plain' ? sb.acquires === 0 && sb.queries === 0 : true;
    if (!met || !zeroDb) failed++;
    lines.push(
      `| ${scenario.name} | A: ${scenario.a.label} | ${sa.rps.toFixed(0)} | | | ${sa.p50} | ${sa.p99} | ${sa.cpu.toFixed(0)} | |`,
      `| | B: ${scenario.b.label} | ${sb.rps.toFixed(0)} | **${ratio.toFixed(3)}×** | ${paired.toFixed(3)}× | ${sb.p50} | ${sb.p99} | ${sb.cpu.toFixed(0)} | ${targetText} |`,
    );
    notes.push(
      `${scenario.name} (${scenario.title}): B served ${sb.requests} requests with ${sb.acquires} pool acquires ` +
        `and ${sb.queries} queries (A: ${sa.requests} requests, ${sa.acquires} acquires, ${sa.queries} queries); ` +
        `non-2xx/errors A ${sa.bad}, B ${sb.bad}; handlers cut off by the end of a round A ${sa.cutOff}, B ${sb.cutOff}; B's pool afterwards: ${poolAfter.poolUsed} used, ${poolAfter.poolPending} pending` +
        (scenario.path === '/plain' ? ` → zero connections: ${zeroDb ? 'yes' : 'NO'}` : ''),
    );
  }
  console.log(`\n${lines.join('\n')}\n`);
  for (const note of notes) console.log(`- ${note}`);
  if (jsonFile !== '') {
    writeFileSync(
      jsonFile,
      `${JSON.stringify({ node: process.version, cores: os.availableParallelism(), connections, rounds, duration, warmup, results }, null, 2)}\n`,
    );
  }
  console.log(failed === 0 ? '\nall targets met' : `\n${failed} scenario(s) missed a target`);
}

main()
  .catch((error) => {
    console.error(error);
    process.exitCode = 1;
  })
  .finally(() => {
    rmSync(tmp, { recursive: true, force: true });
  });
