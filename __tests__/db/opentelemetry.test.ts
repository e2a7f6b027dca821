import type { Socket } from 'node:net';
import { context, SpanKind, SpanStatusCode } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { MeterProvider, MetricReader, type ResourceMetrics } from '@opentelemetry/sdk-metrics';
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  type ReadableSpan,
  SimpleSpanProcessor,
} from '@opentelemetry/sdk-trace-base';
import express from 'express';
import type { Knex } from 'knex';
import { instrumentKnexScope, type KnexScopeInstrumentation } from 'knex-scope/opentelemetry';
import supertest from 'supertest';
import { type Db, retryTransaction, type Scope, SessionLimitError, withDb } from '../../lib';
import {
  backendId,
  countRows,
  createItemsTable,
  dialect,
  killBackend,
  openKnex,
  testConfig,
  testUrl,
} from '../helpers/database';

const onPostgres = dialect === 'postgres' ? it : it.skip;

const system = { sqlite: 'sqlite', postgres: 'postgresql', mariadb: 'mysql' }[dialect];
const namespace = dialect === 'sqlite' ? testUrl() : new URL(testUrl()).pathname.slice(1);

/** Collects on demand, as a pull exporter would. */
class TestReader extends MetricReader {
  protected override async onForceFlush(): Promise<void> {}
  protected override async onShutdown(): Promise<void> {}
}

const contextManager = new AsyncLocalStorageContextManager();
const exporter = new InMemorySpanExporter();
const tracerProvider = new BasicTracerProvider({
  spanProcessors: [new SimpleSpanProcessor(exporter)],
});
const tracer = tracerProvider.getTracer('test');
let reader: TestReader;
let meterProvider: MeterProvider;
let instrumentation: KnexScopeInstrumentation;
let admin: Knex;
let table: string;
let db: Db;

beforeAll(async () => {
  context.setGlobalContextManager(contextManager.enable());
  admin = openKnex();
  table = await createItemsTable(admin);
});

beforeEach(async () => {
  await admin(table).delete();
  exporter.reset();
  reader = new TestReader();
  meterProvider = new MeterProvider({ readers: [reader] });
  instrumentation = instrumentKnexScope({ tracerProvider, meterProvider });
  db = withDb(testConfig(), { onForgotten: false });
});

afterEach(async () => {
  instrumentation.disable();
  await db.destroy();
  await meterProvider.shutdown();
});

afterAll(async () => {
  await admin.schema.dropTableIfExists(table);
  await admin.destroy();
  context.disable();
});

function spans(name?: string | RegExp): ReadableSpan[] {
  return exporter
    .getFinishedSpans()
    .filter(
      (span) =>
        name === undefined ||
        (typeof name === 'string' ? span.name === name : name.test(span.name)),
    );
}

function childrenOf(parent: ReadableSpan): ReadableSpan[] {
  return exporter
    .getFinishedSpans()
    .filter((span) => span.parentSpanContext?.spanId === parent.spanContext().spanId);
}

/** Every data point of metric `name`: its attributes and its value (a histogram's count). */
async function points(name: string): Promise<{ attributes: object; value: number }[]> {
  const { resourceMetrics } = (await reader.collect()) as { resourceMetrics: ResourceMetrics };
  const metric = resourceMetrics.scopeMetrics
    .filter((scope) => scope.scope.name === 'knex-scope')
    .flatMap((scope) => scope.metrics)
    .find((m) => m.descriptor.name === name);
  return (metric?.dataPoints ?? []).map((point) => ({
    attributes: point.attributes,
    value: typeof point.value === 'number' ? point.value : (point.value as { count: number }).count,
  }));
}

describe('instrumentKnexScope', () => {
  it('makes a CLIENT span per session, under the span that asked for it, with the database conventions', async () => {
    await tracer.startActiveSpan('request', async (request) => {
      await db.wrap(async (scope) => {
        const trx = await scope.session;
        await trx(table).insert({ name: 'tea' });
        await trx.commit();
        await scope.getSession((read) => read(table).select());
      })();
      request.end();
    });
    const [request] = spans('request') as [ReadableSpan];
    const sessions = spans(`transaction ${namespace}`);
    expect(sessions).toHaveLength(2);
    for (const session of sessions) {
      expect(session.kind).toBe(SpanKind.CLIENT);
      expect(session.parentSpanContext?.spanId).toBe(request.spanContext().spanId);
      expect(session.status.code).toBe(SpanStatusCode.UNSET);
    }
    expect(sessions.map((span) => span.attributes)).toEqual([
      expect.objectContaining({
        'db.system.name': system,
        'db.namespace': namespace,
        'knex_scope.session.kind': 'lazy',
        'knex_scope.session.outcome': 'committed',
        'knex_scope.session.statements': 1,
      }),
      expect.objectContaining({
        'knex_scope.session.kind': 'callback',
        'knex_scope.session.outcome': 'committed',
      }),
    ]);
    if (dialect !== 'sqlite') {
      expect(sessions[0]?.attributes).toMatchObject({
        'server.address': '127.0.0.1',
        'server.port': dialect === 'postgres' ? 5432 : 3306,
      });
    }
    expect(await points('knex_scope.session.duration')).toEqual([
      {
        attributes: {
          'db.system.name': system,
          'db.namespace': namespace,
          'knex_scope.session.kind': 'lazy',
          'knex_scope.session.outcome': 'committed',
        },
        value: 1,
      },
      {
        attributes: expect.objectContaining({ 'knex_scope.session.kind': 'callback' }),
        value: 1,
      },
    ]);
    expect(await countRows(admin, table)).toBe(1);
  });

  it('marks a failed session with error.type and an error status', async () => {
    const small = withDb(testConfig({ min: 0, max: 1 }), { onForgotten: false });
    const error = await small
      .wrap(async (scope) => {
        await scope.getSession();
        await scope.getSession();
      })()
      .catch((e: unknown) => e);
    await small.destroy();
    expect(error).toBeInstanceOf(SessionLimitError);
    // The refused session's span ends at once, the open one's when the scope ends.
    const [refused, open] = spans(/^transaction /) as [ReadableSpan, ReadableSpan];
    expect(open.attributes['knex_scope.session.outcome']).toBe('rolled back at scope end');
    expect(refused.attributes).toMatchObject({
      'knex_scope.session.outcome': 'failed',
      'error.type': 'ERR_SESSION_LIMIT',
    });
    expect(refused.status).toEqual({
      code: SpanStatusCode.ERROR,
      message: (error as Error).message,
    });
    expect(refused.events.map((event) => event.name)).toEqual(['exception']);
  });

  it('makes one span per retried operation, with each decision as an event and the attempts under it', async () => {
    let calls = 0;
    const insert = db.wrap(
      retryTransaction(
        async function insertTea(scope: Scope) {
          calls++;
          const trx = await scope.session;
          await trx(table).insert({ name: 'tea' });
          if (calls === 1) {
            if (dialect === 'sqlite')
              throw Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' });
            await killBackend(admin, await backendId(trx));
          }
          await trx(table).insert({ name: 'tea-2' });
          await trx.commit();
        },
        { session: (scope) => scope, sleep: async () => {} },
      ),
    );
    await insert();
    const [operation] = spans('retryTransaction insertTea') as [ReadableSpan];
    expect(operation.attributes).toMatchObject({ 'knex_scope.retry.attempts': 2 });
    expect(operation.status.code).toBe(SpanStatusCode.UNSET);
    expect(operation.events.map((event) => [event.name, event.attributes])).toEqual([
      [
        'knex_scope.retry.decision',
        expect.objectContaining({
          'knex_scope.retry.decision': 'retry',
          'knex_scope.retry.attempt': 1,
        }),
      ],
    ]);
    const attempts = childrenOf(operation);
    expect(attempts.map((span) => span.attributes['knex_scope.session.outcome'])).toEqual([
      'rolled back',
      'committed',
    ]);
    expect(await points('knex_scope.retry.decisions')).toEqual([
      { attributes: { 'knex_scope.retry.decision': 'retry' }, value: 1 },
    ]);
    expect(await countRows(admin, table)).toBe(2);
  });

  it('ends the operation span with the error when the wrapper gives up', async () => {
    const run = retryTransaction(
      async function alwaysFails() {
        throw Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' });
      },
      { total: 2, sleep: async () => {} },
    );
    await expect(run()).rejects.toMatchObject({ code: 'ECONNRESET' });
    const [operation] = spans('retryTransaction alwaysFails') as [ReadableSpan];
    expect(
      operation.events.map((event) => event.attributes?.['knex_scope.retry.decision']),
    ).toEqual(['retry', 'retry', 'give-up']);
    expect(operation.attributes['error.type']).toBe('ECONNRESET');
    expect(operation.status.code).toBe(SpanStatusCode.ERROR);
    expect(await points('knex_scope.retry.decisions')).toEqual([
      { attributes: { 'knex_scope.retry.decision': 'retry' }, value: 2 },
      { attributes: { 'knex_scope.retry.decision': 'give-up' }, value: 1 },
    ]);
  });

  it('counts forgotten sessions by kind, route and whether they wrote', async () => {
    const forgetful = withDb(testConfig(), { onForgotten: false });
    const app = express();
    app.use(forgetful);
    app.post('/orders', async (req, res) => {
      const trx = await req.db.session;
      await trx(table).insert({ name: 'lost' });
      res.status(201).end();
    });
    await supertest(app).post('/orders').expect(201);
    await supertest(app).post('/orders').expect(201);
    await forgetful.destroy();
    expect(await points('knex_scope.session.forgotten')).toEqual([
      {
        attributes: {
          'db.system.name': system,
          'knex_scope.session.kind': 'lazy',
          'knex_scope.session.wrote': true,
          'http.request.method': 'POST',
          'http.route': '/orders',
        },
        value: 2,
      },
    ]);
    expect(
      spans(/^transaction /).map((span) => span.attributes['knex_scope.session.outcome']),
    ).toEqual(['rolled back at scope end', 'rolled back at scope end']);
    expect(await countRows(admin, table)).toBe(0);
  });

  onPostgres('counts a COMMIT whose reply was lost by what the lookup found', async () => {
    const run = db.wrap(
      retryTransaction(
        async (scope: Scope) => {
          const trx = await scope.session;
          await trx(table).insert({ name: 'tea' });
          const socket = await socketOf(trx);
          (trx.client as unknown as NodeJS.EventEmitter).on('query', (query: { sql: string }) => {
            if (query.sql === 'COMMIT;') queueMicrotask(() => socket.destroy());
          });
          await trx.commit();
        },
        { session: (scope) => scope, sleep: async () => {} },
      ),
    );
    await run();
    expect(await points('knex_scope.commit.resolutions')).toEqual([
      {
        attributes: { 'db.system.name': 'postgresql', 'knex_scope.commit.resolution': 'committed' },
        value: 1,
      },
    ]);
    expect(await countRows(admin, table)).toBe(1);
  });

  it('stops making spans and metrics once disabled', async () => {
    instrumentation.disable();
    instrumentation.disable();
    await db.wrap(async (scope) => {
      const trx = await scope.session;
      await trx.commit();
    })();
    expect(spans()).toEqual([]);
    expect(await points('knex_scope.session.duration')).toEqual([]);
  });
});

/** The socket under a transaction's pg connection. */
async function socketOf(trx: Knex.Transaction): Promise<Socket> {
  const client = trx.client as unknown as {
    acquireConnection(): Promise<{ connection: { stream: Socket } }>;
  };
  return (await client.acquireConnection()).connection.stream;
}
