import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { serve } from '@hono/node-server';
import express5 from 'express';
import Fastify from 'fastify';
import { Hono, type MiddlewareHandler } from 'hono';
import type { Knex } from 'knex';
import Koa3 from 'koa';
import * as main from '../../lib';
import * as fastify from '../../lib/adapters/fastify';
import * as hono from '../../lib/adapters/hono';
import '../../lib/adapters/koa';
import {
  backendId,
  countRows,
  createItemsTable,
  dialect,
  eventually,
  killBackend,
  names,
  openKnex,
  poolStats,
  recordSql,
  testConfig,
} from '../helpers/database';
import { listen } from '../helpers/http';

const express4 = require('express4') as typeof express5;
const Koa2 = require('koa2') as typeof Koa3;

// A COMMIT that really fails: an orphan row under a deferred foreign key (PostgreSQL, SQLite), or
// the backend killed from another connection right before the COMMIT (MariaDB has no deferred
// constraints).
const deferrable = dialect !== 'mariadb';

let admin: Knex;
let table: string;
let parent: string;
let child: string;

beforeAll(async () => {
  admin = openKnex();
  table = await createItemsTable(admin);
  if (deferrable) {
    parent = `${table}_p`;
    child = `${table}_c`;
    await admin.schema.createTable(parent, (t) => t.integer('id').primary());
    await admin.raw(
      `create table ${child} (id integer primary key, parent_id integer references ${parent}(id) deferrable initially deferred)`,
    );
  }
});

afterAll(async () => {
  if (deferrable) {
    await admin.schema.dropTableIfExists(child);
    await admin.schema.dropTableIfExists(parent);
  }
  await admin.schema.dropTableIfExists(table);
  await admin.destroy();
});

beforeEach(async () => {
  await admin(table).delete();
  if (deferrable) await admin(child).delete();
});

/** The test database's config; on SQLite with foreign keys enforced, so that COMMIT can fail. */
function config(): Knex.Config {
  if (dialect !== 'sqlite') return testConfig();
  return {
    ...testConfig(),
    pool: {
      min: 1,
      max: 1,
      afterCreate: (conn: { pragma(s: string): void }, done: (e: unknown, c: unknown) => void) => {
        conn.pragma('foreign_keys = ON');
        done(null, conn);
      },
    },
  };
}

/** Leaves `trx` in a state where its COMMIT fails. */
async function breakCommit(trx: Knex.Transaction): Promise<void> {
  if (deferrable) await trx(child).insert({ id: 1, parent_id: 99 });
  else await killBackend(admin, await backendId(trx));
}

const onlyCommit = (sent: string[]) => sent.filter((s) => /^(begin|commit|rollback)/i.test(s));

/** A handler body shared by every framework: it gets the request's scope and returns the status. */
type Work = (scope: main.Scope) => Promise<number>;

const routes: Record<string, Work> = {
  async '/ok'(scope) {
    const trx = await scope.session;
    await trx(table).insert({ name: 'ok' });
    return 201;
  },
  async '/client-error'(scope) {
    const trx = await scope.session;
    await trx(table).insert({ name: 'client error' });
    return 422;
  },
  async '/throw'(scope) {
    const trx = await scope.session;
    await trx(table).insert({ name: 'thrown' });
    throw new RangeError('handler failed');
  },
  async '/explicit'(scope) {
    // An explicit session stays the caller's: rolled back at the end unless committed.
    const explicit = await scope.getSession();
    await explicit(table).insert({ name: 'explicit' });
    const trx = await scope.session;
    await trx(table).insert({ name: 'lazy' });
    return 200;
  },
  async '/committed-twice'(scope) {
    // The handler committed one lazy session; the next one is committed at the end.
    const first = await scope.session;
    await first(table).insert({ name: 'first' });
    await first.commit();
    const second = await scope.session;
    await second(table).insert({ name: 'second' });
    return 200;
  },
  async '/commit-fails'(scope) {
    const trx = await scope.session;
    await trx(table).insert({ name: 'lost' });
    await breakCommit(trx);
    return 201;
  },
};

interface Served {
  url: string;
  knex: Knex;
  close(): Promise<void>;
}

type Framework = (options: main.DbOptions, legacy: boolean) => Promise<Served>;

/** The request's scope, or for withLegacySession the scope that owns its eager transaction. */
function scopeOf(
  request: object,
  legacy: boolean,
  scopes: WeakMap<object, main.Scope>,
): main.Scope {
  if (!legacy) return (request as { db: main.Scope }).db;
  const trx = (request as { dbSession: Knex.Transaction }).dbSession;
  // The eager transaction is the scope's lazy session: hand the handler a scope-like view of it.
  let view = scopes.get(trx);
  if (view === undefined) {
    view = { session: Promise.resolve(trx) } as unknown as main.Scope;
    scopes.set(trx, view);
  }
  return view;
}

const expressApp =
  (express: typeof express5): Framework =>
  async (options, legacy) => {
    const db = legacy ? main.withLegacySession(config(), options) : main.withDb(config(), options);
    const app = express();
    app.use(db);
    const views = new WeakMap<object, main.Scope>();
    for (const [path, work] of Object.entries(routes)) {
      app.post(path, (req, res, next) => {
        work(scopeOf(req, legacy, views)).then(
          (status) => res.status(status).json({ ok: true }),
          next,
        );
      });
    }
    app.use(
      (
        error: Error,
        _req: express5.Request,
        res: express5.Response,
        _next: express5.NextFunction,
      ) => {
        res.status(500).json({ error: error.name });
      },
    );
    const { url, close } = await listen(app);
    return {
      url,
      knex: db.knex,
      close: async () => {
        await close();
        await db.destroy();
      },
    };
  };

const koaApp =
  (Koa: typeof Koa3): Framework =>
  async (options, legacy) => {
    const db = legacy ? main.withLegacySession(config(), options) : main.withDb(config(), options);
    const app = new Koa();
    app.silent = true;
    app.use(async (ctx, next) => {
      try {
        await next();
      } catch (error) {
        ctx.status = 500;
        ctx.body = { error: (error as Error).name };
      }
    });
    app.use(db);
    const views = new WeakMap<object, main.Scope>();
    app.use(async (ctx) => {
      const work = routes[ctx.path];
      if (work === undefined) return ctx.throw(404);
      ctx.status = await work(scopeOf(ctx, legacy, views));
      ctx.body = { ok: true };
    });
    const { url, close } = await listen(app.callback());
    return {
      url,
      knex: db.knex,
      close: async () => {
        await close();
        await db.destroy();
      },
    };
  };

const fastifyApp: Framework = async (options, legacy) => {
  const db = legacy
    ? fastify.withLegacySession(config(), options)
    : fastify.withDb(config(), options);
  const app = Fastify();
  app.setErrorHandler((error: Error, _request, reply) => {
    reply.code(500).send({ error: error.name });
  });
  await app.register(db);
  const views = new WeakMap<object, main.Scope>();
  for (const [path, work] of Object.entries(routes)) {
    app.post(path, async (request, reply) => {
      reply.code(await work(scopeOf(request, legacy, views)));
      return { ok: true };
    });
  }
  const url = await app.listen({ port: 0, host: '127.0.0.1' });
  return { url, knex: db.knex, close: () => app.close() };
};

const honoApp: Framework = async (options, legacy) => {
  const db = legacy ? hono.withLegacySession(config(), options) : hono.withDb(config(), options);
  const app = new Hono();
  app.onError((error, c) => c.json({ error: error.name }, 500));
  app.use(db as MiddlewareHandler);
  const views = new WeakMap<object, main.Scope>();
  for (const [path, work] of Object.entries(routes)) {
    app.post(path, async (c) => {
      const request = legacy ? { dbSession: c.var.dbSession } : { db: c.var.db };
      const status = await work(scopeOf(request, legacy, views));
      return c.json({ ok: true }, status as 200);
    });
  }
  const server = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }) as http.Server;
  if (!server.listening) await once(server, 'listening');
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    knex: db.knex,
    close: async () => {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
      await db.destroy();
    },
  };
};

const frameworks: [string, Framework][] = [
  ['Express 4', expressApp(express4)],
  ['Express 5', expressApp(express5)],
  ['Koa 2', koaApp(Koa2)],
  ['Koa 3', koaApp(Koa3)],
  ['Fastify', fastifyApp],
  ['Hono', honoApp],
];

describe.each(frameworks)("commit: 'on-success' on %s", (_name, framework) => {
  describe.each([
    ['withDb', false],
    ['withLegacySession', true],
  ] as const)('%s', (_kind, legacy) => {
    let served: Served;
    let sql: string[];

    beforeEach(async () => {
      served = await framework({ commit: 'on-success' }, legacy);
      sql = recordSql(served.knex);
    });

    afterEach(async () => {
      await served.close();
    });

    const post = (path: string) => fetch(`${served.url}${path}`, { method: 'POST' });

    it('commits the session before the response when the handler succeeded with a status below 400', async () => {
      const response = await post('/ok');
      expect(response.status).toBe(201);
      // The COMMIT ran before the response was written, so the row is visible already.
      expect(await names(admin, table)).toEqual(['ok']);
      expect(poolStats(served.knex).used).toBe(0);
      expect(onlyCommit(sql).map((s) => s.toUpperCase())).toEqual(['BEGIN;', 'COMMIT;']);
    });

    it('rolls it back when the status is 400 or above', async () => {
      expect((await post('/client-error')).status).toBe(422);
      expect(await countRows(admin, table)).toBe(0);
      expect(onlyCommit(sql).map((s) => s.toUpperCase())).toEqual(['BEGIN;', 'ROLLBACK']);
    });

    it('rolls it back when the handler throws', async () => {
      const response = await post('/throw');
      expect(response.status).toBe(500);
      expect(await response.json()).toEqual({ error: 'RangeError' });
      expect(await countRows(admin, table)).toBe(0);
      expect(poolStats(served.knex).used).toBe(0);
    });

    // withDb's only: withLegacySession hands the handler its one eager transaction and no scope
    // to open other sessions from. SQLite's one connection cannot hold an explicit session beside
    // the lazy one.
    if (!legacy) {
      (dialect === 'sqlite' ? it.skip : it)(
        'leaves explicit sessions to the caller: rolled back unless committed',
        async () => {
          expect((await post('/explicit')).status).toBe(200);
          expect(await names(admin, table)).toEqual(['lazy']);
          expect(poolStats(served.knex).used).toBe(0);
        },
      );

      it('commits the lazy session the handler opened after committing one itself', async () => {
        expect((await post('/committed-twice')).status).toBe(200);
        expect(await names(admin, table)).toEqual(['first', 'second']);
      });
    }

    it('answers a COMMIT that fails with the framework’s error response, never a success', async () => {
      const response = await post('/commit-fails');
      // Not the body: a socket error from Node core is not `instanceof Error` inside jest's
      // sandbox, so Hono's compose hands it to @hono/node-server (an empty 500) instead of onError.
      expect(response.status).toBe(500);
      expect(await countRows(admin, table)).toBe(0);
      if (deferrable) expect(await countRows(admin, child)).toBe(0);
      expect(await eventually(() => poolStats(served.knex).used === 0)).toBe(true);
      // The app still works, on a clean connection.
      expect((await post('/ok')).status).toBe(201);
      expect(await names(admin, table)).toEqual(['ok']);
    });
  });

  it("commits nothing by itself with the default commit: 'explicit'", async () => {
    const served = await framework({}, false);
    try {
      expect((await fetch(`${served.url}/ok`, { method: 'POST' })).status).toBe(201);
      expect(await countRows(admin, table)).toBe(0);
    } finally {
      await served.close();
    }
  });
});

describe.each([
  ['Express 4', express4],
  ['Express 5', express5],
])("commit: 'on-success' on a streamed %s response", (_name, express) => {
  it('destroys the connection when the COMMIT at res.end() fails after the headers went out', async () => {
    const db = main.withDb(config(), { commit: 'on-success' });
    const app = express();
    app.use(db);
    app.get('/stream', async (req, res) => {
      const trx = await req.db.session;
      await trx(table).insert({ name: 'streamed' });
      // Flushed: the client has the headers and the first chunk before the COMMIT fails.
      await new Promise((resolve) => res.write('first chunk; ', resolve));
      await breakCommit(trx);
      res.end('last chunk');
    });
    app.get('/stream-ok', async (req, res) => {
      const trx = await req.db.session;
      await trx(table).insert({ name: 'streamed ok' });
      res.write('first chunk; ');
      res.end('last chunk');
    });
    const { url, close } = await listen(app);
    try {
      const cut = await new Promise<{
        status?: number | undefined;
        complete: boolean;
        body: string;
      }>((resolve) => {
        const req = http.get(`${url}/stream`, (res) => {
          let body = '';
          res.on('data', (chunk) => {
            body += chunk;
          });
          res.on('error', () => {});
          res.on('close', () => resolve({ status: res.statusCode, complete: res.complete, body }));
        });
        req.on('error', () => resolve({ complete: false, body: '' }));
      });
      expect(cut).toEqual({ status: 200, complete: false, body: 'first chunk; ' });
      expect(await countRows(admin, table)).toBe(0);
      expect(await eventually(() => poolStats(db.knex).used === 0)).toBe(true);

      expect(await (await fetch(`${url}/stream-ok`)).text()).toBe('first chunk; last chunk');
      expect(await names(admin, table)).toEqual(['streamed ok']);
    } finally {
      await close();
      await db.destroy();
    }
  });
});

describe("commit: 'on-success' with two dbs on one Express response", () => {
  // SQLite: two pools on one file would make the second writer wait for the first one's lock.
  (dialect === 'sqlite' ? it.skip : it)(
    'ends both scopes before the error response when one COMMIT fails',
    async () => {
      const db = main.withDb(config(), { commit: 'on-success' });
      const other = main.withDb(config(), { commit: 'on-success', property: 'other' });
      const app = express5();
      app.use(db);
      app.use(other);
      app.post('/two', async (req, res) => {
        const mine = await req.db.session;
        await mine(table).insert({ name: 'mine' });
        const theirs = await (req as unknown as { other: main.Scope }).other.session;
        await theirs(table).insert({ name: 'theirs' });
        await breakCommit(mine);
        res.status(201).end();
      });
      app.use((_error: Error, _req: express5.Request, res: express5.Response, _next: unknown) => {
        res.status(500).json({
          used: poolStats(db.knex).used + poolStats(other.knex).used,
        });
      });
      const { url, close } = await listen(app);
      try {
        const response = await fetch(`${url}/two`, { method: 'POST' });
        expect(response.status).toBe(500);
        // Both scopes had ended, the other one committed, when the error handler ran.
        expect(await response.json()).toEqual({ used: 0 });
        expect(await names(admin, table)).toEqual(['theirs']);
      } finally {
        await close();
        await other.destroy();
        await db.destroy();
      }
    },
  );
});

describe("commit: 'on-success' with db.wrap", () => {
  let db: main.Db;

  beforeEach(() => {
    db = main.withDb(config(), { commit: 'on-success' });
  });

  afterEach(async () => {
    await db.destroy();
  });

  it('commits when the wrapped handler resolves, and rolls back when it rejects', async () => {
    const insert = db.wrap(async (scope, name: string, fail: boolean) => {
      const trx = await scope.session;
      await trx(table).insert({ name });
      if (fail) throw new RangeError(name);
      return name;
    });
    await expect(insert('kept', false)).resolves.toBe('kept');
    await expect(insert('dropped', true)).rejects.toThrow(RangeError);
    expect(await names(admin, table)).toEqual(['kept']);
    expect(poolStats(db.knex).used).toBe(0);
  });

  it('rejects with the COMMIT error instead of resolving when the COMMIT fails', async () => {
    const insert = db.wrap(async (scope) => {
      const trx = await scope.session;
      await trx(table).insert({ name: 'lost' });
      await breakCommit(trx);
      return 'resolved';
    });
    await expect(insert()).rejects.toMatchObject({ message: expect.any(String) });
    expect(await countRows(admin, table)).toBe(0);
    expect(await eventually(() => poolStats(db.knex).used === 0)).toBe(true);
  });

  it("commits withLegacySession's eager transaction when its wrapped handler resolves", async () => {
    const legacy = main.withLegacySession(config(), { commit: 'on-success' });
    try {
      await legacy.wrap(async (trx) => trx(table).insert({ name: 'eager' }))();
      expect(await names(admin, table)).toEqual(['eager']);
    } finally {
      await legacy.destroy();
    }
  });
});
