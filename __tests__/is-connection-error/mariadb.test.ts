// Real faults provoked on MariaDB through knex + mysql2, each checked twice: the error's shape (so
// a driver or server upgrade that changes it fails here) and its classification. The shapes are
// recorded in observed-errors.md.
import type { Knex } from 'knex';
import { isConnectionError, isTransientError } from '../../lib/retry/is-connection-error';
import {
  closedPort,
  connectionErrorEvents,
  DualStackSocket,
  knexes,
  rejection,
  serverUrl,
  shapes,
  uniqueName,
  waitFor,
} from './support';

const url = serverUrl('mariadb');
const describeIfServer = url === undefined ? describe.skip : describe;

describeIfServer('real MariaDB errors (mysql2 through knex)', () => {
  // describe.skip still runs this body, so it needs a parseable URL when the server is absent.
  const target = url ?? 'mysql://skipped@localhost/skipped';
  const { username: user, pathname } = new URL(target);
  const database = pathname.slice(1);
  const { open, begin, cleanup } = knexes({ client: 'mysql2', connection: target });
  const admins = knexes({ client: 'mysql2', connection: target });
  let admin: Knex;
  let table: string;

  async function threadId(db: Knex | Knex.Transaction): Promise<number> {
    const [rows] = await db.raw('select connection_id() as id');
    return Number(rows[0].id);
  }

  /** Waits until thread `id` is running a statement that starts with `prefix`. */
  function running(id: number, prefix: string): Promise<true> {
    return waitFor(async () => {
      const [rows] = await admin.raw(
        'select 1 from information_schema.processlist where id = ? and info like ?',
        [id, `${prefix}%`],
      );
      return rows.length > 0 ? true : undefined;
    }, `thread ${id} to run ${prefix}`);
  }

  beforeAll(async () => {
    admin = admins.open();
    table = uniqueName('ice_my');
    await admin.schema.createTable(table, (t) => {
      t.engine('InnoDB');
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
    it('KILL of a connection idle in a transaction: PROTOCOL_CONNECTION_LOST as an event, then "closed state"', async () => {
      const events = connectionErrorEvents();
      const db = open({}, { max: 1, afterCreate: events.afterCreate });
      const trx = await begin(db);
      await admin.raw(`KILL ${await threadId(trx)}`);
      const event = await waitFor(() => events.events[0], 'the error event');

      const error = await rejection(trx.raw('select 1'));

      expect(shapes(event)).toMatchObject([
        {
          code: 'PROTOCOL_CONNECTION_LOST',
          errno: undefined,
          fatal: true,
          message: 'Connection lost: The server closed the connection.',
        },
      ]);
      expect(shapes(error)).toMatchObject([
        {
          code: undefined,
          fatal: true,
          message: "select 1 - Can't add new command when connection is in closed state",
        },
      ]);
      expect(isConnectionError(event)).toBe(true);
      expect(isConnectionError(error)).toBe(true);
    });

    it('KILL of a connection running SELECT SLEEP(5): the query rejects with PROTOCOL_CONNECTION_LOST, not 1927', async () => {
      const db = open();
      const trx = await begin(db);
      const id = await threadId(trx);
      const sleeping = rejection(trx.raw('select sleep(5)'));
      await running(id, 'select sleep');
      await admin.raw(`KILL ${id}`);

      const error = await sleeping;

      expect(shapes(error)).toMatchObject([
        {
          code: 'PROTOCOL_CONNECTION_LOST',
          errno: undefined,
          sqlState: undefined,
          fatal: true,
          message: 'select sleep(5) - Connection lost: The server closed the connection.',
        },
      ]);
      expect(isConnectionError(error)).toBe(true);
    });

    it('KILL CONNECTION_ID(): the killing statement itself rejects with 1927, which mysql2 has no name for', async () => {
      const error = await rejection(open().raw('KILL CONNECTION_ID()'));

      expect(shapes(error)).toMatchObject([
        {
          code: undefined,
          errno: 1927,
          sqlState: '70100',
          fatal: undefined,
          message: 'KILL CONNECTION_ID() - Connection was killed',
        },
      ]);
      expect(isConnectionError(error)).toBe(true);
    });

    it('idle_transaction_timeout: the server resets the socket, an ECONNRESET event, then "closed state"', async () => {
      const events = connectionErrorEvents();
      const db = open({}, { max: 1, afterCreate: events.afterCreate });
      const trx = await begin(db);
      await trx.raw('set session idle_transaction_timeout = 1');
      const event = await waitFor(() => events.events[0], 'the error event');

      const error = await rejection(trx.raw('select 1'));

      expect(shapes(event)).toMatchObject([
        { code: 'ECONNRESET', fatal: true, message: 'read ECONNRESET' },
      ]);
      expect(shapes(error)).toMatchObject([
        {
          fatal: true,
          message: "select 1 - Can't add new command when connection is in closed state",
        },
      ]);
      expect(isConnectionError(event)).toBe(true);
      expect(isConnectionError(error)).toBe(true);
    });

    it('a connect to a closed port rejects with ECONNREFUSED, marked fatal', async () => {
      const db = open({
        connection: { host: '127.0.0.1', port: await closedPort(), user, database },
      });

      const error = await rejection(db.raw('select 1'));

      expect(shapes(error)).toMatchObject([
        {
          code: 'ECONNREFUSED',
          fatal: true,
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
          stream: () => new DualStackSocket().connect(closed, 'localhost'),
        },
      });

      const error = await rejection(db.raw('select 1'));

      expect(shapes(error)).toMatchObject([
        {
          name: 'AggregateError',
          code: 'ECONNREFUSED',
          fatal: true,
          message: '',
          errors: [{ code: 'ECONNREFUSED' }, { code: 'ECONNREFUSED' }],
        },
      ]);
      expect(isConnectionError(error)).toBe(true);
    });
  });

  describe('conflicts', () => {
    it('a deadlock between two transactions rejects one of them with 1213', async () => {
      const db = open();
      const [a, b] = await Promise.all([begin(db), begin(db)]);
      const aThread = await threadId(a);
      await a(table).where({ id: 1 }).update({ v: 1 });
      await b(table).where({ id: 2 }).update({ v: 1 });
      // A knex builder runs only once something calls then().
      const aWaits = Promise.resolve(a(table).where({ id: 2 }).update({ v: 2 }));
      await running(aThread, 'update');

      const results = await Promise.allSettled([
        aWaits,
        b(table).where({ id: 1 }).update({ v: 2 }),
      ]);
      const errors = results.flatMap((result) =>
        result.status === 'rejected' ? [result.reason] : [],
      );

      expect(errors).toHaveLength(1);
      expect(shapes(errors[0])).toMatchObject([
        {
          code: 'ER_LOCK_DEADLOCK',
          errno: 1213,
          sqlState: '40001',
          message: expect.stringMatching(
            / - Deadlock found when trying to get lock; try restarting transaction$/,
          ),
        },
      ]);
      expect(isConnectionError(errors[0])).toBe(false);
      expect(isTransientError(errors[0])).toBe(true);
      await Promise.all([a.rollback(), b.rollback()]);
    });
  });

  describe('errors that are neither', () => {
    it('a lock wait timeout rejects the statement with 1205 and leaves the transaction open', async () => {
      const db = open();
      const [a, b] = await Promise.all([begin(db), begin(db)]);
      await b.raw('set session innodb_lock_wait_timeout = 1');
      await a(table).where({ id: 1 }).update({ v: 1 });
      await b(table).where({ id: 2 }).update({ v: 1 });

      const error = await rejection(b(table).where({ id: 1 }).update({ v: 2 }));

      expect(shapes(error)).toMatchObject([
        {
          code: 'ER_LOCK_WAIT_TIMEOUT',
          errno: 1205,
          sqlState: 'HY000',
          message: expect.stringMatching(
            / - Lock wait timeout exceeded; try restarting transaction$/,
          ),
        },
      ]);
      expect(isConnectionError(error)).toBe(false);
      expect(isTransientError(error)).toBe(false);
      expect(await b(table).where({ id: 2 }).first()).toEqual({ id: 2, v: 1 });
      await Promise.all([a.rollback(), b.rollback()]);
    });

    it('KILL QUERY rejects the statement with 1317 and keeps the connection and the transaction', async () => {
      const db = open();
      const trx = await begin(db);
      const id = await threadId(trx);
      await trx(table).where({ id: 1 }).update({ v: 7 });
      const sleeping = rejection(trx.raw('select sleep(5)'));
      await running(id, 'select sleep');
      await admin.raw(`KILL QUERY ${id}`);

      const error = await sleeping;

      expect(shapes(error)).toMatchObject([
        {
          code: 'ER_QUERY_INTERRUPTED',
          errno: 1317,
          sqlState: '70100',
          message: 'select sleep(5) - Query execution was interrupted',
        },
      ]);
      expect(isTransientError(error)).toBe(false);
      expect(await threadId(trx)).toBe(id);
      expect(await trx(table).where({ id: 1 }).first()).toEqual({ id: 1, v: 7 });
      await trx.rollback();
    });

    it("MariaDB's 4031 is a trigger error that mysql2 labels ER_CLIENT_INTERACTION_TIMEOUT", async () => {
      const trigger = uniqueName('ice_trg');
      const error = await rejection(
        open().raw(
          `create trigger ${trigger} before insert on ${table} for each row follows no_such_trigger set @x = 1`,
        ),
      );

      expect(shapes(error)).toMatchObject([
        {
          code: 'ER_CLIENT_INTERACTION_TIMEOUT',
          errno: 4031,
          sqlState: 'HY000',
          fatal: undefined,
          message: expect.stringMatching(
            / - Referenced trigger 'no_such_trigger' for the given action time and event type does not exist$/,
          ),
        },
      ]);
      expect(isTransientError(error)).toBe(false);
    });

    it('a duplicate key (1062) and a syntax error (1064) are neither', async () => {
      const db = open();
      const duplicate = await rejection(db(table).insert({ id: 1, v: 0 }));
      const syntax = await rejection(db.raw('selec 1'));

      expect(shapes(duplicate)).toMatchObject([
        { code: 'ER_DUP_ENTRY', errno: 1062, sqlState: '23000' },
      ]);
      expect(shapes(syntax)).toMatchObject([
        { code: 'ER_PARSE_ERROR', errno: 1064, sqlState: '42000' },
      ]);
      expect([duplicate, syntax].map(isTransientError)).toEqual([false, false]);
    });
  });
});
