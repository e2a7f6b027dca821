import { AsyncLocalStorage } from 'node:async_hooks';
import diagnostics from 'node:diagnostics_channel';
import type { Socket } from 'node:net';
import express from 'express';
import Koa from 'koa';
import supertest from 'supertest';
import '../../lib/adapters/koa';
import type { Knex } from 'knex';
import {
  type Db,
  type ForgottenSession,
  isConnectionError,
  type RetryAttemptMessage,
  type RetryEvent,
  retryTransaction,
  type Scope,
  SessionLimitError,
  type SessionMessage,
  withDb,
  withLegacySession,
} from '../../lib';
import {
  backendId,
  countRows,
  createItemsTable,
  dialect,
  killBackend,
  openKnex,
  poolStats,
  testConfig,
  testUrl,
} from '../helpers/database';

const onPostgres = dialect === 'postgres' ? it : it.skip;
const onMariadb = dialect === 'mariadb' ? it : it.skip;

const system = { sqlite: 'sqlite', postgres: 'postgresql', mariadb: 'mysql' }[dialect];
/** The database name (SQLite: the file) this worker's sessions run on. */
const namespace = dialect === 'sqlite' ? testUrl() : new URL(testUrl()).pathname.slice(1);

type TraceEvent = 'start' | 'end' | 'asyncStart' | 'asyncEnd' | 'error';
const traceEvents: TraceEvent[] = ['start', 'end', 'asyncStart', 'asyncEnd', 'error'];

/**
 * Subscribes to a tracing channel by its public name and records, per context object, the events
 * in order. `onStart` may decorate the context (set runInContext) as a subscriber would.
 */
function recordTrace<M extends object>(name: string, onStart?: (message: M) => void) {
  const channel = diagnostics.tracingChannel(name);
  const traces = new Map<M, TraceEvent[]>();
  const handlers = Object.fromEntries(
    traceEvents.map((event) => [
      event,
      (message: unknown) => {
        const m = message as M;
        if (event === 'start') onStart?.(m);
        const events = traces.get(m) ?? [];
        events.push(event);
        traces.set(m, events);
      },
    ]),
  ) as unknown as Parameters<typeof channel.subscribe>[0];
  channel.subscribe(handlers);
  return {
    traces,
    messages: () => Array.from(traces.keys()),
    stop: () => channel.unsubscribe(handlers),
  };
}

function recordChannel<M>(name: string) {
  const messages: M[] = [];
  const listener = (message: unknown) => {
    messages.push(message as M);
  };
  diagnostics.subscribe(name, listener);
  return { messages, stop: () => diagnostics.unsubscribe(name, listener) };
}

/** What a lost connection looks like to the caller, for SQLite, where none can be lost. */
function connectionLost(): Error {
  return Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' });
}

let admin: Knex;
let table: string;
let db: Db;
let stops: (() => void)[] = [];

function session() {
  const recorder = recordTrace<SessionMessage>('knex-scope:session');
  stops.push(recorder.stop);
  return recorder;
}

beforeAll(async () => {
  admin = openKnex();
  table = await createItemsTable(admin);
});

beforeEach(async () => {
  await admin(table).delete();
  db = withDb(testConfig(), { onForgotten: false });
});

afterEach(async () => {
  for (const stop of stops) stop();
  stops = [];
  await db.destroy();
});

afterAll(async () => {
  await admin.schema.dropTableIfExists(table);
  await admin.destroy();
});

describe('knex-scope:session', () => {
  it('traces a session from being asked for to its COMMIT, with its database and what it ran', async () => {
    const { traces, messages } = session();
    await db.wrap(async (scope) => {
      const trx = await scope.session;
      await trx(table).select();
      await trx(table).insert({ name: 'tea' });
      await trx.commit();
    })();
    expect(messages()).toHaveLength(1);
    const [message] = messages() as [SessionMessage];
    expect(traces.get(message)).toEqual(['start', 'end', 'asyncStart', 'asyncEnd']);
    expect(message).toMatchObject({
      kind: 'lazy',
      outcome: 'committed',
      statements: 2,
      wrote: true,
      system,
      namespace,
      error: undefined,
    });
    if (dialect !== 'sqlite') {
      expect(message.serverAddress).toBe('127.0.0.1');
      expect(message.serverPort).toBe(dialect === 'postgres' ? 5432 : 3306);
    }
    expect(await countRows(admin, table)).toBe(1);
  });

  it('names each kind of session and how it ended', async () => {
    const { messages } = session();
    await db.wrap(async (scope) => {
      const explicit = await scope.getSession();
      await explicit(table).insert({ name: 'rolled back' });
      await explicit.rollback();
      await scope.getSession((trx) => trx(table).insert({ name: 'committed' }));
      const lazy = await scope.session;
      await lazy(table).select();
    })();
    const legacy = withLegacySession(testConfig(), { onForgotten: false });
    const app = express();
    app.use(legacy);
    app.get('/eager', async (req, res) => {
      await req.dbSession(table).select();
      res.end();
    });
    await supertest(app).get('/eager').expect(200);
    await legacy.destroy();
    expect(
      messages().map(({ kind, outcome, statements, wrote }) => ({
        kind,
        outcome,
        statements,
        wrote,
      })),
    ).toEqual([
      { kind: 'explicit', outcome: 'rolled back', statements: 1, wrote: true },
      { kind: 'callback', outcome: 'committed', statements: 1, wrote: true },
      { kind: 'lazy', outcome: 'rolled back at scope end', statements: 1, wrote: false },
      { kind: 'eager', outcome: 'rolled back at scope end', statements: 1, wrote: false },
    ]);
    expect(await countRows(admin, table)).toBe(1);
  });

  it('reports a session whose BEGIN failed, with the error, before asyncStart', async () => {
    const unreachable =
      dialect === 'sqlite'
        ? {
            client: 'better-sqlite3',
            connection: { filename: '/nonexistent/dir/db.sqlite' },
            useNullAsDefault: true,
          }
        : {
            client: dialect === 'postgres' ? 'pg' : 'mysql2',
            connection: { host: '127.0.0.1', port: 9, database: 'test' },
            pool: { min: 0, max: 1 },
            acquireConnectionTimeout: 2_000,
          };
    const broken = withDb(unreachable, { onForgotten: false });
    const { traces, messages } = session();
    const error = await broken
      .wrap(async (scope) => scope.session)()
      .catch((e: unknown) => e);
    await broken.destroy();
    expect(error).toMatchObject({ message: expect.any(String) });
    const [message] = messages() as [SessionMessage];
    expect(traces.get(message)).toEqual(['start', 'end', 'error', 'asyncStart', 'asyncEnd']);
    expect(message.outcome).toBe('failed');
    expect(message.error).toBe(error);
  });

  it('reports a session the scope refused with SessionLimitError', async () => {
    const small = withDb(testConfig({ min: 0, max: 1 }), { onForgotten: false });
    const { traces, messages } = session();
    const error = await small
      .wrap(async (scope) => {
        await scope.getSession();
        await scope.getSession();
      })()
      .catch((e: unknown) => e);
    await small.destroy();
    expect(error).toBeInstanceOf(SessionLimitError);
    const refused = messages()[1] as SessionMessage;
    expect(traces.get(refused)).toEqual(['start', 'end', 'error', 'asyncStart', 'asyncEnd']);
    expect(refused).toMatchObject({ kind: 'explicit', outcome: 'failed', statements: 0 });
    expect(refused.error).toBe(error);
    expect(messages()[0]?.outcome).toBe('rolled back at scope end');
  });

  onPostgres(
    'notes that the COMMIT whose reply was lost was looked up and found applied',
    async () => {
      const { messages } = session();
      const run = db.wrap(
        retryTransaction(
          async (scope: Scope) => {
            const trx = await scope.session;
            await trx(table).insert({ name: 'tea' });
            await cutAfterCommit(trx);
            await trx.commit();
          },
          { session: (scope) => scope, sleep: async () => {} },
        ),
      );
      await run();
      const [message] = messages() as [SessionMessage];
      expect(message).toMatchObject({ outcome: 'committed', commitResolution: 'committed' });
      expect(await countRows(admin, table)).toBe(1);
    },
  );

  onMariadb(
    'notes a COMMIT whose outcome could not be known, and the connection error',
    async () => {
      const { traces, messages } = session();
      const run = db.wrap(
        retryTransaction(
          async (scope: Scope) => {
            const trx = await scope.session;
            await trx(table).insert({ name: 'tea' });
            await cutAfterCommit(trx);
            await trx.commit();
          },
          { session: (scope) => scope, sleep: async () => {} },
        ),
      );
      await expect(run()).rejects.toMatchObject({ code: 'ERR_COMMIT_OUTCOME_UNKNOWN' });
      const [message] = messages() as [SessionMessage];
      expect(traces.get(message)).toEqual(['start', 'end', 'error', 'asyncStart', 'asyncEnd']);
      expect(message).toMatchObject({ outcome: 'failed', commitResolution: 'unknown' });
      expect(isConnectionError(message.error)).toBe(true);
    },
  );

  it("runs BEGIN, the statements and COMMIT in the subscriber's context", async () => {
    const context = new AsyncLocalStorage<string>();
    const seen: (string | undefined)[] = [];
    const proto = Object.getPrototypeOf(db.knex.client) as {
      _query(this: unknown, ...args: unknown[]): unknown;
    };
    const driverQuery = proto._query;
    proto._query = function (...args: unknown[]) {
      seen.push(context.getStore());
      return driverQuery.apply(this, args);
    };
    try {
      const recorder = recordTrace<SessionMessage>('knex-scope:session', (message) => {
        message.runInContext = (fn, thisArg, ...args) =>
          context.run('session', () => fn.apply(thisArg, args));
      });
      stops.push(recorder.stop);
      await db.wrap(async (scope) => {
        const trx = await scope.session;
        await trx(table).insert({ name: 'tea' });
        await trx.raw('select 1');
        await trx.commit();
      })();
    } finally {
      proto._query = driverQuery;
    }
    // BEGIN (and SET TRANSACTION where knex sends it), the INSERT, the SELECT and COMMIT.
    expect(seen.length).toBeGreaterThanOrEqual(4);
    expect(seen.every((store) => store === 'session')).toBe(true);
  });

  it('makes nothing for a session that began before anyone subscribed', async () => {
    await db.wrap(async (scope) => {
      const early = await scope.session;
      const { messages } = session();
      await early(table).insert({ name: 'tea' });
      await early.commit();
      expect(messages()).toHaveLength(0);
      const late = await scope.session;
      await late.commit();
      expect(messages()).toHaveLength(1);
    })();
  });
});

describe('knex-scope:scope:forgotten and onForgotten', () => {
  it('reports, with the Express route, each session the scope rolled back uncommitted', async () => {
    const reports: ForgottenSession[] = [];
    const channel = recordChannel<ForgottenSession>('knex-scope:scope:forgotten');
    stops.push(channel.stop);
    const forgetful = withDb(testConfig(), { onForgotten: (report) => reports.push(report) });
    const app = express();
    app.use(forgetful);
    const orders = express.Router();
    orders.post('/:id', async (req, res) => {
      const trx = await req.db.session;
      await trx(table).insert({ name: 'lost' });
      res.status(201).end();
    });
    orders.get('/', async (req, res) => {
      const trx = await req.db.getSession();
      res.json(await trx(table).select());
    });
    orders.put('/:id', async (req, res) => {
      const trx = await req.db.getSession();
      await trx(table).insert({ name: 'kept' });
      await trx.commit();
      res.end();
    });
    app.use('/orders', orders);
    await supertest(app).post('/orders/7').expect(201);
    await supertest(app).get('/orders').expect(200);
    await supertest(app).put('/orders/7').expect(200);
    expect(poolStats(forgetful.knex).used).toBe(0);
    await forgetful.destroy();
    const common = { aborted: false, system, namespace };
    expect(reports).toEqual([
      {
        kind: 'lazy',
        statements: 1,
        wrote: true,
        method: 'POST',
        route: '/orders/:id',
        status: 201,
        ...common,
      },
      {
        kind: 'explicit',
        statements: 1,
        wrote: false,
        method: 'GET',
        route: '/orders/',
        status: 200,
        ...common,
      },
    ]);
    expect(channel.messages).toEqual(reports);
    expect(await countRows(admin, table)).toBe(1);
  });

  it('reports the Koa method, and the route a router matched', async () => {
    const reports: ForgottenSession[] = [];
    const forgetful = withDb(testConfig(), { onForgotten: (report) => reports.push(report) });
    const app = new Koa();
    app.use(forgetful);
    app.use(async (ctx) => {
      // What @koa/router and koa-router set on a match.
      if (ctx.path === '/routed')
        (ctx as unknown as { _matchedRoute: string })._matchedRoute = '/routed';
      const trx = await ctx.db.getSession();
      await trx(table).insert({ name: 'lost' });
      ctx.body = 'ok';
    });
    await supertest(app.callback()).put('/routed').expect(200);
    await supertest(app.callback()).delete('/plain').expect(200);
    await forgetful.destroy();
    expect(
      reports.map(({ kind, method, route, status, wrote }) => ({
        kind,
        method,
        route,
        status,
        wrote,
      })),
    ).toEqual([
      { kind: 'explicit', method: 'PUT', route: '/routed', status: 200, wrote: true },
      { kind: 'explicit', method: 'DELETE', route: undefined, status: 200, wrote: true },
    ]);
    expect(await countRows(admin, table)).toBe(0);
  });

  it("'warn' emits one process warning per route and kind, only for lost writes", async () => {
    // Jest gives each test file a process object of its own, whose 'warning' event never fires.
    const emitWarning = jest.spyOn(process, 'emitWarning').mockImplementation(() => {});
    let calls: unknown[][] = [];
    const forgetful = withDb(testConfig(), { onForgotten: 'warn' });
    const app = express();
    app.use(forgetful);
    const route = `/warn-${table}`;
    app.post(route, async (req, res) => {
      const trx = await req.db.session;
      await trx(table).insert({ name: 'lost' });
      res.status(req.query.fail === undefined ? 200 : 500).end();
    });
    app.get(route, async (req, res) => {
      const trx = await req.db.session;
      await trx(table).select();
      res.end();
    });
    try {
      await supertest(app).post(route).expect(200);
      await supertest(app).post(route).expect(200);
      await supertest(app).post(`${route}?fail=1`).expect(500);
      await supertest(app).get(route).expect(200);
    } finally {
      calls = emitWarning.mock.calls;
      emitWarning.mockRestore();
      await forgetful.destroy();
    }
    expect(calls).toHaveLength(1);
    const [message, options] = calls[0] as [string, object];
    expect(options).toEqual({ type: 'KnexScopeWarning', code: 'KNEX_SCOPE_FORGOTTEN_SESSION' });
    expect(message).toContain(`POST ${route}: scope.session ran 1 statement, writes among them`);
    expect(await countRows(admin, table)).toBe(0);
  });

  it('throws an error of onForgotten on the next tick, after the rollbacks began', async () => {
    const failure = new Error('logger down');
    const thrown: unknown[] = [];
    const nextTick = jest.spyOn(process, 'nextTick').mockImplementation(((callback: () => void) => {
      try {
        callback();
      } catch (error) {
        thrown.push(error);
      }
    }) as never);
    const forgetful = withDb(testConfig(), {
      onForgotten: () => {
        throw failure;
      },
    });
    try {
      await forgetful.wrap(async (scope: Scope) => {
        const trx = await scope.session;
        await trx(table).insert({ name: 'lost' });
      })();
    } finally {
      nextTick.mockRestore();
    }
    expect(thrown).toEqual([failure]);
    expect(poolStats(forgetful.knex).used).toBe(0);
    await forgetful.destroy();
    expect(await countRows(admin, table)).toBe(0);
  });

  it('does not count statements, nor report, when nobody listens', async () => {
    const quiet = withDb(testConfig(), { onForgotten: false });
    const app = express();
    app.use(quiet);
    app.post('/quiet', async (req, res) => {
      const trx = await req.db.session;
      await trx(table).insert({ name: 'lost' });
      res.end();
    });
    await supertest(app).post('/quiet').expect(200);
    // A session opened before the first subscriber has no counts: it is left out.
    const seen: ForgottenSession[][] = [];
    await quiet.wrap(async (scope: Scope) => {
      const trx = await scope.session;
      const channel = recordChannel<ForgottenSession>('knex-scope:scope:forgotten');
      stops.push(channel.stop);
      seen.push(channel.messages);
      await trx(table).insert({ name: 'lost' });
    })();
    expect(seen).toEqual([[]]);
    await quiet.destroy();
    expect(await countRows(admin, table)).toBe(0);
  });
});

describe('knex-scope:retry and knex-scope:retry:decision', () => {
  it('traces each attempt and publishes exactly what onRetry receives', async () => {
    const attempts = recordTrace<RetryAttemptMessage>('knex-scope:retry');
    const decisions = recordChannel<RetryEvent>('knex-scope:retry:decision');
    stops.push(attempts.stop, decisions.stop);
    const events: RetryEvent[] = [];
    let calls = 0;
    const insert = db.wrap(
      retryTransaction(
        async function insertTea(scope: Scope) {
          calls++;
          const trx = await scope.session;
          await trx(table).insert({ name: 'tea' });
          if (calls === 1) {
            if (dialect === 'sqlite') throw connectionLost();
            await killBackend(admin, await backendId(trx));
          }
          await trx(table).insert({ name: 'tea-2' });
          await trx.commit();
          return calls;
        },
        {
          session: (scope) => scope,
          onRetry: (event) => events.push(event),
          sleep: async () => {},
        },
      ),
    );
    await expect(insert()).resolves.toBe(2);
    expect(decisions.messages).toHaveLength(1);
    expect(decisions.messages[0]).toBe(events[0]);
    const [first, second] = attempts.messages() as [RetryAttemptMessage, RetryAttemptMessage];
    expect(attempts.traces.get(first)).toEqual(['start', 'end', 'error', 'asyncStart', 'asyncEnd']);
    expect(attempts.traces.get(second)).toEqual(['start', 'end', 'asyncStart', 'asyncEnd']);
    expect(first).toMatchObject({ attempt: 1, decision: events[0] });
    expect(first.error).toBe(events[0]?.error);
    expect(isConnectionError(first.error)).toBe(true);
    expect(second).toMatchObject({ attempt: 2, result: 2, decision: undefined });
    expect(first.operation).toBe(second.operation);
    expect(first.operation.name).toBe('insertTea');
    expect(await countRows(admin, table)).toBe(2);
  });

  it('traces the retry cut short by the signal as an attempt ending in the aborted decision', async () => {
    const attempts = recordTrace<RetryAttemptMessage>('knex-scope:retry');
    const decisions = recordChannel<RetryEvent>('knex-scope:retry:decision');
    stops.push(attempts.stop, decisions.stop);
    const controller = new AbortController();
    const run = retryTransaction(
      async () => {
        throw connectionLost();
      },
      {
        signal: controller.signal,
        sleep: async () => controller.abort(),
      },
    );
    await expect(run()).rejects.toMatchObject({ code: 'ECONNRESET' });
    expect(decisions.messages.map((event) => event.decision)).toEqual(['retry', 'aborted']);
    const [first, cancelled] = attempts.messages() as [RetryAttemptMessage, RetryAttemptMessage];
    expect(attempts.traces.get(cancelled)).toEqual([
      'start',
      'end',
      'error',
      'asyncStart',
      'asyncEnd',
    ]);
    expect(first.decision).toBe(decisions.messages[0]);
    expect(cancelled).toMatchObject({ attempt: 2, decision: decisions.messages[1] });
  });

  it("runs each attempt in the subscriber's context", async () => {
    const context = new AsyncLocalStorage<number>();
    const attempts = recordTrace<RetryAttemptMessage>('knex-scope:retry', (message) => {
      message.runInContext = (fn, thisArg, ...args) =>
        context.run(message.attempt, () => fn.apply(thisArg, args));
    });
    stops.push(attempts.stop);
    const seen: (number | undefined)[] = [];
    const run = retryTransaction(
      async () => {
        await Promise.resolve();
        seen.push(context.getStore());
        if (seen.length === 1) throw connectionLost();
      },
      { sleep: async () => {} },
    );
    await run();
    expect(seen).toEqual([1, 2]);
  });
});

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

/** Cuts the transaction's TCP connection right after the COMMIT bytes are written. */
async function cutAfterCommit(trx: Knex.Transaction): Promise<void> {
  const socket = await socketOf(trx);
  const client = trx.client as unknown as NodeJS.EventEmitter;
  client.on('query', (query: { sql: string }) => {
    if (query.sql === 'COMMIT;') queueMicrotask(() => socket.destroy());
  });
}
