import { type Channel, channel } from 'node:diagnostics_channel';

/** A database the test kit created or dropped, as `knex-scope:test-database` publishes it. */
export interface TestDatabaseEvent {
  /** `leftover-dropped`: a database of a crashed run, dropped by a later one. */
  readonly action: 'created' | 'dropped' | 'leftover-dropped';
  /** `template` (the run's database with the schema), `worker` (a jest worker's copy) or `leftover`. */
  readonly role: 'template' | 'worker' | 'leftover';
  readonly name: string;
  /** `postgres`, `mysql` or `sqlite`. */
  readonly engine: string;
  /** For a worker database: the jest worker it belongs to. */
  readonly worker?: number;
}

/**
 * `knex-scope:test-database`: the databases the test kit (`knex-scope/jest`, `knex-scope/testing`)
 * creates and drops, in the process that does it: the jest global setup for the run's databases,
 * the test worker for a worker database made on demand.
 *
 * @example
 * testDatabaseChannel.subscribe((event) => console.log(event));
 */
export const testDatabaseChannel: Channel = channel('knex-scope:test-database');
