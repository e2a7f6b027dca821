import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { knex as createKnex, type Knex } from 'knex';
import { parseDatabaseUrl } from '../../lib/core/parse-database-url';
import { serverUrl } from '../is-connection-error/support';

/** A database server (or SQLite folder) to run the kit against, inspected without the kit. */
export interface Target {
  readonly name: 'sqlite' | 'postgres' | 'mariadb';
  /** What TEST_DB_URL would be. */
  readonly url: string;
  /** The names of every database on the server (SQLite: the files of the folder). */
  databases(): Promise<string[]>;
  /** Creates an empty database behind the kit's back. */
  createDatabase(name: string): Promise<void>;
  dropDatabase(name: string): Promise<void>;
  close(): Promise<void>;
}

function serverTarget(name: 'postgres' | 'mariadb', url: string): Target {
  const admin = createKnex({ ...parseDatabaseUrl(url), pool: { min: 0, max: 1 } });
  const rows = async (sql: string): Promise<{ name: string }[]> => {
    const result = await admin.raw(sql);
    return name === 'postgres' ? result.rows : result[0];
  };
  return {
    name,
    url,
    async databases() {
      const sql =
        name === 'postgres'
          ? 'select datname as name from pg_database'
          : 'select schema_name as name from information_schema.schemata';
      return (await rows(sql)).map((row) => row.name);
    },
    async createDatabase(database) {
      await admin.raw('create database ??', [database]);
    },
    async dropDatabase(database) {
      await admin.raw('drop database if exists ??', [database]);
    },
    close: () => admin.destroy(),
  };
}

function sqliteTarget(): Target {
  const dir = mkdtempSync(join(tmpdir(), 'knex-scope-kit-'));
  return {
    name: 'sqlite',
    url: join(dir, 'test.sqlite'),
    async databases() {
      return readdirSync(dir).map((file) => file.replace(/\.sqlite$/, ''));
    },
    async createDatabase(database) {
      writeFileSync(join(dir, `${database}.sqlite`), '');
    },
    async dropDatabase(database) {
      rmSync(join(dir, `${database}.sqlite`), { force: true });
    },
    async close() {
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * The targets of this machine: SQLite always, PostgreSQL and MariaDB when their servers answer
 * (decided as jest.config.js decides). Call at collection time; open them in beforeAll.
 */
export function availableTargets(): { name: Target['name']; open: () => Target }[] {
  const postgres = serverUrl('postgres');
  const mariadb = serverUrl('mariadb');
  return [
    { name: 'sqlite', open: sqliteTarget },
    ...(postgres === undefined
      ? []
      : [{ name: 'postgres' as const, open: () => serverTarget('postgres', postgres) }]),
    ...(mariadb === undefined
      ? []
      : [{ name: 'mariadb' as const, open: () => serverTarget('mariadb', mariadb) }]),
  ];
}

/** Runs `work` on a Knex instance of `url`, destroyed afterwards. */
export async function withKnex<T>(url: string, work: (knex: Knex) => Promise<T>): Promise<T> {
  const knex = createKnex({ ...parseDatabaseUrl(url), pool: { min: 0, max: 1 } });
  try {
    return await work(knex);
  } finally {
    await knex.destroy();
  }
}

let counter = 0;

/** A name no other test uses (lower case: it becomes a namespace and a proxy name). */
export function uniqueName(prefix: string): string {
  counter += 1;
  return `${prefix}_${process.pid}_${counter}_${randomBytes(3).toString('hex')}`;
}
