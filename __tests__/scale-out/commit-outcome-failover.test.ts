// The PostgreSQL commit-outcome check across a failover (issue 14 item 4, issue 13 item 5), on the
// dedicated primary + asynchronous standby of scripts/services/pg-failover.sh. A COMMIT is
// acknowledged by the primary, never replicated, and its reply lost; the standby is promoted while
// retryTransaction is resolving it; other clients' transactions on the new primary reuse its
// transaction id, so `txid_status` there answers "committed" for a row that does not exist.
// 'auto' must never believe it; 'marker' knows the truth and retries.
import type { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import { knex as createKnex, type Knex } from 'knex';
import {
  commitMarkerMigration,
  type Db,
  isKnexScopeError,
  type RetryEvent,
  retryTransaction,
  type Scope,
  withDb,
} from '../../lib';
import { describeService, type PgFailoverService } from '../helpers/services';

jest.setTimeout(120_000);

const table = `failover_items_${process.pid}`;

/** Waits until `read` resolves true, polling every 50 ms, for at most `ms`. */
async function until(read: () => Promise<boolean>, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await read().catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`not reached within ${ms} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/**
 * A knex `connection` function that goes to the primary until `switchTo` names another URL; the
 * switch makes knex (and knex-scope's fresh connections) ask it again, and the answer waits for
 * `ready`: the failover the test runs meanwhile.
 */
function movableConnection(url: string) {
  let current = url;
  let stale = false;
  let ready: Promise<void> = Promise.resolve();
  const connection = async () => {
    await ready;
    stale = false;
    return { connectionString: current, expirationChecker: () => stale };
  };
  return {
    connection,
    switchTo(next: string, after: Promise<void>) {
      current = next;
      ready = after;
      stale = true;
    },
  };
}

async function socketOf(trx: Knex.Transaction): Promise<Socket> {
  const client = trx.client as unknown as {
    acquireConnection(): Promise<{ connection: { stream: Socket } }>;
  };
  return (await client.acquireConnection()).connection.stream;
}

describeService('pg-failover', (pair: PgFailoverService) => {
  let primary: Knex;
  let standby: Knex;

  beforeEach(async () => {
    await pair.reset();
    primary = createKnex({ client: 'pg', connection: pair.primaryUrl, pool: { min: 0, max: 2 } });
    standby = createKnex({ client: 'pg', connection: pair.standbyUrl, pool: { min: 0, max: 2 } });
    await primary.schema.createTable(table, (t) => {
      t.increments('id');
      t.string('name').notNullable();
    });
    await commitMarkerMigration.up(primary);
    await until(async () => {
      const { rows } = await standby.raw('select to_regclass(?) is not null as here', [table]);
      return rows[0].here === true;
    });
  });

  afterEach(async () => {
    await primary?.destroy();
    await standby?.destroy();
    await pair.reset();
  });

  /** From now on the standby receives nothing: what the primary commits is lost with it. */
  async function cutReplication(): Promise<void> {
    await standby.raw("alter system set primary_conninfo = ''");
    await standby.raw('select pg_reload_conf()');
    await until(async () => {
      const { rows } = await standby.raw('select count(*)::int as n from pg_stat_wal_receiver');
      return rows[0].n === 0;
    });
  }

  /**
   * Kills the primary, promotes the standby, and runs transactions on it until one has taken
   * transaction id `xid`: then `txid_status(xid)` says committed there.
   */
  async function failOver(xid: string): Promise<void> {
    await pair.kill('primary');
    await pair.promote();
    await standby.destroy(); // its connections predate the promotion
    standby = createKnex({ client: 'pg', connection: pair.standbyUrl, pool: { min: 0, max: 2 } });
    for (let i = 0; i < 100; i++) {
      const trx = await standby.transaction();
      const { rows } = await trx.raw('select txid_current()::text as id');
      await trx.raw(`insert into ${table} (name) values ('other client')`);
      await trx.commit();
      if (BigInt(rows[0].id) >= BigInt(xid)) return;
    }
    throw new Error('the new primary never reached the lost transaction id');
  }

  /** retryTransaction(insert 'attempt N'), whose first COMMIT is cut right after it is sent. */
  function run(db: Db, mode: 'auto' | 'marker', onCut: (xid: string) => void) {
    let calls = 0;
    const events: RetryEvent[] = [];
    const insert = db.wrap(
      retryTransaction(
        async (scope: Scope) => {
          calls++;
          const trx = await scope.session;
          const { rows } = await trx.raw('select txid_current()::text as id');
          await trx(table).insert({ name: `attempt ${calls}` });
          if (calls === 1) {
            const socket = await socketOf(trx);
            (trx.client as unknown as EventEmitter).on('query', (query: { sql: string }) => {
              if (query.sql !== 'COMMIT;') return;
              queueMicrotask(() => {
                socket.destroy(); // the primary commits; its reply is lost
                onCut(rows[0].id);
              });
            });
          }
          await trx.commit();
          return calls;
        },
        {
          session: (scope) => scope,
          commitOutcome: mode,
          total: 3,
          onRetry: (event) => events.push(event),
          sleep: async () => {},
        },
      ),
    );
    return { insert, events, calls: () => calls };
  }

  test("'auto': a COMMIT lost with the old primary is never reported committed by the new one", async () => {
    await cutReplication();
    const moving = movableConnection(pair.primaryUrl);
    const db = withDb({ client: 'pg', connection: moving.connection, pool: { min: 0, max: 2 } });
    let xid = '';
    let failover: Promise<void> = Promise.resolve();
    const { insert, events } = run(db, 'auto', (id) => {
      xid = id;
      failover = failOver(id);
      moving.switchTo(pair.standbyUrl, failover);
    });
    try {
      const error = await insert().catch((e: unknown) => e);
      await failover;
      // The trap: the new primary says the id committed (another client's transaction) …
      const { rows } = await standby.raw('select txid_status(?::bigint) as status', [xid]);
      expect(rows[0].status).toBe('committed');
      // … but the row is not there, and retryTransaction did not claim it was.
      const names = await standby(table).pluck('name');
      expect(names).not.toContain('attempt 1');
      expect(isKnexScopeError(error) && error.code).toBe('ERR_COMMIT_OUTCOME_UNKNOWN');
      expect(events.map((e) => e.decision)).toEqual(['outcome-unknown']);
    } finally {
      await db.destroy();
    }
  });

  test("'marker': the marker is absent from the new primary's history, so the work is redone there once", async () => {
    await cutReplication();
    const moving = movableConnection(pair.primaryUrl);
    const db = withDb({ client: 'pg', connection: moving.connection, pool: { min: 0, max: 2 } });
    let failover: Promise<void> = Promise.resolve();
    const { insert, events } = run(db, 'marker', (id) => {
      failover = failOver(id);
      moving.switchTo(pair.standbyUrl, failover);
    });
    try {
      await expect(insert()).resolves.toBe(2);
      await failover;
      expect(events.map((e) => e.decision)).toEqual(['retry']);
      const names = await standby(table).whereNot({ name: 'other client' }).pluck('name');
      expect(names).toEqual(['attempt 2']);
    } finally {
      await db.destroy();
    }
  });

  test("'auto' never asks a standby, even one that has the answer", async () => {
    const moving = movableConnection(pair.primaryUrl);
    const db = withDb({ client: 'pg', connection: moving.connection, pool: { min: 0, max: 2 } });
    let replicated: Promise<void> = Promise.resolve();
    const { insert, events } = run(db, 'auto', () => {
      // The lookup goes to the standby once it has replayed the commit.
      replicated = until(async () => {
        const names = await standby(table).pluck('name');
        return names.includes('attempt 1');
      });
      moving.switchTo(pair.standbyUrl, replicated);
    });
    try {
      const error = await insert().catch((e: unknown) => e);
      await replicated;
      expect(isKnexScopeError(error) && error.code).toBe('ERR_COMMIT_OUTCOME_UNKNOWN');
      expect(events.map((e) => e.decision)).toEqual(['outcome-unknown']);
      expect(await primary(table).pluck('name')).toEqual(['attempt 1']);
    } finally {
      await db.destroy();
    }
  });
});
