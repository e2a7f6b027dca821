// Each database project runs the same test files; this tells them which database they are on.
process.env.KNEX_SCOPE_TEST_DIALECT = globalThis.KNEX_SCOPE_TEST_DIALECT;
process.env.KNEX_SCOPE_TEST_SERVER_URL = globalThis.KNEX_SCOPE_TEST_SERVER_URL;
