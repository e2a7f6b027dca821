import { knex as createKnex, type Knex } from 'knex';
import { parseDatabaseUrl } from '../core/parse-database-url';
import { replaceDatabase } from './replace-database';
import type { TestDatabaseServer } from './test-database-server';
import { testRunMarker } from './test-run-name';

type Query = <T = unknown>(sql: string, bindings?: readonly Knex.RawBinding[]) => Promise<T[]>;

/**
 * The test kit's view of a MySQL or MariaDB server. There is no template clone: `copy` replays
 * `SHOW CREATE TABLE` of every table into the new database and copies the rows, with foreign key
 * checks off so the order does not matter. A template with views, triggers, routines or events is
 * not copied (their definitions name the template): `copy` resolves false.
 *
 * @example
 * const server = mysqlTestServer('mysql://root@127.0.0.1:3306/test');
 * await server.copy('knex_scope_test_…', 'knex_scope_test_…_w1');
 */
export function mysqlTestServer(url: string): TestDatabaseServer {
  let admin: Knex | undefined;
  const connect = (): Knex => {
    admin ??= createKnex({ ...parseDatabaseUrl(url), pool: { min: 0, max: 1 } });
    return admin;
  };
  const rows = async <T>(sql: string, bindings: readonly Knex.RawBinding[] = []): Promise<T[]> => {
    const [result] = await connect().raw(sql, bindings);
    return result as T[];
  };
  // Session settings (USE, foreign_key_checks) need every statement on one connection.
  const onOneConnection = async <T>(work: (query: Query) => Promise<T>): Promise<T> => {
    const db = connect();
    const connection: unknown = await db.client.acquireConnection();
    try {
      return await work(async <R>(sql: string, bindings: readonly Knex.RawBinding[] = []) => {
        const [result] = await db.raw(sql, bindings).connection(connection);
        return result as R[];
      });
    } finally {
      await db.client.releaseConnection(connection);
    }
  };

  return {
    kind: 'mysql',
    url,
    async list() {
      const found = await rows<{ name: string }>(
        'select schema_name as name from information_schema.schemata',
      );
      return found.map((row) => row.name).filter((name) => name.startsWith(testRunMarker));
    },
    async exists(name) {
      const found = await rows('select 1 from information_schema.schemata where schema_name = ?', [
        name,
      ]);
      return found.length > 0;
    },
    async create(name) {
      await rows('create database ??', [name]);
    },
    copy(template, name) {
      return onOneConnection(async (query) => {
        const [objects] = await query<{ n: number | string }>(
          `select (select count(*) from information_schema.views where table_schema = ?)
                + (select count(*) from information_schema.triggers where trigger_schema = ?)
                + (select count(*) from information_schema.routines where routine_schema = ?)
                + (select count(*) from information_schema.events where event_schema = ?) as n`,
          [template, template, template, template],
        );
        if (Number(objects?.n) > 0) return false;
        const tables = (
          await query<{ name: string }>(
            `select table_name as name from information_schema.tables
              where table_schema = ? and table_type = 'BASE TABLE' order by table_name`,
            [template],
          )
        ).map((row) => row.name);
        await query('create database ??', [name]);
        await query('use ??', [name]);
        await query('set foreign_key_checks = 0');
        try {
          for (const table of tables) {
            const [created] = await query<Record<string, string>>('show create table ??.??', [
              template,
              table,
            ]);
            await query(created?.['Create Table'] ?? '');
          }
          await copyRows(query, template, name, tables);
        } finally {
          await query('set foreign_key_checks = 1');
        }
        return true;
      });
    },
    async drop(name) {
      // DROP DATABASE waits for the metadata locks of open transactions in it (a leaked pool).
      const holders = await rows<{ id: number }>(
        'select id from information_schema.processlist where db = ? and id <> connection_id()',
        [name],
      );
      for (const { id } of holders) {
        await rows(`kill ${Number(id)}`).catch(() => {});
      }
      await rows('drop database if exists ??', [name]);
    },
    urlOf(name) {
      return replaceDatabase(url, name);
    },
    async close() {
      const db = admin;
      admin = undefined;
      await db?.destroy();
    },
  };
}

async function copyRows(
  query: Query,
  template: string,
  name: string,
  tables: readonly string[],
): Promise<void> {
  if (tables.length === 0) return;
  const counts = await query<Record<string, number | string>>(
    `select ${tables.map((_, i) => `(select count(*) from ??.??) as c${i}`).join(', ')}`,
    tables.flatMap((table) => [template, table]),
  );
  const filled = tables.filter((_, i) => Number(counts[0]?.[`c${i}`]) > 0);
  for (const table of filled) {
    const columns = (
      await query<{ name: string }>(
        `select column_name as name from information_schema.columns
          where table_schema = ? and table_name = ? and extra not like '%GENERATED%'
          order by ordinal_position`,
        [template, table],
      )
    ).map((row) => row.name);
    const list = columns.map(() => '??').join(', ');
    await query(`insert into ??.?? (${list}) select ${list} from ??.??`, [
      name,
      table,
      ...columns,
      ...columns,
      template,
      table,
    ]);
  }
}
