// @ts-check
'use strict';
// What each commitOutcome mode adds to one commit, statement by statement, on one connection of
// each server and without knex or knex-scope in the way: the same transaction (insert one row,
// commit) sent as 'auto', 'marker' and 'xa' send it, in rotating order, timed per transaction.
// Complements commit-id.js (whole requests through knex-scope), where a commit's
// fsync (1–20 ms on a busy machine) drowns differences of a round trip.
//   PostgreSQL  plain:   BEGIN | insert | COMMIT
//               begin+:  BEGIN; select pg_backend_pid(), now() | insert | COMMIT   (the fold alone)
//               begin, select: the same select in a round trip of its own, for comparison
//               auto:    begin+ | insert | capture (id, system identifier, timeline) | COMMIT
//               marker:  begin+ | insert | insert marker returning pid | COMMIT
//   MariaDB     plain:   BEGIN | insert | COMMIT
//               marker:  BEGIN | insert | insert marker | COMMIT
//               xa:      XA START | insert | XA END | XA PREPARE | XA COMMIT
// Reports the median µs per transaction per variant, and each variant minus plain.
//
//   node scripts/bench/commit-outcome.js                 # N = 2000 per variant per round, 5 rounds
//   node scripts/bench/commit-outcome.js --n 500 --rounds 3
//   --databases=postgres,mariadb   KNEX_SCOPE_PG_URL, KNEX_SCOPE_MYSQL_URL (scripts/probe-databases.js)
//   --synchronous-commit=off       PostgreSQL only (a session setting): COMMIT does not wait for
//                                  its WAL flush, so that round trips and server work show alone
//                                  (MariaDB's innodb_flush_log_at_trx_commit is global: untouched)
const os = require('node:os');
const { performance } = require('node:perf_hooks');
const { servers } = require('../probe-databases');

/**
 * @param {string} name
 * @param {string} fallback
 */
function option(name, fallback) {
  const at = process.argv.indexOf(`--${name}`);
  const flag = process.argv.find((arg) => arg.startsWith(`--${name}=`));
  return flag?.slice(name.length + 3) ?? (at >= 0 ? process.argv[at + 1] : undefined) ?? fallback;
}

const n = Number(option('n', '2000'));
const rounds = Number(option('rounds', '5'));
const databases = option('databases', 'postgres,mariadb').split(',');
const synchronousCommit = option('synchronous-commit', 'on');
const table = `bench_commit_outcome_${process.pid}`;
const markers = `bench_commit_outcome_markers_${process.pid}`;
// As knex-scope sends it: the system identifier is read only when the server is not the one
// seen last (pg_control_system() takes ControlFileLock and reads the control file).
const capture =
  'select txid_current_if_assigned()::text as xid, ' +
  'pg_postmaster_start_time()::text as postmaster, ' +
  "case when pg_postmaster_start_time() = '%s'::timestamptz then null " +
  'else (pg_control_system()).system_identifier::text end as system, ' +
  'case when pg_is_in_recovery() then null else pg_walfile_name(pg_current_wal_lsn()) end as wal';

let tokens = 0;
const token = () =>
  Date.now().toString(36).padStart(9, '0') + (++tokens).toString(16).padStart(24, '0');

/**
 * The variants for one server: each a function sending one whole transaction.
 * @param {'postgres' | 'mariadb'} database
 * @param {(sql: string, values?: unknown[]) => Promise<unknown>} q
 * @returns {Record<string, () => Promise<void>>}
 */
function variants(database, q) {
  if (database === 'postgres') {
    let postmaster = '-infinity';
    const beginPlus = 'BEGIN; select pg_backend_pid() as pid, now()::text as started';
    const insert = `insert into ${table} (v) values ($1)`;
    return {
      plain: async () => {
        await q('BEGIN;');
        await q(insert, [1]);
        await q('COMMIT;');
      },
      'begin+': async () => {
        await q(beginPlus);
        await q(insert, [1]);
        await q('COMMIT;');
      },
      'begin, select': async () => {
        await q('BEGIN;');
        await q('select pg_backend_pid() as pid, now()::text as started');
        await q(insert, [1]);
        await q('COMMIT;');
      },
      auto: async () => {
        await q(beginPlus);
        await q(insert, [1]);
        const { rows } = /** @type {{ rows: { postmaster: string }[] }} */ (
          await q(capture.replace('%s', postmaster))
        );
        postmaster = rows[0]?.postmaster ?? postmaster;
        await q('COMMIT;');
      },
      marker: async () => {
        await q(beginPlus);
        await q(insert, [1]);
        await q(
          `insert into ${markers} (token) values ($1) returning pg_backend_pid() as pid, now()::text as started`,
          [token()],
        );
        await q('COMMIT;');
      },
    };
  }
  const insert = `insert into ${table} (v) values (?)`;
  let xids = 0;
  return {
    plain: async () => {
      await q('BEGIN;');
      await q(insert, [1]);
      await q('COMMIT;');
    },
    marker: async () => {
      await q('BEGIN;');
      await q(insert, [1]);
      await q(`insert into ${markers} (token) values (?)`, [token()]);
      await q('COMMIT;');
    },
    xa: async () => {
      const xid = `'ks1:bench:${os.hostname().slice(0, 20)}:${process.pid}:00000000','${(++xids).toString(36)}',19283`;
      await q(`XA START ${xid}`);
      await q(insert, [1]);
      await q(`XA END ${xid}`);
      await q(`XA PREPARE ${xid}`);
      await q(`XA COMMIT ${xid}`);
    },
  };
}

/** @param {number[]} values */
function median(values) {
  const sorted = [...values].sort((x, y) => x - y);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1
    ? (sorted[middle] ?? Number.NaN)
    : ((sorted[middle - 1] ?? Number.NaN) + (sorted[middle] ?? Number.NaN)) / 2;
}

/**
 * @param {'postgres' | 'mariadb'} database
 */
async function bench(database) {
  /** @type {(sql: string, values?: unknown[]) => Promise<unknown>} */
  let q;
  /** @type {() => Promise<void>} */
  let close;
  if (database === 'postgres') {
    const { Client } = require('pg');
    const client = new Client({ connectionString: servers.postgres });
    await client.connect();
    q = (sql, values) => client.query(sql, values);
    await q(`set synchronous_commit = ${synchronousCommit === 'off' ? 'off' : 'on'}`);
    close = () => client.end();
  } else {
    const mysql = require('mysql2/promise');
    const connection = await mysql.createConnection(servers.mariadb);
    q = (sql, values) => connection.query(sql, values);
    close = () => connection.end();
  }
  try {
    await q(`drop table if exists ${table}`);
    await q(`drop table if exists ${markers}`);
    await q(
      database === 'postgres'
        ? `create table ${table} (id serial primary key, v integer not null)`
        : `create table ${table} (id int auto_increment primary key, v int not null)`,
    );
    await q(`create table ${markers} (token varchar(40) primary key)`);
    const runs = variants(database, q);
    const names = Object.keys(runs);
    /** @type {Record<string, number[]>} */
    const perRound = Object.fromEntries(names.map((name) => [name, []]));
    for (const name of names) for (let i = 0; i < n / 10; i++) await runs[name]?.(); // warm-up
    for (let round = 0; round < rounds; round++) {
      const order = names.map((_, i) => names[(i + round) % names.length] ?? '');
      for (const name of order) {
        const run = /** @type {() => Promise<void>} */ (runs[name]);
        /** @type {number[]} */
        const times = [];
        for (let i = 0; i < n; i++) {
          const started = performance.now();
          await run();
          times.push((performance.now() - started) * 1000);
        }
        perRound[name]?.push(median(times));
      }
      console.log(
        `  ${database} round ${round + 1}/${rounds}: ` +
          names.map((name) => `${name} ${(perRound[name]?.at(-1) ?? 0).toFixed(0)} µs`).join(', '),
      );
    }
    return { database, names, perRound };
  } finally {
    await q(`drop table if exists ${table}`).catch(() => {});
    await q(`drop table if exists ${markers}`).catch(() => {});
    await close();
  }
}

async function main() {
  console.log(
    `knex-scope commit-outcome statements: node ${process.version}, ${os.availableParallelism()} cores, ` +
      `load average ${os
        .loadavg()
        .map((x) => x.toFixed(2))
        .join(' ')}; ${n} transactions per variant per round, ${rounds} rounds; ` +
      `PostgreSQL synchronous_commit ${synchronousCommit}\n`,
  );
  const lines = [
    '| database | variant | µs per transaction (median of round medians) | − plain µs | rounds (µs) |',
    '| --- | --- | ---: | ---: | --- |',
  ];
  for (const database of /** @type {('postgres' | 'mariadb')[]} */ (databases)) {
    const { names, perRound } = await bench(database);
    const plain = median(perRound.plain ?? []);
    for (const name of names) {
      const value = median(perRound[name] ?? []);
      lines.push(
        `| ${database} | ${name} | ${value.toFixed(0)} | ${name === 'plain' ? '–' : (value - plain).toFixed(0)} | ` +
          `${(perRound[name] ?? []).map((x) => x.toFixed(0)).join(', ')} |`,
      );
    }
  }
  console.log(`\n${lines.join('\n')}`);
}

main().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
