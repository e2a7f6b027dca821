import { testEnv } from '../testing/test-env';
import { createGlobalSetup } from './create-global-setup';

/**
 * The zero-config jest `globalSetup`: `createGlobalSetup()` with its options from the
 * environment: `TEST_DB_URL` (default in-memory SQLite), `KNEX_SCOPE_TEST_MIGRATIONS` (a knex
 * migrations folder), `KNEX_SCOPE_TEST_SCHEMA` (a module exporting `async (knex) => …`),
 * `KNEX_SCOPE_TEST_WORKERS` and `KNEX_SCOPE_TEST_NAMESPACE`. It ignores jest's arguments.
 *
 * @example
 * // jest.config.js
 * process.env.KNEX_SCOPE_TEST_MIGRATIONS ??= 'db/migrations';
 * module.exports = {
 *   globalSetup: 'knex-scope/jest/global-setup',
 *   globalTeardown: 'knex-scope/jest/global-teardown',
 * };
 */
export default function globalSetup(): Promise<void> {
  const migrations = process.env[testEnv.migrations];
  const schema = process.env[testEnv.schema];
  return createGlobalSetup({
    ...(migrations === undefined || migrations === '' ? {} : { migrations }),
    ...(schema === undefined || schema === '' ? {} : { schema }),
  })();
}

export { globalSetup };
