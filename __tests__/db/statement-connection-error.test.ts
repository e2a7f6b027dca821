// A server that answers a statement with a connection-class error but keeps the socket open (a
// Galera node that left the primary component answers errno 1047; a proxy relays a lost backend as
// SQLSTATE 08…) leaves a connection that neither the driver nor knex marks: the session must keep
// the pool from handing it out again. The error is the server's own, raised on a single server.
import type { Knex } from 'knex';
import { type Scope, withDb } from '../../lib';
import { backendId, dialect, poolStats, testConfig } from '../helpers/database';

const onServer = dialect === 'sqlite' ? describe.skip : describe;

const refusal =
  dialect === 'postgres'
    ? "DO $$ BEGIN RAISE EXCEPTION 'relayed: server closed the connection' USING ERRCODE = '08006'; END $$"
    : "SIGNAL SQLSTATE '08S01' SET MYSQL_ERRNO = 1047, MESSAGE_TEXT = 'WSREP has not yet prepared node for application use'";
const refused = dialect === 'postgres' ? { code: '08006' } : { errno: 1047, sqlState: '08S01' };

onServer('a statement answered with a connection error on an open socket', () => {
  test('the session’s connection is not handed out again', async () => {
    const db = withDb(testConfig({ max: 1 }));
    try {
      let first = 0;
      await expect(
        db.wrap(async (scope: Scope) => {
          const trx: Knex.Transaction = await scope.session;
          first = await backendId(trx);
          await trx.raw(refusal);
        })(),
      ).rejects.toMatchObject(refused);
      expect(poolStats(db.knex)).toMatchObject({ used: 0, pending: 0 });
      const next = await db.wrap(async (scope: Scope) => backendId(await scope.session))();
      expect(next).not.toBe(first);
    } finally {
      await db.destroy();
    }
  });

  test('so is it when the statement ran in a nested transaction (a savepoint)', async () => {
    const db = withDb(testConfig({ max: 1 }));
    try {
      let first = 0;
      await expect(
        db.wrap(async (scope: Scope) => {
          const trx: Knex.Transaction = await scope.session;
          first = await backendId(trx);
          await trx.transaction(async (nested) => {
            await nested.raw(refusal);
          });
        })(),
      ).rejects.toMatchObject(refused);
      expect(poolStats(db.knex)).toMatchObject({ used: 0, pending: 0 });
      const next = await db.wrap(async (scope: Scope) => backendId(await scope.session))();
      expect(next).not.toBe(first);
    } finally {
      await db.destroy();
    }
  });

  test('an ordinary statement error keeps the connection', async () => {
    const db = withDb(testConfig({ max: 1 }));
    try {
      let first = 0;
      await expect(
        db.wrap(async (scope: Scope) => {
          const trx: Knex.Transaction = await scope.session;
          first = await backendId(trx);
          await trx.raw('select * from knex_scope_no_such_table');
        })(),
      ).rejects.toThrow(/knex_scope_no_such_table/);
      const next = await db.wrap(async (scope: Scope) => backendId(await scope.session))();
      expect(next).toBe(first);
    } finally {
      await db.destroy();
    }
  });
});
