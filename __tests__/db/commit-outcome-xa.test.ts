// retryTransaction({ commitOutcome: 'xa' }): MySQL/MariaDB XA transactions whose COMMIT is
// settled after a lost connection (issue 14 item 2). On PostgreSQL and SQLite: a named error.
import express from 'express';
import type { Knex } from 'knex';
import supertest from 'supertest';
import {
  type Db,
  isConnectionError,
  isKnexScopeError,
  isTransientError,
  type RetryEvent,
  type RetryOptions,
  resolvePreparedTransactions,
  retryTransaction,
  type Scope,
  withDb,
  withLegacySession,
} from '../../lib';
import { cutAt, knexScopeXids } from '../helpers/commit-cuts';
import {
  backendId,
  countRows,
  createItemsTable,
  dialect,
  killBackend,
  openKnex,
  poolStats,
  recordSql,
  testConfig,
} from '../helpers/database';
import { type FaultProxy, proxiedConfig, startFaultProxy } from '../helpers/fault-proxy';

const onMariadb = dialect === 'mariadb' ? it : it.skip;
const elsewhere = dialect === 'mariadb' ? it.skip : it;
const noWait = { sleep: async () => {} };
const xa = { commitOutcome: 'xa' as const, ...noWait };

let admin: Knex;
let table: string;
let db: Db;

beforeAll(async () => {
  admin = openKnex();
  table = await createItemsTable(admin);
});

beforeEach(async () => {
  await admin(table).delete();
  db = withDb(testConfig());
});

afterEach(async () => {
  await db.destroy();
});

afterAll(async () => {
  await admin.schema.dropTableIfExists(table);
  await admin.destroy();
});

function insertOne(target: Db, options: RetryOptions = {}) {
  let calls = 0;
  const insert = target.wrap(
    retryTransaction(
      async (scope: Scope, name: string) => {
        calls++;
        const trx = await scope.session;
        await trx(table).insert({ name });
        await trx.commit();
        return calls;
      },
      { session: (scope) => scope, ...xa, ...options },
    ),
  );
  return { insert, calls: () => calls };
}

describe("commitOutcome: 'xa' where XA is not available", () => {
  elsewhere(
    'fails at the first session with CommitOutcomeUnsupportedError, unretried',
    async () => {
      const events: RetryEvent[] = [];
      const { insert, calls } = insertOne(db, { onRetry: (event) => events.push(event) });
      const error = await insert('tea').catch((e: unknown) => e);
      expect(isKnexScopeError(error) && error.code).toBe('ERR_COMMIT_OUTCOME_UNSUPPORTED');
      expect((error as Error).message).toMatch(/MySQL ≥ 5\.7\.7 or MariaDB ≥ 10\.5\.2/);
      expect(calls()).toBe(1);
      expect(events.map((e) => e.decision)).toEqual(['not-retryable']);
      expect(await countRows(admin, table)).toBe(0);
      expect(poolStats(db.knex).used).toBe(0);
    },
  );
});

describe("commitOutcome: 'xa' on MariaDB", () => {
  onMariadb(
    'commits with XA START, XA END, XA PREPARE, XA COMMIT, never a plain BEGIN',
    async () => {
      const sent = recordSql(db.knex);
      const { insert } = insertOne(db);
      await insert('tea');
      const protocol = sent.filter((sql) => /^(XA |BEGIN|COMMIT|ROLLBACK)/.test(sql));
      expect(protocol.map((sql) => sql.replace(/'[^']*','[^']*',\d+/, '<xid>'))).toEqual([
        'XA START <xid>',
        'XA END <xid>',
        'XA PREPARE <xid>',
        'XA COMMIT <xid>',
      ]);
      expect(new Set(protocol.map((sql) => sql.slice(sql.indexOf("'"))))).toHaveProperty('size', 1);
      expect(await admin(table).pluck('name')).toEqual(['tea']);
      expect(await knexScopeXids(admin)).toEqual([]);
      expect(poolStats(db.knex).used).toBe(0);
    },
  );

  onMariadb('the xid says which app, host, process, call and attempt made it', async () => {
    const sent = recordSql(db.knex);
    let calls = 0;
    const insert = db.wrap(
      retryTransaction(
        async (scope: Scope) => {
          calls++;
          const trx = await scope.session;
          await trx(table).insert({ name: `attempt ${calls}` });
          if (calls === 1) await killBackend(admin, await backendId(trx));
          await trx.commit();
        },
        { session: (scope) => scope, ...xa },
      ),
    );
    await insert();
    const xids = sent
      .filter((sql) => sql.startsWith('XA START'))
      .map((sql) => /^XA START '([^']*)','([^']*)',(\d+)$/.exec(sql)?.slice(1));
    expect(xids).toHaveLength(2);
    const [first, second] = xids as [string[], string[]];
    expect(first[0]).toMatch(new RegExp(`^ks1:[\\w.-]+:[\\w.-]+:${process.pid}:[0-9a-f]{8}$`));
    expect(first[2]).toBe(String(0x4b53));
    // <time>.<call>.<attempt>.<session>: the same call, attempts 1 and 2
    const [time1, call1, attempt1] = (first[1] as string).split('.');
    const [, call2, attempt2] = (second[1] as string).split('.');
    expect(Math.abs(Number.parseInt(time1 as string, 36) - Date.now())).toBeLessThan(60_000);
    expect([call2, attempt1, attempt2]).toEqual([call1, '1', '2']);
    expect(await admin(table).pluck('name')).toEqual(['attempt 2']);
    expect(await knexScopeXids(admin)).toEqual([]);
  });

  onMariadb('rolls back with XA END + XA ROLLBACK, and the connection stays usable', async () => {
    const small = withDb(testConfig({ min: 0, max: 1 }));
    const sent = recordSql(small.knex);
    try {
      const fail = small.wrap(
        retryTransaction(
          async (scope: Scope) => {
            const trx = await scope.session;
            await trx(table).insert({ name: 'rolled back' });
            throw new TypeError('not a connection error');
          },
          { session: (scope) => scope, ...xa },
        ),
      );
      await expect(fail()).rejects.toThrow(TypeError);
      expect(sent.filter((sql) => sql.startsWith('XA ')).map((sql) => sql.slice(0, 11))).toEqual([
        "XA START 'k",
        "XA END 'ks1",
        'XA ROLLBACK',
      ]);
      // The pool's only connection is clean: a plain transaction and an XA one both work on it.
      await small.wrap(async (scope: Scope) => {
        const trx = await scope.session;
        await trx(table).insert({ name: 'plain' });
        await trx.commit();
      })();
      const { insert } = insertOne(small);
      await insert('xa');
      expect(await admin(table).orderBy('id').pluck('name')).toEqual(['plain', 'xa']);
      expect(await knexScopeXids(admin)).toEqual([]);
    } finally {
      await small.destroy();
    }
  });

  onMariadb('a deadlock inside the XA transaction is rolled back and retried', async () => {
    await admin(table).insert([{ name: 'a' }, { name: 'b' }]);
    const [a, b] = (await admin(table).orderBy('id').pluck('id')) as [number, number];
    let waiting = 0;
    let release: () => void = () => {};
    const bothHoldOne = new Promise<void>((resolve) => {
      release = resolve;
    });
    const update = (first: number, second: number, name: string) =>
      db.wrap(
        retryTransaction(
          async (scope: Scope) => {
            const trx = await scope.session;
            await trx(table).where({ id: first }).update({ name });
            if (++waiting === 2) release();
            await bothHoldOne;
            await trx(table).where({ id: second }).update({ name });
            await trx.commit();
          },
          { session: (scope) => scope, retryOn: isTransientError, ...xa },
        ),
      )();
    await Promise.all([update(a, b, 'left'), update(b, a, 'right')]);
    const names = await admin(table).orderBy('id').pluck('name');
    expect(names[0]).toBe(names[1]); // one of them won, whole; the other was retried after it
    expect(await knexScopeXids(admin)).toEqual([]);
    expect(poolStats(db.knex).used).toBe(0);
  });

  onMariadb(
    'a session opened before the attempt (eager) cannot commit as XA: named error',
    async () => {
      const legacy = withLegacySession(testConfig());
      const app = express();
      app.use(legacy);
      let seen: unknown;
      app.post(
        '/items',
        retryTransaction(
          async (req: express.Request, res: express.Response) => {
            await req.dbSession(table).insert({ name: 'eager' });
            await req.dbSession.commit();
            res.status(201).end();
          },
          { session: (req) => req.dbSession, ...xa },
        ),
      );
      app.use((error: unknown, _req: express.Request, res: express.Response, _next: () => void) => {
        seen = error;
        res.status(500).end();
      });
      try {
        await supertest(app).post('/items').expect(500);
        expect(isKnexScopeError(seen) && seen.code).toBe('ERR_COMMIT_OUTCOME_UNSUPPORTED');
        expect(await countRows(admin, table)).toBe(0);
        expect(poolStats(legacy.knex).used).toBe(0);
      } finally {
        await legacy.destroy();
      }
    },
  );
});

describe("commitOutcome: 'xa' when the connection is cut at each step of the commit", () => {
  let proxy: FaultProxy;
  let proxied: Db;

  beforeAll(async () => {
    if (dialect === 'mariadb') proxy = await startFaultProxy();
  });

  beforeEach(async () => {
    if (dialect === 'mariadb') proxied = withDb(proxiedConfig(proxy.url));
  });

  afterEach(async () => {
    await proxied?.destroy();
  });

  afterAll(async () => {
    await proxy?.close();
  });

  // Through the fault proxy; the client's socket is destroyed right before the statement's bytes
  // are written, or right after, so that the server (behind the proxy) runs it and its reply is lost.
  it.each([
    ['XA END', 'before', 'attempt 2', 2],
    ['XA END', 'after', 'attempt 2', 2],
    ['XA PREPARE', 'before', 'attempt 2', 2],
    ['XA PREPARE', 'after', 'attempt 1', 1],
    ['XA COMMIT', 'before', 'attempt 1', 1],
    ['XA COMMIT', 'after', 'attempt 1', 1],
  ] as const)(
    'cut %s %s it is written: the work is in the table once (%s)',
    async (statement, when, rows, attempts) => {
      if (dialect !== 'mariadb') return;
      let calls = 0;
      let cut: () => boolean = () => false;
      const events: RetryEvent[] = [];
      const insert = proxied.wrap(
        retryTransaction(
          async (scope: Scope) => {
            calls++;
            const trx = await scope.session;
            await trx(table).insert({ name: `attempt ${calls}` });
            if (calls === 1) cut = await cutAt(trx, (sql) => sql.startsWith(statement), when);
            await trx.commit();
            return calls;
          },
          { session: (scope) => scope, onRetry: (e) => events.push(e), ...xa },
        ),
      );
      await expect(insert()).resolves.toBe(attempts);
      expect(cut()).toBe(true);
      expect(await admin(table).pluck('name')).toEqual([rows]);
      expect(events.map((e) => e.decision)).toEqual(attempts === 2 ? ['retry'] : []);
      if (attempts === 2) expect(isConnectionError(events[0]?.error)).toBe(true);
      expect(await knexScopeXids(admin)).toEqual([]);
      expect(poolStats(proxied.knex).used).toBe(0);
    },
  );
});

describe('resolvePreparedTransactions', () => {
  /** Leaves a prepared XA transaction behind, as a process that died after XA PREPARE would. */
  async function prepareAndVanish(gtrid: string, bqual: string, name: string): Promise<void> {
    const lone = openKnex(testConfig({ min: 1, max: 1 }));
    try {
      const id = `'${gtrid}','${bqual}',19283`;
      await lone.raw(`xa start ${id}`);
      await lone.raw(`insert into ${table} (name) values (?)`, [name]);
      await lone.raw(`xa end ${id}`);
      await lone.raw(`xa prepare ${id}`);
    } finally {
      await lone.destroy(); // the prepared transaction survives its connection
    }
  }

  const hourAgo = (Date.now() - 3_600_000).toString(36);

  onMariadb("commits knex-scope's leftovers, reports and leaves the rest", async () => {
    await prepareAndVanish('ks1:crashed-app:gone-host:4242:0badf00d', `${hourAgo}.1.1.1`, 'left');
    await prepareAndVanish(
      `ks1:young-app:gone-host:4243:0badf00d`,
      `${Date.now().toString(36)}.1.1.1`,
      'young',
    );
    const foreign = `'other-${process.pid}','b',1`;
    const lone = openKnex(testConfig({ min: 1, max: 1 }));
    await lone.raw(`xa start ${foreign}`);
    await lone.raw(`insert into ${table} (name) values ('foreign')`);
    await lone.raw(`xa end ${foreign}`);
    await lone.raw(`xa prepare ${foreign}`);
    await lone.destroy();
    try {
      const dry = await resolvePreparedTransactions(db.knex, { dryRun: true });
      const mine = (action: string) =>
        dry.filter((t) => t.action === action).map((t) => t.app ?? t.xid);
      expect(mine('would commit')).toEqual(['crashed-app']);
      expect(mine('too recent')).toEqual(['young-app']);
      expect(mine('foreign')).toContain(`other-${process.pid}b`);
      expect(await countRows(admin, table)).toBe(0);

      const done = await resolvePreparedTransactions(db.knex);
      const crashed = done.find((t) => t.app === 'crashed-app');
      expect(crashed).toMatchObject({ action: 'committed', host: 'gone-host', pid: 4242 });
      expect(crashed?.createdAt?.getTime()).toBe(Number.parseInt(hourAgo, 36));
      expect(await admin(table).pluck('name')).toEqual(['left']);
      // A young one is committed once olderThan allows it.
      await resolvePreparedTransactions(db.knex, { olderThan: 0 });
      expect((await admin(table).orderBy('id').pluck('name')).sort()).toEqual(['left', 'young']);
      expect(await knexScopeXids(admin)).toEqual([]);
    } finally {
      await admin.raw(`xa rollback ${foreign}`).catch(() => {});
    }
  });

  onMariadb('leaves a transaction of a process still running on this host', async () => {
    const { hostname } = await import('node:os');
    const host = hostname()
      .replace(/[^A-Za-z0-9._-]/g, '_')
      .slice(0, 20);
    await prepareAndVanish(`ks1:parent:${host}:${process.ppid}:0badf00d`, `${hourAgo}.1.1.1`, 'p');
    try {
      const found = await resolvePreparedTransactions(db.knex);
      expect(found.find((t) => t.app === 'parent')?.action).toBe('owner alive');
      expect(await countRows(admin, table)).toBe(0);
    } finally {
      await admin.raw(
        `xa rollback 'ks1:parent:${host}:${process.ppid}:0badf00d','${hourAgo}.1.1.1',19283`,
      );
    }
  });
});
