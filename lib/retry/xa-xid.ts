import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { basename, extname } from 'node:path';

/** The XA `formatID` of every knex-scope transaction: 'KS'. */
export const xaFormatId = 0x4b53;

/** A knex-scope XA transaction id and what it says about who made it. */
export interface Xid {
  /** The global part: `ks1:<app>:<host>:<pid>:<process token>`. */
  readonly gtrid: string;
  /** The branch part: `<time base36>.<call>.<attempt>.<session>`. */
  readonly bqual: string;
  readonly app: string;
  readonly host: string;
  readonly pid: number;
  /** When the transaction began. */
  readonly createdAt: Date;
  /** The `retryTransaction` call of this process (base 36) and its attempt, from 1. */
  readonly call: string;
  readonly attempt: number;
}

// 4 random bytes per process: a pid reused after a crash makes other ids.
const processToken = randomBytes(4).toString('hex');
const app = safe(
  process.title !== 'node' && process.title !== '' ? process.title : programName(),
  20,
);
const host = safe(hostname(), 20);
let sessions = 0;

/**
 * A new, unique xid for a session of attempt `attempt` of `retryTransaction` call `call`: it
 * says which app (process title or main script), host and process made it, and when.
 *
 * @example
 * const xid = newXid('1a', 2); // gtrid 'ks1:orders-api:web-3:4242:9f0c…', bqual 'lx2k…1a.2.7'
 */
export function newXid(call: string, attempt: number): Xid {
  sessions = (sessions + 1) % 1_679_616; // 36^4
  const now = Date.now();
  return {
    gtrid: `ks1:${app}:${host}:${process.pid}:${processToken}`,
    bqual: `${now.toString(36)}.${call}.${attempt}.${sessions.toString(36)}`,
    app,
    host,
    pid: process.pid,
    createdAt: new Date(now),
    call,
    attempt,
  };
}

/**
 * Reads back a knex-scope xid from a row of `XA RECOVER`; undefined for anyone else's.
 *
 * @example
 * const xid = parseXid({ formatID: 19283, gtrid_length: 40, bqual_length: 16, data });
 */
export function parseXid(row: Record<string, unknown>): Xid | undefined {
  if (Number(row.formatID) !== xaFormatId) return undefined;
  const data = String(row.data);
  const gtridLength = Number(row.gtrid_length);
  const gtrid = data.slice(0, gtridLength);
  const bqual = data.slice(gtridLength, gtridLength + Number(row.bqual_length));
  const g = /^ks1:([^:]*):([^:]*):(\d+):[0-9a-f]+$/.exec(gtrid);
  const b = /^([0-9a-z]+)\.([0-9a-z]+)\.(\d+)\.[0-9a-z]+$/.exec(bqual);
  if (g === null || b === null) return undefined;
  return {
    gtrid,
    bqual,
    app: g[1] as string,
    host: g[2] as string,
    pid: Number(g[3]),
    createdAt: new Date(Number.parseInt(b[1] as string, 36)),
    call: b[2] as string,
    attempt: Number(b[3]),
  };
}

/**
 * The xid as XA statements write it. Its parts hold only `[A-Za-z0-9._:-]`, so quoting is safe.
 *
 * @example
 * `XA COMMIT ${xidSql(xid)}`; // XA COMMIT 'ks1:…','lx2k…',19283
 */
export function xidSql(xid: Pick<Xid, 'gtrid' | 'bqual'>): string {
  return `'${xid.gtrid}','${xid.bqual}',${xaFormatId}`;
}

function programName(): string {
  const main = process.argv[1];
  return main === undefined ? 'node' : basename(main, extname(main));
}

function safe(text: string, length: number): string {
  return text.replace(/[^A-Za-z0-9._-]/g, '_').slice(0, length) || '_';
}
