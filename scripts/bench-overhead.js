// @ts-check
'use strict';
// What knex-scope costs per request, measured with autocannon against servers that differ only in
// knex-scope (child processes: scripts/bench-server.js, `procs` per side), both sides loaded at
// once on the same pinned CPU for several rounds after a warm-up, reporting medians and the
// median of the per-round B/A ratios (the figure the targets are checked against):
//   a-express, a-koa   a route that never touches the database, without vs with app.use(withDb(…));
//                      the withDb side must acquire no connection and send no query
//   b-sqlite, b-postgres, b-mariadb
//                      SELECT 1 in a hand-written knex.transaction(async (trx) => …) vs through
//                      `const s = await req.db.session; await s.select(…); await s.commit()`
//
//   npm run build && node scripts/bench-overhead.js            # 10 rounds × 4 s, 8 s warm-up
//   node scripts/bench-overhead.js --quick                     # 4 rounds × 2 s, 3 s warm-up
//
// Options (flags or environment):
//   --rounds=N       BENCH_ROUNDS       measured rounds (default 10)
//   --duration=S     BENCH_DURATION     seconds per round (default 4)
//   --warmup=S       BENCH_WARMUP       warm-up seconds, all servers at once (default 8)
//   --procs=N        BENCH_PROCS        server processes per side (default 2): one process's JIT
//                                       luck moved it by ±3 % against an identical twin
//   --connections=N  BENCH_CONNECTIONS  autocannon connections per server process (default 16)
//   --no-pin                            do not pin autocannon to CPU 0 and the servers to CPU 1
//   --pool=N         BENCH_POOL         pool.max for PostgreSQL and MariaDB (default 10)
//   --only=LIST      BENCH_ONLY         scenarios, e.g. a-express,b-postgres (default: all)
//   --json=FILE                         also write the raw numbers as JSON
//   --diagnose                          also run the attribution scenarios (d-…): a no-op
//                                       middleware (the framework's own cost of any middleware)
//                                       and withDb(config, { currentDb: true })
//   KNEX_SCOPE_PG_URL, KNEX_SCOPE_MYSQL_URL   the servers (see scripts/probe-databases.js);
//   a scenario whose server does not answer is skipped.
const { execFileSync, fork } = require('node:child_process');
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
const rounds = Number(option('rounds', 'BENCH_ROUNDS', quick ? '4' : '10'));
const duration = Number(option('duration', 'BENCH_DURATION', quick ? '2' : '4'));
const warmup = Number(option('warmup', 'BENCH_WARMUP', quick ? '3' : '8'));
const procs = Number(option('procs', 'BENCH_PROCS', '2'));
const connections = Number(option('connections', 'BENCH_CONNECTIONS', '16'));
const poolMax = Number(option('pool', 'BENCH_POOL', '10'));
const only = option('only', 'BENCH_ONLY', '');
const jsonFile = option('json', 'BENCH_JSON', '');
const diagnose = process.argv.includes('--diagnose');
// The load generator on CPU 0, every server on CPU 1: on a two-core machine an unpinned autocannon
// and server keep trading cores, which moved single rounds by ±20 %. Linux only (taskset).
const cores = os.availableParallelism();
const pin = !process.argv.includes('--no-pin') && cores >= 2 && pinTo(process.pid, 0);

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
 *   cpuUs: number;
 *   cpuUsPerRequest: number;
 *   requests: number;
 *   acquires: number;
 *   queries: number;
 *   non2xx: number;
 *   errors: number;
 *   serverErrors: number;
 * }} Round
 * @typedef {Awaited<ReturnType<typeof startSide>>} Server
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

/**
 * Pins every thread of a process to one CPU; false where taskset is missing or refuses.
 * @param {number | undefined} pid
 * @param {number} cpu
 */
function pinTo(pid, cpu) {
  try {
    execFileSync('taskset', ['-a', '-p', '-c', String(cpu), String(pid)], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

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
  if (pin) pinTo(child.pid, 1);
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
 * One round: autocannon against every server of both sides at once, for `seconds`, with each
 * server's CPU time over it. Sides that share one CPU and one window see the same machine: on a
 * shared VM, rounds run one after the other moved by ±15 % between rounds, which no number of
 * rounds averaged away; run together, the B/A ratio of one round stays within a few percent.
 * @param {Server[]} servers
 * @param {string} path
 * @param {number} seconds
 * @returns {Promise<Round[]>} one per server
 */
async function measureAll(servers, path, seconds) {
  await Promise.all(servers.map((server) => server.reset()));
  const results = await Promise.all(
    servers.map((server) =>
      autocannon({ url: `${server.url}${path}`, connections, duration: seconds, pipelining: 1 }),
    ),
  );
  await Promise.all(servers.map((server) => server.settle()));
  const stats = await Promise.all(servers.map((server) => server.stats()));
  return results.map((result, i) => {
    const stat = /** @type {(typeof stats)[number]} */ (stats[i]);
    return {
      rps: result.requests.total / seconds,
      p50: result.latency.p50,
      p99: result.latency.p99,
      cpuUs: stat.cpuUs,
      cpuUsPerRequest: stat.requests === 0 ? 0 : stat.cpuUs / stat.requests,
      requests: stat.requests,
      acquires: stat.acquires,
      queries: stat.queries,
      non2xx: result.non2xx,
      errors: result.errors + result.timeouts,
      serverErrors: stat.errors,
    };
  });
}

/**
 * The servers of one side in one round, as one: requests and CPU summed, latencies the median.
 * @param {Round[]} list
 * @returns {Round}
 */
function combine(list) {
  const sum = (/** @type {(r: Round) => number} */ pick) => list.reduce((n, r) => n + pick(r), 0);
  const requests = sum((r) => r.requests);
  const cpuUs = sum((r) => r.cpuUs);
  return {
    rps: sum((r) => r.rps),
    p50: median(list.map((r) => r.p50)),
    p99: median(list.map((r) => r.p99)),
    cpuUs,
    cpuUsPerRequest: requests === 0 ? 0 : cpuUs / requests,
    requests,
    acquires: sum((r) => r.acquires),
    queries: sum((r) => r.queries),
    non2xx: sum((r) => r.non2xx),
    errors: sum((r) => r.errors),
    serverErrors: sum((r) => r.serverErrors),
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
 * Runs one scenario: `procs` servers per side, all loaded at once for a warm-up and then for
 * `rounds` rounds.
 * @param {Scenario} scenario
 */
async function runScenario(scenario) {
  /** @type {Server[]} */
  const a = [];
  /** @type {Server[]} */
  const b = [];
  try {
    for (let i = 0; i < procs; i++) {
      a.push(await startSide(instance(scenario.a.side, i)));
      b.push(await startSide(instance(scenario.b.side, i)));
    }
    const all = [...a, ...b];
    await measureAll(all, scenario.path, warmup);
    /** @type {Round[]} */
    const roundsA = [];
    /** @type {Round[]} */
    const roundsB = [];
    for (let round = 0; round < rounds; round++) {
      const results = await measureAll(all, scenario.path, duration);
      const lastA = combine(results.slice(0, procs));
      const lastB = combine(results.slice(procs));
      roundsA.push(lastA);
      roundsB.push(lastB);
      console.log(
        `  ${scenario.name} round ${round + 1}/${rounds}: ` +
          `${scenario.a.label} ${lastA.rps.toFixed(0)} req/s, ${scenario.b.label} ${lastB.rps.toFixed(0)} req/s ` +
          `(${(lastB.rps / lastA.rps).toFixed(3)}×; CPU µs/req ${lastA.cpuUsPerRequest.toFixed(0)} → ${lastB.cpuUsPerRequest.toFixed(0)})`,
      );
    }
    const after = await Promise.all(b.map((server) => server.stats()));
    const poolAfter = {
      poolUsed: after.reduce((n, stat) => n + stat.poolUsed, 0),
      poolPending: after.reduce((n, stat) => n + stat.poolPending, 0),
    };
    return { scenario, roundsA, roundsB, poolAfter };
  } finally {
    await Promise.all([...a, ...b].map((server) => server.stop()));
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
    `knex-scope overhead benchmark: node ${process.version}, ${cores} cores ` +
      `(${cpus[0]?.model ?? 'unknown CPU'}), load average ${os
        .loadavg()
        .map((n) => n.toFixed(2))
        .join(' ')}`,
  );
  console.log(
    `autocannon: ${connections} connections per server, ${procs} server processes per side, both sides at once, ` +
      `${rounds} rounds × ${duration} s after ${warmup} s warm-up; pool.max ${poolMax} on PostgreSQL/MariaDB, 1 on SQLite; ` +
      `${pin ? 'autocannon pinned to CPU 0, servers to CPU 1' : 'not pinned'}\n`,
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
    '| scenario | side | req/s (median) | B/A req/s, median of rounds | range | server CPU µs/req | A/B CPU per request, median | p50 ms | p99 ms | target (median B/A req/s) |',
    '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |',
  ];
  /** @type {string[]} */
  const notes = [];
  let failed = 0;
  for (const { scenario, roundsA, roundsB, poolAfter } of results) {
    const sa = summarize(roundsA);
    const sb = summarize(roundsB);
    const ratios = roundsB.map((r, i) => r.rps / /** @type {Round} */ (roundsA[i]).rps);
    const paired = median(ratios);
    const range = `${Math.min(...ratios).toFixed(3)}–${Math.max(...ratios).toFixed(3)}`;
    const cost = median(
      roundsB.map((r, i) => /** @type {Round} */ (roundsA[i]).cpuUsPerRequest / r.cpuUsPerRequest),
    );
    const met = paired >= scenario.target;
    const targetText =
      scenario.target === 0 ? 'diagnostic' : `≥ ${scenario.target} ${met ? 'met' : 'MISSED'}`;
    const zeroDb = scenario.path === '/plain' ? sb.acquires === 0 && sb.queries === 0 : true;
    if (!met || !zeroDb) failed++;
    lines.push(
      `| ${scenario.name} | A: ${scenario.a.label} | ${sa.rps.toFixed(0)} | | | ${sa.cpu.toFixed(0)} | | ${sa.p50} | ${sa.p99} | |`,
      `| | B: ${scenario.b.label} | ${sb.rps.toFixed(0)} | **${paired.toFixed(3)}×** | ${range} | ${sb.cpu.toFixed(0)} | ${cost.toFixed(3)}× | ${sb.p50} | ${sb.p99} | ${targetText} |`,
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
      `${JSON.stringify({ node: process.version, cores, connections, procs, rounds, duration, warmup, results }, null, 2)}\n`,
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
