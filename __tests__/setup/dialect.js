// Each database project runs the same test files; this tells them which database they are on, and
// which of the test kit's namespaces (one per project, see global-setup.ts) holds their database.
const globals = /** @type {Record<string, string>} */ (/** @type {unknown} */ (globalThis));
process.env.KNEX_SCOPE_TEST_DIALECT = globals.KNEX_SCOPE_TEST_DIALECT;
process.env.KNEX_SCOPE_TEST_SERVER_URL = globals.KNEX_SCOPE_TEST_SERVER_URL;
process.env.KNEX_SCOPE_TEST_NAMESPACE = globals.KNEX_SCOPE_TEST_DIALECT;
