import { request } from 'node:http';
import type { Socket } from 'node:net';
import express from 'express';
import Koa from 'koa';
import supertest from 'supertest';
import '../../lib/adapters/koa';
import type { Knex } from 'knex';
import {
  type Db,
  isConnectionError,
  isKnexScopeError,
  type RetryEvent,
  retryTransaction,
  type Scope,
  withDb,
  withLegacySession,
} from '../../lib';
import { captureTransactionId } from '../../lib/retry/commit-outcome';
import {
  backendId,
  countRows,
  createItemsTable,
  dialect,
  eventually,
  killBackend,
  openKnex,
  poolStats,
  testConfig,
  testUrl,
} from '../helpers/database';
import { listen } from '../helpers/http';

const server = dialect !== 'sqlite';
const onServer = server ? it : it.skip;
const onPostgres = dialect === 'postgres' ? it : it.skip;
const onMariadb = dialect === 'mariadb' ? it : it.skip;

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

/** What a lost connection looks like to the caller, for SQLite, where none can be lost. */
function connectionLost(): Error {
  return Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' });
}

const noWait = { sleep: async () => {} };

/** The socket under a transaction's connection (pg.Client or mysql2 Connection). */
async function socketOf(trx: Knex.Transaction): Promise<Socket> {
  const client = trx.client as unknown as { acquireConnection(): Promise<Record<string, never>> };
  const connection = (await client.acquireConnection()) as {
    connection?: { stream: Socket };
    stream?: Socket;
  };
  const socket = connection.connection?.stream ?? connection.stream;
  if (socket === undefined) throw new Error('no socket on this connection');
  return socket;
}

/**
 * Cuts the transaction's TCP connection exactly at COMMIT: `before` the COMMIT bytes are written
 * (the server never sees it), or right `after` (the server commits, the reply is lost).
 */
async function cutAtCommit(trx: Knex.Transaction, when: 'before' | 'after'): Promise<void> {
  const socket = await socketOf(trx);
  const client = trx.client as unknown as NodeJS.EventEmitter;
  client.on('query', (query: { sql: string }) => {
    if (query.sql !== 'COMMIT;') return;
    // knex emits 'query' synchronously before handing the statement to the driver, which writes
    // it to the socket synchronously: a microtask runs after the bytes are in the kernel.
    if (when === 'before') socket.destroy();
    else queueMicrotask(() => socket.destroy());
  });
}

describe('retryTransaction with server-side kills (pg_terminate_backend / KILL)', () => {
  // upstream: test_reconnects_during_transaction (the fault here is a killed backend)
  onServer(
    'retries on a fresh connection after the backend is killed mid-transaction',
    async () => {
      const backends: number[] = [];
      const events: RetryEvent[] = [];
      const insert = db.wrap(
        retryTransaction(
          async (scope: Scope, name: string) => {
            const trx = await scope.session;
            const id = await backendId(trx);
            backends.push(id);
            await trx(table).insert({ name });
            if (backends.length === 1) await killBackend(admin, id);
            await trx(table).insert({ name: `${name}-2` });
            await trx.commit();
            return backends.length;
          },
          { session: (scope) => scope, onRetry: (event) => events.push(event), ...noWait },
        ),
      );
      await expect(insert('tea')).resolves.toBe(2);
      expect(events.map((e) => e.decision)).toEqual(['retry']);
      expect(isConnectionError(events[0]?.error)).toBe(true);
      expect(await countRows(admin, table)).toBe(2); // nothing lost, nothing duplicated
      expect(backends[1]).not.toBe(backends[0]);
      expect(poolStats(db.knex).used).toBe(0);
      // The dead connection never comes back from the pool.
      for (let i = 0; i < 5; i++) {
        expect(await db.wrap(async (scope) => backendId(await scope.session))()).not.toBe(
          backends[0],
        );
      }
    },
  );

  // upstream: test_raises_without_using_transaction_retry
  onServer('without retryTransaction the connection error reaches the caller', async () => {
    const insert = db.wrap(async (scope: Scope) => {
      const trx = await scope.session;
      await killBackend(admin, await backendId(trx));
      await trx(table).insert({ name: 'tea' });
    });
    const error = await insert().catch((e: unknown) => e);
    expect(isConnectionError(error)).toBe(true);
    expect(await countRows(admin, table)).toBe(0);
    expect(poolStats(db.knex).used).toBe(0);
  });

  // upstream: test_raises_error_if_cannot_reconnect (every attempt's backend is killed)
  onServer('rethrows the last connection error when every attempt fails', async () => {
    let calls = 0;
    const insert = db.wrap(
      retryTransaction(
        async (scope: Scope) => {
          calls++;
          const trx = await scope.session;
          await killBackend(admin, await backendId(trx));
          await trx(table).insert({ name: 'tea' });
        },
        { session: (scope) => scope, total: 2, ...noWait },
      ),
    );
    const error = await insert().catch((e: unknown) => e);
    expect(isConnectionError(error)).toBe(true);
    expect(calls).toBe(3);
    expect(await countRows(admin, table)).toBe(0);
    expect(poolStats(db.knex).used).toBe(0);
  });

  onServer(
    'a Knex transaction as session is rolled back and its connection discarded',
    async () => {
      const root = db.knex;
      let first: number | undefined;
      const trxs: Knex.Transaction[] = [];
      const run = async () => {
        const trx = await root.transaction();
        trxs.push(trx);
        const id = await backendId(trx);
        first ??= id;
        await trx(table).insert({ name: 'tea' });
        if (id === first) await killBackend(admin, id);
        await trx(table).insert({ name: 'tea-2' });
        await trx.commit();
        return id;
      };
      const wrapped = retryTransaction(run, { session: () => trxs.at(-1), ...noWait });
      const second = await wrapped();
      expect(second).not.toBe(first);
      expect(trxs[0]?.isCompleted()).toBe(true);
      expect(await countRows(admin, table)).toBe(2);
      expect(poolStats(root).used).toBe(0);
    },
  );

  // upstream: TestTransactionRetryWithDependencyProviders::test_retries[DatabaseSession]
  onServer('the eager legacy session is rolled back and re-opened for the retry', async () => {
    const legacy = withLegacySession(testConfig());
    const app = express();
    app.use(legacy);
    const backends: number[] = [];
    app.get(
      '/count',
      retryTransaction(
        async (req: express.Request, res: express.Response) => {
          const id = await backendId(req.dbSession);
          backends.push(id);
          if (backends.length === 1) await killBackend(admin, id);
          const [row] = await req.dbSession(table).count<{ n: number }[]>({ n: '*' });
          await req.dbSession.commit();
          res.json({ n: Number(row?.n), attempts: backends.length });
        },
        { session: (req) => req.dbSession, ...noWait },
      ),
    );
    await admin(table).insert({ name: 'tea' });
    await supertest(app).get('/count').expect(200, { n: 1, attempts: 2 });
    expect(backends[1]).not.toBe(backends[0]);
    expect(poolStats(legacy.knex).used).toBe(0);
    await legacy.destroy();
  });
});

describe('a pooled connection whose backend died while idle', () => {
  // knex resolves knex.transaction() with an already completed transaction when BEGIN fails; the
  // session must fail with BEGIN's connection error instead, so that the retry can happen.
  onServer(
    'fails the session with the connection error, and retryTransaction recovers',
    async () => {
      const small = withDb(testConfig({ min: 0, max: 1 }));
      const failures: unknown[] = [];
      try {
        const insert = small.wrap(
          retryTransaction(
            async (scope: Scope, name: string) => {
              const trx = await scope.session;
              await trx(table).insert({ name });
              await trx.commit();
            },
            { session: (scope) => scope, onRetry: (e) => failures.push(e.error), ...noWait },
          ),
        );
        for (let i = 0; i < 10; i++) {
          const id = await small.wrap(async (scope: Scope) => {
            const trx = await scope.session;
            const backend = await backendId(trx);
            await trx.commit();
            return backend;
          })();
          await killBackend(admin, id); // the pool's only connection, idle
          await insert(`row ${i}`);
        }
        expect(await countRows(admin, table)).toBe(10);
        for (const error of failures) expect(isConnectionError(error)).toBe(true);
        expect(poolStats(small.knex)).toMatchObject({ used: 0, pending: 0 });
      } finally {
        await small.destroy();
      }
    },
  );
});

describe('retryTransaction in a Koa app', () => {
  onServer('retries the middleware with session: (ctx) => ctx.db', async () => {
    const app = new Koa();
    app.use(db);
    const backends: number[] = [];
    app.use(
      retryTransaction(
        async (ctx: Koa.Context) => {
          const trx = await ctx.db.session;
          const id = await backendId(trx);
          backends.push(id);
          await trx(table).insert({ name: 'koa' });
          if (backends.length === 1) await killBackend(admin, id);
          await trx.commit();
          ctx.status = 201;
        },
        { session: (ctx) => ctx.db, ...noWait },
      ),
    );
    await supertest(app.callback()).post('/').expect(201);
    expect(backends).toHaveLength(2);
    expect(await countRows(admin, table)).toBe(1);
    expect(poolStats(db.knex).used).toBe(0);
  });
});

describe('retryTransaction never duplicates committed work', () => {
  // The seed's README "Caution!": a retried function that committed one transaction and then
  // failed would add `something` twice. Here it must raise instead.
  it('refuses to retry an attempt that already committed, with the error as cause', async () => {
    let calls = 0;
    const events: RetryEvent[] = [];
    const method = db.wrap(
      retryTransaction(
        async (scope: Scope) => {
          calls++;
          await scope.getSession(async (trx) => trx(table).insert({ name: 'something' }));
          const trx = await scope.session;
          if (server) await killBackend(admin, await backendId(trx));
          else throw connectionLost();
          await trx(table).insert({ name: 'something else' });
          await trx.commit();
        },
        { session: (scope) => scope, total: 3, onRetry: (e) => events.push(e), ...noWait },
      ),
    );
    const error = await method().catch((e: unknown) => e);
    expect(isKnexScopeError(error) && error.code).toBe('ERR_UNSAFE_RETRY');
    expect(isConnectionError((error as Error).cause)).toBe(true);
    expect(calls).toBe(1);
    expect(events.map((e) => e.decision)).toEqual(['unsafe-replay']);
    expect(await countRows(admin, table)).toBe(1); // `something` once, not twice
    expect(poolStats(db.knex).used).toBe(0);
  });

  it('sees a commit made inside the attempt, even without a session option', async () => {
    const method = db.wrap(
      retryTransaction(
        async (scope: Scope) => {
          const trx = await scope.session;
          await trx(table).insert({ name: 'something' });
          await trx.commit();
          throw connectionLost();
        },
        { ...noWait },
      ),
    );
    await expect(method()).rejects.toMatchObject({ code: 'ERR_UNSAFE_RETRY' });
    expect(await countRows(admin, table)).toBe(1);
  });

  it('sees what a nested retryTransaction committed inside the attempt', async () => {
    let calls = 0;
    const insertOne = retryTransaction(async (scope: Scope) => {
      await scope.getSession(async (trx) => trx(table).insert({ name: 'inner' }));
    });
    const outer = db.wrap(
      retryTransaction(
        async (scope: Scope) => {
          calls++;
          await insertOne(scope);
          throw connectionLost();
        },
        { session: (scope) => scope, ...noWait },
      ),
    );
    await expect(outer()).rejects.toMatchObject({ code: 'ERR_UNSAFE_RETRY' });
    expect(calls).toBe(1);
    expect(await countRows(admin, table)).toBe(1);
  });

  it('keeps watching an attempt while a concurrent attempt ends', async () => {
    let finishA: () => void = () => {};
    const aDone = new Promise<void>((resolve) => {
      finishA = resolve;
    });
    let callsB = 0;
    const a = db.wrap(retryTransaction(async () => 'a', noWait));
    const b = db.wrap(
      retryTransaction(
        async (scope: Scope) => {
          callsB++;
          await aDone; // A's attempt has ended: B's commit below must still count
          await scope.getSession(async (trx) => trx(table).insert({ name: 'b' }));
          throw connectionLost();
        },
        { session: (scope) => scope, ...noWait },
      ),
    );
    const pendingB = b().catch((e: unknown) => e);
    await expect(a()).resolves.toBe('a');
    finishA();
    expect(await pendingB).toMatchObject({ code: 'ERR_UNSAFE_RETRY' });
    expect(callsB).toBe(1);
    expect(await countRows(admin, table)).toBe(1);
  });

  it('sees a commit of a later attempt after an earlier attempt failed', async () => {
    let calls = 0;
    const method = db.wrap(
      retryTransaction(
        async (scope: Scope) => {
          calls++;
          if (calls === 1) throw connectionLost();
          await scope.getSession(async (trx) => trx(table).insert({ name: `attempt ${calls}` }));
          throw connectionLost();
        },
        { session: (scope) => scope, total: 3, ...noWait },
      ),
    );
    await expect(method()).rejects.toMatchObject({ code: 'ERR_UNSAFE_RETRY' });
    expect(calls).toBe(2);
    expect(await admin(table).pluck('name')).toEqual(['attempt 2']);
  });

  it('allowReplay opts in: the committed work is done again', async () => {
    let calls = 0;
    const method = db.wrap(
      retryTransaction(
        async (scope: Scope) => {
          calls++;
          await scope.getSession(async (trx) => trx(table).insert({ name: 'idempotent' }));
          if (calls === 1) throw connectionLost();
        },
        { session: (scope) => scope, allowReplay: true, ...noWait },
      ),
    );
    await method();
    expect(calls).toBe(2);
    expect(await countRows(admin, table)).toBe(2);
  });

  it('an attempt that committed nothing is retried and its open work rolled back', async () => {
    let calls = 0;
    const method = db.wrap(
      retryTransaction(
        async (scope: Scope) => {
          calls++;
          const trx = await scope.session;
          await trx(table).insert({ name: `attempt ${calls}` });
          if (calls === 1) throw connectionLost();
          await trx.commit();
        },
        { session: (scope) => scope, ...noWait },
      ),
    );
    await method();
    expect(await admin(table).pluck('name')).toEqual(['attempt 2']);
  });
});

describe('retryTransaction when the connection dies during COMMIT', () => {
  function insertAndCommit(when: 'before' | 'after', calls: { n: number }) {
    return db.wrap(
      retryTransaction(
        async (scope: Scope) => {
          calls.n++;
          const trx = await scope.session;
          await trx(table).insert({ name: `attempt ${calls.n}` });
          if (calls.n === 1) await cutAtCommit(trx, when);
          await trx.commit();
          return `done by attempt ${calls.n}`;
        },
        { session: (scope) => scope, total: 3, ...noWait },
      ),
    );
  }

  onPostgres('committed on the server: returns the attempt’s value, no retry', async () => {
    const calls = { n: 0 };
    await expect(insertAndCommit('after', calls)()).resolves.toBe('done by attempt 1');
    expect(calls.n).toBe(1);
    expect(await admin(table).pluck('name')).toEqual(['attempt 1']);
    expect(poolStats(db.knex).used).toBe(0);
  });

  onPostgres('a read-only attempt has no transaction id and is simply retried', async () => {
    let calls = 0;
    const count = db.wrap(
      retryTransaction(
        async (scope: Scope) => {
          calls++;
          const trx = await scope.session;
          const n = await trx(table).count({ n: '*' });
          if (calls === 1) await cutAtCommit(trx, 'after');
          await trx.commit();
          return Number(n[0]?.n);
        },
        { session: (scope) => scope, ...noWait },
      ),
    );
    await expect(count()).resolves.toBe(0);
    expect(calls).toBe(2);
  });

  onPostgres('when PostgreSQL cannot be asked: CommitOutcomeUnknownError', async () => {
    // A role that may no longer log in once the transaction is open: the connection that would
    // ask pg's txid_status is refused, so the outcome stays unknown.
    const role = `knex_scope_outcome_${process.pid}`;
    await admin.raw(`drop role if exists ${role}`);
    await admin.raw(`create role ${role} login`);
    await admin.raw(`grant all on ${table} to ${role}`);
    await admin.raw(`grant all on sequence ${table}_id_seq to ${role}`);
    const url = new URL(testUrl());
    url.username = role;
    const limited = withDb(url.toString());
    const events: RetryEvent[] = [];
    try {
      const insert = limited.wrap(
        retryTransaction(
          async (scope: Scope) => {
            const trx = await scope.session;
            await trx(table).insert({ name: 'maybe' });
            await admin.raw(`alter role ${role} nologin`);
            await cutAtCommit(trx, 'after');
            await trx.commit();
          },
          { session: (scope) => scope, onRetry: (e) => events.push(e), ...noWait },
        ),
      );
      const error = await insert().catch((e: unknown) => e);
      expect(isKnexScopeError(error) && error.code).toBe('ERR_COMMIT_OUTCOME_UNKNOWN');
      expect(isConnectionError((error as Error).cause)).toBe(true);
      expect(events.map((e) => e.decision)).toEqual(['outcome-unknown']);
      expect(await countRows(admin, table)).toBe(1); // it had in fact committed
    } finally {
      await limited.destroy();
      await admin.raw(`drop owned by ${role}`);
      await admin.raw(`drop role ${role}`);
    }
  });

  onMariadb('MariaDB cannot be asked: CommitOutcomeUnknownError, never a blind retry', async () => {
    const calls = { n: 0 };
    const error = await insertAndCommit('after', calls)().catch((e: unknown) => e);
    expect(isKnexScopeError(error) && error.code).toBe('ERR_COMMIT_OUTCOME_UNKNOWN');
    expect(isConnectionError((error as Error).cause)).toBe(true);
    expect(calls.n).toBe(1);
    expect(await countRows(admin, table)).toBe(1); // it had in fact committed
    expect(poolStats(db.knex).used).toBe(0);
  });

  onServer('a COMMIT the driver refused to send is known not applied, and retried', async () => {
    const calls = { n: 0 };
    await expect(insertAndCommit('before', calls)()).resolves.toBe('done by attempt 2');
    expect(await admin(table).pluck('name')).toEqual(['attempt 2']);
  });

  onPostgres(
    'COMMIT delivered but rejected by the server, reply lost: aborted, retried',
    async () => {
      const parents = `${table}_parents`;
      const children = `${table}_children`;
      await admin.schema.createTable(parents, (t) => t.integer('id').primary());
      await admin.raw(
        `create table ${children} (parent_id integer references ${parents} (id) deferrable initially deferred)`,
      );
      try {
        let calls = 0;
        const insert = db.wrap(
          retryTransaction(
            async (scope: Scope) => {
              calls++;
              const trx = await scope.session;
              await trx(table).insert({ name: `attempt ${calls}` });
              if (calls === 1) {
                await trx(children).insert({ parent_id: 404 }); // fails only at COMMIT
                await cutAtCommit(trx, 'after');
              }
              await trx.commit();
            },
            { session: (scope) => scope, ...noWait },
          ),
        );
        await insert();
        expect(calls).toBe(2);
        expect(await admin(table).pluck('name')).toEqual(['attempt 2']);
        expect(await countRows(admin, children)).toBe(0);
      } finally {
        await admin.schema.dropTableIfExists(children);
        await admin.schema.dropTableIfExists(parents);
      }
    },
  );

  onServer(
    'outside retryTransaction a cut COMMIT just rejects with the connection error',
    async () => {
      const error = await db
        .wrap(async (scope: Scope) => {
          const trx = await scope.session;
          await trx(table).insert({ name: 'tea' });
          await cutAtCommit(trx, 'before');
          await trx.commit();
        })()
        .catch((e: unknown) => e);
      expect(isConnectionError(error)).toBe(true);
      expect(await countRows(admin, table)).toBe(0);
    },
  );
});

describe('retryTransaction stops when the request is gone', () => {
  onServer('does not retry once the client disconnected', async () => {
    const app = express();
    app.use(db);
    let calls = 0;
    const events: RetryEvent[] = [];
    let abortClient: () => void = () => {};
    const finished = new Promise<void>((resolve) => {
      app.get(
        '/slow',
        retryTransaction(
          async (req: express.Request) => {
            calls++;
            const trx = await req.db.knex.transaction();
            try {
              await killBackend(admin, await backendId(trx));
              abortClient();
              await eventually(() => req.db.ended);
              await trx(table).insert({ name: 'tea' });
            } finally {
              if (!trx.isCompleted()) await trx.rollback().catch(() => {});
              resolve();
            }
          },
          { session: (req) => req.db, total: 3, onRetry: (e) => events.push(e), ...noWait },
        ),
      );
    });
    const listening = await listen(app);
    try {
      const req = request(`${listening.url}/slow`);
      abortClient = () => req.destroy();
      req.on('error', () => {});
      req.end();
      await finished;
      await eventually(() => events.length > 0);
      expect(calls).toBe(1);
      expect(events.map((e) => e.decision)).toEqual(['aborted']);
      expect(await countRows(admin, table)).toBe(0);
    } finally {
      await listening.close();
    }
  });
});

describe('the PostgreSQL transaction id a lost COMMIT is looked up by', () => {
  onPostgres('names its cluster in every session, whatever the session TimeZone', async () => {
    const capture = (timeZone: string) =>
      admin.transaction(async (trx) => {
        await trx.raw(`set local timezone = '${timeZone}'`);
        return (await captureTransactionId(trx)).id;
      });
    const { rows } = await admin.raw(
      'select (pg_control_system()).system_identifier::text as system',
    );
    const system = (rows as { system: string }[])[0]?.system;
    // The first capture reads the identifier; the next ones are told the server is the same.
    expect((await capture('UTC')).system).toBe(system);
    expect((await capture('Asia/Tokyo')).system).toBe(system);
    expect((await capture('America/New_York')).system).toBe(system);
  });
});
