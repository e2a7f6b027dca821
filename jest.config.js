// @ts-check
const { probeDatabases } = require('./scripts/probe-databases');

// Tests and examples import 'knex-scope' as users do; here it is the TypeScript source.
// __tests__/package-exports.test.ts checks the packed package itself.
const moduleNameMapper = {
  '^knex-scope$': '<rootDir>/lib/index.ts',
  '^knex-scope/jest/(.*)$': '<rootDir>/lib/jest/$1.ts',
  '^knex-scope/(testing|toxiproxy)$': '<rootDir>/lib/$1/index.ts',
  '^knex-scope/(express|koa|fastify|hono)$': '<rootDir>/lib/adapters/$1/index.ts',
  '^knex-scope/opentelemetry$': '<rootDir>/lib/observability/opentelemetry/index.ts',
};

const transform = {
  '^.+\\.(t|j)s$': [
    '@swc/jest',
    { jsc: { parser: { syntax: 'typescript' }, target: 'es2022' }, module: { type: 'commonjs' } },
  ],
};

/** @returns {Promise<import('jest').Config>} */
module.exports = async () => {
  const databases = await probeDatabases();
  return {
    projects: [
      {
        displayName: 'unit',
        transform,
        moduleNameMapper,
        testEnvironment: 'node',
        testMatch: ['<rootDir>/__tests__/**/*.test.ts'],
        testPathIgnorePatterns: [
          '<rootDir>/__tests__/db/',
          '<rootDir>/__tests__/testing/',
          '<rootDir>/__tests__/scale-out/',
          '<rootDir>/__tests__/services.test.ts',
        ],
      },
      {
        // PgBouncer, the PostgreSQL failover pair and Galera (scripts/services/): each file locks
        // its service, and scripts/test.js runs this project beside the others.
        displayName: 'scale-out',
        transform,
        moduleNameMapper,
        testEnvironment: 'node',
        testMatch: [
          '<rootDir>/__tests__/scale-out/**/*.test.ts',
          '<rootDir>/__tests__/services.test.ts',
        ],
      },
      ...databases.map(({ name, url }) => ({
        displayName: name,
        transform,
        moduleNameMapper,
        testEnvironment: 'node',
        testMatch: ['<rootDir>/__tests__/{db,testing}/**/*.test.ts'],
        globals: { KNEX_SCOPE_TEST_DIALECT: name, KNEX_SCOPE_TEST_SERVER_URL: url },
        setupFiles: ['<rootDir>/__tests__/setup/dialect.js'],
        // The test kit (knex-scope/jest): one database per jest worker on this project's server.
        globalSetup: '<rootDir>/__tests__/setup/global-setup.ts',
        globalTeardown: '<rootDir>/__tests__/setup/global-teardown.ts',
      })),
    ],
  };
};
