import type { Knex } from 'knex';
import { InvalidConfigError } from '../core/errors';
import { parseDatabaseUrl } from '../core/parse-database-url';
import { mysqlTestServer } from './mysql-test-server';
import { postgresTestServer } from './postgres-test-server';
import { sqliteTestServer } from './sqlite-test-server';
import type { TestDatabaseServer } from './test-database-server';

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
