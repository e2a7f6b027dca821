// A retry never races its own ghost (issue 13 item 4, issue 14 item 5): when the client loses its
// connection, the server may still be running the statement or the COMMIT it was sent. Before a
// retry, and before an outcome lookup, retryTransaction ends that server session from a fresh
// connection and waits until it is gone. The connection is cut through the fault proxy, on the
// client's side of the statement, while the server provably still runs it.
import type { Knex } from 'knex';
import {
  type CommitOutcomeMode,
  commitMarkerMigration,
  commitMarkerTable,
  type Db,
  type RetryEvent,
  retryTransaction,
  type Scope,
  withDb,
} from '../../lib';
import { knexScopeXids, runningStatement, serverSessionExists } from '../helpers/commit-cuts';
import {
  backendId,
  createItemsTable,
  dialect,
  eventually,
  openKnex,
  poolStats,
  testConfig,
} from '../helpers/database';
import { type FaultProxy, proxiedConfig, startFaultProxy } from '../helpers/fault-proxy';

const describeServer = dialect === 'sqlite' ? describe.skip : describe;
const onPostgres = dialect === 'postgres' ? it : it.skip;
const onMariadb = dialect === 'mariadb' ? it : it.skip;
const noWait = { sleep: async () => {} };

jest.setTimeout(30_000);

describeServer('the previous attempt’s server session is ended before the retry', () => {
  let admin: Knex;
  let table: string;
  let proxy: FaultProxy;
  let db: Db;

  beforeAll(async () => {
    admin = openKnex();
    table = await createItemsTable(admin);
    if (!(await admin.schema.hasTable(commitMarkerTable))) await commitMarkerMigration.up(admin);
    proxy = await startFaultProxy();
  });

  beforeEach(async () => {
    await admin(table).delete();
    await proxy.toxiproxy.reset();
    db = withDb(proxiedConfig(proxy.url));
  });

  afterEach(async () => {
    await db.destroy();
  });

  afterAll(async () => {
    await proxy?.close();
    await admin.schema.dropTableIfExists(table);
    await admin.destroy();
  });

  /** Waits until server session `id` runs a statement matching `pattern`. */
  async function untilRunning(id: number, pattern: RegExp): Promise<void> {
    const running = await eventually(
      async () => pattern.test((await runningStatement(admin, id)) ?? ''),
      10_000,
    );
    if (!running) throw new Error(`session ${id} never ran ${pattern}`);
  }

  it.each(['auto', 'marker'] as const)(
    'a statement still running on the server when the connection is cut (%s)',
    async (commitOutcome) => {
      let calls = 0;
      let old = 0;
      let oldGoneAtRetry: boolean | undefined;
      const events: RetryEvent[] = [];
      const insert = db.wrap(
        retryTransaction(
          async (scope: Scope) => {
            calls++;
            if (calls === 2) oldGoneAtRetry = !(await serverSessionExists(admin, old));
            const trx = await scope.session;
            await trx(table).insert({ name: `attempt ${calls}` });
            if (calls === 1) {
              old = await backendId(trx);
              const sleeping = trx.raw(
                dialect === 'postgres' ? 'select pg_sleep(60)' : 'select sleep(60)',
              );
              sleeping.catch(() => {});
              await untilRunning(old, /sleep\(60\)/);
              await proxy.toxiproxy.disconnect();
              await sleeping; // the connection error
            }
            await trx.commit();
          },
          { session: (scope) => scope, onRetry: (e) => events.push(e), commitOutcome, ...noWait },
        ),
      );
      await insert();
      expect(events.map((e) => e.decision)).toEqual(['retry']);
      expect(oldGoneAtRetry).toBe(true);
      expect(await admin(table).pluck('name')).toEqual(['attempt 2']);
      expect(poolStats(db.knex).used).toBe(0);
    },
  );

  describe('a COMMIT held up on the server when the connection is cut', () => {
    let oldGoneAtRetry: boolean | undefined;
    let old = 0;

    /**
     * Attempt 1 inserts `slow` and commits; `hold` makes the server hold that COMMIT (the
     * protocol statement matching `held`), and the connection is cut while it waits there.
     * Attempt 2 first records whether attempt 1's server session is gone, calls `release`, and
     * commits `fast`.
     */
    async function commitRace(
      commitOutcome: CommitOutcomeMode,
      held: RegExp,
      hold: () => Promise<void>,
      release: () => Promise<void>,
    ) {
      let calls = 0;
      const events: RetryEvent[] = [];
      oldGoneAtRetry = undefined;
      const insert = db.wrap(
        retryTransaction(
          async (scope: Scope) => {
            calls++;
            if (calls === 2) {
              oldGoneAtRetry = !(await serverSessionExists(admin, old));
              await release();
            }
            const trx = await scope.session;
            await trx(table).insert({ name: calls === 1 ? 'slow' : 'fast' });
            if (calls === 1) {
              old = await backendId(trx);
              await hold();
              const committing = trx.commit();
              committing.catch(() => {});
              await untilRunning(old, held);
              await proxy.toxiproxy.disconnect();
              await committing;
            } else {
              await trx.commit();
            }
          },
          { session: (scope) => scope, onRetry: (e) => events.push(e), commitOutcome, ...noWait },
        ),
      );
      await insert();
      return { calls, events };
    }

    onPostgres.each(['auto', 'marker'] as const)(
      'PostgreSQL, a deferred trigger sleeping in COMMIT (%s): ended, then retried',
      async (commitOutcome) => {
        const fn = `${table}_slow_commit`;
        await admin.raw(
          `create function ${fn}() returns trigger language plpgsql as $$ begin ` +
            `if new.name = 'slow' then perform pg_sleep(60); end if; return null; end $$`,
        );
        await admin.raw(
          `create constraint trigger ${fn} after insert on ${table} deferrable initially ` +
            `deferred for each row execute function ${fn}()`,
        );
        try {
          const { calls, events } = await commitRace(
            commitOutcome,
            /^COMMIT/,
            async () => {},
            async () => {},
          );
          expect(calls).toBe(2);
          expect(events.map((e) => e.decision)).toEqual(['retry']);
          expect(oldGoneAtRetry).toBe(true);
          expect(await admin(table).pluck('name')).toEqual(['fast']);
        } finally {
          await admin.raw(`drop trigger if exists ${fn} on ${table}`);
          await admin.raw(`drop function if exists ${fn}()`);
        }
      },
    );

    onMariadb.each([
      ['marker', /^COMMIT/],
      ['xa', /^XA PREPARE/],
    ] as const)(
      'MariaDB, COMMIT waiting for a backup lock (%s): ended, then retried',
      async (commitOutcome, held) => {
        // BACKUP STAGE BLOCK_COMMIT holds every COMMIT and XA PREPARE of the server until
        // BACKUP STAGE END: on one connection of its own, and released as early as possible.
        const locker = openKnex(testConfig({ min: 1, max: 1 }));
        let locked = false;
        const release = async () => {
          if (!locked) return;
          locked = false;
          await locker.raw('backup stage end');
        };
        try {
          const { calls, events } = await commitRace(
            commitOutcome,
            held,
            async () => {
              for (const stage of ['start', 'flush', 'block_ddl', 'block_commit']) {
                await locker.raw(`backup stage ${stage}`);
                locked = true;
              }
            },
            release,
          );
          expect(calls).toBe(2);
          expect(events.map((e) => e.decision)).toEqual(['retry']);
          expect(oldGoneAtRetry).toBe(true);
          expect(await admin(table).pluck('name')).toEqual(['fast']);
          expect(await knexScopeXids(admin)).toEqual([]);
        } finally {
          await release().catch(() => {});
          await locker.destroy();
        }
      },
    );
  });
});
