import { knex as createKnex, type Knex } from 'knex';
import { replaceDatabase } from './replace-database';
import type { TestDatabaseServer } from './test-database-server';
import { testRunMarker } from './test-run-name';

const sourceInUse = '55006';

/**
 * The test kit's view of a PostgreSQL server: databases are created, cloned with
 * `CREATE DATABASE … TEMPLATE`, and dropped `WITH (FORCE)`, from a connection to the maintenance
 * database that `url` names.
 *
 * @example
 * const server = postgresTestServer('postgres://postgres@127.0.0.1:5432/test');
 * await server.copy('knex_scope_test_…', 'knex_scope_test_…_w1');
 */
export function postgresTestServer(url: string): TestDatabaseServer {
  let admin: Knex | undefined;
  let version: Promise<number> | undefined;
  const connect = (): Knex => {
    admin ??= createKnex({ client: 'pg', connection: url, pool: { min: 0, max: 1 } });
    return admin;
  };
  const serverVersion = (): Promise<number> => {
    version ??= connect()
      .raw('show server_version_num')
      .then((result: { rows: { server_version_num: string }[] }) =>
        Number(result.rows[0]?.server_version_num),
      );
    return version;
  };

  return {
    kind: 'postgres',
    url,
    async list() {
      const { rows } = await connect().raw<{ rows: { name: string }[] }>(
        'select datname as name from pg_database',
      );
      return rows.map((row) => row.name).filter((name) => name.startsWith(testRunMarker));
    },
    async exists(name) {
      const { rows } = await connect().raw<{ rows: unknown[] }>(
        'select 1 from pg_database where datname = ?',
        [name],
      );
      return rows.length > 0;
    },
    async create(name) {
      await connect().raw('create database ??', [name]);
    },
    async copy(template, name) {
      // A template must have no other session; the backend of a connection closed a moment ago
      // may still be exiting, so "being accessed by other users" is retried for a while.
      const deadline = Date.now() + 5_000;
      for (;;) {
        try {
          await connect().raw('create database ?? template ??', [name, template]);
          return true;
        } catch (error) {
          if ((error as { code?: string }).code !== sourceInUse || Date.now() > deadline)
            throw error;
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
      }
    },
    async drop(name) {
      const db = connect();
      if ((await serverVersion()) >= 130_000) {
        await db.raw('drop database if exists ?? with (force)', [name]);
        return;
      }
      await db.raw(
        'select pg_terminate_backend(pid) from pg_stat_activity where datname = ? and pid <> pg_backend_pid()',
        [name],
      );
      await db.raw('drop database if exists ??', [name]);
    },
    urlOf(name) {
      return replaceDatabase(url, name);
    },
    async close() {
      const db = admin;
      admin = undefined;
      version = undefined;
      await db?.destroy();
    },
  };
}
