import { knex as createKnex, type Knex } from 'knex';
import { type Db, withDb } from '../adapters/with-db';
import { InvalidConfigError, SessionLimitError } from '../core/errors';
import type { DbOptions } from '../core/normalize-db-options';
import { parseDatabaseUrl } from '../core/parse-database-url';
import type { Scope } from '../core/scope';
import { buildTestSchema, type TestSchemaOptions } from './build-test-schema';
import { dbEngineOptions } from './db-engine-options';
import { deleteAllRows } from './delete-all-rows';
import { jestHooks } from './jest-hooks';
import {
  ensureTestDatabase,
  mergeEngineOptions,
  type TestDatabaseTarget,
} from './test-database-url';

/**
 * How a test's writes are undone after it:
 * - `rollback`: every test runs in a transaction that is rolled back afterwards; sessions the
 *   test and its handlers open are savepoints in it, so they commit and roll back as usual but
 *   share one connection, and only one can be open at a time. The fast default.
 * - `delete`: sessions are real transactions on their own pooled connections, and every table is
 *   emptied afterwards (nameko's strategy). For tests that need concurrent sessions, a second
 *   connection seeing committed data, isolation levels, or a COMMIT that can fail.
 */
export type TestIsolation = 'rollback' | 'delete';

/** Options of `useTestDatabase`. */
export interface TestDatabaseOptions extends TestDatabaseTarget, TestSchemaOptions {
  /** @default 'rollback' */
  readonly isolation?: TestIsolation;
  /**
   * Knex config keys laid over the test database's config (nameko's `db_engine_options`).
   * @default what `useDbEngineOptions` set, else {}
   */
  readonly engineOptions?: Readonly<Partial<Knex.Config>>;
  /** Options of the `withDb` behind `database` and `db` (nameko's `session_options`). */
  readonly dbOptions?: DbOptions;
}

/** The test database of a test file, from `useTestDatabase`. Read its properties inside tests. */
export interface TestDatabase {
  /** This worker's database (nameko's `db_url`). */
  readonly url: string;
  /** The file's Knex instance, with its own pool; outside the test's transaction. */
  readonly engine: Knex;
  /**
   * The Knex the test works with: the test's transaction (`rollback`), which it must not commit,
   * or `engine` (`delete`).
   */
  readonly knex: Knex;
  /**
   * A session for the test itself (nameko's `db_session`): the lazy session of a scope of its
   * own. Commit to make rows visible to handlers; after a commit or rollback, reading it again
   * gives a fresh one.
   */
  readonly session: Promise<Knex.Transaction>;
  /**
   * A scope to hand to the code under test (nameko's `database` fixture): what `req.db` or a
   * `db.wrap` handler would receive. It ends after the test, rolling back what is still open.
   */
  readonly database: Scope;
  /** The `withDb` on the test's Knex, for `app.use(testDb.db)` and `testDb.db.wrap(handler)`. */
  readonly db: Db;
}

interface OpenScope {
  readonly scope: Scope;
  readonly end: () => Promise<void>;
}

/**
 * Registers jest hooks that give this test file a database and undo each test's writes, and
 * returns getters for it. In `beforeAll` it opens a Knex instance on this worker's database
 * (creating the database if the global setup prepared fewer than jest started workers) and runs
 * `schema` / `migrations` if given (for tables of this file only: the global setup's schema is
 * already there); `beforeEach` opens the test's
 * transaction and scopes; `afterEach` ends the scopes and rolls back or empties every table;
 * `afterAll` destroys the pool.
 *
 * @example
 * const testDb = useTestDatabase();
 *
 * it('saves an order', async () => {
 *   await createOrder(testDb.database, { item: 'tea' });    // the handler under test
 *   const trx = await testDb.session;
 *   expect(await trx('orders').pluck('item')).toEqual(['tea']);
 * });
 */
export function useTestDatabase(options: TestDatabaseOptions = {}): TestDatabase {
  const isolation = options.isolation ?? 'rollback';
  if (isolation !== 'rollback' && isolation !== 'delete') {
    throw new InvalidConfigError(
      `"isolation" must be "rollback" or "delete", got ${JSON.stringify(isolation)}.`,
    );
  }
  const { beforeAll, beforeEach, afterEach, afterAll } = jestHooks();
  let url: string | undefined;
  let engine: Knex | undefined;
  let test: TestState | undefined;
  let fileDb: Db | undefined;

  beforeAll(async () => {
    url = await ensureTestDatabase(options);
    const base = mergeEngineOptions(parseDatabaseUrl(url), { pool: { min: 0 } });
    engine = createKnex(mergeEngineOptions(base, options.engineOptions ?? dbEngineOptions()));
    await buildTestSchema(engine, options);
    if (isolation === 'delete') fileDb = withDb(engine, options.dbOptions);
  });

  beforeEach(async () => {
    const knex = required(engine);
    if (isolation === 'rollback') {
      const outer = await knex.transaction();
      outer.executionPromise.catch(() => {});
      const rollback = guardTestTransaction(outer);
      try {
        const db = withDb(outer, options.dbOptions);
        test = { knex: outer, db, undo: rollback, ...(await openScopes(db)) };
      } catch (error) {
        await rollback();
        throw error;
      }
    } else {
      const db = required(fileDb);
      test = { knex, db, undo: () => deleteAllRows(knex), ...(await openScopes(db)) };
    }
  });

  afterEach(async () => {
    const current = test;
    test = undefined;
    if (current === undefined) return;
    try {
      await current.session.end();
      await current.database.end();
    } finally {
      await current.undo();
    }
  });

  afterAll(async () => {
    const knex = engine;
    engine = undefined;
    fileDb = undefined;
    await knex?.destroy();
  });

  const current = (): TestState => {
    if (test === undefined) {
      throw new InvalidConfigError(
        'The test database is only available inside a test (and its beforeEach/afterEach hooks).',
      );
    }
    return test;
  };
  return {
    get url() {
      return required(url);
    },
    get engine() {
      return required(engine);
    },
    get knex() {
      return current().knex;
    },
    get session() {
      return current().session.scope.session;
    },
    get database() {
      return current().database.scope;
    },
    get db() {
      return current().db;
    },
  };
}

interface TestState {
  readonly knex: Knex;
  readonly db: Db;
  readonly undo: () => Promise<void>;
  readonly session: OpenScope;
  readonly database: OpenScope;
}

async function openScopes(db: Db): Promise<{ session: OpenScope; database: OpenScope }> {
  return { session: await openScope(db), database: await openScope(db) };
}

// A scope outside any request: a db.wrap call that stays pending until the test ends.
function openScope(db: Db): Promise<OpenScope> {
  return new Promise((resolve, reject) => {
    let release = (): void => {};
    const held = new Promise<void>((done) => {
      release = done;
    });
    const finished = db.wrap(async (scope: Scope) => {
      resolve({
        scope,
        end: async () => {
          release();
          await finished;
        },
      });
      await held;
    })();
    finished.catch(reject);
  });
}

/**
 * Makes the test's transaction safe to hand out: sessions opened on it are savepoints, which one
 * connection can only nest, so a second session while one is open fails at once with
 * SessionLimitError (knex would otherwise queue it behind the first, forever); and the test cannot
 * commit it. Returns the rollback that undoes the test.
 */
function guardTestTransaction(outer: Knex.Transaction): () => Promise<void> {
  const begin = outer.transaction.bind(outer) as (...args: unknown[]) => Promise<unknown>;
  const rollback = outer.rollback.bind(outer);
  let open = 0;
  const done = (): void => {
    open--;
  };
  const transaction = (...args: unknown[]): Promise<unknown> => {
    if (open > 0) {
      return Promise.reject(
        new SessionLimitError(
          'With isolation "rollback" every session of a test is a savepoint on the test\'s one ' +
            'connection, and another session is still open. Commit or roll back the open ' +
            'session first (testDb.session too), or use useTestDatabase({ isolation: "delete" }).',
        ),
      );
    }
    open++;
    const started = begin(...args);
    if (typeof args[0] === 'function') {
      started.then(done, done);
    } else {
      started.then((trx) => (trx as Knex.Transaction).executionPromise.then(done, done), done);
    }
    return started;
  };
  const commit = (): Promise<never> =>
    Promise.reject(
      new InvalidConfigError(
        "testDb.knex is the test's transaction, rolled back after the test; it cannot be " +
          'committed. Commit a session (await testDb.session) instead.',
      ),
    );
  // knex defines `transaction` read-only (but configurable) on every instance.
  Object.defineProperty(outer, 'transaction', { value: transaction, configurable: true });
  Object.defineProperty(outer, 'commit', { value: commit, configurable: true });
  return async () => {
    if (!outer.isCompleted()) await rollback();
  };
}

function required<T>(value: T | undefined): T {
  if (value === undefined) {
    throw new InvalidConfigError(
      'The test database is not open yet: read it inside tests and hooks, not while jest collects them.',
    );
  }
  return value;
}
