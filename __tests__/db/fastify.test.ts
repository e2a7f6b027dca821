import { once } from 'node:events';
import http from 'node:http';
import { expectTypeOf } from 'expect-type';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { Knex } from 'knex';
import {
  currentDb,
  type Db,
  type ForgottenSession,
  type LegacySession,
  NoScopeError,
  retryTransaction,
  type Scope,
  ScopeClosedError,
  withDb,
  withLegacySession,
} from '../../lib/adapters/fastify';
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

/** A Fastify app on 127.0.0.1 whose error handler answers `{ error: name }` with the error's status. */
async function serve(
  plugin: Db | LegacySession,
  routes: (app: FastifyInstance) => void,
): Promise<{ app: FastifyInstance; url: string }> {
  const app = Fastify();
  app.setErrorHandler((error: Error & { statusCode?: number }, _request, reply) => {
    reply.code(error.statusCode ?? 500).send({ error: error.name });
  });
  await app.register(plugin);
  routes(app);
  const url = await app.listen({ port: 0, host: '127.0.0.1' });
  return { app, url };
}

function post(url: string): Promise<Response> {
  return fetch(url, { method: 'POST' });
}

/** What a lost connection looks like to the caller, for SQLite, where none can be lost. */
function connectionLost(): Error {
  return Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' });
}

describe('knex-scope/fastify forgotten sessions', () => {
  it('reports the method, the route pattern and the status of a request whose session was never committed', async () => {
    const reports: ForgottenSession[] = [];
    const forgetful = withDb(testConfig(), { onForgotten: (report) => reports.push(report) });
    const { app, url } = await serve(forgetful, (a) => {
      a.post('/orders/:id', async (request, reply) => {
        const trx = await request.db.session;
        await trx(table).insert({ name: 'lost' });
        reply.code(201);
        return { ok: true };
      });
    });
    try {
      expect((await post(`${url}/orders/7`)).status).toBe(201);
    } finally {
      await app.close();
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

describe('knex-scope/fastify withDb', () => {
  let db: Db;
  let sql: string[];
  let app: FastifyInstance | undefined;

  beforeEach(async () => {
    await admin(table).delete();
    db = withDb(testConfig());
    sql = recordSql(db.knex);
  });

  afterEach(async () => {
    await app?.close();
    app = undefined;
    await db.destroy();
  });

  it('types request.db and request.dbSession, and the plugin with wrap, knex and destroy', () => {
    expectTypeOf<FastifyRequest['db']>().toEqualTypeOf<Scope>();
    expectTypeOf<FastifyRequest['dbSession']>().toEqualTypeOf<Knex.Transaction>();
    expectTypeOf(db.knex).toEqualTypeOf<Knex>();
    expectTypeOf(db.destroy).returns.toEqualTypeOf<Promise<void>>();
    expectTypeOf(db.wrap(async (scope, n: number) => [scope, n] as const)).toEqualTypeOf<
      (n: number) => Promise<readonly [Scope, number]>
    >();
    const handler = retryTransaction(
      async (request: FastifyRequest, _reply: FastifyReply) => ({ ended: request.db.ended }),
      { session: (request) => request.db },
    );
    expectTypeOf(handler).returns.toEqualTypeOf<Promise<{ ended: boolean }>>();
  });

  it('is not encapsulated: routes of sibling plugins registered after it see request.db, and Fastify 5 is required', async () => {
    app = Fastify();
    await app.register(db);
    await app.register(async (orders) => {
      orders.get('/orders', async (request) => {
        const trx = await request.db.session;
        const [row] = await trx(table).count({ n: '*' });
        await trx.commit();
        return { n: Number(row?.n) };
      });
    });
    const url = await app.listen({ port: 0, host: '127.0.0.1' });
    const response = await fetch(`${url}/orders`);
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ n: 0 });
    expect((db as unknown as Record<symbol, unknown>)[Symbol.for('plugin-meta')]).toMatchObject({
      name: 'knex-scope',
      fastify: '5.x',
    });
  });

  it('gives every request a scope as request.db and acquires nothing for routes that never read it', async () => {
    const counts: number[] = [];
    let url: string;
    ({ app, url } = await serve(db, (a) => {
      a.get('/health', async (request) => ({
        scope: typeof request.db.getSession,
        ended: request.db.ended,
      }));
      a.get('/plain', async (_request, reply) => {
        counts.push(reply.raw.listenerCount('close'));
        return { ok: true };
      });
      a.get('/session', async (request, reply) => {
        const before = reply.raw.listenerCount('close');
        const trx = await request.db.session;
        counts.push(reply.raw.listenerCount('close') - before);
        await trx.commit();
        return { ok: true };
      });
    }));
    expect(await (await fetch(`${url}/health`)).json()).toEqual({
      scope: 'function',
      ended: false,
    });
    expect((await fetch(`${url}/plain`)).status).toBe(200);
    expect(sql).toEqual([]);
    expect((await fetch(`${url}/session`)).status).toBe(200);
    // The same number of listeners as a bare Fastify, and one once a session is asked for.
    const bare = Fastify();
    bare.get('/plain', async (_request, reply) => {
      counts.push(reply.raw.listenerCount('close'));
      return { ok: true };
    });
    const bareUrl = await bare.listen({ port: 0, host: '127.0.0.1' });
    await fetch(`${bareUrl}/plain`);
    await bare.close();
    expect(counts[0]).toBe(counts[2]);
    expect(counts[1]).toBe(1);
    expect(poolStats(db.knex).used).toBe(0);
  });

  // upstream: TestWorkerScopeSessionEndToEnd::test_successful_write_and_read
  it('commits what an async handler commits and returns as the payload', async () => {
    let url: string;
    ({ app, url } = await serve(db, (a) => {
      a.post('/items', async (request, reply) => {
        const trx = await request.db.session;
        await trx(table).insert({ name: 'fastify' });
        await trx.commit();
        reply.code(201);
        return { created: true };
      });
      a.get('/items', async (request) => request.db.getSession((trx) => names(trx, table)));
    }));
    const created = await post(`${url}/items`);
    expect(created.status).toBe(201);
    expect(await created.json()).toEqual({ created: true });
    expect(await (await fetch(`${url}/items`)).json()).toEqual(['fastify']);
  });

  it('rolls back what the handler left open in onSend, before the response is written', async () => {
    let url: string;
    ({ app, url } = await serve(db, (a) => {
      a.post('/forgotten', async (request, reply) => {
        const trx = await request.db.session;
        await trx(table).insert({ name: 'forgotten' });
        if (dialect !== 'sqlite') {
          const other = await request.db.getSession();
          await other(table).insert({ name: 'forgotten too' });
        }
        reply.code(202).send('accepted');
        return reply;
      });
    }));
    const response = await post(`${url}/forgotten`);
    expect(response.status).toBe(202);
    // Teardown finished before the response was written, so this is already true here.
    expect(poolStats(db.knex).used).toBe(0);
    expect(await countRows(admin, table)).toBe(0);
    expect(sql.filter((s) => /^rollback/i.test(s))).toHaveLength(dialect === 'sqlite' ? 1 : 2);
  });

  it('answers once when a handler sends and also returns a payload: the second send waits for the first’s COMMIT and is dropped', async () => {
    const committing = withDb(testConfig(), { commit: 'on-success' });
    const errors: unknown[] = [];
    const onError = (error: unknown) => errors.push(error);
    process.on('uncaughtException', onError);
    try {
      let url: string;
      ({ app, url } = await serve(committing, (a) => {
        a.post('/twice', async (request, reply) => {
          const trx = await request.db.session;
          await trx(table).insert({ name: 'once' });
          // Without `return reply`, Fastify sends the returned value too, while the first send
          // still waits in onSend for the COMMIT.
          reply.code(201).send({ first: true });
          return { second: true };
        });
      }));
      const response = await post(`${url}/twice`);
      expect(response.status).toBe(201);
      expect(await response.json()).toEqual({ first: true });
      expect(await names(admin, table)).toEqual(['once']);
      await delay(50);
      expect(errors).toEqual([]);
      expect(poolStats(committing.knex)).toMatchObject({ used: 0, pending: 0 });
    } finally {
      process.off('uncaughtException', onError);
      await app?.close();
      app = undefined;
      await committing.destroy();
    }
  });

  it('rolls back when the handler throws, and the error reaches the error handler', async () => {
    let url: string;
    ({ app, url } = await serve(db, (a) => {
      a.post('/fail', async (request) => {
        const trx = await request.db.session;
        await trx(table).insert({ name: 'doomed' });
        throw new TypeError('handler failed');
      });
    }));
    const response = await post(`${url}/fail`);
    expect(response.status).toBe(500);
    expect(await response.json()).toEqual({ error: 'TypeError' });
    expect(await countRows(admin, table)).toBe(0);
    expect(poolStats(db.knex).used).toBe(0);
  });

  it('refuses a commit after the reply was sent with ScopeClosedError: commit before you respond', async () => {
    let late: Promise<unknown> | undefined;
    let url: string;
    ({ app, url } = await serve(db, (a) => {
      a.post('/late', async (request, reply) => {
        const trx = await request.db.session;
        await trx(table).insert({ name: 'late' });
        reply.send('sent');
        late = delay(5).then(() => trx.commit().catch((error: unknown) => error));
        return reply;
      });
    }));
    expect((await post(`${url}/late`)).status).toBe(200);
    expect(await eventually(() => late !== undefined)).toBe(true);
    expect(await late).toBeInstanceOf(ScopeClosedError);
    expect(await countRows(admin, table)).toBe(0);
  });

  it('ends the scope when the client disconnects mid-request and rolls back', async () => {
    let scope: Scope | undefined;
    let afterAbort: Promise<unknown> | undefined;
    const entered = deferred();
    let url: string;
    ({ app, url } = await serve(db, (a) => {
      a.post('/slow', async (request) => {
        scope = request.db;
        const trx = await request.db.session;
        await trx(table).insert({ name: 'abandoned' });
        entered.resolve();
        await once(request.db.signal, 'abort');
        afterAbort = trx(table)
          .insert({ name: 'after abort' })
          .catch((error: unknown) => error);
        return 'never sent';
      });
    }));
    const client = http.request(`${url}/slow`, { method: 'POST' });
    client.on('error', () => {});
    client.end();
    await entered.promise;
    client.destroy();
    expect(await eventually(() => afterAbort !== undefined)).toBe(true);
    expect(await afterAbort).toBeInstanceOf(ScopeClosedError);
    expect(scope?.aborted).toBe(true);
    expect(await eventually(() => poolStats(db.knex).used === 0)).toBe(true);
    expect(await countRows(admin, table)).toBe(0);
  });

  it("ends the scope when Fastify's handlerTimeout fires: request.db.signal follows request.signal", async () => {
    let signals: { request: AbortSignal; scope: AbortSignal } | undefined;
    let afterTimeout: Promise<unknown> | undefined;
    let url: string;
    ({ app, url } = await serve(db, (a) => {
      a.post('/stuck', { handlerTimeout: 200 }, async (request) => {
        signals = { request: request.signal, scope: request.db.signal };
        const trx = await request.db.session;
        await trx(table).insert({ name: 'timed out' });
        await once(request.db.signal, 'abort');
        afterTimeout = trx(table)
          .insert({ name: 'after timeout' })
          .catch((error: unknown) => error);
        return 'too late';
      });
    }));
    const response = await post(`${url}/stuck`);
    expect(response.status).toBe(503);
    expect(signals?.request.aborted).toBe(true);
    expect(signals?.scope.aborted).toBe(true);
    expect(await eventually(() => afterTimeout !== undefined)).toBe(true);
    expect(await afterTimeout).toBeInstanceOf(ScopeClosedError);
    expect(await eventually(() => poolStats(db.knex).used === 0)).toBe(true);
    expect(await countRows(admin, table)).toBe(0);
  });

  it('keeps 25 overlapping requests in their own scopes across awaits, and currentDb() finds them', async () => {
    const contextDb = withDb(testConfig(), { currentDb: true });
    const scopes: Scope[] = [];
    let url: string;
    ({ app, url } = await serve(contextDb, (a) => {
      a.get('/overlap/:n', async (request) => {
        const mine = request.db;
        scopes.push(mine);
        const seen: boolean[] = [];
        for (let i = 0; i < 4; i++) {
          await delay(Math.random() * 10);
          seen.push(currentDb() === mine && currentDb(contextDb) === mine);
        }
        await mine.getSession((trx) => trx.raw('select 1 as one'));
        return { n: (request.params as { n: string }).n, seen };
      });
    }));
    const responses = await Promise.all(
      Array.from({ length: 25 }, async (_, n) => (await fetch(`${url}/overlap/${n}`)).json()),
    );
    for (const [n, body] of responses.entries()) {
      expect(body).toEqual({ n: String(n), seen: [true, true, true, true] });
    }
    expect(new Set(scopes).size).toBe(25);
    expect(poolStats(contextDb.knex).used).toBe(0);
  });

  it('retries an async (request, reply) handler with session: (request) => request.db', async () => {
    const attempts: number[] = [];
    let url: string;
    ({ app, url } = await serve(db, (a) => {
      a.post(
        '/retried',
        retryTransaction(
          async (request: FastifyRequest, reply: FastifyReply) => {
            const trx = await request.db.session;
            await trx(table).insert({ name: `attempt ${attempts.length + 1}` });
            attempts.push(attempts.length + 1);
            if (attempts.length === 1) {
              if (dialect === 'sqlite') throw connectionLost();
              await killBackend(admin, await backendId(trx));
              await trx(table).insert({ name: 'never' }); // fails: the connection is gone
            }
            await trx.commit();
            reply.code(201);
            return { attempts: attempts.length };
          },
          { session: (request) => request.db, sleep: async () => {} },
        ),
      );
    }));
    const response = await post(`${url}/retried`);
    expect(response.status).toBe(201);
    expect(await response.json()).toEqual({ attempts: 2 });
    expect(await names(admin, table)).toEqual(['attempt 2']);
    expect(await eventually(() => poolStats(db.knex).used === 0)).toBe(true);
  });

  (dialect === 'sqlite' ? it.skip : it)(
    'answers 500 when COMMIT fails, because it runs before the response',
    async () => {
      let url: string;
      ({ app, url } = await serve(db, (a) => {
        a.post('/commit-fails', async (request, reply) => {
          const trx = await request.db.session;
          await trx(table).insert({ name: 'lost' });
          await killBackend(admin, await backendId(trx));
          await trx.commit();
          reply.code(201);
          return 'created';
        });
      }));
      expect((await post(`${url}/commit-fails`)).status).toBe(500);
      expect(await countRows(admin, table)).toBe(0);
      expect(await eventually(() => poolStats(db.knex).used === 0)).toBe(true);
    },
  );

  it('refuses request.db with NoScopeError in an onRequest hook that runs before its own', async () => {
    const early = Fastify();
    let error: unknown;
    early.addHook('onRequest', (request, _reply, done) => {
      try {
        void request.db;
      } catch (caught) {
        error = caught;
      }
      done();
    });
    await early.register(db);
    early.get('/', async () => 'ok');
    const url = await early.listen({ port: 0, host: '127.0.0.1' });
    try {
      expect((await fetch(url)).status).toBe(200);
      expect(error).toBeInstanceOf(NoScopeError);
      expect((error as Error).message).toMatch(/request\.db is not available here/);
    } finally {
      await early.close();
    }
  });

  it('destroys the pool it created when Fastify closes, and leaves a Knex instance it was given alone', async () => {
    const owned = withDb(testConfig());
    const shared = openKnex();
    const borrowed = withDb(shared, { property: 'shared' });
    const closing = Fastify();
    await closing.register(owned);
    await closing.register(borrowed);
    await owned.wrap((scope) => scope.getSession((trx) => trx.raw('select 1')))();
    await closing.close();
    expect((owned.knex.client as { pool?: unknown }).pool).toBeUndefined();
    expect(await shared.raw('select 1 as one')).toBeDefined();
    await shared.destroy();
  });
});

describe('knex-scope/fastify withLegacySession', () => {
  let legacy: LegacySession;
  let legacySql: string[];
  let app: FastifyInstance | undefined;

  beforeEach(async () => {
    await admin(table).delete();
    legacy = withLegacySession(testConfig());
    legacySql = recordSql(legacy.knex);
  });

  afterEach(async () => {
    await app?.close();
    app = undefined;
    await legacy.destroy();
  });

  // upstream: test_database_session.py test_end_to_end
  it('opens the transaction before the handler runs as request.dbSession', async () => {
    let url: string;
    ({ app, url } = await serve(legacy, (a) => {
      a.post('/items', async (request, reply) => {
        const begun = legacySql.some((s) => /^begin/i.test(s));
        await request.dbSession(table).insert({ name: 'eager' });
        await request.dbSession.commit();
        reply.code(201);
        return { begun };
      });
    }));
    const response = await post(`${url}/items`);
    expect(response.status).toBe(201);
    expect(await response.json()).toEqual({ begun: true });
    expect(await names(admin, table)).toEqual(['eager']);
  });

  // upstream: test_database_session.py test_worker_teardown
  it('rolls it back when the handler does not commit', async () => {
    let url: string;
    ({ app, url } = await serve(legacy, (a) => {
      a.post('/items', async (request, reply) => {
        await request.dbSession(table).insert({ name: 'uncommitted' });
        reply.code(204).send();
        return reply;
      });
    }));
    expect((await post(`${url}/items`)).status).toBe(204);
    expect(await countRows(admin, table)).toBe(0);
    expect(poolStats(legacy.knex).used).toBe(0);
    expect(legacySql.map((s) => s.toUpperCase())).toContain('ROLLBACK');
  });

  it('re-opens the eager transaction for a retry', async () => {
    const sessions: Knex.Transaction[] = [];
    let url: string;
    ({ app, url } = await serve(legacy, (a) => {
      a.post(
        '/retried',
        retryTransaction(
          async (request: FastifyRequest) => {
            sessions.push(request.dbSession);
            await request.dbSession(table).insert({ name: `attempt ${sessions.length}` });
            if (sessions.length === 1) {
              if (dialect === 'sqlite') throw connectionLost();
              await killBackend(admin, await backendId(request.dbSession));
              await request.dbSession(table).insert({ name: 'never' });
            }
            await request.dbSession.commit();
            return { attempts: sessions.length };
          },
          { session: (request) => request.dbSession, sleep: async () => {} },
        ),
      );
    }));
    expect(await (await post(`${url}/retried`)).json()).toEqual({ attempts: 2 });
    expect(sessions[1]).not.toBe(sessions[0]);
    expect(await names(admin, table)).toEqual(['attempt 2']);
  });

  it('skips the handler and reports the error when the transaction cannot be opened', async () => {
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
    const failing = Fastify();
    failing.setErrorHandler((_error, _request, reply) => {
      reply.code(503).send();
    });
    await failing.register(broken);
    failing.get('/', async () => {
      ran = true;
      return 'ran';
    });
    const url = await failing.listen({ port: 0, host: '127.0.0.1' });
    try {
      expect((await fetch(url)).status).toBe(503);
      expect(ran).toBe(false);
    } finally {
      await failing.close();
      await broken.destroy();
    }
  });

  it('puts the transaction on the property option', async () => {
    const named = withLegacySession(testConfig(), { property: 'trx' });
    let url: string;
    ({ app, url } = await serve(named, (a) => {
      a.get('/', async (request) => ({
        isTransaction: (request as unknown as { trx: Knex.Transaction }).trx.isTransaction,
      }));
    }));
    try {
      expect(await (await fetch(url)).json()).toEqual({ isTransaction: true });
    } finally {
      await app.close();
      app = undefined;
      await named.destroy();
    }
  });
});

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}
