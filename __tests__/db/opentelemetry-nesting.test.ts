import { context } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import type { InstrumentationBase } from '@opentelemetry/instrumentation';
import { KnexInstrumentation } from '@opentelemetry/instrumentation-knex';
import { PgInstrumentation } from '@opentelemetry/instrumentation-pg';
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  type ReadableSpan,
  SimpleSpanProcessor,
} from '@opentelemetry/sdk-trace-base';
import type { Knex } from 'knex';
import { instrumentKnexScope, type KnexScopeInstrumentation } from 'knex-scope/opentelemetry';
import { type Db, withDb } from '../../lib';
import { countRows, createItemsTable, dialect, openKnex, testConfig } from '../helpers/database';

const onPostgres = dialect === 'postgres' ? it : it.skip;

const exporter = new InMemorySpanExporter();
const tracerProvider = new BasicTracerProvider({
  spanProcessors: [new SimpleSpanProcessor(exporter)],
});
const tracer = tracerProvider.getTracer('test');
const contextManager = new AsyncLocalStorageContextManager();

/**
 * Applies an instrumentation's patches to the modules as this test file loaded them. The
 * instrumentations patch through require-in-the-middle, which hooks Node's `Module.prototype.require`;
 * jest loads modules through its own registry and never calls it, so enabling an instrumentation
 * before the first `require('pg')` patches nothing under jest (in a plain Node process it does).
 * Each module definition's `patch` is what require-in-the-middle would have called.
 */
function patchUnderJest(
  instrumentation: InstrumentationBase,
  modules: Record<string, unknown>,
): () => void {
  instrumentation.setTracerProvider(tracerProvider);
  const undo: (() => void)[] = [];
  for (const definition of instrumentation.getModuleDefinitions()) {
    const version = () =>
      (require(`${definition.name}/package.json`) as { version: string }).version;
    const main = modules[definition.name];
    if (main !== undefined) {
      definition.patch?.(main, version());
      undo.push(() => definition.unpatch?.(main, version()));
    }
    for (const file of definition.files) {
      const loaded = modules[file.name];
      if (loaded === undefined) continue;
      file.patch(loaded, version());
      undo.push(() => file.unpatch(loaded, version()));
    }
  }
  return () => {
    for (const step of undo) step();
  };
}

const knexInstrumentation = new KnexInstrumentation({ enabled: false });
const pgInstrumentation = new PgInstrumentation({ enabled: false });
const unpatchKnex = patchUnderJest(knexInstrumentation as unknown as InstrumentationBase, {
  'knex/lib/client.js': require('knex/lib/client.js'),
  'knex/lib/execution/runner.js': require('knex/lib/execution/runner.js'),
});
if (dialect === 'postgres') {
  patchUnderJest(pgInstrumentation as unknown as InstrumentationBase, { pg: require('pg') });
}

let instrumentation: KnexScopeInstrumentation;
let admin: Knex;
let table: string;
let db: Db;

beforeAll(async () => {
  context.setGlobalContextManager(contextManager.enable());
  admin = openKnex();
  table = await createItemsTable(admin);
  instrumentation = instrumentKnexScope({ tracerProvider });
  db = withDb(testConfig(), { onForgotten: false });
});

beforeEach(() => exporter.reset());

afterAll(async () => {
  instrumentation.disable();
  await db.destroy();
  await admin.schema.dropTableIfExists(table);
  await admin.destroy();
  context.disable();
});

function childrenOf(parent: ReadableSpan): ReadableSpan[] {
  return exporter
    .getFinishedSpans()
    .filter((span) => span.parentSpanContext?.spanId === parent.spanContext().spanId);
}

async function insertAndCount(): Promise<ReadableSpan> {
  await tracer.startActiveSpan('request', async (request) => {
    await db.wrap(async (scope) => {
      const trx = await scope.session;
      await trx(table).insert({ name: 'tea' });
      await trx.raw(`select count(*) as n from ${table}`);
      await trx.commit();
    })();
    request.end();
  });
  const finished = exporter.getFinishedSpans();
  const session = finished.find((span) => span.name.startsWith('transaction '));
  const request = finished.find((span) => span.name === 'request');
  expect(session?.parentSpanContext?.spanId).toBe(request?.spanContext().spanId);
  return session as ReadableSpan;
}

describe('beside the instrumentations of knex and the drivers', () => {
  it("nests @opentelemetry/instrumentation-knex's query spans under the transaction they ran in", async () => {
    const session = await insertAndCount();
    const knexSpans = childrenOf(session).filter((span) => span.attributes['knex.version']);
    expect(knexSpans.map((span) => span.attributes['db.operation.name'])).toEqual([
      'insert',
      'raw',
    ]);
    expect(await countRows(admin, table)).toBeGreaterThan(0);
  });

  onPostgres(
    "nests @opentelemetry/instrumentation-pg's spans: BEGIN and COMMIT under the transaction, each statement under its knex span",
    async () => {
      const session = await insertAndCount();
      const pgUnderSession = childrenOf(session)
        .filter((span) => span.name.startsWith('pg.query'))
        .map((span) => span.attributes['db.query.text'] ?? span.attributes['db.statement']);
      expect(pgUnderSession).toEqual(expect.arrayContaining(['BEGIN;', 'COMMIT;']));
      const knexSpans = childrenOf(session).filter((span) => span.attributes['knex.version']);
      for (const knexSpan of knexSpans) {
        expect(childrenOf(knexSpan).map((span) => span.name)).toEqual([
          expect.stringMatching(/^pg\.query/),
        ]);
      }
    },
  );

  onPostgres('nests pg spans under the transaction without instrumentation-knex too', async () => {
    unpatchKnex();
    try {
      const session = await insertAndCount();
      const statements = childrenOf(session)
        .filter((span) => span.name.startsWith('pg.query'))
        .map((span) => String(span.attributes['db.query.text'] ?? span.attributes['db.statement']));
      expect(statements).toEqual([
        'BEGIN;',
        expect.stringMatching(/^insert into/),
        expect.stringMatching(/^select count/),
        'COMMIT;',
      ]);
    } finally {
      patchUnderJest(knexInstrumentation as unknown as InstrumentationBase, {
        'knex/lib/client.js': require('knex/lib/client.js'),
        'knex/lib/execution/runner.js': require('knex/lib/execution/runner.js'),
      });
    }
  });
});
