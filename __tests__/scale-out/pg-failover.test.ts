// A PostgreSQL failover with traffic running (scripts/services/pg-failover.sh: a primary and an
// asynchronous streaming standby of its own, never the main server): the primary is stopped, the
// standby promoted, and the app moves to it through failoverConnection. One file per service, so
// that no other test runs during the failover; the pair is rebuilt afterwards.
import { knex as createKnex, type Knex } from 'knex';
import { type Db, failoverConnection, retryTransaction, type Scope, withDb } from '../../lib';
import { poolStats } from '../helpers/pool-stats';
import { describeService } from '../helpers/services';
import { expectRowsMatch, sleep, traffic } from '../helpers/traffic';

jest.setTimeout(120_000);

const table = `failover_${process.pid}`;

describeService('pg-failover', (pair) => {
  const opened: Db[] = [];

  const insertWith = (db: Db) =>
    db.wrap(
      retryTransaction(
        async (scope: Scope, key: string) => {
          const trx = await scope.session;
          await trx(table).insert({ k: key });
          await trx.commit();
        },
        // Enough to span the failover: about 8 s of retries.
        { session: (scope) => scope, total: 20, backoffFactor: 100, backoffMax: 500 },
      ),
    );

  beforeAll(async () => {
    const primary = createKnex({ client: 'pg', connection: pair.primaryUrl });
    try {
      await primary.schema.dropTableIfExists(table);
      await primary.schema.createTable(table, (t) => {
        t.string('k', 64).primary();
      });
    } finally {
      await primary.destroy();
    }
  });

  afterAll(async () => {
    await Promise.all(opened.splice(0).map((db) => db.destroy()));
    await pair.reset();
  });

  test('primary stopped, standby promoted, traffic running: requests move to the new primary, none lost or doubled', async () => {
    const connection = failoverConnection([pair.primaryUrl, pair.standbyUrl]);
    const db = withDb({ client: 'pg', connection, pool: { min: 0, max: 8 } });
    opened.push(db);
    const load = traffic(insertWith(db), 8);
    await sleep(1_500);
    expect(load.successes).toBeGreaterThan(0);
    expect(connection.current).toBe(pair.primaryUrl);

    const before = load.successes;
    const stopped = Date.now();
    await pair.stop('primary');
    load.mark();
    await pair.promote();
    const promoted = Date.now();
    while (load.successes === before || Date.now() - promoted < 2_000) await sleep(50);
    const result = await load.stop();
    console.log(
      `PostgreSQL failover: ${result.ok.length} ok, ${result.unknown.length} outcome unknown, ` +
        `${result.failed.length} failed; primary stop + promote ${promoted - stopped} ms, ` +
        `longest stall ${result.longestStall} ms`,
    );

    expect(result.failed).toEqual([]);
    expect(connection.current).toBe(pair.standbyUrl);
    expect(poolStats(db.knex)).toMatchObject({ used: 0, pending: 0 });
    const promotedServer = createKnex({ client: 'pg', connection: pair.standbyUrl });
    try {
      await expectRowsMatch(promotedServer as Knex, table, result);
    } finally {
      await promotedServer.destroy();
    }
  });
});
