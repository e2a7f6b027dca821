import { createHash } from 'node:crypto';
import { hostname } from 'node:os';

/**
 * Every database the test kit creates starts with this; it never touches any other.
 *
 * @example
 * name.startsWith(testRunMarker); // one of the kit's
 */
export const testRunMarker = 'knex_scope_test_';

const pattern = /^knex_scope_test_([0-9a-f]{6})_(\d+)_([0-9a-z]+)(?:_w(\d+))?$/;

/** What a test run's database name says about the run that created it. */
export interface TestRunName {
  /** The run's name (its template database), without a worker suffix. */
  readonly run: string;
  /** A hash of the host name of the machine that ran the setup. */
  readonly host: string;
  readonly pid: number;
  /** When the run started, ms since the epoch. */
  readonly time: number;
  /** The jest worker the database belongs to; undefined for the template. */
  readonly worker: number | undefined;
}

/**
 * A short hash of this machine's host name: a database name carries it so that a run only ever
 * judges the process ids of its own machine.
 *
 * @example
 * hostTag(); // 'a41f0c'
 */
export function hostTag(host: string = hostname()): string {
  return createHash('sha256').update(host).digest('hex').slice(0, 6);
}

/**
 * A new run name: marker, host hash, process id and start time, e.g.
 * `knex_scope_test_a41f0c_12345_mgz1k2pq` (at most 46 characters with a worker suffix, well within
 * PostgreSQL's 63 and MySQL's 64).
 *
 * @example
 * createTestRunName(); // 'knex_scope_test_a41f0c_12345_mgz1k2pq'
 */
export function createTestRunName(
  pid: number = process.pid,
  time: number = Date.now(),
  host: string = hostTag(),
): string {
  return `${testRunMarker}${host}_${pid}_${time.toString(36)}`;
}

/**
 * The name of worker `id`'s database in run `run`.
 *
 * @example
 * workerDatabaseName('knex_scope_test_a41f0c_12345_mgz1k2pq', 2); // '…_mgz1k2pq_w2'
 */
export function workerDatabaseName(run: string, id: number): string {
  return `${run}_w${id}`;
}

/**
 * Parses a database name the test kit made; undefined for any other name.
 *
 * @example
 * parseTestRunName('knex_scope_test_a41f0c_12345_mgz1k2pq_w2');
 * // { run: 'knex_scope_test_a41f0c_12345_mgz1k2pq', host: 'a41f0c', pid: 12345, time: …, worker: 2 }
 * parseTestRunName('test'); // undefined
 */
export function parseTestRunName(name: string): TestRunName | undefined {
  const match = pattern.exec(name);
  if (match === null) return undefined;
  const [, host = '', pid = '', time = '', worker] = match;
  return {
    run: name.replace(/_w\d+$/, ''),
    host,
    pid: Number(pid),
    time: Number.parseInt(time, 36),
    worker: worker === undefined ? undefined : Number(worker),
  };
}
