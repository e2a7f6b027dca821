import type { Knex } from 'knex';
import { type Db, withDb } from '../../lib';
import '../../lib/adapters/koa';
import {
  AbortProbe,
  createExpressSoakApp,
  createKoaSoakApp,
  createSoakTable,
  listen,
  rowsByRoute,
  runSoakLoad,
  settledHandlers,
  settledPool,
  unexpectedOutcomes,
} from '../../scripts/bench/soak-apps';
import { openKnex, testConfig, uniqueName } from '../helpers/database';

// A short version of scripts/bench/soak.js on every test database: a few hundred requests over real
// HTTP mixing commits, throws, forgotten sessions, client aborts mid-transaction and routes that
// never touch the database, then nothing may be left in the pool and only the 201s may have
// written a row.
const requests = 500;
const concurrency = 25;

let admin: Knex;

beforeAll(() => {
  admin = openKnex();
});

afterAll(async () => {
  await admin.destroy();
});

describe.each([
  ['Express', 'express'],
  ['Koa', 'koa'],
] as const)('%s under mixed load', (_name, framework) => {
  let db: Db;
  let table: string;

  beforeEach(async () => {
    table = uniqueName('soak');
    await createSoakTable(admin, table);
    db = withDb(testConfig());
  });

  afterEach(async () => {
    await db.destroy();
    await admin.schema.dropTableIfExists(table);
  });

  it(`leaves no connection behind and keeps exactly the committed rows after ${requests} requests`, async () => {
    const probe = new AbortProbe();
    const options = { table, probe, abortDelayMs: 20 };
    const { app, stats } =
      framework === 'express'
        ? createExpressSoakApp(db, options)
        : (() => {
            const koa = createKoaSoakApp(db, options);
            return { app: koa.app.callback(), stats: koa.stats };
          })();
    const server = await listen(app);
    try {
      const load = await runSoakLoad({ url: server.url, total: requests, concurrency, probe });
      expect(await settledHandlers(stats)).toBe(true);
      const pool = await settledPool(db.knex);
      expect(pool).toMatchObject({ used: 0, pendingAcquires: 0, pendingCreates: 0 });

      expect(load.errors).toEqual([]);
      expect(unexpectedOutcomes(load)).toEqual([]);
      expect(stats.unexpected).toEqual([]);
      expect(load.sent).toBe(requests);
      expect(load.aborted).toBeGreaterThan(0);
      expect(stats.abortRejected).toBe(load.aborted);
      expect(stats.abortCommitted).toBe(0);

      const rows = await rowsByRoute(admin, table);
      expect(load.created).toBeGreaterThan(0);
      expect(rows).toEqual({ commit: load.created });
      expect(stats.committed).toBe(load.created);
    } finally {
      await server.close();
    }
  });
});
