// @ts-check
// The test kit as a user sets it up: TEST_DB_URL names the database server (default in-memory
// SQLite); the global setup builds ./schema.js once and gives every jest worker its own database.
//   npx jest -c examples/testing/jest.config.js
//   TEST_DB_URL=postgres://postgres@127.0.0.1:5432/test npx jest -c examples/testing/jest.config.js
process.env.KNEX_SCOPE_TEST_SCHEMA ??= `${__dirname}/schema.js`;

/** @type {import('jest').Config} */
module.exports = {
  rootDir: __dirname,
  testEnvironment: 'node',
  testMatch: ['<rootDir>/*.test.js'],
  transform: {},
  // In your project these strings resolve to node_modules/knex-scope; here, to this package
  // itself (its built dist/: run `npm run build` first).
  globalSetup: 'knex-scope/jest/global-setup',
  globalTeardown: 'knex-scope/jest/global-teardown',
};
