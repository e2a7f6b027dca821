export type { SchemaFunction, TestSchemaOptions } from '../testing/build-test-schema';
export type { MysqlCopyStrategy } from '../testing/test-run';
export { createGlobalSetup, type GlobalSetupOptions } from './create-global-setup';
export { createGlobalTeardown, type GlobalTeardownOptions } from './create-global-teardown';
