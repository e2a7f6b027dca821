import { EventEmitter } from 'node:events';
import http from 'node:http';
import express5 from 'express';
import request from 'supertest';
import {
  type Db,
  type LegacySession,
  type Scope,
  ScopeClosedError,
  withDb,
  withLegacySession,
} from '../lib';
import { listen } from './helpers/http';

// express4 is express@4 installed under an alias, so both majors run the same tests.
const express4 = require('express4') as typeof express5;

const isScope = (value: unknown): value is Scope =>
  typeof (value as Partial<Scope> | undefined)?.getSession === 'function';

describe.each([
  ['Express 4', express4],
  ['Express 5', express5],
])('%s: where req.db lives', (_name, express) => {
  let db: Db;

  beforeEach(() => {
    db = withDb('sqlite::memory:');
  });

  afterEach(async () => {
    await db.destroy();
  });

  it('gives req.db without adding a property to req, and it works', async () => {
    const app = express();
    app.use(db);
    app.get('/', async (req, res, next) => {
      try {
        const one = await req.db.getSession((trx) => trx.raw('select 1 as one'));
        res.json({ own: Object.hasOwn(req, 'db'), scope: isScope(req.db), rows: one.length });
      } catch (error) {
        next(error);
      }
    });
    const response = await request(app).get('/').expect(200);
    expect(response.body).toEqual({ own: false, scope: true, rows: 1 });
  });

  it('gives the same scope on every read within a request, and another to the next request', async () => {
    const seen: Scope[] = [];
    const app = express();
    app.use(db);
    app.get('/', (req, res) => {
      const first = req.db;
      seen.push(first);
      res.json({ same: req.db === first });
    });
    await request(app).get('/').expect(200, { same: true });
    await request(app).get('/').expect(200, { same: true });
    expect(seen[0]).not.toBe(seen[1]);
  });

  it('reaches handlers of a mounted sub-app', async () => {
    const app = express();
    const sub = express();
    sub.get('/inner', async (req, res) => {
      const trx = await req.db.session;
      await trx.commit();
      res.json({ scope: isScope(req.db) });
    });
    app.use(db);
    app.use('/sub', sub);
    await request(app).get('/sub/inner').expect(200, { scope: true });
  });

  it('leaves req.db undefined on a route the middleware does not cover', async () => {
    const app = express();
    app.get('/before', (req, res) => {
      res.json({ scope: req.db !== undefined });
    });
    app.use(db);
    app.get('/after', (req, res) => {
      res.json({ scope: isScope(req.db) });
    });
    await request(app).get('/after').expect(200, { scope: true });
    await request(app).get('/before').expect(200, { scope: false });
  });

  it('lets a later middleware assign req.db', async () => {
    const app = express();
    app.use(db);
    app.use((req, _res, next) => {
      (req as unknown as { db: unknown }).db = 'replaced';
      next();
    });
    app.get('/', (req, res) => {
      res.json({ db: req.db });
    });
    await request(app).get('/').expect(200, { db: 'replaced' });
  });

  it('replaces a req.db that an earlier middleware set', async () => {
    const app = express();
    app.use((req, _res, next) => {
      (req as unknown as { db: unknown }).db = 'stale';
      next();
    });
    app.use(db);
    app.get('/', (req, res) => {
      res.json({ scope: isScope(req.db) });
    });
    await request(app).get('/').expect(200, { scope: true });
  });

  it('keeps two middlewares on different properties apart, and lets the later one on the same property win', async () => {
    const other = withDb('sqlite::memory:', { property: 'analytics' });
    const later = withDb('sqlite::memory:');
    try {
      const scopes: Record<string, unknown> = {};
      const app = express();
      app.use(db);
      app.use(other);
      app.get('/two', (req, res) => {
        scopes.first = req.db;
        scopes.analytics = (req as unknown as { analytics: Scope }).analytics;
        res.end();
      });
      app.use(later);
      app.get('/later', (req, res) => {
        scopes.later = req.db;
        res.end();
      });
      await request(app).get('/two').expect(200);
      await request(app).get('/later').expect(200);
      expect(isScope(scopes.first)).toBe(true);
      expect(isScope(scopes.analytics)).toBe(true);
      expect(scopes.analytics).not.toBe(scopes.first);
      expect(isScope(scopes.later)).toBe(true);
      expect(scopes.later).not.toBe(scopes.first);
      expect((scopes.later as Scope).knex).toBe(later.knex);
    } finally {
      await other.destroy();
      await later.destroy();
    }
  });

  it('puts the eager transaction on req.dbSession the same way', async () => {
    const legacy: LegacySession = withLegacySession(db.knex);
    const app = express();
    const sub = express();
    app.use(legacy);
    sub.get('/', async (req, res) => {
      const [row] = await req.dbSession.select(req.dbSession.raw('1 as one'));
      await req.dbSession.commit();
      res.json({ row, own: Object.hasOwn(req, 'dbSession') });
    });
    app.use('/sub', sub);
    await request(app)
      .get('/sub')
      .expect(200, { row: { one: 1 }, own: false });
  });
});

describe('outside Express', () => {
  it('makes req.db an own property of a request that has no res.locals', async () => {
    const db = withDb('sqlite::memory:');
    try {
      const server = http.createServer((req, res) => {
        db(req, res, () => {
          const own = Object.hasOwn(req, 'db');
          const scope = isScope((req as unknown as { db: unknown }).db);
          res.setHeader('content-type', 'application/json');
          res.end(JSON.stringify({ own, scope }));
        });
      });
      await request(server).get('/').expect(200, { own: true, scope: true });
    } finally {
      await db.destroy();
    }
  });

  it('takes a test double for a response at its word: one that says it has ended ends the scope', async () => {
    const db = withDb('sqlite::memory:');
    try {
      // Not a Node OutgoingMessage: its writableEnded is its own, not the one Node derives.
      const res = Object.assign(new EventEmitter(), {
        writableEnded: true,
        destroyed: false,
        end() {},
      });
      const req = {};
      let nexts = 0;
      db(req as never, res as never, () => {
        nexts++;
      });
      expect(nexts).toBe(1);
      const scope = (req as { db: Scope }).db;
      await expect(scope.session).rejects.toBeInstanceOf(ScopeClosedError);
      expect(scope.ended).toBe(true);
    } finally {
      await db.destroy();
    }
  });

  it('rolls back before an end that another library put on Express responses, and calls it once', async () => {
    // A fresh copy of Express, whose base response (express/lib/response.js) carries another
    // library's `end`.
    let isolated!: typeof express5;
    jest.isolateModules(() => {
      isolated = require('express') as typeof express5;
    });
    const db = withDb('sqlite::memory:');
    const pool = (
      db.knex.client as {
        pool: { numUsed(): number; on(event: 'release', listener: () => void): void };
      }
    ).pool;
    const usedAtTheirEnd: number[] = [];
    const theirs = function end(this: http.ServerResponse, ...args: unknown[]) {
      usedAtTheirEnd.push(pool.numUsed());
      return (http.ServerResponse.prototype.end as (...a: unknown[]) => unknown).apply(this, args);
    };
    Object.defineProperty(isolated.response, 'end', {
      configurable: true,
      writable: true,
      value: theirs,
    });
    let scope: Scope | undefined;
    let entered!: () => void;
    const inHandler = new Promise<void>((resolve) => {
      entered = resolve;
    });
    const app = isolated();
    app.use(db);
    app.get('/open', async (req, res) => {
      const trx = await req.db.session;
      await trx.select(trx.raw('1 as one'));
      res.json({ ok: true }); // rolled back inside res.end, then theirs runs
    });
    app.get('/left', async (req) => {
      scope = req.db;
      await req.db.session;
      entered();
    });
    const { url, close } = await listen(app);
    try {
      await request(url).get('/open').expect(200, { ok: true });
      expect(pool.numUsed()).toBe(0);
      expect(Object.getOwnPropertyDescriptor(isolated.response, 'end')?.value).toBe(theirs);
      expect(usedAtTheirEnd).toEqual([0]); // called once, after the rollback

      const client = http.request(`${url}/left`);
      client.on('error', () => {});
      client.end();
      await inHandler;
      const released = new Promise<void>((resolve) => pool.on('release', () => resolve()));
      client.destroy();
      await released; // the rollback of the scope the client left
      expect(scope?.aborted).toBe(true);
      expect(pool.numUsed()).toBe(0);
    } finally {
      await close();
      await db.destroy();
    }
  });

  it('rolls back inside res.end of a plain Node response too, before it completes', async () => {
    const db = withDb('sqlite::memory:');
    const pool = (db.knex.client as { pool: { numUsed(): number } }).pool;
    const seen: Record<string, unknown> = {};
    try {
      const server = http.createServer((req, res) => {
        db(req, res, async () => {
          const scope = (req as unknown as { db: Scope }).db;
          const trx = await scope.session;
          seen.held = pool.numUsed();
          res.on('finish', () => {
            seen.atFinish = pool.numUsed();
            seen.ended = scope.ended;
            seen.own = Object.hasOwn(res, 'end');
          });
          await trx.select(trx.raw('1 as one'));
          res.end('done'); // the session is still open: rolled back before the response completes
        });
      });
      await request(server).get('/').expect(200, 'done');
      expect(seen).toEqual({ held: 1, atFinish: 0, ended: true, own: false });
    } finally {
      await db.destroy();
    }
  });
});
