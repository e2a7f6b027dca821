// knex-scope on a 3-node MariaDB Galera cluster (scripts/services/galera.sh): certification
// conflicts, a node outside the primary component (errno 1047), a node killed, a node partitioned
// and quorum lost, with traffic running. Rows are counted on every node with wsrep_sync_wait=1.
// One file, so that no two of these faults overlap.
import { knex as createKnex, type Knex } from 'knex';
import mysql from 'mysql2/promise';
import {
  type Db,
  failoverConnection,
  isConnectionError,
  isTransientError,
  type RetryEvent,
  retryTransaction,
  type Scope,
  withDb,
} from '../../lib';
import { poolStats } from '../helpers/pool-stats';
import { describeService, type GaleraNode } from '../helpers/services';
import { expectRowsMatch, sleep, traffic } from '../helpers/traffic';

jest.setTimeout(120_000);

const table = `galera_${process.pid}`;
const counters = `galera_n_${process.pid}`;

describeService('galera', (galera) => {
  const nodes: GaleraNode[] = [1, 2, 3];
  // Verification connections, one per node: reads wait until the node has applied every write
  // the cluster committed before them.
  let admin: Knex[];
  const opened: Db[] = [];

  const open = (order: GaleraNode[], pool: Knex.PoolConfig = { min: 0, max: 4 }) => {
    const connection = failoverConnection(order.map((node) => galera.url(node)));
    const db = withDb({ client: 'mysql2', connection, pool, acquireConnectionTimeout: 10_000 });
    opened.push(db);
    return { db, connection };
  };

  const insertWith = (db: Db, events: RetryEvent[] = []) =>
    db.wrap(
      retryTransaction(
        async (scope: Scope, key: string) => {
          const trx = await scope.session;
          await trx(table).insert({ k: key });
          await trx.commit();
        },
        {
          session: (scope) => scope,
          total: 20,
          backoffFactor: 100,
          backoffMax: 1_000,
          onRetry: (event) => events.push(event),
        },
      ),
    );

  const portOf = async (trx: Knex.Transaction) => {
    const [rows] = await trx.raw('select @@port as port');
    return Number(rows[0].port);
  };

  const nodePort = (node: GaleraNode) => Number(new URL(galera.url(node)).port);

  const threadId = async (trx: Knex.Transaction) => {
    const [rows] = await trx.raw('select connection_id() as id');
    return Number(rows[0].id);
  };

  beforeAll(async () => {
    admin = nodes.map((node) =>
      createKnex({
        client: 'mysql2',
        connection: galera.url(node),
        pool: {
          min: 0,
          max: 2,
          afterCreate: (
            conn: { query: (sql: string, cb: (e: unknown) => void) => void },
            done: (e: unknown) => void,
          ) => conn.query('SET SESSION wsrep_sync_wait = 1', done),
        },
      }),
    );
    const first = admin[0] as Knex;
    await first.schema.dropTableIfExists(table);
    await first.schema.dropTableIfExists(counters);
    await first.schema.createTable(table, (t) => {
      t.string('k', 64).primary();
    });
    await first.schema.createTable(counters, (t) => {
      t.integer('id').primary();
      t.integer('n').notNullable();
    });
  });

  afterEach(async () => {
    await galera.heal();
    await Promise.all(opened.splice(0).map((db) => db.destroy()));
    await (admin[0] as Knex)(table).delete();
  });

  afterAll(async () => {
    await (admin[0] as Knex).schema.dropTableIfExists(table);
    await (admin[0] as Knex).schema.dropTableIfExists(counters);
    await Promise.all(admin.map((knex) => knex.destroy()));
  });

  /** Isolates `node` and waits until it knows: Galera notices after evs.suspect_timeout (~6 s). */
  async function isolate(node: GaleraNode): Promise<void> {
    await galera.isolate(node);
    const connection = await mysql.createConnection(galera.url(node));
    try {
      for (;;) {
        const [rows] = await connection.query("show status like 'wsrep_cluster_status'");
        if ((rows as { Value: string }[])[0]?.Value === 'non-Primary') return;
        await sleep(100);
      }
    } finally {
      await connection.end();
    }
  }

  async function expectOnEveryNode(result: Parameters<typeof expectRowsMatch>[2]) {
    for (const knex of admin) await expectRowsMatch(knex, table, result);
  }

  test('a certification conflict is errno 1213 at COMMIT, a rollback, retried by isTransientError to an exact counter', async () => {
    const first = admin[0] as Knex;
    await first(counters).insert({ id: 1, n: 0 });
    const one = open([1]).db;
    const two = open([2]).db;

    // Two nodes change the same row; the second to commit loses certification.
    const error = await one
      .wrap(async (scope) => {
        const trx = await scope.session;
        await trx(counters).where({ id: 1 }).increment('n', 1);
        await two.wrap(async (other) => {
          await other.getSession((trx2) => trx2(counters).where({ id: 1 }).increment('n', 10));
        })();
        await trx.commit();
      })()
      .catch((e: unknown) => e);
    expect(error).toMatchObject({ errno: 1213 });
    expect(isTransientError(error)).toBe(true);
    expect(isConnectionError(error)).toBe(false);
    expect((await first(counters).where({ id: 1 }).first()).n).toBe(10);

    // With retryOn: isTransientError, concurrent increments on two nodes all land, once each.
    const increment = (db: Db) =>
      db.wrap(
        retryTransaction(
          async (scope: Scope) => {
            const trx = await scope.session;
            await trx(counters).where({ id: 1 }).increment('n', 1);
            await trx.commit();
          },
          {
            session: (scope) => scope,
            retryOn: isTransientError,
            total: 50,
            backoffFactor: 5,
            backoffMax: 50,
          },
        ),
      )();
    await Promise.all(Array.from({ length: 40 }, (_, i) => increment(i % 2 === 0 ? one : two)));
    for (const knex of admin) expect((await knex(counters).where({ id: 1 }).first()).n).toBe(50);
    await first(counters).delete();
  });

  test('a node outside the primary component: 1047 at COMMIT is a refusal retried on a synced node, and a pooled connection to it is discarded at BEGIN', async () => {
    const { db, connection } = open([3, 1, 2]);
    // A plain pool on node 3 alone, with one idle connection made before the partition.
    const onlyThree = withDb({
      client: 'mysql2',
      connection: galera.url(3),
      pool: { min: 0, max: 1 },
    });
    opened.push(onlyThree);
    const before = await onlyThree.wrap((scope) => scope.getSession(threadId))();

    const events: RetryEvent[] = [];
    let attempts = 0;
    await db.wrap(
      retryTransaction(
        async (scope: Scope) => {
          attempts++;
          const trx = await scope.session;
          await trx(table).insert({ k: 'committed-once' });
          if (attempts === 1) {
            expect(await portOf(trx)).toBe(nodePort(3));
            await isolate(3); // the COMMIT reaches a node that has left the primary component
          }
          await trx.commit();
        },
        { session: (scope) => scope, total: 5, backoffFactor: 50, onRetry: (e) => events.push(e) },
      ),
    )();
    expect(attempts).toBe(2);
    expect(events.map((event) => event.decision)).toEqual(['retry']); // not 'outcome-unknown'
    expect(events[0]?.error).toMatchObject({ errno: 1047 });
    expect(connection.current).toBe(galera.url(1));
    expect(poolStats(db.knex)).toMatchObject({ used: 0, pending: 0 });

    // BEGIN on the idle connection to node 3: 1047, and the pool does not keep that connection.
    const error = await onlyThree
      .wrap((scope) => scope.session)()
      .catch((e: unknown) => e);
    expect(error).toMatchObject({ errno: 1047 });
    expect(isConnectionError(error)).toBe(true);
    expect(poolStats(onlyThree.knex)).toMatchObject({ used: 0, pending: 0 });

    await galera.heal();
    // Node 3 would serve that connection again now (it stays open through a partition): the pool
    // must have dropped it.
    expect(await onlyThree.wrap((scope) => scope.getSession(threadId))()).not.toBe(before);
    await expectOnEveryNode({ ok: ['committed-once'], unknown: [], failed: [], longestStall: 0 });
  });

  test('a node partitioned with traffic running, then quorum lost: requests move on, a cluster without quorum applies nothing, traffic resumes once healed', async () => {
    const { db, connection } = open([1, 2, 3]);
    const insert = insertWith(db);
    const load = traffic(insert, 8);
    await sleep(1_500);
    await galera.isolate(1);
    load.mark();
    await sleep(8_000); // the survivors stall ~6 s (evs.suspect_timeout) before they go on
    const result = await load.stop();
    console.log(
      `Galera partition: ${result.ok.length} ok, ${result.unknown.length} outcome unknown, ` +
        `${result.failed.length} failed, longest stall ${result.longestStall} ms`,
    );
    expect(result.failed).toEqual([]);
    expect(connection.current).toBe(galera.url(2));
    const applied = await expectRowsMatch(admin[1] as Knex, table, result);
    await expectRowsMatch(admin[2] as Knex, table, result);
    console.log(
      `Galera partition: ${applied.length} of the outcome-unknown COMMITs had been applied`,
    );

    // Node 3 alone with the cluster: no majority anywhere.
    await isolate(2);
    const quick = db.wrap(
      retryTransaction(
        async (scope: Scope, key: string) => {
          const trx = await scope.session;
          await trx(table).insert({ k: key });
          await trx.commit();
        },
        { session: (scope) => scope, total: 2, backoffFactor: 50 },
      ),
    );
    const error = await quick('no-quorum').catch((e: unknown) => e);
    expect(isConnectionError(error)).toBe(true);
    expect(poolStats(db.knex)).toMatchObject({ used: 0, pending: 0 });

    await galera.heal();
    await quick('healed');
    await expectOnEveryNode({
      ok: [...result.ok, 'healed'],
      unknown: result.unknown,
      failed: [{ key: 'no-quorum', error }],
      longestStall: 0,
    });
  });

  test('the node in use killed with traffic running: requests finish on another node, every acknowledged write on every node, none twice', async () => {
    const { db, connection } = open([1, 2, 3]);
    const load = traffic(insertWith(db), 8);
    await sleep(1_500);
    await galera.kill(1);
    load.mark();
    await sleep(8_000);
    const result = await load.stop();
    console.log(
      `Galera node kill: ${result.ok.length} ok, ${result.unknown.length} outcome unknown, ` +
        `${result.failed.length} failed, longest stall ${result.longestStall} ms`,
    );
    expect(connection.current).not.toBe(galera.url(1));
    expect(result.failed).toEqual([]);
    await galera.heal();
    await expectOnEveryNode(result);
  });
});
