// @ts-check
const { probeDatabases } = require('./scripts/probe-databases');

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
        testEnvironment: 'node',
        testMatch: ['<rootDir>/__tests__/**/*.test.ts'],
        testPathIgnorePatterns: ['<rootDir>/__tests__/db/'],
      },
      ...databases.map(({ name, url }) => ({
        displayName: name,
        transform,
        testEnvironment: 'node',
        testMatch: ['<rootDir>/__tests__/db/**/*.test.ts'],
        globals: { KNEX_SCOPE_TEST_DIALECT: name, KNEX_SCOPE_TEST_SERVER_URL: url },
        setupFiles: ['<rootDir>/__tests__/setup/dialect.js'],
      })),
    ],
  };
};
