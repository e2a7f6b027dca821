// upstream: test/test_transaction_retry.py, the tests that cut connections through Toxiproxy.
// Their fault is the same (disable the proxy, optionally enable it again), but it strikes while a
// transaction holds its connection: knex's pool drops idle connections that died, so a fault
// between requests, as upstream stages it, costs nothing here.
import express from 'express';
import type { Knex } from 'knex';
import request from 'supertest';
import {
  type Db,
  isConnectionError,
  type LegacySession,
  retryTransaction,
  type Scope,
  withDb,
  withLegacySession,
} from '../../lib';
import { countRows, createItemsTable, dialect, openKnex, poolStats } from '../helpers/database';
import { type FaultProxy, proxiedConfig, startFaultProxy } from '../helpers/fault-proxy';

const describeServer = dialect === 'sqlite' ? describe.skip : describe;
const noWait = { sleep: async () => {} };

describeServer('retryTransaction through the fault proxy', () => {
  let admin: Knex;
  let table: string;
  let proxy: FaultProxy;
  let db: Db;

  beforeAll(async () => {
    admin = openKnex();
    table = await createItemsTable(admin);
    proxy = await startFaultProxy();
  });

  beforeEach(async () => {
    await admin(table).delete();
    await proxy.toxiproxy.reset();
    db = withDb(proxiedConfig(proxy.url));
  });

  afterEach(async () => {
    await proxy.toxiproxy.reset();
    await db.destroy();
  });

  afterAll(async () => {
    await proxy?.close();
    await admin.schema.dropTableIfExists(table);
    await admin.destroy();
  });

  /** Two rows written and committed through the proxy, and a session left open on it. */
  async function twoRowsAndAnOpenSession(scope: Scope): Promise<Knex.Transaction> {
    await scope.getSession(async (trx) => {
      await trx(table).insert([{ name: 'a' }, { name: 'b' }]);
    });
    const trx = await scope.session;
    await trx(table).count({ n: '*' });
    return trx;
  }

  const count = async (trx: Knex.Transaction) =>
    Number((await trx(table).count<{ n: number }[]>({ n: '*' }))[0]?.n);

  // upstream: test_reconnects_during_transaction
  it('reconnects during a transaction: rollback, retry on a new connection, nothing lost', async () => {
    const result = await db.wrap(async (scope: Scope) => {
      await twoRowsAndAnOpenSession(scope);
      await proxy.toxiproxy.disconnect({ reconnect: true });
      const getCount = retryTransaction(async () => count(await scope.session), {
        session: scope,
        ...noWait,
      });
      return getCount();
    })();
    expect(result).toBe(2);
    expect(await countRows(admin, table)).toBe(2);
    expect(poolStats(db.knex).used).toBe(0);
  });

  // upstream: test_raises_without_using_transaction_retry
  it('raises a connection error without retryTransaction', async () => {
    const error = await db
      .wrap(async (scope: Scope) => {
        const trx = await twoRowsAndAnOpenSession(scope);
        await proxy.toxiproxy.disconnect({ reconnect: true });
        return count(trx);
      })()
      .catch((e: unknown) => e);
    expect(isConnectionError(error)).toBe(true);
    expect(poolStats(db.knex).used).toBe(0);
  });

  // upstream: test_raises_error_if_cannot_reconnect
  it('raises the connection error when the proxy stays down', async () => {
    let calls = 0;
    const error = await db
      .wrap(async (scope: Scope) => {
        await twoRowsAndAnOpenSession(scope);
        await proxy.toxiproxy.disconnect({ reconnect: false });
        return retryTransaction(
          async () => {
            calls++;
            return count(await scope.session);
          },
          { session: scope, total: 2, ...noWait },
        )();
      })()
      .catch((e: unknown) => e);
    expect(isConnectionError(error)).toBe(true);
    expect(calls).toBe(3);
    expect(poolStats(db.knex)).toMatchObject({ used: 0, pending: 0 });
  });

  // upstream: test_multiple_retries_with_disabled_connection
  it('keeps retrying while the proxy is down and succeeds once it is back', async () => {
    let calls = 0;
    const result = await db.wrap(async (scope: Scope) => {
      await twoRowsAndAnOpenSession(scope);
      await proxy.toxiproxy.disable();
      return retryTransaction(
        async () => {
          calls++;
          if (calls === 3) await proxy.toxiproxy.enable();
          return count(await scope.session);
        },
        { session: scope, total: 3, ...noWait },
      )();
    })();
    expect(result).toBe(2);
    expect(calls).toBe(3);
  });

  describe.each([
    ['withDb', 'Database'],
    ['withLegacySession', 'DatabaseSession'],
  ])('an Express service on %s (upstream: %s)', (provider) => {
    let service: Db | LegacySession;
    let app: express.Express;

    beforeEach(() => {
      service =
        provider === 'withDb'
          ? withDb(proxiedConfig(proxy.url))
          : withLegacySession(proxiedConfig(proxy.url));
      app = express();
      app.use(service);
    });

    afterEach(async () => {
      await service.destroy();
    });

    const session = (req: express.Request): Promise<Knex.Transaction> =>
      provider === 'withDb' ? req.db.session : Promise.resolve(req.dbSession);
    const target = (req: express.Request) => (provider === 'withDb' ? req.db : req.dbSession);

    /** Handler that counts rows; on its first call the connection is cut under it. */
    function countingHandler(calls: { n: number }) {
      return async (req: express.Request, res: express.Response) => {
        calls.n++;
        const trx = await session(req);
        await trx.raw('select 1');
        if (calls.n === 1) await proxy.toxiproxy.disconnect({ reconnect: true });
        const n = await count(trx);
        await trx.commit();
        res.json({ n });
      };
    }

    // upstream: TestTransactionRetryWithDependencyProviders::test_retries
    it('retries the entrypoint and answers', async () => {
      await admin(table).insert({ name: 'record' });
      const calls = { n: 0 };
      app.get('/count', retryTransaction(countingHandler(calls), { session: target, ...noWait }));
      await request(app).get('/count').expect(200, { n: 1 });
      expect(calls.n).toBe(2);
      expect(poolStats(service.knex).used).toBe(0);
    });

    // upstream: test_with_retry_inside
    it('retries an inner function given the request session', async () => {
      await admin(table).insert({ name: 'record' });
      let calls = 0;
      app.get('/count', async (req, res) => {
        const inner = retryTransaction(
          async () => {
            calls++;
            const trx = await session(req);
            await trx.raw('select 1');
            if (calls === 1) await proxy.toxiproxy.disconnect({ reconnect: true });
            return count(trx);
          },
          { session: () => target(req), ...noWait },
        );
        res.json({ n: await inner() });
      });
      await request(app).get('/count').expect(200, { n: 1 });
      expect(calls).toBe(2);
    });

    // upstream: test_raises_without_retry
    it('answers 500 with the connection error without retry', async () => {
      await admin(table).insert({ name: 'record' });
      let seen: unknown;
      app.get('/count', countingHandler({ n: 0 }));
      app.use((error: unknown, _req: express.Request, res: express.Response, _next: () => void) => {
        seen = error;
        res.status(500).json({ error: 'db' });
      });
      await request(app).get('/count').expect(500);
      expect(isConnectionError(seen)).toBe(true);
    });

    // upstream: test_create_with_worker_scoped_session (Database) and the session provider's
    // `attrgetter('session')` variant: the write is retried once, never duplicated.
    it('retries a write on the request session exactly once', async () => {
      await admin(table).insert({ name: 'existing' });
      let calls = 0;
      app.post(
        '/items',
        retryTransaction(
          async (req: express.Request, res: express.Response) => {
            calls++;
            const trx = await session(req);
            await trx(table).insert({ name: 'new' });
            if (calls === 1) await proxy.toxiproxy.disconnect({ reconnect: true });
            await trx.commit();
            res.status(201).end();
          },
          { session: target, ...noWait },
        ),
      );
      await request(app).post('/items').expect(201);
      expect(calls).toBe(2);
      expect(await countRows(admin, table)).toBe(2);
    });
  });

  // upstream: test_create_without_context_manager (Database only): no `session` option, a new
  // explicit session per attempt; the dead one is rolled back when the request ends.
  it('retries a write made on a new explicit session per attempt, exactly once', async () => {
    await admin(table).insert({ name: 'existing' });
    const service = withDb(proxiedConfig(proxy.url));
    const app = express();
    app.use(service);
    let calls = 0;
    app.post(
      '/items',
      retryTransaction(
        async (req: express.Request, res: express.Response) => {
          calls++;
          const trx = await req.db.getSession();
          await trx(table).insert({ name: 'new' });
          if (calls === 1) await proxy.toxiproxy.disconnect({ reconnect: true });
          await trx.commit();
          res.status(201).end();
        },
        { ...noWait },
      ),
    );
    try {
      await request(app).post('/items').expect(201);
      expect(calls).toBe(2);
      expect(await countRows(admin, table)).toBe(2);
      expect(poolStats(service.knex).used).toBe(0);
    } finally {
      await service.destroy();
    }
  });
});
