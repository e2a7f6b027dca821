import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Knex } from 'knex';
import Koa3 from 'koa';
import request from 'supertest';
import '../../lib/adapters/koa';
import {
  currentDb,
  type Db,
  type LegacySession,
  type Scope,
  ScopeClosedError,
  withDb,
  withLegacySession,
} from '../../lib';
import {
  backendId,
  countRows,
  createItemsTable,
  delay,
  dialect,
  eventually,
  killBackend,
  names,
  openKnex,
  poolStats,
  recordSql,
  testConfig,
} from '../helpers/database';

// koa2 is koa@2 installed under an alias, so both majors run the same tests.
const Koa2 = require('koa2') as typeof Koa3;

let admin: Knex;
let table: string;

beforeAll(async () => {
  admin = openKnex();
  table = await createItemsTable(admin);
});

afterAll(async () => {
  await admin.schema.dropTableIfExists(table);
  await admin.destroy();
});

type Route = (ctx: Koa3.Context) => Promise<void> | void;

describe.each([
  ['Koa 2', Koa2],
  ['Koa 3', Koa3],
])('%s', (_name, Koa) => {
  let db: Db;
  let sql: string[];

  beforeEach(async () => {
    await admin(table).delete();
    db = withDb(testConfig());
    sql = recordSql(db.knex);
  });

  afterEach(async () => {
    await db.destroy();
  });

  function app(routes: Record<string, Route>, middleware: Koa3.Middleware = db): http.Server {
    const application = new Koa();
    application.silent = true;
    application.use(async (ctx, next) => {
      try {
        await next();
      } catch (error) {
        ctx.status = 500;
        ctx.body = { error: (error as Error).name };
      }
    });
    application.use(middleware);
    application.use(async (ctx) => {
      const handler = routes[`${ctx.method} ${ctx.path}`];
      if (handler === undefined) return ctx.throw(404);
      await handler(ctx as Koa3.Context);
    });
    return http.createServer(application.callback());
  }

  it('gives every request a scope as ctx.db and acquires nothing for routes that never use it', async () => {
    const server = app({
      'GET /health': (ctx) => {
        ctx.body = { scope: typeof ctx.db.getSession, ended: ctx.db.ended };
      },
    });
    const response = await request(server).get('/health').expect(200);
    expect(response.body).toEqual({ scope: 'function', ended: false });
    expect(sql).toEqual([]);
    expect(poolStats(db.knex).used).toBe(0);
  });

  // upstream: TestGetSessionContextManagerEndToEnd::test_successful_write_and_read
  it('commits what the handler commits and reads it back', async () => {
    const server = app({
      'POST /items': async (ctx) => {
        await ctx.db.getSession((trx) => trx(table).insert({ name: 'koa' }));
        ctx.status = 201;
      },
      'GET /items': async (ctx) => {
        ctx.body = await ctx.db.getSession((trx) => names(trx, table));
      },
    });
    await request(server).post('/items').expect(201);
    expect((await request(server).get('/items').expect(200)).body).toEqual(['koa']);
  });

  it('tears down after await next(), before Koa writes the response', async () => {
    const server = app({
      'POST /forgotten': async (ctx) => {
        const trx = await ctx.db.session;
        await trx(table).insert({ name: 'forgotten' });
        ctx.status = 202;
      },
    });
    await request(server).post('/forgotten').expect(202);
    expect(poolStats(db.knex).used).toBe(0);
    expect(await countRows(admin, table)).toBe(0);
    expect(sql.map((s) => s.toUpperCase())).toContain('ROLLBACK');
  });

  it('rolls back when the handler throws, and the error propagates to upstream middleware', async () => {
    const server = app({
      'POST /fail': async (ctx) => {
        const trx = await ctx.db.session;
        await trx(table).insert({ name: 'doomed' });
        throw new RangeError('handler failed');
      },
    });
    const response = await request(server).post('/fail').expect(500);
    expect(response.body).toEqual({ error: 'RangeError' });
    expect(await countRows(admin, table)).toBe(0);
    expect(poolStats(db.knex).used).toBe(0);
  });

  it('refuses work after the handler returned with ScopeClosedError', async () => {
    let late: Promise<unknown> | undefined;
    const server = app({
      'POST /late': async (ctx) => {
        const trx = await ctx.db.session;
        await trx(table).insert({ name: 'late' });
        late = delay(5).then(() => trx.commit().catch((error: unknown) => error));
        ctx.status = 200;
      },
    });
    await request(server).post('/late').expect(200);
    expect(await late).toBeInstanceOf(ScopeClosedError);
    expect(await countRows(admin, table)).toBe(0);
  });

  it('ends the scope when the client disconnects mid-request and rolls back', async () => {
    let scope: Scope | undefined;
    let afterAbort: Promise<unknown> | undefined;
    let entered!: () => void;
    const inside = new Promise<void>((resolve) => {
      entered = resolve;
    });
    const server = app({
      'POST /slow': async (ctx) => {
        scope = ctx.db;
        const trx = await ctx.db.session;
        await trx(table).insert({ name: 'abandoned' });
        entered();
        await once(ctx.db.signal, 'abort');
        afterAbort = trx(table)
          .insert({ name: 'after abort' })
          .catch((error: unknown) => error);
      },
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    try {
      const { port } = server.address() as AddressInfo;
      const client = http.request({ port, host: '127.0.0.1', path: '/slow', method: 'POST' });
      client.on('error', () => {});
      client.end();
      await inside;
      client.destroy();
      expect(await eventually(() => afterAbort !== undefined)).toBe(true);
      expect(await afterAbort).toBeInstanceOf(ScopeClosedError);
      expect(scope?.aborted).toBe(true);
      expect(await eventually(() => poolStats(db.knex).used === 0)).toBe(true);
      expect(await countRows(admin, table)).toBe(0);
    } finally {
      server.closeAllConnections();
      server.close();
    }
  });

  it('keeps 25 overlapping requests in their own scopes across awaits', async () => {
    const contextDb = withDb(testConfig(), { currentDb: true });
    const scopes: Scope[] = [];
    const server = app(
      {
        'GET /overlap': async (ctx) => {
          const mine = ctx.db;
          scopes.push(mine);
          const seen: boolean[] = [];
          for (let i = 0; i < 4; i++) {
            await delay(Math.random() * 10);
            seen.push(currentDb() === mine);
          }
          await mine.getSession((trx) => trx.raw('select 1 as one'));
          ctx.body = { seen };
        },
      },
      contextDb,
    );
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const { port } = server.address() as AddressInfo;
    try {
      const responses = await Promise.all(
        Array.from({ length: 25 }, () =>
          request(`http://127.0.0.1:${port}`).get('/overlap').expect(200),
        ),
      );
      for (const response of responses) {
        expect(response.body.seen).toEqual([true, true, true, true]);
      }
      expect(new Set(scopes).size).toBe(25);
      expect(poolStats(contextDb.knex).used).toBe(0);
    } finally {
      server.close();
      await contextDb.destroy();
    }
  });

  it('adds no close listener for a request that never asks for a session', async () => {
    const counts: number[] = [];
    const server = app({
      'GET /plain': (ctx) => {
        counts.push(ctx.res.listenerCount('close'));
        ctx.body = { ok: true };
      },
      'GET /session': async (ctx) => {
        const before = ctx.res.listenerCount('close');
        const trx = await ctx.db.session;
        counts.push(ctx.res.listenerCount('close') - before);
        await trx.commit();
        ctx.body = { ok: true };
      },
    });
    const baseline = app(
      {
        'GET /plain': (ctx) => {
          counts.push(ctx.res.listenerCount('close'));
          ctx.body = { ok: true };
        },
      },
      async (_ctx, next) => next(),
    );
    await request(baseline).get('/plain').expect(200);
    await request(server).get('/plain').expect(200);
    await request(server).get('/session').expect(200);
    expect(counts[1]).toBe(counts[0]);
    expect(counts[2]).toBe(1);
    expect(sql.filter((statement) => /^select/i.test(statement))).toEqual([]);
  });

  (dialect === 'sqlite' ? it.skip : it)(
    'answers 500 when COMMIT fails, because it runs before the response',
    async () => {
      const server = app({
        'POST /commit-fails': async (ctx) => {
          const trx = await ctx.db.session;
          await trx(table).insert({ name: 'lost' });
          await killBackend(admin, await backendId(trx));
          await trx.commit();
          ctx.status = 201;
        },
      });
      await request(server).post('/commit-fails').expect(500);
      expect(await countRows(admin, table)).toBe(0);
      expect(await eventually(() => poolStats(db.knex).used === 0)).toBe(true);
    },
  );

  describe('withLegacySession', () => {
    let legacy: LegacySession;
    let legacySql: string[];

    beforeEach(() => {
      legacy = withLegacySession(testConfig());
      legacySql = recordSql(legacy.knex);
    });

    afterEach(async () => {
      await legacy.destroy();
    });

    // upstream: test_database_session.py test_end_to_end
    it('opens the transaction before the handler runs as ctx.dbSession', async () => {
      const server = app(
        {
          'POST /items': async (ctx) => {
            const begun = legacySql.some((s) => /^begin/i.test(s));
            await ctx.dbSession(table).insert({ name: 'eager' });
            await ctx.dbSession.commit();
            ctx.body = { begun };
          },
        },
        legacy,
      );
      expect((await request(server).post('/items').expect(200)).body).toEqual({ begun: true });
      expect(await names(admin, table)).toEqual(['eager']);
    });

    // upstream: test_database_session.py test_worker_teardown
    it('rolls it back when the handler does not commit', async () => {
      const server = app(
        {
          'POST /items': async (ctx) => {
            await ctx.dbSession(table).insert({ name: 'uncommitted' });
            ctx.status = 204;
          },
        },
        legacy,
      );
      await request(server).post('/items').expect(204);
      expect(await countRows(admin, table)).toBe(0);
      expect(poolStats(legacy.knex).used).toBe(0);
    });

    it('puts the transaction on the property option', async () => {
      const named = withLegacySession(testConfig(), { property: 'trx' });
      try {
        const server = app(
          {
            'GET /': (ctx) => {
              ctx.body = {
                isTransaction: (ctx as unknown as { trx: Knex.Transaction }).trx.isTransaction,
              };
            },
          },
          named,
        );
        expect((await request(server).get('/').expect(200)).body).toEqual({ isTransaction: true });
      } finally {
        await named.destroy();
      }
    });
  });
});
