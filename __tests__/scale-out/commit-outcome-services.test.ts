// commitOutcome through PgBouncer (transaction pooling) and on a Galera node, on the scale-out
// services of scripts/services/ (skipped, with the command that starts them, when they are down).
import type { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import { knex as createKnex, type Knex } from 'knex';
import {
  type CommitOutcomeMode,
  commitMarkerMigration,
  commitMarkerTable,
  type RetryEvent,
  retryTransaction,
  type Scope,
  withDb,
} from '../../lib';
import { describeService } from '../helpers/services';

jest.setTimeout(60_000);

const table = `outcome_services_${process.pid}`;

async function socketOf(trx: Knex.Transaction): Promise<Socket> {
  const client = trx.client as unknown as {
    acquireConnection(): Promise<{ connection?: { stream: Socket }; stream?: Socket }>;
  };
  const connection = await client.acquireConnection();
  return (connection.connection?.stream ?? connection.stream) as Socket;
}

/** Destroys the transaction's socket right after COMMIT is written: applied, reply lost. */
async function cutAfterCommit(trx: Knex.Transaction): Promise<void> {
  const socket = await socketOf(trx);
  (trx.client as unknown as EventEmitter).on('query', (query: { sql: string }) => {
    if (query.sql === 'COMMIT;') queueMicrotask(() => socket.destroy());
  });
}

async function setUp(knex: Knex): Promise<void> {
  await knex.schema.dropTableIfExists(table);
  await knex.schema.createTable(table, (t) => {
    t.increments('id');
    t.string('name').notNullable();
  });
  if (!(await knex.schema.hasTable(commitMarkerTable))) await commitMarkerMigration.up(knex);
}

/** retryTransaction(insert 'attempt N') whose first attempt runs `fault` before COMMIT. */
function insertAttempts(
  url: string,
  client: 'pg' | 'mysql2',
  commitOutcome: CommitOutcomeMode,
  fault: (trx: Knex.Transaction) => Promise<void>,
) {
  const db = withDb({ client, connection: url, pool: { min: 0, max: 3 } });
  let calls = 0;
  const events: RetryEvent[] = [];
  const insert = db.wrap(
    retryTransaction(
      async (scope: Scope) => {
        calls++;
        const trx = await scope.session;
        await trx(table).insert({ name: `attempt ${calls}` });
        if (calls === 1) await fault(trx);
        await trx.commit();
        return calls;
      },
      {
        session: (scope) => scope,
        commitOutcome,
        onRetry: (e) => events.push(e),
        sleep: async () => {},
      },
    ),
  );
  return { db, insert, events };
}

describeService('pgbouncer', (pgbouncer) => {
  let direct: Knex; // the PostgreSQL behind PgBouncer, for checks
  beforeAll(async () => {
    direct = createKnex({ client: 'pg', connection: pgbouncer.url.replace(':6432/', ':5432/') });
    await setUp(direct);
  });
  beforeEach(() => direct(table).delete());
  afterAll(async () => {
    await direct.schema.dropTableIfExists(table);
    await direct.destroy();
  });

  test.each(['auto', 'marker'] as const)(
    "'%s': a COMMIT applied but its reply lost is resolved as committed through the pooler",
    async (mode) => {
      const { db, insert, events } = insertAttempts(pgbouncer.url, 'pg', mode, cutAfterCommit);
      try {
        await expect(insert()).resolves.toBe(1);
        expect(events).toEqual([]);
        expect(await direct(table).pluck('name')).toEqual(['attempt 1']);
      } finally {
        await db.destroy();
      }
    },
  );

  test("a statement still running on the server behind the pooler is ended before the retry (pg_backend_pid, not PgBouncer's key)", async () => {
    let backend = 0;
    let goneAtRetry: boolean | undefined;
    const exists = async (pid: number) =>
      (await direct.raw('select 1 from pg_stat_activity where pid = ?', [pid])).rows.length > 0;
    const db = withDb({ client: 'pg', connection: pgbouncer.url, pool: { min: 0, max: 3 } });
    let calls = 0;
    try {
      await db.wrap(
        retryTransaction(
          async (scope: Scope) => {
            calls++;
            if (calls === 2) goneAtRetry = !(await exists(backend));
            const trx = await scope.session;
            await trx(table).insert({ name: `attempt ${calls}` });
            if (calls === 1) {
              backend = Number((await trx.raw('select pg_backend_pid() as pid')).rows[0].pid);
              const socket = await socketOf(trx);
              const sleeping = trx.raw('select pg_sleep(60)');
              sleeping.catch(() => {});
              for (let i = 0; i < 200; i++) {
                const { rows } = await direct.raw(
                  "select 1 from pg_stat_activity where pid = ? and state = 'active' and query like '%pg_sleep%'",
                  [backend],
                );
                if (rows.length > 0) break;
                await new Promise((resolve) => setTimeout(resolve, 20));
              }
              socket.destroy();
              await sleeping;
            }
            await trx.commit();
          },
          { session: (scope) => scope, sleep: async () => {} },
        ),
      )();
      expect(calls).toBe(2);
      expect(goneAtRetry).toBe(true);
      expect(await direct(table).pluck('name')).toEqual(['attempt 2']);
    } finally {
      await db.destroy();
    }
  });
});

describeService('galera', (galera) => {
  let nodes: Knex[];
  beforeAll(async () => {
    nodes = galera.urls.map((url) =>
      createKnex({ client: 'mysql2', connection: url, pool: { min: 0, max: 1 } }),
    );
    await setUp(nodes[0] as Knex);
  });
  beforeEach(() => (nodes[0] as Knex)(table).delete());
  afterAll(async () => {
    await (nodes[0] as Knex).schema.dropTableIfExists(table);
    await Promise.all(nodes.map((node) => node.destroy()));
  });

  test("'marker': a COMMIT applied but its reply lost is resolved as committed, and is on every node", async () => {
    const { db, insert, events } = insertAttempts(
      galera.url(1),
      'mysql2',
      'marker',
      cutAfterCommit,
    );
    try {
      await expect(insert()).resolves.toBe(1);
      expect(events).toEqual([]);
      for (const node of nodes) {
        await node.raw('set session wsrep_sync_wait = 1');
        expect(await node(table).pluck('name')).toEqual(['attempt 1']);
      }
    } finally {
      await db.destroy();
    }
  });
});
