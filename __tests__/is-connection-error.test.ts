// Table-driven cases over plain objects shaped like each driver's errors. What the real drivers
// produce for real faults is pinned in __tests__/is-connection-error/{postgres,mariadb,sqlite}.test.ts
// and recorded in __tests__/is-connection-error/observed-errors.md.
import { knex } from 'knex';
import { CommitOutcomeUnknownError, UnsafeRetryError } from '../lib/core/errors';
import {
  isConnectionError,
  isTransientError,
  outcomeUncertain,
  refusedByServer,
} from '../lib/retry/is-connection-error';

type Case = readonly [label: string, error: unknown];

/** A Node system error as net/dns create it (`code`, negative `errno`, `syscall`). */
function nodeError(code: string, message = `connect ${code} 127.0.0.1:5432`): Error {
  return Object.assign(new Error(message), { code, errno: -1, syscall: 'connect' });
}

/** A pg-protocol DatabaseError: `name` 'error', SQLSTATE in `code`. */
function pgError(code: string, message = 'database error', severity = 'ERROR'): Error {
  return Object.assign(new Error(message), { name: 'error', code, severity });
}

/** A mysql2 server error: MySQL's name in `code` (undefined when mysql2 has none), number in `errno`. */
function mysqlError(errno: number, code?: string, sqlState = 'HY000'): Error {
  return Object.assign(new Error('server error'), { code, errno, sqlState, sqlMessage: 'x' });
}

/** What mysql2 gives for Galera's 1047 (observed: __tests__/galera/). */
function galeraNotReady(): Error {
  return Object.assign(mysqlError(1047, 'ER_UNKNOWN_COM_ERROR', '08S01'), {
    message: 'WSREP has not yet prepared node for application use',
    sqlMessage: 'WSREP has not yet prepared node for application use',
  });
}

/** A better-sqlite3 SqliteError: extended result code name in `code`. */
function sqliteError(code: string): Error {
  return Object.assign(new Error('database is locked'), { name: 'SqliteError', code });
}

/** What knex does to a driver error thrown by a query: prefixes the SQL, keeps the object. */
function viaKnex<E extends Error>(error: E, sql = 'select * from "orders" where "id" = 1'): E {
  error.message = `${sql} - ${error.message}`;
  return error;
}

/** `error` wrapped `levels` times by the caller's own errors. */
function wrapped(error: unknown, levels = 1): Error {
  let outer = new Error('wrapper 1', { cause: error });
  for (let level = 2; level <= levels; level += 1) {
    outer = new Error(`wrapper ${level}`, { cause: outer });
  }
  return outer;
}

function cyclic(inner?: unknown): Error {
  const a = new Error('a');
  const b = new Error('b', { cause: a });
  (a as { cause?: unknown }).cause = inner === undefined ? b : new Error('c', { cause: b });
  if (inner !== undefined) (b as { errors?: unknown }).errors = [inner];
  return a;
}

function selfCaused(): Error {
  const error = new Error('self');
  error.cause = error;
  return error;
}

const happyEyeballs = Object.assign(
  new AggregateError(
    [nodeError('ECONNREFUSED', 'connect ECONNREFUSED ::1:5432'), nodeError('ECONNREFUSED')],
    '',
  ),
  { code: 'ECONNREFUSED' },
);

const networkCodes = [
  'ECONNRESET',
  'ECONNREFUSED',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'EHOSTDOWN',
  'ENETUNREACH',
  'ENETDOWN',
  'ENETRESET',
  'ENOTCONN',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ERR_SOCKET_CONNECTION_TIMEOUT',
];

const pgMessages = [
  'Connection terminated unexpectedly',
  'Connection terminated',
  'Connection terminated due to connection timeout',
  'Client has encountered a connection error and is not queryable',
  'Client was closed and is not queryable',
  'timeout expired',
  'Query read timeout',
];

const connectionErrors: Case[] = [
  ...networkCodes.map((code): Case => [`Node ${code}`, nodeError(code)]),
  ...networkCodes.map((code): Case => [`Node ${code} behind knex`, viaKnex(nodeError(code))]),
  ['happy-eyeballs AggregateError (code from its first error, empty message)', happyEyeballs],
  [
    'AggregateError without a code of its own',
    new AggregateError([new Error('x'), nodeError('EHOSTUNREACH')]),
  ],
  ...['08000', '08001', '08003', '08004', '08006', '08007', '08P01'].map(
    (state): Case => [
      `pg SQLSTATE ${state} (class 08)`,
      pgError(state, 'connection exception', 'FATAL'),
    ],
  ),
  [
    'pg 57P01 admin_shutdown behind knex',
    viaKnex(pgError('57P01', 'terminating connection due to administrator command', 'FATAL')),
  ],
  [
    'pg 57P02 crash_shutdown',
    pgError('57P02', 'terminating connection because of crash of another server process', 'FATAL'),
  ],
  ['pg 57P03 cannot_connect_now', pgError('57P03', 'the database system is starting up', 'FATAL')],
  [
    'pg 57P05 idle_session_timeout',
    pgError('57P05', 'terminating connection due to idle-session timeout', 'FATAL'),
  ],
  [
    'pg 25P03 idle_in_transaction_session_timeout',
    pgError('25P03', 'terminating connection due to idle-in-transaction timeout', 'FATAL'),
  ],
  ['pg 53300 too_many_connections', pgError('53300', 'sorry, too many clients already', 'FATAL')],
  ...pgMessages.map((message): Case => [`pg "${message}"`, new Error(message)]),
  ...pgMessages.map(
    (message): Case => [`pg "${message}" behind knex`, viaKnex(new Error(message))],
  ),
  [
    'pg-pool connection timeout with its cause',
    new Error('Connection terminated due to connection timeout', {
      cause: new Error('timeout expired'),
    }),
  ],
  [
    'mysql2 fatal error without a code',
    viaKnex(
      Object.assign(new Error("Can't add new command when connection is in closed state"), {
        fatal: true,
      }),
    ),
  ],
  [
    'mysql2 PROTOCOL_CONNECTION_LOST',
    Object.assign(new Error('Connection lost: The server closed the connection.'), {
      code: 'PROTOCOL_CONNECTION_LOST',
      fatal: true,
    }),
  ],
  [
    'mysql2 PROTOCOL_SEQUENCE_TIMEOUT (not fatal)',
    Object.assign(new Error('Query inactivity timeout'), {
      code: 'PROTOCOL_SEQUENCE_TIMEOUT',
      errorno: 'PROTOCOL_SEQUENCE_TIMEOUT',
    }),
  ],
  [
    'mysql2 network error (fatal, Node code)',
    Object.assign(nodeError('ECONNRESET', 'read ECONNRESET'), { fatal: true }),
  ],
  [
    'mysql2 unsolicited error packet: MySQL 4031 in `code` as a number, fatal',
    Object.assign(new Error('The client was disconnected by the server because of inactivity.'), {
      code: 4031,
      fatal: true,
    }),
  ],
  [
    'mysql2 unsolicited error packet: bare number in `code`',
    Object.assign(new Error('Server shutdown in progress'), { code: 1053 }),
  ],
  ['MySQL 1040 ER_CON_COUNT_ERROR', mysqlError(1040, 'ER_CON_COUNT_ERROR', '08004')],
  ['MySQL 1053 ER_SERVER_SHUTDOWN', mysqlError(1053, 'ER_SERVER_SHUTDOWN', '08S01')],
  ['MySQL 1158 ER_NET_READ_ERROR', mysqlError(1158, 'ER_NET_READ_ERROR', '08S01')],
  ['MySQL 1159 ER_NET_READ_INTERRUPTED', mysqlError(1159, 'ER_NET_READ_INTERRUPTED', '08S01')],
  ['MySQL 1160 ER_NET_ERROR_ON_WRITE', mysqlError(1160, 'ER_NET_ERROR_ON_WRITE', '08S01')],
  ['MySQL 1161 ER_NET_WRITE_INTERRUPTED', mysqlError(1161, 'ER_NET_WRITE_INTERRUPTED', '08S01')],
  [
    'MySQL 1203 ER_TOO_MANY_USER_CONNECTIONS',
    mysqlError(1203, 'ER_TOO_MANY_USER_CONNECTIONS', '42000'),
  ],
  [
    'MariaDB 1927 ER_CONNECTION_KILLED (no mysql2 name)',
    viaKnex(mysqlError(1927, undefined, '70100')),
  ],
  ['CR_SERVER_GONE_ERROR 2006 relayed by a proxy', mysqlError(2006)],
  ['CR_SERVER_LOST 2013 relayed by a proxy', mysqlError(2013)],
  ['MySQL 3169 ER_SESSION_WAS_KILLED', mysqlError(3169, 'ER_SESSION_WAS_KILLED')],
  [
    'Galera 1047 from a node outside the primary component (mysql2 names it ER_UNKNOWN_COM_ERROR)',
    viaKnex(galeraNotReady()),
  ],
  [
    'Galera 1180 at a COMMIT cut off from the primary component',
    viaKnex(
      Object.assign(mysqlError(1180, 'ER_ERROR_DURING_COMMIT'), {
        message:
          'Error while appending streaming replication fragment(provider status: Not connected to Primary Component)',
      }),
      'COMMIT;',
    ),
  ],
  [
    'Galera 1047 recognised by its message when the SQLSTATE is missing',
    Object.assign(galeraNotReady(), { sqlState: undefined }),
  ],
  [
    'MySQL 1047 ER_UNKNOWN_COM_ERROR, a broken protocol exchange (08S01)',
    mysqlError(1047, 'ER_UNKNOWN_COM_ERROR', '08S01'),
  ],
  [
    'PgBouncer "pgbouncer cannot connect to server" (08P01)',
    pgError('08P01', 'pgbouncer cannot connect to server', 'FATAL'),
  ],
  ['a connection error wrapped by the caller', wrapped(nodeError('ECONNRESET'))],
  ['a connection error 8 wrappers deep', wrapped(pgError('57P01'), 8)],
  ['a connection error inside a cyclic chain', cyclic(nodeError('EPIPE'))],
  [
    'a connection error next to a KnexTimeoutError in an AggregateError',
    new AggregateError([new knex.KnexTimeoutError('x'), nodeError('ECONNRESET')]),
  ],
];

const conflictErrors: Case[] = [
  [
    'pg 40001 serialization_failure',
    viaKnex(pgError('40001', 'could not serialize access due to concurrent update')),
  ],
  ['pg 40P01 deadlock_detected', viaKnex(pgError('40P01', 'deadlock detected'))],
  ['MySQL/MariaDB 1213 ER_LOCK_DEADLOCK', viaKnex(mysqlError(1213, 'ER_LOCK_DEADLOCK', '40001'))],
  ['SQLite SQLITE_BUSY', viaKnex(sqliteError('SQLITE_BUSY'))],
  ['SQLite SQLITE_BUSY_SNAPSHOT', sqliteError('SQLITE_BUSY_SNAPSHOT')],
  ['SQLite SQLITE_BUSY_RECOVERY', sqliteError('SQLITE_BUSY_RECOVERY')],
  ['SQLite SQLITE_BUSY_TIMEOUT', sqliteError('SQLITE_BUSY_TIMEOUT')],
  ['SQLite SQLITE_LOCKED', sqliteError('SQLITE_LOCKED')],
  ['SQLite SQLITE_LOCKED_SHAREDCACHE', sqliteError('SQLITE_LOCKED_SHAREDCACHE')],
  ['a deadlock wrapped by the caller', wrapped(pgError('40P01'), 3)],
];

const hostile = new Proxy(
  {},
  {
    get() {
      throw new Error('no reading');
    },
  },
);

const neitherErrors: Case[] = [
  ['null', null],
  ['undefined', undefined],
  ['a string naming a code', 'ECONNRESET'],
  ['a number', 1053],
  ['a symbol', Symbol('ECONNRESET')],
  ['an empty object', {}],
  ['an empty array', []],
  ['a plain Error', new Error('boom')],
  ['a TypeError', new TypeError('Cannot read properties of undefined')],
  ['a RangeError (ValueError-like)', new RangeError('Invalid time value')],
  [
    'pg 23505 unique_violation',
    viaKnex(pgError('23505', 'duplicate key value violates unique constraint')),
  ],
  ['pg 42601 syntax_error', viaKnex(pgError('42601', 'syntax error at or near "selec"'))],
  [
    'pg 57014 query_canceled (statement only)',
    pgError('57014', 'canceling statement due to user request'),
  ],
  [
    'pg 55P03 lock_not_available (statement only)',
    pgError('55P03', 'canceling statement due to lock timeout'),
  ],
  [
    'pg 57P04 database_dropped',
    pgError('57P04', 'terminating connection because database was dropped', 'FATAL'),
  ],
  ['pg 40003 statement_completion_unknown', pgError('40003', 'result is ambiguous')],
  [
    'pg 28P01 invalid_password',
    pgError('28P01', 'password authentication failed for user "app"', 'FATAL'),
  ],
  ['pg 3D000 invalid_catalog_name', pgError('3D000', 'database "nope" does not exist', 'FATAL')],
  ['pg-pool acquire timeout (pool full)', new Error('timeout exceeded when trying to connect')],
  ['MySQL 1062 ER_DUP_ENTRY', viaKnex(mysqlError(1062, 'ER_DUP_ENTRY', '23000'))],
  ['MySQL 1064 ER_PARSE_ERROR', viaKnex(mysqlError(1064, 'ER_PARSE_ERROR', '42000'))],
  ['MySQL 1205 ER_LOCK_WAIT_TIMEOUT (statement only)', mysqlError(1205, 'ER_LOCK_WAIT_TIMEOUT')],
  [
    'MySQL 1317 ER_QUERY_INTERRUPTED (KILL QUERY)',
    mysqlError(1317, 'ER_QUERY_INTERRUPTED', '70100'),
  ],
  ['MySQL 1045 access denied', mysqlError(1045, 'ER_ACCESS_DENIED_ERROR', '28000')],
  [
    'MySQL 1047 with another SQLSTATE and no WSREP message',
    mysqlError(1047, 'ER_UNKNOWN_COM_ERROR'),
  ],
  [
    'MySQL 1180 ER_ERROR_DURING_COMMIT of a storage engine',
    mysqlError(1180, 'ER_ERROR_DURING_COMMIT'),
  ],
  [
    'PgBouncer query_wait_timeout: the pooler is saturated, as KnexTimeoutError',
    viaKnex(pgError('08P01', 'query_wait_timeout', 'FATAL'), 'select 1'),
  ],
  [
    'PgBouncer query_wait_timeout wrapped by the caller',
    wrapped(pgError('08P01', 'query_wait_timeout', 'FATAL')),
  ],
  [
    'MariaDB 4031 trigger error that mysql2 names ER_CLIENT_INTERACTION_TIMEOUT',
    mysqlError(4031, 'ER_CLIENT_INTERACTION_TIMEOUT'),
  ],
  ['SQLite SQLITE_CONSTRAINT_UNIQUE', sqliteError('SQLITE_CONSTRAINT_UNIQUE')],
  ['SQLite SQLITE_IOERR_READ', sqliteError('SQLITE_IOERR_READ')],
  ['SQLite SQLITE_FULL', sqliteError('SQLITE_FULL')],
  ['SQLite SQLITE_CANTOPEN', sqliteError('SQLITE_CANTOPEN')],
  ['SQLite SQLITE_BUSYBOX (not an extended SQLITE_BUSY)', sqliteError('SQLITE_BUSYBOX')],
  ['better-sqlite3 closed handle', viaKnex(new TypeError('The database connection is not open'))],
  [
    'knex pool acquire timeout',
    Object.assign(
      new knex.KnexTimeoutError('Knex: Timeout acquiring a connection. The pool is probably full.'),
      { cause: new Error('operation timed out for an unknown reason') },
    ),
  ],
  [
    'knex query .timeout()',
    new knex.KnexTimeoutError('Defined query timeout of 100ms exceeded when running query.'),
  ],
  [
    'a KnexTimeoutError whose cause is a socket error',
    Object.assign(new knex.KnexTimeoutError('x'), { cause: nodeError('ECONNRESET') }),
  ],
  [
    'a name-only KnexTimeoutError from another realm',
    { name: 'KnexTimeoutError', message: 'x', cause: nodeError('ECONNRESET') },
  ],
  ['knex after destroy()', new Error('Unable to acquire a connection')],
  [
    'knex-scope UnsafeRetryError wrapping a connection error',
    new UnsafeRetryError('already committed', { cause: nodeError('ECONNRESET') }),
  ],
  [
    'knex-scope CommitOutcomeUnknownError wrapping 57P01',
    new CommitOutcomeUnknownError('unknown', { cause: pgError('57P01') }),
  ],
  ["a coded error whose message ends like pg's", pgError('23505', 'Connection terminated')],
  ['"Connection terminated" inside a word', new Error('Reconnection terminated')],
  [
    '"Connection terminated" not at the end',
    new Error('Connection terminated unexpectedly, retrying later'),
  ],
  ["pg's message in another case", new Error('connection terminated unexpectedly')],
  ['`code` null', { code: null, message: 'Connection terminated' }],
  ['`code` an object', { code: { toString: () => 'ECONNRESET' } }],
  ['`code` an array', { code: ['ECONNRESET'] }],
  ['`code` a symbol', { code: Symbol.for('ECONNRESET') }],
  ['`code` NaN', { code: Number.NaN }],
  ['`code` a bigint', { code: 1053n }],
  ['`code` a lowercase network code', { code: 'econnreset' }],
  ['`code` "08" (too short for a SQLSTATE)', { code: '08' }],
  ['`errno` a string', { errno: '1053' }],
  ['`fatal` the string "true"', { fatal: 'true' }],
  ['`fatal` 1', { fatal: 1 }],
  ['`errors` not an array', { errors: 'ECONNRESET' }],
  ['a cyclic cause chain', cyclic()],
  ['an error that is its own cause', selfCaused()],
  ['a connection error 9 wrappers deep (beyond the depth limit)', wrapped(pgError('57P01'), 9)],
  [
    'an object with a throwing getter',
    {
      get code(): never {
        throw new Error('no');
      },
    },
  ],
  ['a Proxy that throws on every read', hostile],
];

describe('isConnectionError', () => {
  it.each(connectionErrors)('accepts %s', (_label, error) => {
    expect(isConnectionError(error)).toBe(true);
  });

  it.each(conflictErrors)('rejects a conflict: %s', (_label, error) => {
    expect(isConnectionError(error)).toBe(false);
  });

  it.each(neitherErrors)('rejects %s', (_label, error) => {
    expect(isConnectionError(error)).toBe(false);
  });

  it('does not change the error it classifies', () => {
    const error = viaKnex(pgError('57P01'));
    const before = { ...error, message: error.message };
    isConnectionError(error);
    expect({ ...error, message: error.message }).toEqual(before);
  });
});

describe('isTransientError', () => {
  it.each(connectionErrors)('accepts every connection error: %s', (_label, error) => {
    expect(isTransientError(error)).toBe(true);
  });

  it.each(conflictErrors)('accepts %s', (_label, error) => {
    expect(isTransientError(error)).toBe(true);
  });

  it.each(neitherErrors)('rejects %s', (_label, error) => {
    expect(isTransientError(error)).toBe(false);
  });

  it('does not look inside knex-scope errors for conflicts either', () => {
    expect(isTransientError(new UnsafeRetryError('x', { cause: pgError('40001') }))).toBe(false);
  });
});

describe('refusedByServer', () => {
  it("is true for Galera 1047, also through knex and the caller's wrapping", () => {
    expect(refusedByServer(viaKnex(galeraNotReady(), 'COMMIT;'))).toBe(true);
    expect(refusedByServer(wrapped(galeraNotReady(), 3))).toBe(true);
  });

  it.each([
    [
      'Galera 1180 at a COMMIT cut off while it replicated (it may have been applied)',
      Object.assign(mysqlError(1180, 'ER_ERROR_DURING_COMMIT'), {
        message:
          'COMMIT; - Error while appending streaming replication fragment(provider status: Not connected to Primary Component)',
      }),
    ],
    ['a lost connection', nodeError('ECONNRESET')],
    ['pg 57P01', pgError('57P01', 'terminating connection', 'FATAL')],
    ['MySQL 1047 without WSREP or 08S01', mysqlError(1047, 'ER_UNKNOWN_COM_ERROR')],
    ['a deadlock', mysqlError(1213, 'ER_LOCK_DEADLOCK', '40001')],
  ])('is false for %s', (_label, error) => {
    expect(refusedByServer(error)).toBe(false);
  });
});

describe('outcomeUncertain', () => {
  it.each([
    ['a lost connection at COMMIT', nodeError('ECONNRESET'), true],
    ['pg 57P01', pgError('57P01', 'terminating connection', 'FATAL'), true],
    ['Galera 1047: refused, so not applied', viaKnex(galeraNotReady(), 'COMMIT;'), false],
    ['a deadlock: the server answered', mysqlError(1213, 'ER_LOCK_DEADLOCK', '40001'), false],
  ])('%s → %s', (_label, error, uncertain) => {
    expect(outcomeUncertain(error)).toBe(uncertain);
  });
});
