import type { Knex } from 'knex';
import { withDb } from '../../lib';
import * as fastify from '../../lib/adapters/fastify';
import * as hono from '../../lib/adapters/hono';
import '../../lib/adapters/koa';
import {
  AbortProbe,
  createExpressSoakApp,
  createFastifySoakApp,
  createHonoSoakApp,
  createKoaSoakApp,
  createSoakTable,
  defaultMix,
  listen,
  onSuccessMix,
  rowsByRoute,
  runSoakLoad,
  type SoakRoute,
  type SoakServerStats,
  settledHandlers,
  settledPool,
  unexpectedOutcomes,
} from '../../scripts/bench/soak-apps';
import { openKnex, testConfig, uniqueName } from '../helpers/database';

// A short version of scripts/bench/soak.js on every test database: a few hundred requests over real
// HTTP mixing commits, throws, forgotten sessions, client aborts mid-transaction and routes that
// never touch the database (and, on Fastify and Hono, the routes of a commit: 'on-success' db),
// then nothing may be left in the pool and only the 201s may have written a row.
const requests = 500;
const concurrency = 25;

let admin: Knex;

beforeAll(() => {
  admin = openKnex();
});

afterAll(async () => {
  await admin.destroy();
});

interface SoakApp {
  knex: Knex;
  destroy(): Promise<void>;
  listener: Parameters<typeof listen>[0];
  stats: SoakServerStats;
  mix: readonly SoakRoute[];
}

async function soakApp(
  framework: string,
  table: string,
  probe: InstanceType<typeof AbortProbe>,
): Promise<SoakApp> {
  const options = { table, probe, abortDelayMs: 20 };
  if (framework === 'fastify') {
    const db = fastify.withDb(testConfig());
    const autoDb = fastify.withDb(db.knex, { commit: 'on-success', property: 'auto' });
    const app = await createFastifySoakApp(db, { ...options, autoDb });
    return { knex: db.knex, destroy: db.destroy, ...app, mix: onSuccessMix };
  }
  if (framework === 'hono') {
    const db = hono.withDb(testConfig());
    const autoDb = hono.withDb(db.knex, { commit: 'on-success', property: 'auto' });
    const app = createHonoSoakApp(db, { ...options, autoDb });
    return { knex: db.knex, destroy: db.destroy, ...app, mix: onSuccessMix };
  }
  const db = withDb(testConfig());
  if (framework === 'express') {
    const { app, stats } = createExpressSoakApp(db, options);
    return { knex: db.knex, destroy: db.destroy, listener: app, stats, mix: defaultMix };
  }
  const { app, stats } = createKoaSoakApp(db, options);
  return { knex: db.knex, destroy: db.destroy, listener: app.callback(), stats, mix: defaultMix };
}

describe.each([
  ['Express', 'express'],
  ['Koa', 'koa'],
  ['Fastify', 'fastify'],
  ['Hono', 'hono'],
] as const)('%s under mixed load', (_name, framework) => {
  let app: SoakApp;
  let table: string;
  const probe = new AbortProbe();

  beforeEach(async () => {
    table = uniqueName('soak');
    await createSoakTable(admin, table);
    app = await soakApp(framework, table, probe);
  });

  afterEach(async () => {
    await app.destroy();
    await admin.schema.dropTableIfExists(table);
  });

  it(`leaves no connection behind and keeps exactly the committed rows after ${requests} requests`, async () => {
    const { stats, mix } = app;
    const server = await listen(app.listener);
    try {
      const load = await runSoakLoad({ url: server.url, total: requests, concurrency, probe, mix });
      expect(await settledHandlers(stats)).toBe(true);
      const pool = await settledPool(app.knex);
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
      const committedByHandlers = stats.committed;
      if (mix === onSuccessMix) {
        // The auto routes' 201s are committed by the commit: 'on-success' db.
        expect(rows).toEqual({
          commit: committedByHandlers,
          auto: load.created - committedByHandlers,
        });
        expect(rows.auto).toBeGreaterThan(0);
      } else {
        expect(rows).toEqual({ commit: load.created });
        expect(committedByHandlers).toBe(load.created);
      }
    } finally {
      await server.close();
    }
    // Hundreds of requests with real transactions: seconds on a busy machine, not a timed check.
  }, 60_000);
});
