// README, "What knex-scope fixes in plain Knex" #3: knex gives up on a ROLLBACK after 5 s and
// releases the connection while the ROLLBACK is still queued behind work on it. Such a connection
// must not be handed out again while it is busy. The slow work is real: a statement still running
// on the server (a query the handler forgot to await) when the scope ends.
import type { Knex } from 'knex';
import { type Scope, withDb } from '../../lib';
import { backendId, dialect, poolStats, testConfig } from '../helpers/database';

const onServer = dialect === 'sqlite' ? it.skip : it;
const sleepSql = dialect === 'postgres' ? 'select pg_sleep(6.5)' : 'select sleep(6.5)';

onServer(
  'a connection whose ROLLBACK outlived knex’s 5 s limit is not handed out while busy',
  async () => {
    const db = withDb(testConfig({ max: 2 }));
    try {
      let first = 0;
      let forgotten: Promise<unknown> | undefined;
      const started = Date.now();
      await db.wrap(async (scope: Scope) => {
        const trx: Knex.Transaction = await scope.session;
        first = await backendId(trx);
        forgotten = trx.raw(sleepSql).catch(() => {}); // not awaited: still running at scope end
      })();
      expect(Date.now() - started).toBeGreaterThanOrEqual(4900); // knex gave up on ROLLBACK
      expect(poolStats(db.knex).used).toBe(0);
      const next = await db.wrap(async (scope: Scope) => backendId(await scope.session))();
      expect(next).not.toBe(first);
      await forgotten;
    } finally {
      await db.destroy();
    }
  },
  20_000,
);
