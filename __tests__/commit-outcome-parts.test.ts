// The pure parts of commitOutcome: which servers keep a prepared XA transaction after its
// connection is gone, and what an xid says and can be read back from XA RECOVER.

import { EventEmitter } from 'node:events';
import { observeBackendExit } from '../lib/retry/capture-postgres-backend';
import { hasDurableXa } from '../lib/retry/mysql-session-info';
import { newXid, parseXid, xaFormatId, xidSql } from '../lib/retry/xa-xid';

describe('hasDurableXa', () => {
  it.each([
    ['10.11.19-MariaDB-0+deb12u1', true],
    ['5.5.5-10.11.6-MariaDB-log', true], // the replication-compatible prefix some clients see
    ['10.5.2-MariaDB', true],
    ['10.5.1-MariaDB', false], // MDEV-742 landed in 10.5.2
    ['10.4.32-MariaDB', false],
    ['8.0.36', true],
    ['5.7.7-log', true],
    ['5.7.6', false],
    ['not a version', false],
  ])('%s → %s', (version, durable) => {
    expect(hasDurableXa(version)).toBe(durable);
  });
});

describe('xids', () => {
  it('say which app, host, process, call and attempt made them, and read back from XA RECOVER', () => {
    const before = Date.now();
    const xid = newXid('1z', 3);
    expect(xid.gtrid.length).toBeLessThanOrEqual(64);
    expect(xid.bqual.length).toBeLessThanOrEqual(64);
    const row = {
      formatID: xaFormatId,
      gtrid_length: xid.gtrid.length,
      bqual_length: xid.bqual.length,
      data: xid.gtrid + xid.bqual,
    };
    const read = parseXid(row);
    expect(read).toMatchObject({ pid: process.pid, call: '1z', attempt: 3, app: xid.app });
    expect(read?.createdAt.getTime()).toBeGreaterThanOrEqual(before);
    expect(xidSql(xid)).toBe(`'${xid.gtrid}','${xid.bqual}',${xaFormatId}`);
    expect(xidSql(xid)).toMatch(/^'[A-Za-z0-9._:-]+','[0-9a-z.]+',19283$/);
  });

  it('are unique per session, and another formatID or shape is not knex-scope’s', () => {
    const ids = new Set(Array.from({ length: 1000 }, () => newXid('1', 1).bqual));
    expect(ids.size).toBe(1000);
    expect(
      parseXid({ formatID: 1, gtrid_length: 3, bqual_length: 0, data: 'abc' }),
    ).toBeUndefined();
    expect(
      parseXid({ formatID: xaFormatId, gtrid_length: 5, bqual_length: 1, data: 'hello1' }),
    ).toBeUndefined();
  });
});

describe('observeBackendExit', () => {
  const fatal = (code: string) =>
    Object.assign(new Error(`FATAL ${code}`), { severity: 'FATAL', code });

  it.each([
    ['57P01', true], // terminated (pg_terminate_backend) or shut down
    ['25P03', true], // idle_in_transaction_session_timeout
    ['57P05', true], // idle_session_timeout
    ['08P01', false], // PgBouncer's own FATAL (query_timeout): the backend may still run
    ['28000', false],
  ])('a FATAL %s means the backend has exited: %s', (code, exits) => {
    let exited = false;
    // What knex's transaction client does with a statement's error: emit query-error, then reject.
    const trxClient = new EventEmitter() as EventEmitter & { query(): Promise<unknown> };
    observeBackendExit(trxClient, {} as never, () => {
      exited = true;
    });
    trxClient.emit('query-error', fatal(code), { sql: 'select 1' });
    expect(exited).toBe(exits);
  });
});
