// @ts-check
'use strict';
// What retryTransaction's commit-outcome bookkeeping costs per commit. On PostgreSQL it sends
// `select txid_current_if_assigned()` right before every COMMIT made inside it (one extra round
// trip), so that a COMMIT whose connection dies can be resolved afterwards; elsewhere it only adds
// the wrapper (an AsyncLocalStorage context per attempt, the tracker, the scope bookkeeping).
// N small transactions (insert one row, commit), one at a time and `--concurrency` at a time:
//   A  db.wrap(async (scope) => { const trx = await scope.session; insert; await trx.commit(); })
//   B  the same function in db.wrap(retryTransaction(fn, { session: (scope) => scope }))
//   C  plain Knex: const trx = await knex.transaction(); insert; await trx.commit();
//   D  (PostgreSQL only) A plus the capture query sent by hand before COMMIT: the round trip alone,
//      so that B − D is what the wrapper itself costs there
//   M  B with commitOutcome: 'marker' (one INSERT into knex_scope_commit_markers before COMMIT)
//   X  (MySQL/MariaDB only) B with commitOutcome: 'xa' (XA START … XA END, XA PREPARE, XA COMMIT)
// The marker table is created with knex-scope's migration if it is missing (and dropped after).
// Rounds alternate the order of the variants; the table reports medians over rounds of µs per
// commit (wall clock) and of this process's CPU µs per commit, and B − A.
//
//   npm run build && node scripts/bench/commit-id.js              # N = 5000, 5 rounds
//   node scripts/bench/commit-id.js --n 1000 --rounds 3           # quick
//
// Options (`--name=value` or `--name value`, or environment):
//   --n=N             BENCH_N            transactions per variant per round (default 5000)
//   --rounds=N        BENCH_ROUNDS       measured rounds (default 5)
//   --concurrency=N   BENCH_CONCURRENCY  transactions in flight in the concurrent mode (default 10)
//   --pool=N          BENCH_POOL         pool.max on PostgreSQL and MariaDB (default 10)
//   --databases=LIST  BENCH_DATABASES    postgres,mariadb,sqlite,sqlite-memory (default all): sqlite
//                                        is a temp file (every COMMIT waits for fsync),
//                                        sqlite-memory is ':memory:' (no I/O, so the wrapper's CPU
//                                        cost is not hidden in disk jitter)
//   --json=FILE                          also write the raw numbers as JSON
//   KNEX_SCOPE_PG_URL, KNEX_SCOPE_MYSQL_URL   the servers (see scripts/probe-databases.js)
const { mkdtempSync, rmSync, writeFileSync } = require('node:fs');
const os = require('node:os');
const { join } = require('node:path');
const { performance } = require('node:perf_hooks');
const {
  commitMarkerMigration,
  commitMarkerTable,
  retryTransaction,
  withDb,
} = require('knex-scope');
const { probeDatabases, servers } = require('../probe-databases');

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

const n = Number(option('n', 'BENCH_N', '5000'));
const rounds = Number(option('rounds', 'BENCH_ROUNDS', '5'));
const concurrency = Number(option('concurrency', 'BENCH_CONCURRENCY', '10'));
const poolMax = Number(option('pool', 'BENCH_POOL', '10'));
const databases = option(
  'databases',
  'BENCH_DATABASES',
  'postgres,mariadb,sqlite,sqlite-memory',
).split(',');
const jsonFile = option('json', 'BENCH_JSON', '');

/**
 * @typedef {'A' | 'B' | 'C' | 'D' | 'M' | 'X'} Variant
 * @typedef {{ us: number; cpuUs: number }} Sample
 */

/** @type {Record<Variant, string>} */
const labels = {
  A: 'A: db.wrap + scope.session',
  B: 'B: A in retryTransaction',
  C: 'C: knex.transaction()',
  D: 'D: A + capture query by hand',
  M: "M: B with commitOutcome 'marker'",
  X: "X: B with commitOutcome 'xa'",
};

const tmp = mkdtempSync(join(os.tmpdir(), 'knex-scope-commit-id-'));
const table = `bench_commit_id_${process.pid}`;

/**
 * @param {string} name
 * @returns {import('knex').Knex.Config}
 */
function configFor(name) {
  if (name === 'sqlite-memory') {
    return {
      client: 'better-sqlite3',
      connection: { filename: ':memory:' },
      useNullAsDefault: true,
    };
  }
  if (name === 'sqlite') {
    return {
      client: 'better-sqlite3',
      connection: { filename: join(tmp, 'commit-id.sqlite') },
      useNullAsDefault: true,
    };
  }
  return {
    client: name === 'postgres' ? 'pg' : 'mysql2',
    connection: servers[/** @type {'postgres' | 'mariadb'} */ (name)],
    pool: { min: 0, max: poolMax },
  };
}

/**
 * The variants of one database, each a function running one transaction.
 * @param {import('knex-scope').Db} db
 * @param {string} name
 * @returns {Partial<Record<Variant, () => Promise<unknown>>>}
 */
function variantsFor(db, name) {
  const postgres = name === 'postgres';
  /** @param {import('knex-scope').Scope} scope */
  const insertAndCommit = async (scope) => {
    const trx = await scope.session;
    await trx(table).insert({ v: 1 });
    await trx.commit();
  };
  /** @param {import('knex-scope').Scope} scope */
  const withCaptureByHand = async (scope) => {
    const trx = await scope.session;
    await trx(table).insert({ v: 1 });
    await trx.raw('select txid_current_if_assigned() as xid');
    await trx.commit();
  };
  const knex = db.knex;
  return {
    A: db.wrap(insertAndCommit),
    B: db.wrap(retryTransaction(insertAndCommit, { session: (scope) => scope })),
    C: async () => {
      const trx = await knex.transaction();
      await trx(table).insert({ v: 1 });
      await trx.commit();
    },
    ...(postgres ? { D: db.wrap(withCaptureByHand) } : {}),
    M: db.wrap(
      retryTransaction(insertAndCommit, { session: (scope) => scope, commitOutcome: 'marker' }),
    ),
    ...(name === 'mariadb'
      ? {
          X: db.wrap(
            retryTransaction(insertAndCommit, { session: (scope) => scope, commitOutcome: 'xa' }),
          ),
        }
      : {}),
  };
}

/**
 * Runs `count` transactions, `parallel` at a time; µs and CPU µs per transaction.
 * @param {() => Promise<unknown>} run
 * @param {number} count
 * @param {number} parallel
 * @returns {Promise<Sample>}
 */
async function measure(run, count, parallel) {
  let next = 0;
  const worker = async () => {
    while (next < count) {
      next++;
      await run();
    }
  };
  const cpu = process.cpuUsage();
  const started = performance.now();
  await Promise.all(Array.from({ length: parallel }, worker));
  const elapsed = performance.now() - started;
  const used = process.cpuUsage(cpu);
  return { us: (elapsed * 1000) / count, cpuUs: (used.user + used.system) / count };
}

/** @param {number[]} values */
function median(values) {
  const sorted = [...values].sort((x, y) => x - y);
  const middle = Math.floor(sorted.length / 2);
  const upper = sorted[middle] ?? Number.NaN;
  return sorted.length % 2 === 1 ? upper : ((sorted[middle - 1] ?? Number.NaN) + upper) / 2;
}

/**
 * The statements one transaction of each variant sends, to show what B adds.
 * @param {import('knex').Knex} knex
 * @param {Partial<Record<Variant, () => Promise<unknown>>>} variants
 */
async function statementsPerVariant(knex, variants) {
  /** @type {Record<string, string[]>} */
  const sent = {};
  /** @type {string[]} */
  let current = [];
  const listener = (/** @type {{ sql: string }} */ query) => current.push(query.sql);
  knex.on('query', listener);
  for (const [variant, run] of Object.entries(variants)) {
    current = [];
    await run();
    sent[variant] = current;
  }
  knex.off('query', listener);
  return sent;
}

/**
 * @param {string} name
 */
async function benchDatabase(name) {
  const db = withDb(configFor(name));
  const knex = db.knex;
  let createdMarkers = false;
  try {
    await knex.schema.dropTableIfExists(table);
    await knex.schema.createTable(table, (t) => {
      t.increments('id');
      t.integer('v').notNullable();
    });
    createdMarkers = !(await knex.schema.hasTable(commitMarkerTable));
    if (createdMarkers) await commitMarkerMigration.up(knex);
    const variants = variantsFor(db, name);
    const names = /** @type {Variant[]} */ (Object.keys(variants));
    const statements = await statementsPerVariant(knex, variants);
    /** @type {Record<string, Record<string, Sample[]>>} */
    const samples = {};
    for (const [mode, parallel] of /** @type {const} */ ([
      ['sequential', 1],
      ['concurrent', concurrency],
    ])) {
      const perVariant = Object.fromEntries(names.map((v) => [v, /** @type {Sample[]} */ ([])]));
      samples[mode] = perVariant;
      for (const variant of names) {
        await measure(/** @type {() => Promise<unknown>} */ (variants[variant]), n / 5, parallel);
      }
      for (let round = 0; round < rounds; round++) {
        await knex(table).truncate();
        await knex(commitMarkerTable).truncate();
        const order = names.map((_, i) => names[(i + round) % names.length]);
        for (const variant of /** @type {Variant[]} */ (order)) {
          const run = /** @type {() => Promise<unknown>} */ (variants[variant]);
          perVariant[variant]?.push(await measure(run, n, parallel));
        }
        console.log(
          `  ${name} ${mode} round ${round + 1}/${rounds}: ` +
            names
              .map((v) => `${v} ${(perVariant[v]?.at(-1)?.us ?? Number.NaN).toFixed(0)} µs`)
              .join(', '),
        );
      }
    }
    return { name, statements, samples, names };
  } finally {
    await Promise.resolve(knex.schema.dropTableIfExists(table)).catch(() => {});
    if (createdMarkers) await commitMarkerMigration.down(knex).catch(() => {});
    await db.destroy();
  }
}

async function main() {
  const available = new Set((await probeDatabases()).map((database) => database.name));
  const cpus = os.cpus();
  console.log(
    `knex-scope commit-id benchmark: node ${process.version}, ${os.availableParallelism()} cores ` +
      `(${cpus[0]?.model ?? 'unknown CPU'}), load average ${os
        .loadavg()
        .map((x) => x.toFixed(2))
        .join(' ')}`,
  );
  console.log(
    `${n} transactions (insert one row + commit) per variant per round, ${rounds} rounds, ` +
      `order rotating; sequential and ${concurrency} at a time; pool.max ${poolMax} ` +
      '(SQLite: 1)\n',
  );
  const results = [];
  for (const name of databases) {
    if (!available.has(name) && name !== 'sqlite-memory') {
      console.log(`  ${name}: skipped, no server answers`);
      continue;
    }
    results.push(await benchDatabase(name));
  }

  const lines = [
    '| database | mode | A µs/commit | B µs/commit | C µs/commit | D µs/commit | B − A µs (paired median) | B/A | CPU µs/commit A / B / C | B − A CPU µs |',
    '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  ];
  const modeLines = [
    "| database | mode | B 'auto' µs/commit | M 'marker' µs/commit | M − B µs (paired) | X 'xa' µs/commit | X − B µs (paired) | CPU µs/commit B / M / X | M − B CPU µs | X − B CPU µs |",
    '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  ];
  for (const { name, samples, names } of results) {
    for (const [mode, perVariant] of Object.entries(samples)) {
      /** @param {string} v @param {'us' | 'cpuUs'} key */
      const med = (v, key) => median((perVariant[v] ?? []).map((s) => s[key]));
      /** @param {string} x @param {string} y @param {'us' | 'cpuUs'} key */
      const paired = (x, y, key) =>
        median(
          (perVariant[x] ?? []).map((b, i) => b[key] - (perVariant[y]?.[i]?.[key] ?? Number.NaN)),
        );
      const d = names.includes('D') ? med('D', 'us').toFixed(0) : '–';
      lines.push(
        `| ${name} | ${mode} | ${med('A', 'us').toFixed(0)} | ${med('B', 'us').toFixed(0)} | ` +
          `${med('C', 'us').toFixed(0)} | ${d} | ` +
          `${(med('B', 'us') - med('A', 'us')).toFixed(0)} (${paired('B', 'A', 'us').toFixed(0)}) | ` +
          `${(med('B', 'us') / med('A', 'us')).toFixed(3)} | ` +
          `${med('A', 'cpuUs').toFixed(0)} / ${med('B', 'cpuUs').toFixed(0)} / ${med('C', 'cpuUs').toFixed(0)} | ` +
          `${paired('B', 'A', 'cpuUs').toFixed(0)} |`,
      );
      const xa = names.includes('X');
      /** @param {number} value */
      const orDash = (value) => (xa ? value.toFixed(0) : '–');
      modeLines.push(
        `| ${name} | ${mode} | ${med('B', 'us').toFixed(0)} | ${med('M', 'us').toFixed(0)} | ` +
          `${paired('M', 'B', 'us').toFixed(0)} | ${orDash(med('X', 'us'))} | ` +
          `${orDash(paired('X', 'B', 'us'))} | ` +
          `${med('B', 'cpuUs').toFixed(0)} / ${med('M', 'cpuUs').toFixed(0)} / ${orDash(med('X', 'cpuUs'))} | ` +
          `${paired('M', 'B', 'cpuUs').toFixed(0)} | ${orDash(paired('X', 'B', 'cpuUs'))} |`,
      );
    }
  }
  lines.push('', ...modeLines);
  console.log(`\n${lines.join('\n')}\n`);
  console.log('Statements per transaction:');
  for (const { name, statements } of results) {
    for (const [variant, sql] of Object.entries(statements)) {
      console.log(`- ${name} ${labels[/** @type {Variant} */ (variant)]}: ${sql.join(' | ')}`);
    }
  }
  if (jsonFile !== '') {
    writeFileSync(
      jsonFile,
      `${JSON.stringify(
        {
          node: process.version,
          cores: os.availableParallelism(),
          n,
          rounds,
          concurrency,
          results: results.map(({ name, statements, samples }) => ({ name, statements, samples })),
        },
        null,
        2,
      )}\n`,
    );
  }
}

main()
  .catch((error) => {
    console.error(error);
    process.exitCode = 1;
  })
  .finally(() => {
    rmSync(tmp, { recursive: true, force: true });
  });
