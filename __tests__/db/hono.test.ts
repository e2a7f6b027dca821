import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { serve } from '@hono/node-server';
import { expectTypeOf } from 'expect-type';
import { type Context, Hono, type MiddlewareHandler } from 'hono';
import { stream } from 'hono/streaming';
import type { Knex } from 'knex';
import {
  currentDb,
  type Db,
  type ForgottenSession,
  type LegacySession,
  retryTransaction,
  type Scope,
  ScopeClosedError,
  withDb,
  withLegacySession,
} from '../../lib/adapters/hono';
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

const servers: http.Server[] = [];

afterEach(() => {
  for (const server of servers.splice(0)) {
    server.closeAllConnections();
    server.close();
  }
});

/**
 * Serves `app` with @hono/node-server on 127.0.0.1, after `middleware` and with an onError that
 * answers `{ error: name }` with status 500.
 */
async function listen(middleware: MiddlewareHandler, routes: (app: Hono) => void): Promise<string> {
  const app = new Hono();
  app.onError((error, c) => c.json({ error: error.name }, 500));
  app.use(middleware);
  routes(app);
  const server = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }) as http.Server;
  servers.push(server);
  if (!server.listening) await once(server, 'listening');
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

function post(url: string): Promise<Response> {
  return fetch(url, { method: 'POST' });
}

/** What a lost connection looks like to the caller, for SQLite, where none can be lost. */
function connectionLost(): Error {
  return Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' });
}

describe('knex-scope/hono forgotten sessions', () => {
  it('reports the method, the route pattern and the status of a request whose session was never committed', async () => {
    const reports: ForgottenSession[] = [];
    const forgetful = withDb(testConfig(), { onForgotten: (report) => reports.push(report) });
    const url = await listen(forgetful, (app) => {
      app.post('/orders/:id', async (c) => {
        const trx = await c.var.db.session;
        await trx(table).insert({ name: 'lost' });
        return c.json({ ok: true }, 201);
      });
    });
    try {
      expect((await post(`${url}/orders/7`)).status).toBe(201);
    } finally {
      await forgetful.destroy();
    }
    expect(
      reports.map(({ kind, method, route, status, wrote }) => ({
        kind,
        method,
        route,
        status,
        wrote,
      })),
    ).toEqual([{ kind: 'lazy', method: 'POST', route: '/orders/:id', status: 201, wrote: true }]);
    expect(await countRows(admin, table)).toBe(0);
  });
});

describe('knex-scope/hono withDb', () => {
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

  it("types c.var.db and c.get('db'), a custom property through chaining, and wrap, knex, destroy", () => {
    const analytics = withDb('sqlite::memory:', { property: 'analytics' });
    new Hono().use(analytics).get('/', (c) => {
      expectTypeOf(c.var.analytics).toEqualTypeOf<Scope>();
      expectTypeOf(c.get('analytics')).toEqualTypeOf<Scope>();
      return c.text('ok');
    });
    // Importing knex-scope/hono types the default properties in every app.
    new Hono().get('/', (c) => {
      expectTypeOf(c.var.db).toEqualTypeOf<Scope>();
      expectTypeOf(c.get('dbSession')).toEqualTypeOf<Knex.Transaction>();
      return c.text('ok');
    });
    expectTypeOf(db.knex).toEqualTypeOf<Knex>();
    expectTypeOf(db.wrap(async (scope, n: number) => [scope, n] as const)).toEqualTypeOf<
      (n: number) => Promise<readonly [Scope, number]>
    >();
    const handler = retryTransaction(async (c: Context) => c.json({ ended: c.var.db.ended }), {
      session: (c) => c.var.db,
    });
    expectTypeOf(handler).parameters.toEqualTypeOf<[Context]>();
    void analytics.destroy();
  });

  it('gives every request a scope as c.var.db and acquires nothing for routes that never use it', async () => {
    const url = await listen(db, (app) => {
      app.get('/health', (c) =>
        c.json({
          scope: typeof c.var.db.getSession,
          same: c.get('db') === c.var.db,
          ended: c.var.db.ended,
        }),
      );
      app.get('/plain', (c) => c.json({ ok: true }));
    });
    expect(await (await fetch(`${url}/health`)).json()).toEqual({
      scope: 'function',
      same: true,
      ended: false,
    });
    expect((await fetch(`${url}/plain`)).status).toBe(200);
    expect(sql).toEqual([]);
    expect(poolStats(db.knex).used).toBe(0);
  });

  // upstream: TestWorkerScopeSessionEndToEnd::test_successful_write_and_read
  it('commits what the handler commits and reads it back', async () => {
    const url = await listen(db, (app) => {
      app.post('/items', async (c) => {
        await c.var.db.getSession((trx) => trx(table).insert({ name: 'hono' }));
        return c.body(null, 201);
      });
      app.get('/items', async (c) => c.json(await c.var.db.getSession((trx) => names(trx, table))));
    });
    expect((await post(`${url}/items`)).status).toBe(201);
    expect(await (await fetch(`${url}/items`)).json()).toEqual(['hono']);
  });

  it('rolls back what the handler left open after next(), before the response is written', async () => {
    const url = await listen(db, (app) => {
      app.post('/forgotten', async (c) => {
        const trx = await c.var.db.session;
        await trx(table).insert({ name: 'forgotten' });
        if (dialect !== 'sqlite') {
          const other = await c.var.db.getSession();
          await other(table).insert({ name: 'forgotten too' });
        }
        return c.text('accepted', 202);
      });
    });
    expect((await post(`${url}/forgotten`)).status).toBe(202);
    expect(poolStats(db.knex).used).toBe(0);
    expect(await countRows(admin, table)).toBe(0);
    expect(sql.filter((s) => /^rollback/i.test(s))).toHaveLength(dialect === 'sqlite' ? 1 : 2);
  });

  it('rolls back when the handler throws, which Hono keeps in c.error, and app.onError answers', async () => {
    const url = await listen(db, (app) => {
      app.post('/fail', async (c) => {
        const trx = await c.var.db.session;
        await trx(table).insert({ name: 'doomed' });
        throw new TypeError('handler failed');
      });
    });
    const response = await post(`${url}/fail`);
    expect(response.status).toBe(500);
    expect(await response.json()).toEqual({ error: 'TypeError' });
    expect(await countRows(admin, table)).toBe(0);
    expect(poolStats(db.knex).used).toBe(0);
  });

  it('refuses work after the handler returned with ScopeClosedError', async () => {
    let late: Promise<unknown> | undefined;
    const url = await listen(db, (app) => {
      app.post('/late', async (c) => {
        const trx = await c.var.db.session;
        await trx(table).insert({ name: 'late' });
        late = delay(5).then(() => trx.commit().catch((error: unknown) => error));
        return c.text('sent');
      });
    });
    expect((await post(`${url}/late`)).status).toBe(200);
    expect(await late).toBeInstanceOf(ScopeClosedError);
    expect(await countRows(admin, table)).toBe(0);
  });

  it('ends the scope when the client disconnects mid-request (the Node response closes) and rolls back', async () => {
    const slow = abandonedRoute();
    const url = await listen(db, (app) => {
      app.post('/slow', slow.handler);
    });
    const client = http.request(`${url}/slow`, { method: 'POST' });
    client.on('error', () => {});
    client.end();
    await slow.entered;
    client.destroy();
    expect(await eventually(() => slow.afterAbort !== undefined)).toBe(true);
    expect(await slow.afterAbort).toBeInstanceOf(ScopeClosedError);
    expect(slow.scope?.aborted).toBe(true);
    expect(await eventually(() => poolStats(db.knex).used === 0)).toBe(true);
    expect(await countRows(admin, table)).toBe(0);
  });

  it('ends the scope when the request signal aborts where there is no Node response (app.fetch) and rolls back', async () => {
    const slow = abandonedRoute();
    const app = new Hono();
    app.use(db);
    app.post('/slow', slow.handler);
    const client = new AbortController();
    const response = app.fetch(
      new Request('http://localhost/slow', { method: 'POST', signal: client.signal }),
    );
    await slow.entered;
    expect(slow.scope?.ended).toBe(false);
    client.abort();
    expect(await eventually(() => slow.afterAbort !== undefined)).toBe(true);
    expect(await slow.afterAbort).toBeInstanceOf(ScopeClosedError);
    expect(slow.scope?.aborted).toBe(true);
    await response;
    expect(await eventually(() => poolStats(db.knex).used === 0)).toBe(true);
    expect(await countRows(admin, table)).toBe(0);
  });

  it('ends the scope before a stream() callback runs; db.wrap gives the callback a scope of its own', async () => {
    let inStream: unknown;
    const url = await listen(db, (app) => {
      app.get('/late-stream', (c) =>
        stream(c, async (s) => {
          await s.write('a');
          inStream = await c.var.db.session.catch((error: unknown) => error);
          await s.write('b');
        }),
      );
      app.get('/wrapped-stream', (c) =>
        stream(
          c,
          db.wrap(async (scope, s) => {
            await s.write('first ');
            await scope.getSession((trx) => trx(table).insert({ name: 'streamed' }));
            const trx = await scope.session;
            await trx(table).insert({ name: 'left open' });
            await s.write(`${poolStats(db.knex).used} in use`);
          }),
        ),
      );
    });
    expect(await (await fetch(`${url}/late-stream`)).text()).toBe('ab');
    expect(inStream).toBeInstanceOf(ScopeClosedError);
    expect(await (await fetch(`${url}/wrapped-stream`)).text()).toBe('first 1 in use');
    expect(await eventually(() => poolStats(db.knex).used === 0)).toBe(true);
    expect(await names(admin, table)).toEqual(['streamed']);
  });

  it('keeps 25 overlapping requests in their own scopes across awaits, and currentDb() finds them', async () => {
    const contextDb = withDb(testConfig(), { currentDb: true });
    const scopes: Scope[] = [];
    try {
      const url = await listen(contextDb, (app) => {
        app.get('/overlap/:n', async (c) => {
          const mine = c.var.db;
          scopes.push(mine);
          const seen: boolean[] = [];
          for (let i = 0; i < 4; i++) {
            await delay(Math.random() * 10);
            seen.push(currentDb() === mine && currentDb(contextDb) === mine);
          }
          await mine.getSession((trx) => trx.raw('select 1 as one'));
          return c.json({ n: c.req.param('n'), seen });
        });
      });
      const responses = await Promise.all(
        Array.from({ length: 25 }, async (_, n) => (await fetch(`${url}/overlap/${n}`)).json()),
      );
      for (const [n, body] of responses.entries()) {
        expect(body).toEqual({ n: String(n), seen: [true, true, true, true] });
      }
      expect(new Set(scopes).size).toBe(25);
      expect(poolStats(contextDb.knex).used).toBe(0);
    } finally {
      await contextDb.destroy();
    }
  });

  it('retries a (c) handler with session: (c) => c.var.db', async () => {
    const attempts: number[] = [];
    const url = await listen(db, (app) => {
      app.post(
        '/retried',
        retryTransaction(
          async (c: Context) => {
            const trx = await c.var.db.session;
            await trx(table).insert({ name: `attempt ${attempts.length + 1}` });
            attempts.push(attempts.length + 1);
            if (attempts.length === 1) {
              if (dialect === 'sqlite') throw connectionLost();
              await killBackend(admin, await backendId(trx));
              await trx(table).insert({ name: 'never' });
            }
            await trx.commit();
            return c.json({ attempts: attempts.length }, 201);
          },
          { session: (c) => c.var.db, sleep: async () => {} },
        ),
      );
    });
    const response = await post(`${url}/retried`);
    expect(response.status).toBe(201);
    expect(await response.json()).toEqual({ attempts: 2 });
    expect(await names(admin, table)).toEqual(['attempt 2']);
    expect(await eventually(() => poolStats(db.knex).used === 0)).toBe(true);
  });

  (dialect === 'sqlite' ? it.skip : it)(
    'answers 500 when COMMIT fails, because it runs before the response',
    async () => {
      const url = await listen(db, (app) => {
        app.post('/commit-fails', async (c) => {
          const trx = await c.var.db.session;
          await trx(table).insert({ name: 'lost' });
          await killBackend(admin, await backendId(trx));
          await trx.commit();
          return c.text('created', 201);
        });
      });
      expect((await post(`${url}/commit-fails`)).status).toBe(500);
      expect(await countRows(admin, table)).toBe(0);
      expect(await eventually(() => poolStats(db.knex).used === 0)).toBe(true);
    },
  );
});

describe('knex-scope/hono commit on success', () => {
  it('rolls back a handler that threw even when app.onError answers below 400 (Hono keeps the error in c.error)', async () => {
    await admin(table).delete();
    const db = withDb(testConfig(), { commit: 'on-success', onForgotten: false });
    try {
      const app = new Hono();
      app.onError((_error, c) => c.json({ handled: true }, 200));
      app.use(db);
      app.post('/fails', async (c) => {
        const trx = await c.var.db.session;
        await trx(table).insert({ name: 'half done' });
        throw new Error('after the insert');
      });
      const response = await app.fetch(new Request('http://localhost/fails', { method: 'POST' }));
      expect(response.status).toBe(200);
      expect(await countRows(admin, table)).toBe(0);
      expect(poolStats(db.knex).used).toBe(0);
    } finally {
      await db.destroy();
    }
  });
});

describe('knex-scope/hono withLegacySession', () => {
  let legacy: LegacySession;
  let legacySql: string[];

  beforeEach(async () => {
    await admin(table).delete();
    legacy = withLegacySession(testConfig());
    legacySql = recordSql(legacy.knex);
  });

  afterEach(async () => {
    await legacy.destroy();
  });

  // upstream: test_database_session.py test_end_to_end
  it('opens the transaction before the handler runs as c.var.dbSession', async () => {
    const url = await listen(legacy, (app) => {
      app.post('/items', async (c) => {
        const begun = legacySql.some((s) => /^begin/i.test(s));
        await c.var.dbSession(table).insert({ name: 'eager' });
        await c.var.dbSession.commit();
        return c.json({ begun }, 201);
      });
    });
    const response = await post(`${url}/items`);
    expect(response.status).toBe(201);
    expect(await response.json()).toEqual({ begun: true });
    expect(await names(admin, table)).toEqual(['eager']);
  });

  // upstream: test_database_session.py test_worker_teardown
  it('rolls it back when the handler does not commit', async () => {
    const url = await listen(legacy, (app) => {
      app.post('/items', async (c) => {
        await c.var.dbSession(table).insert({ name: 'uncommitted' });
        return c.body(null, 204);
      });
    });
    expect((await post(`${url}/items`)).status).toBe(204);
    expect(await countRows(admin, table)).toBe(0);
    expect(poolStats(legacy.knex).used).toBe(0);
    expect(legacySql.map((s) => s.toUpperCase())).toContain('ROLLBACK');
  });

  it('re-opens the eager transaction for a retry', async () => {
    const sessions: Knex.Transaction[] = [];
    const url = await listen(legacy, (app) => {
      app.post(
        '/retried',
        retryTransaction(
          async (c: Context) => {
            const trx = c.var.dbSession;
            sessions.push(trx);
            await trx(table).insert({ name: `attempt ${sessions.length}` });
            if (sessions.length === 1) {
              if (dialect === 'sqlite') throw connectionLost();
              await killBackend(admin, await backendId(trx));
              await trx(table).insert({ name: 'never' });
            }
            await trx.commit();
            return c.json({ attempts: sessions.length });
          },
          { session: (c) => c.var.dbSession, sleep: async () => {} },
        ),
      );
    });
    expect(await (await post(`${url}/retried`)).json()).toEqual({ attempts: 2 });
    expect(sessions[1]).not.toBe(sessions[0]);
    expect(await names(admin, table)).toEqual(['attempt 2']);
  });

  it('skips the handler and reports the error to app.onError when the transaction cannot be opened', async () => {
    const broken = withLegacySession(
      dialect === 'sqlite'
        ? { client: 'better-sqlite3', connection: { filename: '/nonexistent/dir/x.sqlite' } }
        : {
            client: dialect === 'postgres' ? 'pg' : 'mysql2',
            connection: { host: '127.0.0.1', port: 9, user: 'nobody', database: 'none' },
            pool: { min: 0, max: 1 },
            acquireConnectionTimeout: 2_000,
          },
    );
    let ran = false;
    try {
      const url = await listen(broken, (app) => {
        app.get('/', (c) => {
          ran = true;
          return c.text('ran');
        });
      });
      expect((await fetch(url)).status).toBe(500);
      expect(ran).toBe(false);
    } finally {
      await broken.destroy();
    }
  });

  it('puts the transaction on the property option', async () => {
    const named = withLegacySession(testConfig(), { property: 'trx' });
    try {
      const url = await listen(named, (app) => {
        app.get('/', (c) =>
          c.json({ isTransaction: (c.get('trx' as never) as Knex.Transaction).isTransaction }),
        );
      });
      expect(await (await fetch(url)).json()).toEqual({ isTransaction: true });
    } finally {
      await named.destroy();
    }
  });
});

/**
 * A route that inserts a row in its lazy session, then waits for the scope's signal to abort and
 * tries another insert, kept as `afterAbort`; `entered` resolves once it waits.
 */
function abandonedRoute(): {
  handler: (c: Context) => Promise<Response>;
  entered: Promise<void>;
  scope: Scope | undefined;
  afterAbort: Promise<unknown> | undefined;
} {
  const entered = deferred();
  const route: ReturnType<typeof abandonedRoute> = {
    entered: entered.promise,
    scope: undefined,
    afterAbort: undefined,
    async handler(c) {
      route.scope = c.var.db;
      const trx = await c.var.db.session;
      await trx(table).insert({ name: 'abandoned' });
      entered.resolve();
      await once(c.var.db.signal, 'abort');
      route.afterAbort = trx(table)
        .insert({ name: 'after abort' })
        .catch((error: unknown) => error);
      return c.text('never sent');
    },
  };
  return route;
}

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}
