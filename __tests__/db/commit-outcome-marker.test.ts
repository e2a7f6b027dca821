// retryTransaction({ commitOutcome: 'marker' }): a row written in the transaction right before
// COMMIT, looked for from a fresh connection when COMMIT lost its connection (issue 14 item 3).
import express from 'express';
import type { Knex } from 'knex';
import supertest from 'supertest';
import {
  commitMarkerMigration,
  commitMarkerMigrationName,
  commitMarkerMigrationSource,
  commitMarkerTable,
  type Db,
  deleteExpiredCommitMarkers,
  isConnectionError,
  isKnexScopeError,
  type RetryEvent,
  retryTransaction,
  type Scope,
  withDb,
  withLegacySession,
} from '../../lib';
import { cutAt } from '../helpers/commit-cuts';
import {
  countRows,
  createItemsTable,
  dialect,
  openKnex,
  poolStats,
  recordSql,
  testConfig,
  uniqueName,
} from '../helpers/database';

const onServer = dialect === 'sqlite' ? it.skip : it;
const onPostgres = dialect === 'postgres' ? it : it.skip;
const noWait = { sleep: async () => {} };
const marker = { commitOutcome: 'marker' as const, ...noWait };

let admin: Knex;
let table: string;
let db: Db;

async function ensureMarkerTable(knex: Knex): Promise<void> {
  if (!(await knex.schema.hasTable(commitMarkerTable))) await commitMarkerMigration.up(knex);
}

beforeAll(async () => {
  admin = openKnex();
  table = await createItemsTable(admin);
  await ensureMarkerTable(admin);
});

beforeEach(async () => {
  await admin(table).delete();
  await admin(commitMarkerTable).delete();
  db = withDb(testConfig());
});

afterEach(async () => {
  await db.destroy();
});

afterAll(async () => {
  await admin.schema.dropTableIfExists(table);
  await admin.destroy();
});

/** Inserts `attempt N` and commits; on the first attempt `prepare` may arrange a fault. */
function insertAttempts(
  target: Db,
  prepare?: (trx: Knex.Transaction) => Promise<unknown>,
  events: RetryEvent[] = [],
) {
  const state = { calls: 0 };
  const insert = target.wrap(
    retryTransaction(
      async (scope: Scope) => {
        state.calls++;
        const trx = await scope.session;
        await trx(table).insert({ name: `attempt ${state.calls}` });
        if (state.calls === 1) await prepare?.(trx);
        await trx.commit();
        return `done by attempt ${state.calls}`;
      },
      { session: (scope) => scope, onRetry: (e) => events.push(e), total: 3, ...marker },
    ),
  );
  return { insert, state };
}

describe("commitOutcome: 'marker'", () => {
  it('writes one marker row in the transaction, right before COMMIT', async () => {
    const sent = recordSql(db.knex);
    const { insert } = insertAttempts(db);
    await insert();
    const at = sent.indexOf('COMMIT;');
    expect(sent[at - 1]).toMatch(
      new RegExp(`^insert into ${commitMarkerTable} \\(token\\) values`),
    );
    const tokens = await admin(commitMarkerTable).pluck('token');
    expect(tokens).toHaveLength(1);
    expect(tokens[0]).toMatch(/^[0-9a-z]{9}[0-9a-f]{24}$/);
    expect(await admin(table).pluck('name')).toEqual(['attempt 1']);
  });

  it('a transaction rolled back leaves no marker', async () => {
    const fail = db.wrap(
      retryTransaction(
        async (scope: Scope) => {
          const trx = await scope.session;
          await trx(table).insert({ name: 'never' });
          throw new TypeError('not a connection error');
        },
        { session: (scope) => scope, ...marker },
      ),
    );
    await expect(fail()).rejects.toThrow(TypeError);
    expect(await countRows(admin, commitMarkerTable)).toBe(0);
    expect(await countRows(admin, table)).toBe(0);
  });

  onServer('COMMIT applied, reply lost: the marker is found, no retry', async () => {
    const events: RetryEvent[] = [];
    const { insert, state } = insertAttempts(
      db,
      (trx) => cutAt(trx, (sql) => sql === 'COMMIT;', 'after'),
      events,
    );
    await expect(insert()).resolves.toBe('done by attempt 1');
    expect(state.calls).toBe(1);
    expect(events).toEqual([]);
    expect(await admin(table).pluck('name')).toEqual(['attempt 1']);
    expect(poolStats(db.knex).used).toBe(0);
  });

  onServer('COMMIT never written: retried, the work is in the table once', async () => {
    const events: RetryEvent[] = [];
    const { insert } = insertAttempts(
      db,
      (trx) => cutAt(trx, (sql) => sql === 'COMMIT;', 'before'),
      events,
    );
    await expect(insert()).resolves.toBe('done by attempt 2');
    expect(events.map((e) => e.decision)).toEqual(['retry']);
    expect(isConnectionError(events[0]?.error)).toBe(true);
    expect(await admin(table).pluck('name')).toEqual(['attempt 2']);
  });

  onPostgres(
    'COMMIT delivered and refused by the server, reply lost: no marker, retried',
    async () => {
      const parents = uniqueName('parents');
      const children = uniqueName('children');
      await admin.schema.createTable(parents, (t) => t.integer('id').primary());
      await admin.raw(
        `create table ${children} (parent_id integer references ${parents} (id) deferrable initially deferred)`,
      );
      try {
        const { insert } = insertAttempts(db, async (trx) => {
          await trx(children).insert({ parent_id: 404 }); // fails only at COMMIT
          await cutAt(trx, (sql) => sql === 'COMMIT;', 'after');
        });
        await expect(insert()).resolves.toBe('done by attempt 2');
        expect(await admin(table).pluck('name')).toEqual(['attempt 2']);
        expect(await countRows(admin, children)).toBe(0);
        expect(await countRows(admin, commitMarkerTable)).toBe(1);
      } finally {
        await admin.schema.dropTableIfExists(children);
        await admin.schema.dropTableIfExists(parents);
      }
    },
  );

  onServer('works for an eager session opened before the attempt', async () => {
    const legacy = withLegacySession(testConfig());
    const app = express();
    app.use(legacy);
    let calls = 0;
    app.post(
      '/items',
      retryTransaction(
        async (req: express.Request, res: express.Response) => {
          calls++;
          await req.dbSession(table).insert({ name: `attempt ${calls}` });
          if (calls === 1) await cutAt(req.dbSession, (sql) => sql === 'COMMIT;', 'after');
          await req.dbSession.commit();
          res.status(201).json({ calls });
        },
        { session: (req) => req.dbSession, ...marker },
      ),
    );
    try {
      await supertest(app).post('/items').expect(201, { calls: 1 });
      expect(await admin(table).pluck('name')).toEqual(['attempt 1']);
      expect(poolStats(legacy.knex).used).toBe(0);
    } finally {
      await legacy.destroy();
    }
  });

  onServer.each(['lazy', 'eager'] as const)(
    'a READ ONLY %s session writes no marker; its lost COMMIT is simply retried',
    async (kind) => {
      await admin(table).insert({ name: 'existing' });
      const readOnly = { transaction: { readOnly: true } };
      const legacy = kind === 'eager' ? withLegacySession(testConfig(), readOnly) : undefined;
      const scoped = kind === 'lazy' ? withDb(testConfig(), readOnly) : undefined;
      const app = express();
      app.use((legacy ?? scoped) as express.RequestHandler);
      let calls = 0;
      app.get(
        '/count',
        retryTransaction(
          async (req: express.Request, res: express.Response) => {
            calls++;
            const trx = legacy === undefined ? await req.db.session : req.dbSession;
            const [row] = await trx(table).count<{ n: number }[]>({ n: '*' });
            if (calls === 1) await cutAt(trx, (sql) => sql === 'COMMIT;', 'after');
            await trx.commit();
            res.json({ n: Number(row?.n), calls });
          },
          { session: (req) => (legacy === undefined ? req.db : req.dbSession), ...marker },
        ),
      );
      try {
        await supertest(app).get('/count').expect(200, { n: 1, calls: 2 });
        expect(await countRows(admin, commitMarkerTable)).toBe(0);
      } finally {
        await (legacy ?? scoped)?.destroy();
      }
    },
  );

  it('without the marker table: CommitOutcomeUnsupportedError naming the migration', async () => {
    await commitMarkerMigration.down(admin);
    try {
      const { insert, state } = insertAttempts(db);
      const error = await insert().catch((e: unknown) => e);
      expect(isKnexScopeError(error) && error.code).toBe('ERR_COMMIT_OUTCOME_UNSUPPORTED');
      expect((error as Error).message).toMatch(/commitMarkerMigration/);
      expect((error as Error).cause).toBeDefined();
      expect(state.calls).toBe(1);
      expect(await countRows(admin, table)).toBe(0);
      expect(poolStats(db.knex).used).toBe(0);
    } finally {
      await commitMarkerMigration.up(admin);
    }
  });
});

describe('the commit marker migration', () => {
  it('commitMarkerMigrationSource runs it with knex.migrate, and rolls it back', async () => {
    await commitMarkerMigration.down(admin);
    const tableName = uniqueName('migrations');
    const config = { migrationSource: commitMarkerMigrationSource, tableName };
    try {
      await admin.migrate.latest(config);
      expect(await admin.schema.hasTable(commitMarkerTable)).toBe(true);
      expect(await admin(tableName).pluck('name')).toEqual([commitMarkerMigrationName]);
      await admin.migrate.rollback(config);
      expect(await admin.schema.hasTable(commitMarkerTable)).toBe(false);
    } finally {
      await admin.schema.dropTableIfExists(tableName);
      await admin.schema.dropTableIfExists(`${tableName}_lock`);
      await ensureMarkerTable(admin);
    }
  });
});

describe('deleteExpiredCommitMarkers', () => {
  const tokenAt = (ms: number, n: number) =>
    ms.toString(36).padStart(9, '0') + n.toString(16).padStart(24, '0');

  it('deletes the markers older than olderThan, in batches, and keeps the rest', async () => {
    const old = Date.now() - 2 * 3_600_000;
    await admin(commitMarkerTable).insert(
      Array.from({ length: 5 }, (_, i) => ({ token: tokenAt(old + i, i) })),
    );
    const recent = [tokenAt(Date.now() - 60_000, 1), tokenAt(Date.now(), 2)];
    await admin(commitMarkerTable).insert(recent.map((token) => ({ token })));
    const sent = recordSql(db.knex);
    await expect(deleteExpiredCommitMarkers(db.knex, { batchSize: 2 })).resolves.toBe(5);
    expect(sent.filter((sql) => /^delete/i.test(sql))).toHaveLength(3); // 2 + 2 + 1
    expect((await admin(commitMarkerTable).pluck('token')).sort()).toEqual(recent);
    await expect(
      deleteExpiredCommitMarkers(db.knex, { olderThan: 30_000 }), // younger than a lookup
    ).rejects.toThrow(TypeError);
    expect(await countRows(admin, commitMarkerTable)).toBe(2);
  });

  it('maxBatches bounds one call', async () => {
    const old = Date.now() - 2 * 3_600_000;
    await admin(commitMarkerTable).insert(
      Array.from({ length: 5 }, (_, i) => ({ token: tokenAt(old + i, i) })),
    );
    await expect(
      deleteExpiredCommitMarkers(db.knex, { batchSize: 2, maxBatches: 1 }),
    ).resolves.toBe(2);
    expect(await countRows(admin, commitMarkerTable)).toBe(3);
  });
});
