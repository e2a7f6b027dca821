import { fileURLToPath } from 'node:url';
import type { Knex } from 'knex';
import { InvalidConfigError } from './errors';
import { redactUrl } from './redact-url';

const scheme = /^([a-z][a-z0-9+.-]+):/i;

/**
 * Turns a connection URL into a Knex config. The client comes from the scheme: `postgres://` and
 * `postgresql://` → pg; `mysql://` and `mariadb://` → mysql2; `sqlite:` URLs, `file:` URLs and
 * plain file paths → better-sqlite3. `sqlite::memory:`, `sqlite://`, `:memory:` are an in-memory
 * database. Throws InvalidConfigError (without the password) for anything else.
 *
 * @example
 * parseDatabaseUrl('postgres://app@127.0.0.1:5432/shop');
 * // { client: 'pg', connection: 'postgres://app@127.0.0.1:5432/shop' }
 * parseDatabaseUrl('./data/shop.sqlite');
 * // { client: 'better-sqlite3', connection: { filename: './data/shop.sqlite' }, useNullAsDefault: true }
 */
export function parseDatabaseUrl(url: string): Knex.Config {
  if (url.trim() === '') {
    throw new InvalidConfigError('The database URL is empty.');
  }
  const protocol = scheme.exec(url)?.[1]?.toLowerCase();
  if (protocol === undefined) return sqlite(url);
  switch (protocol) {
    case 'postgres':
    case 'postgresql':
      assertUrl(url);
      return { client: 'pg', connection: url };
    case 'mysql':
    case 'mariadb':
      assertUrl(url);
      return { client: 'mysql2', connection: url.replace(scheme, 'mysql:') };
    case 'sqlite':
    case 'sqlite3':
      return sqlite(url.slice(protocol.length + 1).replace(/^\/\//, '') || ':memory:');
    case 'file':
      assertUrl(url);
      return sqlite(fileURLToPath(url));
    default:
      throw new InvalidConfigError(
        `Unsupported database URL scheme "${protocol}:" in ${redactUrl(url)}. ` +
          'Use postgres://, postgresql://, mysql://, mariadb://, sqlite: or a file path.',
      );
  }
}

function sqlite(filename: string): Knex.Config {
  const query = filename.indexOf('?');
  const path = query === -1 ? filename : filename.slice(0, query);
  return {
    client: 'better-sqlite3',
    connection: { filename: path === '' ? ':memory:' : path },
    useNullAsDefault: true,
  };
}

function assertUrl(url: string): void {
  if (!URL.canParse(url)) {
    throw new InvalidConfigError(`The database URL ${redactUrl(url)} is not a valid URL.`);
  }
}
