// Real SQLite errors from better-sqlite3 through knex: two knex instances (two connections) on one
// temporary file. The shapes are recorded in observed-errors.md.
import { rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type BetterSqlite3 from 'better-sqlite3';
import type { Knex } from 'knex';
import { isConnectionError, isTransientError } from '../../lib/retry/is-connection-error';
import { knexes, rejection, shapes, uniqueName } from './support';

const file = join(tmpdir(), `${uniqueName('knex-scope-ice')}.sqlite`);
const { open, begin, cleanup } = knexes({
  client: 'better-sqlite3',
  connection: { filename: file },
  useNullAsDefault: true,
});

/** A second connection whose busy handler gives up after 10 ms instead of better-sqlite3's 5 s. */
function impatient(): Knex {
  return open(
    {},
    {
      afterCreate(db: BetterSqlite3.Database, done: (error: null, db: unknown) => void) {
        db.pragma('busy_timeout = 10');
        done(null, db);
      },
    },
  );
}

let first: Knex;

beforeEach(async () => {
  first = open();
  await first.raw('drop table if exists items');
  await first.raw('pragma journal_mode = delete');
  await first.schema.createTable('items', (t) => {
    t.integer('id').primary();
    t.integer('v').notNullable();
  });
  await first('items').insert({ id: 1, v: 0 });
});

afterEach(cleanup);

afterAll(() => {
  for (const suffix of ['', '-journal', '-wal', '-shm']) rmSync(file + suffix, { force: true });
});

describe('real SQLite errors (better-sqlite3 through knex)', () => {
  it('a write while another connection holds the write lock rejects with SQLITE_BUSY', async () => {
    const writer = await begin(first);
    await writer('items').update({ v: 1 });

    const error = await rejection(impatient()('items').update({ v: 2 }));

    expect(shapes(error)).toMatchObject([
      {
        name: 'SqliteError',
        code: 'SQLITE_BUSY',
        message: 'update `items` set `v` = 2 - database is locked',
      },
    ]);
    expect(isConnectionError(error)).toBe(false);
    expect(isTransientError(error)).toBe(true);
  });

  it('a write from a WAL read snapshot that another connection outdated rejects with SQLITE_BUSY_SNAPSHOT', async () => {
    await first.raw('pragma journal_mode = wal');
    const second = impatient();
    const reader = await begin(second);
    await reader('items').select();
    await first('items').update({ v: 3 });

    const error = await rejection(reader('items').update({ v: 4 }));

    expect(shapes(error)).toMatchObject([
      {
        name: 'SqliteError',
        code: 'SQLITE_BUSY_SNAPSHOT',
        message: 'update `items` set `v` = 4 - database is locked',
      },
    ]);
    expect(isConnectionError(error)).toBe(false);
    expect(isTransientError(error)).toBe(true);
  });

  it('a unique violation (SQLITE_CONSTRAINT_PRIMARYKEY) is neither', async () => {
    const error = await rejection(first('items').insert({ id: 1, v: 0 }));

    expect(shapes(error)).toMatchObject([
      { name: 'SqliteError', code: 'SQLITE_CONSTRAINT_PRIMARYKEY' },
    ]);
    expect(isTransientError(error)).toBe(false);
  });

  it('a closed better-sqlite3 handle is neither: knex keeps handing it out, so a retry cannot help', async () => {
    let handle: BetterSqlite3.Database | undefined;
    const db = open(
      {},
      {
        afterCreate(raw: BetterSqlite3.Database, done: (error: null, db: unknown) => void) {
          handle = raw;
          done(null, raw);
        },
      },
    );
    await db.raw('select 1');
    handle?.close();

    const errors = [await rejection(db.raw('select 1')), await rejection(db.raw('select 2'))];

    expect(errors.map((error) => shapes(error)[0])).toMatchObject([
      {
        name: 'TypeError',
        code: undefined,
        message: 'select 1 - The database connection is not open',
      },
      {
        name: 'TypeError',
        code: undefined,
        message: 'select 2 - The database connection is not open',
      },
    ]);
    expect(errors.map(isTransientError)).toEqual([false, false]);
  });

  it('a query after knex.destroy() is neither', async () => {
    const db = open();
    await db.destroy();

    const error = await rejection(db.raw('select 1'));

    expect(shapes(error)).toMatchObject([
      { name: 'Error', message: 'Unable to acquire a connection' },
    ]);
    expect(isTransientError(error)).toBe(false);
  });
});
