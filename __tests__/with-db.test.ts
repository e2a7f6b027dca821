import { inspect } from 'node:util';
import { knex as createKnex } from 'knex';
import {
  InvalidConfigError,
  isKnexScopeError,
  KnexScopeError,
  NoScopeError,
  parseDatabaseUrl,
  redactUrl,
  withDb,
  withLegacySession,
} from '../lib';
import * as fastify from '../lib/adapters/fastify';
import * as hono from '../lib/adapters/hono';
import { normalizeDbOptions } from '../lib/core/normalize-db-options';

const password = 'pa55-w0rd-SECRET';

/** Everything a user could print about an error: message, stack, inspect output, the cause chain. */
function everything(error: unknown): string {
  const parts: string[] = [];
  let current: unknown = error;
  for (let depth = 0; current !== undefined && depth < 5; depth++) {
    parts.push(
      inspect(current, { depth: 5 }),
      String((current as Error).stack),
      String((current as Error).message),
    );
    current = (current as { cause?: unknown }).cause;
  }
  return parts.join('\n');
}

function failure(build: () => unknown): InvalidConfigError {
  try {
    const built = build() as { destroy?: () => Promise<void> };
    void built?.destroy?.();
  } catch (error) {
    expect(error).toBeInstanceOf(InvalidConfigError);
    // A TypeError, as Node's own errors for bad arguments are, and still a KnexScopeError.
    expect(error).toBeInstanceOf(TypeError);
    expect(error).toBeInstanceOf(KnexScopeError);
    expect((error as Error).name).toBe('InvalidConfigError');
    expect(isKnexScopeError(error)).toBe(true);
    expect((error as InvalidConfigError).code).toBe('ERR_INVALID_CONFIG');
    expect(everything(error)).not.toContain(password);
    return error as InvalidConfigError;
  }
  throw new Error('expected an InvalidConfigError');
}

describe('parseDatabaseUrl', () => {
  it.each([
    ['postgres://app@db:5432/shop', { client: 'pg', connection: 'postgres://app@db:5432/shop' }],
    ['postgresql://app@db/shop', { client: 'pg', connection: 'postgresql://app@db/shop' }],
    [
      'mysql://root@127.0.0.1:3306/test',
      { client: 'mysql2', connection: 'mysql://root@127.0.0.1:3306/test' },
    ],
    [
      'mariadb://root@127.0.0.1/test',
      { client: 'mysql2', connection: 'mysql://root@127.0.0.1/test' },
    ],
    ['sqlite::memory:', { client: 'better-sqlite3', connection: { filename: ':memory:' } }],
    ['sqlite://', { client: 'better-sqlite3', connection: { filename: ':memory:' } }],
    ['sqlite:', { client: 'better-sqlite3', connection: { filename: ':memory:' } }],
    [
      'sqlite:///var/data/shop.db',
      { client: 'better-sqlite3', connection: { filename: '/var/data/shop.db' } },
    ],
    ['sqlite:./shop.db', { client: 'better-sqlite3', connection: { filename: './shop.db' } }],
    [
      'file:///var/data/shop.db',
      { client: 'better-sqlite3', connection: { filename: '/var/data/shop.db' } },
    ],
    [
      './data/shop.sqlite',
      { client: 'better-sqlite3', connection: { filename: './data/shop.sqlite' } },
    ],
    ['/tmp/shop.db', { client: 'better-sqlite3', connection: { filename: '/tmp/shop.db' } }],
    [':memory:', { client: 'better-sqlite3', connection: { filename: ':memory:' } }],
  ])('takes the client from %s', (url, expected) => {
    expect(parseDatabaseUrl(url)).toMatchObject(expected);
  });

  it.each([
    [`ftp://user:${password}@host/db`, /Unsupported database URL scheme "ftp:"/],
    [`postgres://user:${password}@host:notaport/db`, /is not a valid URL/],
    [`mysql://user:${password}@[bad/db`, /is not a valid URL/],
    ['   ', /empty/],
  ])('rejects %s without showing the password', (url, message) => {
    const error = failure(() => parseDatabaseUrl(url));
    expect(error.message).toMatch(message);
  });
});

describe('redactUrl', () => {
  it.each([
    ['postgres://app:s3cret@db:5432/shop', 'postgres://app:***@db:5432/shop'],
    ['postgres://app:p@ss/w0rd@db/shop', 'postgres://app:***@db/shop'],
    ['mysql://root@127.0.0.1:3306/test', 'mysql://root@127.0.0.1:3306/test'],
    [
      'postgres://db/shop?user=app&password=s3cret&ssl=true',
      'postgres://db/shop?user=app&password=***&ssl=true',
    ],
    ['not a url with password=s3cret', 'not a url with password=s3cret'],
    ['host=db;Password=s3cret;x=1', 'host=db;Password=***;x=1'],
  ])('%s → %s', (url, expected) => {
    expect(redactUrl(url)).toBe(expected);
  });
});

describe('withDb(config)', () => {
  it.each([
    ['null', null, /got null/],
    ['a number', 42, /got number 42/],
    ['an array', [], /got an array/],
    ['a config without client', { connection: `postgres://u:${password}@h/db` }, /no "client"/],
    [
      'pool.min above pool.max',
      { client: 'pg', pool: { min: 5, max: 2 } },
      /"pool.min" \(5\) must not exceed "pool.max" \(2\)/,
    ],
    ['pool.max 0', { client: 'pg', pool: { max: 0 } }, /"pool.max" must be at least 1/],
    [
      'a negative pool.min',
      { client: 'pg', pool: { min: -1 } },
      /"pool.min" must be a non-negative integer/,
    ],
    [
      'a fractional pool.max',
      { client: 'pg', pool: { max: 2.5 } },
      /"pool.max" must be a non-negative integer/,
    ],
    [
      'propagateCreateError: false',
      { client: 'pg', pool: { propagateCreateError: false } },
      /propagateCreateError/,
    ],
    [
      'a zero acquire timeout',
      { client: 'pg', acquireConnectionTimeout: 0 },
      /"acquireConnectionTimeout"/,
    ],
    [
      'an unknown client',
      { client: 'postgress' },
      /Unknown configuration option 'client' value postgress/,
    ],
    [
      'a driver that is not installed',
      { client: 'oracledb', connection: { password } },
      /npm install oracledb/,
    ],
    [
      'a malformed URL',
      { client: 'pg', connection: `postgres://u:${password}@h:port/db` },
      /not a valid URL/,
    ],
  ])('rejects %s at construction', (_what, config, message) => {
    const error = failure(() => withDb(config as never));
    expect(error.message).toMatch(message);
  });

  it('accepts a URL and builds the client from its scheme without connecting', async () => {
    const db = withDb(`postgres://app:${password}@127.0.0.1:1/nowhere`);
    expect(db.knex.client.config.client).toBe('pg');
    await db.destroy();
  });

  it('adopts a Knex instance and never destroys it', async () => {
    const knex = createKnex({
      client: 'better-sqlite3',
      connection: { filename: ':memory:' },
      useNullAsDefault: true,
    });
    const db = withDb(knex);
    expect(db.knex).toBe(knex);
    await db.destroy();
    expect((await knex.raw('select 1 as one'))[0]).toEqual({ one: 1 });
    await knex.destroy();
  });
});

describe('withDb(config, options)', () => {
  const sqlite = 'sqlite::memory:';

  it.each([
    ['options that are not an object', 'db', /must be an object/],
    ['an unknown option', { isolation: 'serializable' }, /Unknown option "isolation"/],
    [
      'an unknown transaction option',
      { transaction: { readonly: true } },
      /Unknown transaction option "readonly"/,
    ],
    [
      'an invalid isolation level',
      { transaction: { isolationLevel: 'chaos' } },
      /"transaction.isolationLevel" must be one of/,
    ],
    [
      'a non-boolean readOnly',
      { transaction: { readOnly: 'yes' } },
      /"transaction.readOnly" must be a boolean/,
    ],
    ['an empty property', { property: '' }, /"property" must be a non-empty string/],
    [
      'an unknown commit mode',
      { commit: 'always' },
      /"commit" must be "explicit" or "on-success", got "always"/,
    ],
    [
      'a commit flag instead of a mode',
      { commit: true },
      /"commit" must be "explicit" or "on-success", got boolean/,
    ],
    ['a maxSessionsPerScope of 0', { maxSessionsPerScope: 0 }, /positive integer/],
    ['a fractional maxSessionsPerScope', { maxSessionsPerScope: 1.5 }, /positive integer/],
    ['a maxSessionsPerScope string', { maxSessionsPerScope: '4' }, /positive integer/],
    ['settings that are not an object', { transaction: { settings: 'x' } }, /object of names/],
    [
      'a setting name that could inject SQL',
      { transaction: { settings: { 'search_path; drop table x': 'a' } } },
      /invalid parameter name/,
    ],
    [
      'a setting value that is an object',
      { transaction: { settings: { search_path: ['a'] } } },
      /"transaction.settings.search_path" must be a string/,
    ],
    ['the property express-session owns', { property: 'session' }, /express-session/],
    [
      'an onForgotten that is not a function, "warn" or false',
      { onForgotten: 'log' },
      /"onForgotten" must be a function, "warn" or false/,
    ],
    ['onForgotten: true', { onForgotten: true }, /"onForgotten"/],
  ])('rejects %s', (_what, options, message) => {
    expect(failure(() => withDb(sqlite, options as never)).message).toMatch(message);
  });

  it('throws a TypeError for a bad option on every entry point, and only InvalidConfigError is both', () => {
    for (const build of [withDb, withLegacySession, fastify.withDb, hono.withDb]) {
      expect(() => build(sqlite, { commit: 'always' } as never)).toThrow(TypeError);
    }
    expect(new NoScopeError('outside') instanceof KnexScopeError).toBe(true);
    expect(new NoScopeError('outside') instanceof TypeError).toBe(false);
    expect(new NoScopeError('outside') instanceof InvalidConfigError).toBe(false);
    expect(new TypeError('plain') instanceof KnexScopeError).toBe(false);
    expect({ code: 'ERR_INVALID_CONFIG' } instanceof KnexScopeError).toBe(false);
  });

  it('rejects read-only or weaker-than-serializable transactions on SQLite instead of ignoring them', () => {
    expect(failure(() => withDb(sqlite, { transaction: { readOnly: true } })).message).toMatch(
      /SQLite/,
    );
    expect(
      failure(() => withDb(sqlite, { transaction: { isolationLevel: 'read committed' } })).message,
    ).toMatch(/always serializable/);
  });

  it('accepts serializable on SQLite, which it always is', async () => {
    const db = withDb(sqlite, { transaction: { isolationLevel: 'serializable' } });
    await db.destroy();
  });

  it('rejects isolationLevel together with readOnly on MySQL, where knex would send invalid SQL', () => {
    const error = failure(() =>
      withDb('mysql://root@127.0.0.1/test', {
        transaction: { isolationLevel: 'serializable', readOnly: true },
      }),
    );
    expect(error.message).toMatch(/set one of them/);
  });

  it('rejects transaction settings where they would outlive the session: MySQL and SQLite', () => {
    const settings = { transaction: { settings: { sql_mode: 'ANSI' } } };
    expect(failure(() => withDb('mysql://root@127.0.0.1/test', settings)).message).toMatch(
      /needs PostgreSQL/,
    );
    expect(failure(() => withDb(sqlite, settings)).message).toMatch(/needs PostgreSQL/);
  });

  it('accepts transaction settings and maxSessionsPerScope on PostgreSQL', async () => {
    const db = withDb('postgres://postgres@127.0.0.1/test', {
      transaction: { settings: { search_path: 'app,public', 'app.tenant': 7, jit: false } },
      maxSessionsPerScope: 4,
    });
    await db.destroy();
  });

  it('reports forgotten sessions with a warning by default, except when NODE_ENV is production', () => {
    const previous = process.env.NODE_ENV;
    try {
      process.env.NODE_ENV = 'development';
      expect(normalizeDbOptions(undefined, 'db').onForgotten).toBeInstanceOf(Function);
      expect(normalizeDbOptions({}, 'db').onForgotten).toBeInstanceOf(Function);
      expect(normalizeDbOptions({ onForgotten: false }, 'db').onForgotten).toBeUndefined();
      process.env.NODE_ENV = 'production';
      expect(normalizeDbOptions(undefined, 'db').onForgotten).toBeUndefined();
      expect(normalizeDbOptions({ onForgotten: 'warn' }, 'db').onForgotten).toBeInstanceOf(
        Function,
      );
      const report = () => {};
      expect(normalizeDbOptions({ onForgotten: report }, 'db').onForgotten).toBe(report);
    } finally {
      process.env.NODE_ENV = previous;
    }
  });

  it('applies the same rules to withLegacySession', () => {
    expect(failure(() => withLegacySession(sqlite, { property: 'session' })).message).toMatch(
      /express-session/,
    );
    expect(failure(() => withLegacySession({ client: 'pg', pool: { max: 0 } })).message).toMatch(
      /pool.max/,
    );
  });

  it.each([
    ['knex-scope', withDb, withLegacySession],
    ['knex-scope/fastify', fastify.withDb, fastify.withLegacySession],
    ['knex-scope/hono', hono.withDb, hono.withLegacySession],
  ] as const)(
    'checks the commit option of %s when withDb is called',
    async (_entry, db, legacy) => {
      for (const make of [db, legacy]) {
        expect(failure(() => make(sqlite, { commit: 'sometimes' as never })).message).toMatch(
          /"commit" must be "explicit" or "on-success"/,
        );
        for (const commit of ['explicit', 'on-success'] as const)
          await make(sqlite, { commit }).destroy();
      }
    },
  );
});
