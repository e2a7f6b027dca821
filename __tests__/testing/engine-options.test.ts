// upstream: TestDbEngineOptions in test/test_pytest_fixtures.py (db_engine_options reaches
// create_engine). Engine options are per test file, so this file sets its own.
import { dbEngineOptions, useDbEngineOptions, useTestDatabase } from 'knex-scope/testing';

const options = { pool: { min: 0, max: 3 }, acquireConnectionTimeout: 4_321 };
useDbEngineOptions(options);
const testDb = useTestDatabase();

// upstream: test_create_engine_with_provided_options
it("opens the file's Knex instance with the engine options", async () => {
  expect(dbEngineOptions()).toBe(options);
  const config = testDb.engine.client.config;
  expect(config.acquireConnectionTimeout).toBe(4_321);
  expect(config.pool).toEqual({ min: 0, max: 3 });
  expect(await testDb.knex.raw('select 1 as one')).toBeDefined();
});

describe('with engineOptions given to useTestDatabase', () => {
  const own = useTestDatabase({ engineOptions: { pool: { max: 1 } } });

  it("uses them instead of the file's", () => {
    expect(own.engine.client.config.pool).toEqual({ min: 0, max: 1 });
    expect(own.engine.client.config.acquireConnectionTimeout).toBeUndefined();
  });
});
