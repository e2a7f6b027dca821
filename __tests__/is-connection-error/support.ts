import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createServer, type LookupFunction, Socket } from 'node:net';
import { join } from 'node:path';
import { knex as createKnex, type Knex } from 'knex';

/**
 * The URL of the `name` server ('postgres' or 'mariadb') if it answers, decided the way
 * jest.config.js decides which database projects run (scripts/probe-databases.js, with its
 * KNEX_SCOPE_TEST_DATABASES and KNEX_SCOPE_*_URL overrides). Jest collects tests synchronously,
 * hence the child process.
 */
export function serverUrl(name: string): string | undefined {
  const script =
    `require(${JSON.stringify(join(__dirname, '../../scripts/probe-databases.js'))})` +
    '.probeDatabases().then((list) => process.stdout.write(JSON.stringify(list)))';
  const list = JSON.parse(execFileSync(process.execPath, ['-e', script], { encoding: 'utf8' })) as {
    name: string;
    url: string;
  }[];
  return list.find((server) => server.name === name)?.url;
}

/** Knex warns through its logger on every lost connection; these tests provoke them on purpose. */
export const quietLog: Knex.Logger = { warn() {}, error() {}, debug() {}, deprecate() {} };

/**
 * Opens knex instances and transactions for one test file, and closes them all in `cleanup` even
 * after a failed test: an open transaction would make `destroy()` wait forever and keep jest
 * from exiting.
 */
export function knexes(base: Knex.Config): {
  open(config?: Partial<Knex.Config>, pool?: Knex.PoolConfig): Knex;
  begin(db: Knex, config?: Knex.TransactionConfig): Promise<Knex.Transaction>;
  cleanup(): Promise<void>;
} {
  const instances: Knex[] = [];
  const transactions: Knex.Transaction[] = [];
  return {
    open(config = {}, pool = {}) {
      const db = createKnex({
        ...base,
        log: quietLog,
        ...config,
        pool: { min: 0, max: 2, ...pool },
      });
      instances.push(db);
      return db;
    },
    async begin(db, config) {
      const trx = await db.transaction(config);
      transactions.push(trx);
      return trx;
    },
    async cleanup() {
      const open = transactions.splice(0).filter((trx) => !trx.isCompleted());
      await Promise.all(open.map((trx) => trx.rollback().catch(() => {})));
      await Promise.all(instances.splice(0).map((db) => db.destroy()));
    },
  };
}

/** A table name no other test file or worker uses. */
export function uniqueName(prefix: string): string {
  const worker = process.env.JEST_WORKER_ID ?? '0';
  return `${prefix}_${process.pid}_${worker}_${randomBytes(3).toString('hex')}`;
}

/** The fields of one error in a chain that classification can depend on. */
export interface ErrorShape {
  name: unknown;
  code: unknown;
  errno: unknown;
  sqlState: unknown;
  severity: unknown;
  fatal: unknown;
  message: string;
  errors?: ErrorShape[];
}

/** `error` and its `cause` chain, reduced to the fields the observed-errors table records. */
export function shapes(error: unknown): ErrorShape[] {
  const chain: ErrorShape[] = [];
  let node = error;
  while (typeof node === 'object' && node !== null && chain.length < 5) {
    chain.push(shape(node));
    node = (node as { cause?: unknown }).cause;
  }
  return chain;
}

function shape(node: object): ErrorShape {
  const fields = node as Record<string, unknown>;
  const result: ErrorShape = {
    name: fields.name,
    code: fields.code,
    errno: fields.errno,
    sqlState: fields.sqlState,
    severity: fields.severity,
    fatal: fields.fatal,
    message: String(fields.message),
  };
  if (Array.isArray(fields.errors))
    result.errors = fields.errors.map((inner: object) => shape(inner));
  return result;
}

/** The reason `promise` rejects with; fails the test if it resolves. */
export async function rejection(promise: PromiseLike<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error('Expected the promise to reject, but it resolved.');
}

/** Resolves after `ms` milliseconds. */
export function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls `check` every 10 ms until it returns a value other than undefined; fails after `timeout`. */
export async function waitFor<T>(
  check: () => T | undefined | Promise<T | undefined>,
  what: string,
  timeout = 5_000,
): Promise<T> {
  const deadline = Date.now() + timeout;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}.`);
    await delay(10);
  }
}

/**
 * Records the `error` events of every raw driver connection a knex pool creates (pg.Client and
 * mysql2 Connection both emit them), to see what a driver reports for a connection that dies
 * while no query runs on it. Pass `afterCreate` in the pool config.
 */
export function connectionErrorEvents(): {
  readonly events: unknown[];
  afterCreate(connection: NodeJS.EventEmitter, done: (error: null, c: unknown) => void): void;
} {
  const events: unknown[] = [];
  return {
    events,
    afterCreate(connection, done) {
      connection.on('error', (error: unknown) => events.push(error));
      done(null, connection);
    },
  };
}

/** A loopback TCP port that was free a moment ago, so connecting to it is refused. */
export async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === 'string') throw new Error('No TCP address.');
  return address.port;
}

const dualStackLookup: LookupFunction = (_hostname, _options, callback) => {
  (callback as (error: null, addresses: { address: string; family: number }[]) => void)(null, [
    { address: '::1', family: 6 },
    { address: '127.0.0.1', family: 4 },
  ]);
};

/**
 * A socket whose name lookup returns ::1 and 127.0.0.1, as `localhost` does on most machines,
 * so Node's happy-eyeballs connect tries both (this machine's /etc/hosts maps localhost to
 * 127.0.0.1 only). pg and mysql2 both accept a `stream` in their connection options.
 */
export class DualStackSocket extends Socket {
  override connect(...args: unknown[]): this {
    const [port, host] = args as [number, string];
    return super.connect({ port, host, autoSelectFamily: true, lookup: dualStackLookup });
  }
}
