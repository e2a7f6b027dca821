import type { Knex } from 'knex';
import { InvalidConfigError } from '../errors';
import { parseDatabaseUrl } from '../parse-database-url';
import { mysqlTestServer } from './mysql-test-server';
import { postgresTestServer } from './postgres-test-server';
import { sqliteTestServer } from './sqlite-test-server';
import type { TestDatabaseKind } from './test-env';

/**
 * What the test kit needs from a database server: list, create, copy and drop the databases it
 * names. Every method only ever receives names the kit generated. Internal to the test kit.
 */
export interface TestDatabaseServer {
  readonly kind: TestDatabaseKind;
  /** The URL the server was opened with (`TEST_DB_URL`). */
  readonly url: string;
  /** SQLite only: the folder that holds the databases. */
  readonly dir?: string;
  /** Every database on the server whose name starts with the test kit's marker. */
  list(): Promise<string[]>;
  exists(name: string): Promise<boolean>;
  create(name: string): Promise<void>;
  /**
   * Creates `name` as a copy of `template` (schema and rows). Resolves to false, having created
   * nothing, when this server cannot copy what `template` holds; the caller then builds `name`
   * from the schema instead.
   */
  copy(template: string, name: string): Promise<boolean>;
  /** Drops `name`, closing whatever connections still use it. No error if it does not exist. */
  drop(name: string): Promise<void>;
  /** The connection URL of database `name` on this server (SQLite: its file). */
  urlOf(name: string): string;
  /** Closes the server's admin connection, if one was opened. */
  close(): Promise<void>;
}

/**
 * Opens the server `url` names, without connecting yet: PostgreSQL (`postgres://`), MySQL or
 * MariaDB (`mysql://`, `mariadb://`), or SQLite (a file path, a `sqlite:` or `file:` URL, or
 * `sqlite::memory:`, for which the databases are files in a RAM-backed folder when the machine has
 * one). The database in a server URL is the maintenance database the kit connects to.
 *
 * @example
 * const server = openTestDatabaseServer('postgres://postgres@127.0.0.1:5432/test');
 * await server.create('knex_scope_test_a41f0c_12345_mgz1k2pq');
 * await server.close();
 */
export function openTestDatabaseServer(url: string, dir?: string): TestDatabaseServer {
  const config = parseDatabaseUrl(url);
  switch (config.client) {
    case 'pg':
      return postgresTestServer(url);
    case 'mysql2':
      return mysqlTestServer(url);
    case 'better-sqlite3':
      return sqliteTestServer(sqliteFilename(config), dir);
    default:
      throw new InvalidConfigError(`The test kit cannot create databases for ${url}.`);
  }
}

function sqliteFilename(config: Knex.Config): string {
  return (config.connection as { filename: string }).filename;
}
