// knex-scope through PgBouncer in transaction pooling mode (scripts/services/pgbouncer.sh: a server
// pool of 4 per database, query_wait_timeout 5 s). One file, so that its restarts and saturation
// never overlap.
import { knex as createKnex, type Knex } from 'knex';
import { Client } from 'pg';
import {
  type Db,
  type RetryEvent,
  retryTransaction,
  type Scope,
  SessionLimitError,
  withDb,
} from '../../lib';
import { servers } from '../../scripts/probe-databases';
import { poolStats } from '../helpers/pool-stats';
import { describeService } from '../helpers/services';

jest.setTimeout(60_000);

const table = `pgb_${process.pid}`;
const serverPool = 4; // default_pool_size in scripts/services/pgbouncer.sh

describeService('pgbouncer', (pgbouncer) => {
  let direct: Knex; // straight to PostgreSQL, for setup, checks and kills
  const opened: Db[] = [];
  const open = (options?: Parameters<typeof withDb>[1], pool: Knex.PoolConfig = {}) => {
    const db = withDb(
      { client: 'pg', connection: pgbouncer.url, pool: { min: 0, max: 10, ...pool } },
      options,
    );
    opened.push(db);
    return db;
  };

  /** SHOW POOLS for the `test` database: server connections linked to a client right now. */
  const serverActive = async (): Promise<number> => {
    // A pg client of its own: knex's first query, select version(), is not a console command,
    // and a restart of PgBouncer ends every console connection.
    const admin = new Client({ connectionString: pgbouncer.adminUrl });
    await admin.connect();
    try {
      const { rows } = await admin.query('SHOW POOLS');
      const pool = rows.find((row: { database: string }) => row.database === 'test');
      return Number(pool?.sv_active ?? 0);
    } finally {
      await admin.end();
    }
  };

  const rows = async () =>
    (await direct(table).select('name').orderBy('name')).map((row) => row.name);

  beforeAll(async () => {
    direct = createKnex({ client: 'pg', connection: servers.postgres, pool: { min: 0, max: 2 } });
    await direct.schema.dropTableIfExists(table);
    await direct.schema.createTable(table, (t) => {
      t.increments('id');
      t.string('name').notNullable().unique();
    });
  });

  afterEach(async () => {
    await Promise.all(opened.splice(0).map((db) => db.destroy()));
    await direct(table).delete();
  });

  afterAll(async () => {
    await direct.schema.dropTableIfExists(table);
    await direct.destroy();
  });

  test('commits, rolls back and rolls back what the handler forgot; the pooler and the pool end idle', async () => {
    const db = open();
    await db.wrap(async (scope) => {
      const trx = await scope.session;
      await trx(table).insert({ name: 'committed' });
      await trx.commit();
      const rolled = await scope.getSession();
      await rolled(table).insert({ name: 'rolled back' });
      await rolled.rollback();
      const forgotten = await scope.session;
      await forgotten(table).insert({ name: 'forgotten' });
    })();
    expect(await rows()).toEqual(['committed']);
    expect(poolStats(db.knex)).toMatchObject({ used: 0, pending: 0 });
    expect(await serverActive()).toBe(0);
  });

  test('saturation (query_wait_timeout) is not retried, as knex’s own pool timeout is not', async () => {
    const hog = open();
    const db = open();
    const events: RetryEvent[] = [];
    const write = db.wrap(
      retryTransaction(
        async (scope: Scope) => {
          const trx = await scope.session;
          await trx(table).insert({ name: 'waited' });
          await trx.commit();
        },
        { session: (scope) => scope, total: 3, onRetry: (event) => events.push(event) },
      ),
    );
    await hog.wrap(async (scope) => {
      // Every server connection of the pooler's pool is held by an open transaction.
      for (let i = 0; i < serverPool; i++) await (await scope.getSession()).raw('select 1');
      const error = await write().catch((e: unknown) => e);
      expect(error).toMatchObject({ code: '08P01' });
      expect((error as Error).message).toMatch(/query_wait_timeout/);
    })();
    expect(events.map((event) => event.decision)).toEqual(['not-retryable']);
    expect(poolStats(db.knex)).toMatchObject({ used: 0, pending: 0 });
    await write(); // the pool did not keep the connection PgBouncer closed
    expect(await rows()).toEqual(['waited']);
  });

  test('maxSessionsPerScope at the pooler’s pool size fails a self-deadlocking request at once', async () => {
    const db = open({ maxSessionsPerScope: serverPool });
    const error = await db
      .wrap(async (scope) => {
        for (let i = 0; i < serverPool; i++) await (await scope.getSession()).raw('select 1');
        await scope.getSession();
      })()
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SessionLimitError);
    // Without the limit, the fifth session would wait for a server connection only this request
    // can free, and fail after query_wait_timeout with 08P01.
    expect(await serverActive()).toBe(0);
  });

  test('transaction.settings hold in every session through the pooler and never leak to the next client', async () => {
    await direct.raw('create schema if not exists pgb_a');
    await direct.raw('create schema if not exists pgb_b');
    await direct.raw('create table if not exists pgb_a.marker (v text)');
    await direct.raw('create table if not exists pgb_b.marker (v text)');
    await direct.raw("truncate pgb_a.marker; insert into pgb_a.marker values ('a')");
    await direct.raw("truncate pgb_b.marker; insert into pgb_b.marker values ('b')");
    try {
      const a = open({ transaction: { settings: { search_path: 'pgb_a' } } });
      const b = open({ transaction: { settings: { search_path: 'pgb_b' } } });
      const read = (db: Db) =>
        db.wrap((scope) => scope.getSession(async (trx) => (await trx('marker').first()).v))();
      const seen = await Promise.all(
        Array.from({ length: 16 }, (_, i) => (i % 2 === 0 ? read(a) : read(b))),
      );
      expect(seen).toEqual(Array.from({ length: 16 }, (_, i) => (i % 2 === 0 ? 'a' : 'b')));
      // No server connection the sessions used kept their path for the next client.
      const plain = open();
      const paths = await Promise.all(
        Array.from({ length: 8 }, () =>
          plain.wrap((scope) =>
            scope.getSession(
              async (trx) => (await trx.raw('show search_path')).rows[0].search_path,
            ),
          )(),
        ),
      );
      expect(paths.filter((path) => /pgb_[ab]/.test(path))).toEqual([]);
    } finally {
      await direct.raw('drop schema pgb_a cascade; drop schema pgb_b cascade');
    }
  });

  test('a killed server backend is retried through the pooler and its row is written once', async () => {
    const db = open();
    const events: RetryEvent[] = [];
    let attempts = 0;
    await db.wrap(
      retryTransaction(
        async (scope: Scope) => {
          attempts++;
          const trx = await scope.session;
          await trx(table).insert({ name: 'once' });
          if (attempts === 1) {
            const { rows: pids } = await trx.raw('select pg_backend_pid() as pid');
            await direct.raw('select pg_terminate_backend(?)', [pids[0].pid]);
          }
          await trx.commit();
        },
        { session: (scope) => scope, total: 3, onRetry: (event) => events.push(event) },
      ),
    )();
    expect(events.map((event) => event.decision)).toEqual(['retry']);
    expect(await rows()).toEqual(['once']);
    expect(poolStats(db.knex)).toMatchObject({ used: 0, pending: 0 });
  });

  test('PgBouncer restarted mid-transaction: the request is retried on a new connection, its row written once', async () => {
    const db = open();
    const events: RetryEvent[] = [];
    let attempts = 0;
    await db.wrap(
      retryTransaction(
        async (scope: Scope) => {
          attempts++;
          const trx = await scope.session;
          await trx(table).insert({ name: 'after restart' });
          if (attempts === 1) await pgbouncer.restart();
          await trx.commit();
        },
        {
          session: (scope) => scope,
          total: 10,
          backoffFactor: 100,
          backoffMax: 1_000,
          onRetry: (event) => events.push(event),
        },
      ),
    )();
    expect(events[0]?.decision).toBe('retry');
    expect(await rows()).toEqual(['after restart']);
    expect(poolStats(db.knex)).toMatchObject({ used: 0, pending: 0 });
  });
});
