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

/**
 * On a pool of one connection, runs `fail` in a lazy session, expects its error to match
 * `expected`, and returns the server sessions of that request and of the next one.
 */
async function backendsAround(
  fail: (trx: Knex.Transaction) => Promise<unknown>,
  expected: object | RegExp,
): Promise<{ first: number; next: number }> {
  const db = withDb(testConfig({ max: 1 }));
  try {
    let first = 0;
    const failing = db.wrap(async (scope: Scope) => {
      const trx: Knex.Transaction = await scope.session;
      first = await backendId(trx);
      await fail(trx);
    })();
    if (expected instanceof RegExp) await expect(failing).rejects.toThrow(expected);
    else await expect(failing).rejects.toMatchObject(expected);
    expect(poolStats(db.knex)).toMatchObject({ used: 0, pending: 0 });
    const next = await db.wrap(async (scope: Scope) => backendId(await scope.session))();
    return { first, next };
  } finally {
    await db.destroy();
  }
}

onServer('a statement answered with a connection error on an open socket', () => {
  test('the session’s connection is not handed out again', async () => {
    const { first, next } = await backendsAround((trx) => trx.raw(refusal), refused);
    expect(next).not.toBe(first);
  });

  test('so is it when the statement ran in a nested transaction (a savepoint)', async () => {
    const { first, next } = await backendsAround(
      (trx) => trx.transaction(async (nested) => nested.raw(refusal)),
      refused,
    );
    expect(next).not.toBe(first);
  });

  test('an ordinary statement error keeps the connection', async () => {
    const { first, next } = await backendsAround(
      (trx) => trx.raw('select * from knex_scope_no_such_table'),
      /knex_scope_no_such_table/,
    );
    expect(next).toBe(first);
  });
});
