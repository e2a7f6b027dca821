import { once } from 'node:events';
import http from 'node:http';
import express5 from 'express';
import type { Knex } from 'knex';
import request from 'supertest';
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
import { listen } from '../helpers/http';

// express4 is express@4 installed under an alias, so both majors run the same tests.
const express4 = require('express4') as typeof express5;

type Handler = (req: express5.Request, res: express5.Response) => Promise<unknown>;
// Express 4 does not catch rejected promises; route every handler's failure to next().
const route =
  (handler: Handler): express5.RequestHandler =>
  (req, res, next) => {
    handler(req, res).catch(next);
  };

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

describe.each([
  ['Express 4', express4],
  ['Express 5', express5],
])('%s', (_name, express) => {
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

  function app(setup: (app: express5.Express) => void, middleware: Db = db): express5.Express {
    const application = express();
    application.use(express.json());
    application.use(middleware);
    setup(application);
    application.use(
      (
        error: Error,
        _req: express5.Request,
        res: express5.Response,
        _next: express5.NextFunction,
      ) => {
        res.status(500).json({ error: error.name, code: (error as { code?: string }).code });
      },
    );
    return application;
  }

  it('gives every request a scope as req.db and acquires nothing for routes that never use it', async () => {
    const server = app((a) => {
      a.get('/health', (req, res) => {
        res.json({ scope: typeof req.db.getSession, ended: req.db.ended });
      });
    });
    const response = await request(server).get('/health').expect(200);
    expect(response.body).toEqual({ scope: 'function', ended: false });
    expect(sql).toEqual([]);
    expect(poolStats(db.knex).used).toBe(0);
  });

  // upstream: TestWorkerScopeSessionEndToEnd::test_successful_write_and_read
  it('commits what the handler commits and reads it back', async () => {
    const server = app((a) => {
      a.post(
        '/items',
        route(async (req, res) => {
          const trx = await req.db.session;
          await trx(table).insert({ name: req.body.name });
          await trx.commit();
          res.status(201).end();
        }),
      );
      a.get(
        '/items',
        route(async (req, res) => {
          res.json(await req.db.getSession((trx) => names(trx, table)));
        }),
      );
    });
    await request(server).post('/items').send({ name: 'tea' }).expect(201);
    const response = await request(server).get('/items').expect(200);
    expect(response.body).toEqual(['tea']);
    expect(await names(admin, table)).toEqual(['tea']);
  });

  it('rolls back what the handler left open before the response completes', async () => {
    const server = app((a) => {
      a.post(
        '/forgotten',
        route(async (req, res) => {
          const trx = await req.db.session;
          await trx(table).insert({ name: 'forgotten' });
          if (dialect !== 'sqlite') {
            const other = await req.db.getSession();
            await other(table).insert({ name: 'forgotten too' });
          }
          res.status(202).send('accepted');
        }),
      );
    });
    await request(server).post('/forgotten').expect(202);
    // Teardown finished before the response was completed, so this is already true here.
    expect(poolStats(db.knex).used).toBe(0);
    expect(await countRows(admin, table)).toBe(0);
    expect(sql.filter((s) => /^rollback/i.test(s))).toHaveLength(dialect === 'sqlite' ? 1 : 2);
  });

  it('rolls back when the handler throws, and the error reaches the error handler', async () => {
    const server = app((a) => {
      a.post(
        '/fail',
        route(async (req) => {
          const trx = await req.db.session;
          await trx(table).insert({ name: 'doomed' });
          throw new TypeError('handler failed');
        }),
      );
    });
    const response = await request(server).post('/fail').expect(500);
    expect(response.body).toEqual({ error: 'TypeError' });
    expect(await countRows(admin, table)).toBe(0);
    expect(poolStats(db.knex).used).toBe(0);
  });

  it('refuses a commit after res.send() with ScopeClosedError: commit before you respond', async () => {
    let late: Promise<unknown> | undefined;
    const server = app((a) => {
      a.post(
        '/late',
        route(async (req, res) => {
          const trx = await req.db.session;
          await trx(table).insert({ name: 'late' });
          res.send('sent');
          late = trx.commit().catch((error: unknown) => error);
        }),
      );
    });
    await request(server).post('/late').expect(200);
    expect(await late).toBeInstanceOf(ScopeClosedError);
    expect(await countRows(admin, table)).toBe(0);
  });

  it('ends the scope when the client disconnects mid-request and rolls back', async () => {
    let scope: Scope | undefined;
    let afterAbort: Promise<unknown> | undefined;
    const entered = deferred();
    const server = app((a) => {
      a.post(
        '/slow',
        route(async (req) => {
          scope = req.db;
          const trx = await req.db.session;
          await trx(table).insert({ name: 'abandoned' });
          entered.resolve();
          await once(req.db.signal, 'abort');
          afterAbort = trx(table)
            .insert({ name: 'after abort' })
            .catch((error: unknown) => error);
        }),
      );
    });
    const { url, close } = await listen(server);
    try {
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
    } finally {
      await close();
    }
  });

  it('rolls back when the handler destroys the response instead of ending it', async () => {
    let scope: Scope | undefined;
    const server = app((a) => {
      a.post(
        '/destroyed',
        route(async (req, res) => {
          scope = req.db;
          const trx = await req.db.session;
          await trx(table).insert({ name: 'destroyed' });
          res.destroy();
        }),
      );
    });
    await expect(request(server).post('/destroyed')).rejects.toThrow();
    expect(await eventually(() => scope?.ended === true)).toBe(true);
    expect(scope?.aborted).toBe(true);
    expect(await eventually(() => poolStats(db.knex).used === 0)).toBe(true);
    expect(await countRows(admin, table)).toBe(0);
  });

  it('ends the scopes of two middlewares on one response when the client leaves', async () => {
    const analytics = withDb(testConfig(), { property: 'analytics' });
    const scopes: Scope[] = [];
    const entered = deferred();
    const server = app((a) => {
      a.use(analytics);
      a.post(
        '/two-left',
        route(async (req) => {
          const other = (req as unknown as { analytics: Scope }).analytics;
          scopes.push(req.db, other);
          const trx = await req.db.session;
          await trx(table).insert({ name: 'first' });
          // A read: on SQLite a second writer would wait for the first one's lock.
          const second = await other.session;
          await second(table).select('id');
          entered.resolve();
          await once(req.db.signal, 'abort'); // and never responds
        }),
      );
    });
    const { url, close } = await listen(server);
    try {
      const client = http.request(`${url}/two-left`, { method: 'POST' });
      client.on('error', () => {});
      client.end();
      await entered.promise;
      client.destroy();
      expect(await eventually(() => scopes.every((scope) => scope.ended))).toBe(true);
      expect(scopes.map((scope) => scope.aborted)).toEqual([true, true]);
      expect(await eventually(() => poolStats(db.knex).used === 0)).toBe(true);
      expect(await eventually(() => poolStats(analytics.knex).used === 0)).toBe(true);
      expect(await countRows(admin, table)).toBe(0);
    } finally {
      await close();
      await analytics.destroy();
    }
  });

  it('still ends scopes inside res.end after a client left mid-request', async () => {
    const application = express();
    application.use(db);
    const entered = deferred();
    application.get('/plain', (_req, res) => {
      res.json({ ok: true });
    });
    application.get(
      '/left',
      route(async (req) => {
        const trx = await req.db.session;
        await trx(table).insert({ name: 'left' });
        entered.resolve();
        await once(req.db.signal, 'abort'); // and never responds
      }),
    );
    application.get(
      '/open',
      route(async (req, res) => {
        const trx = await req.db.session;
        await trx(table).insert({ name: 'left open' });
        res.json({ ok: true });
      }),
    );
    const { url, close } = await listen(application);
    try {
      expect((await fetch(`${url}/plain`)).status).toBe(200);

      const client = http.request(`${url}/left`);
      client.on('error', () => {});
      client.end();
      await entered.promise;
      client.destroy();
      expect(await eventually(() => poolStats(db.knex).used === 0)).toBe(true);
      expect((await fetch(`${url}/plain`)).status).toBe(200);

      // Rolled back before the response completed: nothing to wait for once it has arrived.
      expect((await fetch(`${url}/open`)).status).toBe(200);
      expect(poolStats(db.knex).used).toBe(0);
      expect(await countRows(admin, table)).toBe(0);
      expect(sql.filter((s) => /^rollback/i.test(s))).toHaveLength(2);
    } finally {
      await close();
    }
  });

  it('keeps 25 overlapping requests in their own scopes across awaits', async () => {
    const contextDb = withDb(testConfig(), { currentDb: true });
    const scopes: Scope[] = [];
    const server = app((a) => {
      a.get(
        '/overlap/:n',
        route(async (req, res) => {
          const mine = req.db;
          scopes.push(mine);
          const seen: boolean[] = [];
          for (let i = 0; i < 4; i++) {
            await delay(Math.random() * 10);
            seen.push(currentDb() === mine);
          }
          const value = await mine.getSession((trx) => trx.raw('select 1 as one'));
          res.json({ n: req.params.n, seen, ok: value !== undefined });
        }),
      );
    }, contextDb);
    const { url, close } = await listen(server);
    try {
      const responses = await Promise.all(
        Array.from({ length: 25 }, (_, n) => request(url).get(`/overlap/${n}`).expect(200)),
      );
      for (const [n, response] of responses.entries()) {
        expect(response.body.n).toBe(String(n));
        expect(response.body.seen).toEqual([true, true, true, true]);
      }
      expect(new Set(scopes).size).toBe(25);
      expect(poolStats(contextDb.knex).used).toBe(0);
    } finally {
      await close();
      await contextDb.destroy();
    }
  });

  it('makes currentDb() name the currentDb option when the db was created without it', async () => {
    const server = app((a) => {
      a.get('/no-context', (req, res) => {
        const errors = [() => currentDb(), () => currentDb(db)].map((call) => {
          try {
            call();
            return null;
          } catch (error) {
            return { name: (error as Error).name, message: (error as Error).message };
          }
        });
        res.json({ errors, scope: req.db !== undefined });
      });
    });
    const response = await request(server).get('/no-context').expect(200);
    expect(response.body.scope).toBe(true);
    for (const error of response.body.errors) {
      expect(error.name).toBe('NoScopeError');
      expect(error.message).toContain('currentDb: true');
    }
  });

  it('leaves the response unhooked on a route that never asks for a session', async () => {
    const server = express();
    server.use((req, res, next) => {
      (req as unknown as { before: unknown }).before = {
        ownEnd: Object.hasOwn(res, 'end'),
        close: res.listenerCount('close'),
      };
      next();
    });
    server.use(db);
    server.get('/plain', (req, res) => {
      res.json({
        before: (req as unknown as { before: unknown }).before,
        after: { ownEnd: Object.hasOwn(res, 'end'), close: res.listenerCount('close') },
      });
    });
    const response = await request(server).get('/plain').expect(200);
    expect(response.body.after).toEqual(response.body.before);
    expect(sql).toEqual([]);
  });

  it('watches the response from the first session on', async () => {
    const seen: Record<string, unknown> = {};
    const state = (res: express5.Response) => ({ close: res.listenerCount('close') });
    const server = app((a) => {
      a.get(
        '/hooked',
        route(async (req, res) => {
          seen.before = state(res);
          const trx = await req.db.session;
          seen.during = state(res);
          await trx.select(trx.raw('1 as one'));
          res.json({ ok: true }); // the open session is rolled back inside res.end
        }),
      );
    });
    const response = await request(server).get('/hooked').expect(200);
    const before = seen.before as { close: number };
    expect(seen.during).toEqual({ close: before.close + 1 });
    expect(response.body).toEqual({ ok: true });
    expect(sql.at(-1)).toMatch(/^rollback/i);
    expect(poolStats(db.knex).used).toBe(0);
  });

  it('ends a scope that never had a session when the response ends', async () => {
    let result: { ended?: boolean; error?: string } = {};
    const server = app((a) => {
      a.get(
        '/late',
        route(async (req, res) => {
          res.json({ ok: true });
          const ended = req.db.ended;
          const error = await req.db.session.then(
            () => 'opened',
            (caught: Error) => caught.name,
          );
          result = { ended, error };
        }),
      );
    });
    await request(server).get('/late').expect(200);
    expect(await eventually(() => result.error !== undefined)).toBe(true);
    expect(result).toEqual({ ended: true, error: 'ScopeClosedError' });
    expect(sql).toEqual([]);
  });

  (dialect === 'sqlite' ? it.skip : it)(
    'answers 500 when COMMIT fails, because the commit runs before the response',
    async () => {
      const server = app((a) => {
        a.post(
          '/commit-fails',
          route(async (req, res) => {
            const trx = await req.db.session;
            await trx(table).insert({ name: 'lost' });
            await killBackend(admin, await backendId(trx));
            await trx.commit();
            res.status(201).end();
          }),
        );
      });
      await request(server).post('/commit-fails').expect(500);
      expect(await countRows(admin, table)).toBe(0);
      expect(await eventually(() => poolStats(db.knex).used === 0)).toBe(true);
    },
  );

  it('puts the scope on another property with the property option', async () => {
    const contextDb = withDb(testConfig(), { currentDb: true });
    const analytics = withDb(testConfig(), { property: 'analytics', currentDb: true });
    try {
      const server = express();
      server.use(contextDb);
      server.use(analytics);
      server.get('/two', (req, res) => {
        const other = (req as unknown as { analytics: Scope }).analytics;
        res.json({
          distinct: other !== req.db,
          inner: currentDb() === other,
          outer: currentDb(contextDb) === req.db,
        });
      });
      const response = await request(server).get('/two').expect(200);
      expect(response.body).toEqual({ distinct: true, inner: true, outer: true });
    } finally {
      await analytics.destroy();
      await contextDb.destroy();
    }
  });

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

    function legacyApp(setup: (app: express5.Express) => void): express5.Express {
      const application = express();
      application.use(express.json());
      application.use(legacy);
      setup(application);
      application.use(
        (
          error: Error,
          _req: express5.Request,
          res: express5.Response,
          _next: express5.NextFunction,
        ) => {
          res.status(500).json({ error: error.message });
        },
      );
      return application;
    }

    // upstream: test_database_session.py test_end_to_end
    it('opens the transaction before the handler runs and commits what it commits', async () => {
      const server = legacyApp((a) => {
        a.post(
          '/items',
          route(async (req, res) => {
            const begun = legacySql.some((s) => /^begin/i.test(s));
            const [row] = await req.dbSession(table).insert({ name: req.body.name }, ['id']);
            await req.dbSession.commit();
            res.status(201).json({ begun, id: typeof row === 'object' ? row.id : row });
          }),
        );
      });
      const response = await request(server).post('/items').send({ name: 'eager' }).expect(201);
      expect(response.body.begun).toBe(true);
      expect(await admin(table).where({ id: response.body.id }).first()).toMatchObject({
        name: 'eager',
      });
    });

    // upstream: test_database_session.py test_worker_teardown
    it('rolls the transaction back when the handler does not commit', async () => {
      const server = legacyApp((a) => {
        a.post(
          '/items',
          route(async (req, res) => {
            await req.dbSession(table).insert({ name: 'uncommitted' });
            res.status(202).end();
          }),
        );
      });
      await request(server).post('/items').expect(202);
      expect(await countRows(admin, table)).toBe(0);
      expect(poolStats(legacy.knex).used).toBe(0);
      expect(legacySql.map((s) => s.toUpperCase())).toContain('ROLLBACK');
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
      try {
        const application = express();
        application.use(broken);
        application.get('/', (_req, res) => {
          ran = true;
          res.end();
        });
        application.use(
          (
            _error: Error,
            _req: express5.Request,
            res: express5.Response,
            _next: express5.NextFunction,
          ) => {
            res.status(503).end();
          },
        );
        await request(application).get('/').expect(503);
        expect(ran).toBe(false);
      } finally {
        await broken.destroy();
      }
    });

    it('uses the property option and never req.session', () => {
      expect(() => withLegacySession(testConfig(), { property: 'session' })).toThrow(
        /express-session/,
      );
    });
  });
});

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}
