// Real faults provoked on PostgreSQL through knex + pg, each checked twice: the error's shape (so
// a driver upgrade that changes it fails here, not in production) and its classification. The
// shapes are recorded in observed-errors.md.
import type { Knex } from 'knex';
import { isConnectionError, isTransientError } from '../../lib/retry/is-connection-error';
import {
  closedPort,
  connectionErrorEvents,
  DualStackSocket,
  delay,
  knexes,
  rejection,
  serverUrl,
  shapes,
  uniqueName,
  waitFor,
} from './support';

const url = serverUrl('postgres');
const describeIfServer = url === undefined ? describe.skip : describe;

describeIfServer('real PostgreSQL errors (pg through knex)', () => {
  // describe.skip still runs this body, so it needs a parseable URL when the server is absent.
  const target = url ?? 'postgres://skipped@localhost/skipped';
  // pg lets a connectionString override host and port, so other targets spell the fields out.
  const { username: user, pathname } = new URL(target);
  const database = pathname.slice(1);
  const { open, begin, cleanup } = knexes({ client: 'pg', connection: target });
  const admins = knexes({ client: 'pg', connection: target });
  let admin: Knex;
  let table: string;

  async function backendPid(db: Knex | Knex.Transaction): Promise<number> {
    const { rows } = await db.raw('select pg_backend_pid() as pid');
    return Number(rows[0].pid);
  }

  /** Waits until `pid` is running a statement that starts with `prefix`. */
  function running(pid: number, prefix: string): Promise<true> {
    return waitFor(async () => {
      const { rows } = await admin.raw(
        "select 1 from pg_stat_activity where pid = ? and state = 'active' and query like ?",
        [pid, `${prefix}%`],
      );
      return rows.length > 0 ? true : undefined;
    }, `backend ${pid} to run ${prefix}`);
  }

  beforeAll(async () => {
    admin = admins.open();
    table = uniqueName('ice_pg');
    await admin.schema.createTable(table, (t) => {
      t.integer('id').primary();
      t.integer('v').notNullable();
    });
  });

  beforeEach(async () => {
    await admin(table).delete();
    await admin(table).insert([
      { id: 1, v: 0 },
      { id: 2, v: 0 },
    ]);
  });

  afterEach(cleanup);

  afterAll(async () => {
    await admin?.schema.dropTableIfExists(table);
    await admins.cleanup();
  });

  describe('lost connections', () => {
    it('pg_terminate_backend of a backend idle in a transaction: 57P01 as an event, then "not queryable"', async () => {
      const events = connectionErrorEvents();
      const db = open({}, { max: 1, afterCreate: events.afterCreate });
      const trx = await begin(db);
      await admin.raw('select pg_terminate_backend(?)', [await backendPid(trx)]);
      const event = await waitFor(() => events.events[0], 'the error event');

      const error = await rejection(trx.raw('select 1'));

      expect(shapes(event)).toMatchObject([
        {
          name: 'error',
          code: '57P01',
          severity: 'FATAL',
          message: 'terminating connection due to administrator command',
        },
      ]);
      expect(shapes(error)).toMatchObject([
        {
          name: 'Error',
          code: undefined,
          message: 'select 1 - Client has encountered a connection error and is not queryable',
        },
      ]);
      expect(isConnectionError(event)).toBe(true);
      expect(isConnectionError(error)).toBe(true);
    });

    it('pg_terminate_backend of a backend running pg_sleep: the query rejects with 57P01', async () => {
      const db = open();
      const trx = await begin(db);
      const pid = await backendPid(trx);
      const sleeping = rejection(trx.raw('select pg_sleep(5)'));
      await running(pid, 'select pg_sleep');
      await admin.raw('select pg_terminate_backend(?)', [pid]);

      const error = await sleeping;

      expect(shapes(error)).toMatchObject([
        {
          name: 'error',
          code: '57P01',
          severity: 'FATAL',
          message: 'select pg_sleep(5) - terminating connection due to administrator command',
        },
      ]);
      expect(isConnectionError(error)).toBe(true);
      expect(isTransientError(error)).toBe(true);
    });

    it('idle_in_transaction_session_timeout: 25P03 as an event, then "not queryable"', async () => {
      const events = connectionErrorEvents();
      const db = open({}, { max: 1, afterCreate: events.afterCreate });
      const trx = await begin(db);
      await trx.raw("set local idle_in_transaction_session_timeout = '100ms'");
      const event = await waitFor(() => events.events[0], 'the error event');

      const error = await rejection(trx.raw('select 1'));

      expect(shapes(event)).toMatchObject([
        {
          code: '25P03',
          severity: 'FATAL',
          message: 'terminating connection due to idle-in-transaction timeout',
        },
      ]);
      expect(shapes(error)).toMatchObject([
        { message: 'select 1 - Client has encountered a connection error and is not queryable' },
      ]);
      expect(isConnectionError(event)).toBe(true);
      expect(isConnectionError(error)).toBe(true);
    });

    it('idle_session_timeout: 57P05 as an event; knex replaces the connection', async () => {
      const events = connectionErrorEvents();
      const db = open({}, { max: 1, afterCreate: events.afterCreate });
      const pid = await backendPid(db);
      await db.raw("set idle_session_timeout = '100ms'");
      const event = await waitFor(() => events.events[0], 'the error event');

      expect(shapes(event)).toMatchObject([
        {
          code: '57P05',
          severity: 'FATAL',
          message: 'terminating connection due to idle-session timeout',
        },
      ]);
      expect(isConnectionError(event)).toBe(true);
      expect(await backendPid(db)).not.toBe(pid);
    });

    it('pg reports the end of the socket after the FATAL error as a second, message-only event', async () => {
      const events = connectionErrorEvents();
      const db = open({}, { max: 1, afterCreate: events.afterCreate });
      await admin.raw('select pg_terminate_backend(?)', [await backendPid(db)]);
      await waitFor(() => events.events[1], 'the second error event');

      expect(shapes(events.events[1])).toMatchObject([
        { name: 'Error', code: undefined, message: 'Connection terminated unexpectedly' },
      ]);
      expect(events.events.map(isConnectionError)).toEqual([true, true]);
    });

    it('a connect to a closed port rejects with ECONNREFUSED', async () => {
      const db = open({
        connection: { host: '127.0.0.1', port: await closedPort(), user, database },
      });

      const error = await rejection(db.raw('select 1'));

      expect(shapes(error)).toMatchObject([
        {
          name: 'Error',
          code: 'ECONNREFUSED',
          message: expect.stringMatching(/^connect ECONNREFUSED 127\.0\.0\.1:\d+$/),
        },
      ]);
      expect(isConnectionError(error)).toBe(true);
    });

    it('a connect to localhost (::1 and 127.0.0.1) on a closed port rejects with an AggregateError', async () => {
      const closed = await closedPort();
      const db = open({
        connection: {
          host: 'localhost',
          port: closed,
          user,
          database,
          stream: () => new DualStackSocket(),
        },
      });

      const error = await rejection(db.raw('select 1'));

      expect(shapes(error)).toMatchObject([
        {
          name: 'AggregateError',
          code: 'ECONNREFUSED',
          message: '',
          errors: [
            { code: 'ECONNREFUSED', message: `connect ECONNREFUSED ::1:${closed}` },
            { code: 'ECONNREFUSED', message: `connect ECONNREFUSED 127.0.0.1:${closed}` },
          ],
        },
      ]);
      expect(isConnectionError(error)).toBe(true);
    });

    it('a connect to localhost as this machine resolves it is a connection error either way', async () => {
      const db = open({
        connection: { host: 'localhost', port: await closedPort(), user, database },
      });

      const error = await rejection(db.raw('select 1'));

      expect(['Error', 'AggregateError']).toContain(shapes(error)[0]?.name);
      expect(isConnectionError(error)).toBe(true);
    });

    it('query_timeout rejects with "Query read timeout", and so does the next query on that connection', async () => {
      const db = open({ connection: { connectionString: target, query_timeout: 50 } }, { max: 1 });

      const slow = await rejection(db.raw('select pg_sleep(0.3)'));
      const next = await rejection(db.raw('select 1'));

      expect(shapes(slow)).toMatchObject([
        { code: undefined, message: 'select pg_sleep(0.3) - Query read timeout' },
      ]);
      expect(shapes(next)).toMatchObject([
        { code: undefined, message: 'select 1 - Query read timeout' },
      ]);
      expect(isConnectionError(slow)).toBe(true);
      expect(isConnectionError(next)).toBe(true);
      await delay(300);
    });
  });

  describe('conflicts', () => {
    it('a deadlock between two transactions rejects one of them with 40P01', async () => {
      const db = open();
      const [a, b] = await Promise.all([begin(db), begin(db)]);
      await a(table).where({ id: 1 }).update({ v: 1 });
      await b(table).where({ id: 2 }).update({ v: 1 });

      const results = await Promise.allSettled([
        a(table).where({ id: 2 }).update({ v: 2 }),
        b(table).where({ id: 1 }).update({ v: 2 }),
      ]);
      const errors = results.flatMap((result) =>
        result.status === 'rejected' ? [result.reason] : [],
      );

      expect(errors).toHaveLength(1);
      expect(shapes(errors[0])).toMatchObject([
        {
          name: 'error',
          code: '40P01',
          severity: 'ERROR',
          message: expect.stringMatching(/ - deadlock detected$/),
        },
      ]);
      expect(isConnectionError(errors[0])).toBe(false);
      expect(isTransientError(errors[0])).toBe(true);
      await Promise.all([a.rollback(), b.rollback()]);
    });

    it('an update of a row changed since the SERIALIZABLE snapshot rejects with 40001', async () => {
      const db = open();
      const trx = await begin(db, { isolationLevel: 'serializable' });
      await trx(table).where({ id: 1 }).first();
      await db(table).where({ id: 1 }).update({ v: 5 });

      const error = await rejection(trx(table).where({ id: 1 }).update({ v: 6 }));

      expect(shapes(error)).toMatchObject([
        {
          name: 'error',
          code: '40001',
          message: expect.stringMatching(/ - could not serialize access due to concurrent update$/),
        },
      ]);
      expect(isConnectionError(error)).toBe(false);
      expect(isTransientError(error)).toBe(true);
      await trx.rollback();
    });

    it('write skew under SERIALIZABLE fails at COMMIT with 40001, seen only on executionPromise', async () => {
      const db = open();
      const [a, b] = await Promise.all([
        begin(db, { isolationLevel: 'serializable' }),
        begin(db, { isolationLevel: 'serializable' }),
      ]);
      await a(table).sum('v');
      await b(table).sum('v');
      await a(table).where({ id: 1 }).update({ v: 1 });
      await b(table).where({ id: 2 }).update({ v: 1 });
      await a.commit();

      await expect(b.commit()).resolves.toBeUndefined();
      const error = await rejection(b.executionPromise);

      expect(shapes(error)).toMatchObject([
        {
          code: '40001',
          message:
            'COMMIT; - could not serialize access due to read/write dependencies among transactions',
        },
      ]);
      expect(isTransientError(error)).toBe(true);
    });
  });

  describe('errors that are neither', () => {
    it('a pool acquire timeout rejects with KnexTimeoutError', async () => {
      // Long enough for the first connection on a busy machine, short enough to wait out.
      const db = open({ acquireConnectionTimeout: 1_000 }, { max: 1 });
      const trx = await begin(db);

      const error = await rejection(db.raw('select 1'));

      expect(shapes(error)).toMatchObject([
        {
          name: 'KnexTimeoutError',
          message:
            'Knex: Timeout acquiring a connection. The pool is probably full. Are you missing a .transacting(trx) call?',
        },
        { name: 'Error', message: 'operation timed out for an unknown reason' },
      ]);
      expect(isConnectionError(error)).toBe(false);
      expect(isTransientError(error)).toBe(false);
      await trx.rollback();
    });

    it('a knex query .timeout() rejects with KnexTimeoutError', async () => {
      const error = await rejection(open().raw('select pg_sleep(1)').timeout(50, { cancel: true }));

      expect(shapes(error)).toMatchObject([
        {
          name: 'KnexTimeoutError',
          message: 'Defined query timeout of 50ms exceeded when running query.',
        },
      ]);
      expect(isTransientError(error)).toBe(false);
    });

    it('pg_cancel_backend rejects the statement with 57014 and keeps the connection', async () => {
      const db = open();
      const trx = await begin(db);
      const pid = await backendPid(trx);
      const sleeping = rejection(trx.raw('select pg_sleep(5)'));
      await running(pid, 'select pg_sleep');
      await admin.raw('select pg_cancel_backend(?)', [pid]);

      const error = await sleeping;

      expect(shapes(error)).toMatchObject([
        {
          code: '57014',
          severity: 'ERROR',
          message: 'select pg_sleep(5) - canceling statement due to user request',
        },
      ]);
      expect(isTransientError(error)).toBe(false);
      await trx.rollback();
      expect(await backendPid(db)).toBe(pid);
    });

    it('a unique violation (23505) and a syntax error (42601) are neither', async () => {
      const db = open();
      const duplicate = await rejection(db(table).insert({ id: 1, v: 0 }));
      const syntax = await rejection(db.raw('selec 1'));

      expect(shapes(duplicate)).toMatchObject([{ code: '23505' }]);
      expect(shapes(syntax)).toMatchObject([{ code: '42601' }]);
      expect([duplicate, syntax].map(isTransientError)).toEqual([false, false]);
    });
  });
});
