// upstream: test/test_pytest_fixtures.py, on every database and with both isolation strategies.
import express from 'express';
import type { Knex } from 'knex';
import { type Scope, SessionLimitError } from 'knex-scope';
import {
  dbEngineOptions,
  type TestIsolation,
  testDatabaseConfig,
  testDatabaseUrl,
  useTestDatabase,
} from 'knex-scope/testing';
import request from 'supertest';
import { uniqueName } from '../helpers/database';

async function names(db: Knex, table: string): Promise<string[]> {
  return db(table).orderBy('id').pluck('name');
}

describe.each<TestIsolation>(['rollback', 'delete'])(
  'useTestDatabase({ isolation: %p })',
  (isolation) => {
    const users = uniqueName('users');
    const orders = uniqueName('orders');
    const testDb = useTestDatabase({
      isolation,
      async schema(knex) {
        await knex.schema.createTable(users, (t) => {
          t.increments('id');
          t.string('name', 50).notNullable();
        });
        await knex.schema.createTable(orders, (t) => {
          t.increments('id');
          t.integer('user_id').unsigned().notNullable().references('id').inTable(users);
          t.string('name', 50).notNullable();
        });
      },
    });

    describe('dbSession (nameko db_session)', () => {
      // upstream: test_can_save_model
      it('saves, commits and reads back rows', async () => {
        const trx = await testDb.session;
        const [user] = await trx(users).insert({ name: 'joe' }).returning('id');
        await trx(orders).insert({
          user_id: typeof user === 'object' ? user.id : user,
          name: 'tea',
        });
        await trx.commit();
        const next = await testDb.session;
        expect(next).not.toBe(trx);
        expect(await names(next, users)).toEqual(['joe']);
        expect(await names(next, orders)).toEqual(['tea']);
      });

      // upstream: test_db_is_empty (relies on running after test_can_save_model, as upstream does)
      it('starts the next test with empty tables', async () => {
        const trx = await testDb.session;
        expect(await names(trx, users)).toEqual([]);
        expect(await names(trx, orders)).toEqual([]);
      });
    });

    describe('database (nameko database fixture) handed to a handler', () => {
      // upstream: TestGetSession::test_database_fixture
      it('serves explicit sessions: write, commit, then read in another', async () => {
        async function handler(db: Scope): Promise<string[]> {
          const writer = await db.getSession();
          await writer(users).insert({ name: 'explicit' });
          await writer.commit();
          const reader = await db.getSession();
          return names(reader, users);
        }
        expect(await handler(testDb.database)).toEqual(['explicit']);
      });

      // upstream: TestGetSessionContextManager::test_database_fixture
      it('serves callback sessions', async () => {
        async function handler(db: Scope): Promise<string[]> {
          await db.getSession((trx) => trx(users).insert({ name: 'callback' }));
          return db.getSession((trx) => names(trx, users));
        }
        expect(await handler(testDb.database)).toEqual(['callback']);
      });

      // upstream: TestWorkerScopeSession::test_database_fixture
      it('serves the lazy request session', async () => {
        async function handler(db: Scope): Promise<string[]> {
          const trx = await db.session;
          await trx(users).insert({ name: 'lazy' });
          await trx.commit();
          return names(await db.session, users);
        }
        expect(await handler(testDb.database)).toEqual(['lazy']);
      });

      // upstream: TestWorkerScopeSessionInContext::test_database_fixture (`with db.session` commits
      // when the block ends; here the handler is a whole db.wrap call)
      it('runs a db.wrap handler on the test database', async () => {
        const handle = testDb.db.wrap(async (scope, name: string) => {
          await scope.getSession((trx) => trx(users).insert({ name }));
          return names(await scope.session, users);
        });
        expect(await handle('wrapped')).toEqual(['wrapped']);
        expect(await names(await testDb.session, users)).toEqual(['wrapped']);
      });

      it('is the scope of an Express app mounted on testDb.db', async () => {
        const app = express();
        app.use(testDb.db);
        app.post('/users', async (req, res) => {
          await req.db.getSession((trx) => trx(users).insert({ name: 'http' }));
          res.status(201).json(await req.db.getSession((trx) => names(trx, users)));
        });
        const response = await request(app).post('/users');
        expect(response.status).toBe(201);
        expect(response.body).toEqual(['http']);
      });

      it('rolls back what the handler left open when the test ends', async () => {
        const trx = await testDb.database.session;
        await trx(users).insert({ name: 'left open' });
        expect(testDb.database.ended).toBe(false);
      });

      it('sees nothing of the previous tests', async () => {
        expect(await testDb.database.getSession((trx) => names(trx, users))).toEqual([]);
      });
    });

    if (isolation === 'rollback') {
      describe('rollback isolation', () => {
        it('fails fast on a second session while one is open, instead of waiting forever', async () => {
          const first = await testDb.database.getSession();
          await expect(testDb.database.getSession()).rejects.toBeInstanceOf(SessionLimitError);
          await first.rollback();
          await expect(testDb.database.getSession((trx) => names(trx, users))).resolves.toEqual([]);
        });

        it('keeps the test transaction from being committed', async () => {
          await expect((testDb.knex as Knex.Transaction).commit()).rejects.toThrow(
            /cannot be committed/,
          );
        });

        it('undoes rows that were committed, which no other connection ever sees', async () => {
          await testDb.database.getSession((trx) => trx(users).insert({ name: 'committed' }));
          expect(await names(testDb.knex, users)).toEqual(['committed']);
          if (testDb.engine.client.config.client !== 'better-sqlite3') {
            expect(await names(testDb.engine, users)).toEqual([]);
          }
        });
      });
    } else {
      describe('delete isolation', () => {
        it('commits for real: another connection sees the rows', async () => {
          await testDb.database.getSession((trx) => trx(users).insert({ name: 'visible' }));
          expect(await names(testDb.engine, users)).toEqual(['visible']);
        });

        it('empties every table after the test', async () => {
          expect(await names(testDb.engine, users)).toEqual([]);
        });
      });
    }
  },
);

describe('testDatabaseUrl and testDatabaseConfig (nameko db_url)', () => {
  it("name this worker's own database, made by the global setup", () => {
    const url = testDatabaseUrl();
    expect(url).toMatch(
      new RegExp(`knex_scope_test_[0-9a-f]{6}_\\d+_[0-9a-z]+_w${process.env.JEST_WORKER_ID ?? 1}`),
    );
    expect(testDatabaseConfig().connection).toEqual(
      testDatabaseConfig().client === 'better-sqlite3' ? { filename: url } : expect.anything(),
    );
  });

  // upstream: TestDbEngineOptions::test_default_db_engine_options
  it('has no engine options by default', () => {
    expect(dbEngineOptions()).toEqual({});
  });
});

describe('the Knex instance of useTestDatabase', () => {
  const testDb = useTestDatabase();

  // upstream: TestDbEngineOptions::test_create_engine_with_default_options
  it("is the worker database's config with no extra options (a pool that starts empty)", () => {
    // knex keeps a connection URL parsed into fields, so the URL is compared through testDb.url.
    const { client, connection: _parsed, pool, ...rest } = testDb.engine.client.config;
    const expected = testDatabaseConfig();
    expect(client).toBe(expected.client);
    expect(pool).toEqual({ min: 0 });
    expect(rest).toEqual(expected.useNullAsDefault === undefined ? {} : { useNullAsDefault: true });
    expect(testDb.url).toBe(testDatabaseUrl());
  });
});
