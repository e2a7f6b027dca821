import {
  type TestDatabaseEvent,
  testDatabaseChannel,
} from '../observability/test-database-channel';
import type { TestDatabaseServer } from './test-database-server';

/**
 * Publishes on `knex-scope:test-database` what the kit did to a database of `server`.
 *
 * @example
 * published(server, { action: 'created', role: 'worker', name, worker: 3 });
 */
export function published(
  server: TestDatabaseServer,
  event: Omit<TestDatabaseEvent, 'engine'>,
): void {
  if (testDatabaseChannel.hasSubscribers) {
    testDatabaseChannel.publish({ ...event, engine: server.kind });
  }
}
