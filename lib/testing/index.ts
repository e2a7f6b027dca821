export type { TestDatabaseEvent } from '../observability/test-database-channel';
export type { SchemaFunction, TestSchemaOptions } from './build-test-schema';
export { dbEngineOptions, useDbEngineOptions } from './db-engine-options';
export { type DeleteAllRowsOptions, deleteAllRows } from './delete-all-rows';
export {
  ensureTestDatabase,
  type TestDatabaseTarget,
  testDatabaseConfig,
  testDatabaseUrl,
} from './test-database-url';
export { defaultTestDbUrl, testEnv, testEnvKey } from './test-env';
export {
  createToxiproxyController,
  type ProxyAddress,
  type ToxicOptions,
  type ToxiproxyController,
  type ToxiproxyControllerOptions,
} from './toxiproxy-controller';
export {
  type TestDatabase,
  type TestDatabaseOptions,
  type TestIsolation,
  useTestDatabase,
} from './use-test-database';
export {
  type TestToxiproxy,
  type ToxiproxyFixture,
  testToxiproxy,
  useToxiproxy,
} from './use-toxiproxy';
