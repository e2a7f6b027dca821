// retryTransaction's default commitOutcome 'auto': what it notes about each session (the server
// session, PostgreSQL's transaction id and history) and what it costs in statements, and that
// PostgreSQL's txid_status is believed only from the same history (issue 14 item 4).
import type { Knex } from 'knex';
import { type Db, retryTransaction, type Scope, withDb } from '../../lib';
import { resolveCommitOutcome } from '../../lib/retry/commit-outcome';
import { createItemsTable, dialect, openKnex, recordSql, testConfig } from '../helpers/database';

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
  db = withDb(testConfig({ min: 0, max: 1 }));
});

afterEach(async () => {
  await db.destroy();
});

afterAll(async () => {
  await admin.schema.dropTableIfExists(table);
  await admin.destroy();
});

const insert = (target: Db) =>
  target.wrap(
    retryTransaction(
      async (scope: Scope) => {
        const trx = await scope.session;
        await trx(table).insert({ name: 'tea' });
        await trx.commit();
      },
      { session: (scope) => scope },
    ),
  );

describe("commitOutcome 'auto': what an attempt sends", () => {
  onPostgres(
    'PostgreSQL: the backend rides on BEGIN, the id and its history on one query before COMMIT',
    async () => {
      const sent = recordSql(db.knex);
      await insert(db)();
      expect(sent).toEqual([
        'BEGIN; select pg_backend_pid() as pid, now()::text as started',
        expect.stringMatching(/^insert into/),
        expect.stringMatching(
          /^select txid_current_if_assigned\(\)::text as xid, .*pg_control_system.*pg_walfile_name/,
        ),
        'COMMIT;',
      ]);
      // Outside retryTransaction nothing is added.
      sent.length = 0;
      await db.wrap(async (scope: Scope) => {
        const trx = await scope.session;
        await trx(table).insert({ name: 'plain' });
        await trx.commit();
      })();
      expect(sent).toEqual(['BEGIN;', expect.stringMatching(/^insert into/), 'COMMIT;']);
    },
  );

  onMariadb(
    'MariaDB: CONNECTION_ID() is asked once per connection, not per transaction',
    async () => {
      const sent = recordSql(db.knex);
      const run = insert(db);
      for (let i = 0; i < 3; i++) await run();
      const probes = sent.filter((sql) => sql.startsWith('select connection_id()'));
      expect(probes).toHaveLength(1); // pool.max 1: one connection, three transactions
      expect(sent.filter((sql) => sql === 'BEGIN;')).toHaveLength(3);
      expect(sent.filter((sql) => sql === 'COMMIT;')).toHaveLength(3);
    },
  );
});

describe('txid_status is believed only from the history that ran the transaction', () => {
  /** Commits a row and returns what retryTransaction noted about it before COMMIT. */
  async function committedId() {
    const trx = await admin.transaction();
    await trx(table).insert({ name: 'noted' });
    const { rows } = await trx.raw(
      'select txid_current_if_assigned()::text as xid, ' +
        '(select system_identifier from pg_control_system())::text as system, ' +
        'pg_walfile_name(pg_current_wal_lsn()) as wal',
    );
    await trx.commit();
    const { xid, system, wal } = rows[0];
    return { xid, system, timeline: Number.parseInt(wal.slice(0, 8), 16) };
  }

  onPostgres('the same cluster and timeline: committed', async () => {
    const id = await committedId();
    await expect(resolveCommitOutcome(admin, id, Date.now() + 5_000)).resolves.toBe('committed');
  });

  onPostgres('another cluster (system identifier): unknown', async () => {
    const id = await committedId();
    const other = { ...id, system: String(BigInt(id.system) + 1n) };
    await expect(resolveCommitOutcome(admin, other, Date.now() + 5_000)).resolves.toBe('unknown');
  });

  onPostgres('another timeline (a promoted standby): unknown', async () => {
    const id = await committedId();
    const other = { ...id, timeline: id.timeline + 1 };
    await expect(resolveCommitOutcome(admin, other, Date.now() + 5_000)).resolves.toBe('unknown');
  });
});
