import { isKnexScopeError } from '../core/errors';

/**
 * Node.js socket and DNS error codes (`error.code`): the network between client and server failed.
 * Node's happy-eyeballs connect (`autoSelectFamily`, the default since Node 20) reports a failure
 * of every address as an AggregateError whose `code` is that of its first error, or as
 * ERR_SOCKET_CONNECTION_TIMEOUT when every attempt timed out (Node `lib/net.js`,
 * `internalConnectMultiple`).
 */
const networkCodes = new Set([
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
]);

/**
 * mysql2's own codes for a connection it gave up on (mysql2 `lib/base/connection.js`). A query
 * timeout (`PROTOCOL_SEQUENCE_TIMEOUT`, `lib/commands/query.js`) leaves the statement running on
 * the server and the connection busy with it: the outcome is unknown, so it counts as lost.
 */
const mysql2Codes = new Set(['PROTOCOL_CONNECTION_LOST', 'PROTOCOL_SEQUENCE_TIMEOUT']);

/**
 * MySQL/MariaDB error numbers (`error.errno`) after which the session is gone or was never made.
 * Numbers, not mysql2's `code` names: mysql2 names numbers after MySQL's table, so MariaDB-only
 * numbers have no name, and a number both servers use differently gets MySQL's name. MariaDB's
 * 4031 is ER_REFERENCED_TRG_DOES_NOT_EXIST, a trigger DDL error that mysql2 labels
 * ER_CLIENT_INTERACTION_TIMEOUT, so 4031 is left out: MySQL's real 4031 arrives unsolicited on
 * an idle connection, which mysql2 reports with `fatal: true` (`protocolError`).
 */
const mysqlConnectionErrnos = new Set([
  1040, // ER_CON_COUNT_ERROR: refused at connect, nothing ran
  1053, // ER_SERVER_SHUTDOWN
  1158, // ER_NET_READ_ERROR
  1159, // ER_NET_READ_INTERRUPTED
  1160, // ER_NET_ERROR_ON_WRITE
  1161, // ER_NET_WRITE_INTERRUPTED
  1203, // ER_TOO_MANY_USER_CONNECTIONS: refused at connect, nothing ran
  1927, // ER_CONNECTION_KILLED (MariaDB only; mysql2 has no name for it)
  2006, // CR_SERVER_GONE_ERROR: client-library number, relayed by proxies such as ProxySQL
  2013, // CR_SERVER_LOST: likewise (sysown/proxysql#2912)
  3169, // ER_SESSION_WAS_KILLED (MySQL 8 only)
]);

/**
 * MariaDB Galera's answers from a node that is not part of the primary component (it lost quorum,
 * was partitioned, or is still joining), observed in __tests__/is-connection-error/
 * observed-scale-out-errors.md. This connection will keep failing; another node would take the
 * work:
 * - "WSREP has not yet prepared node for application use", errno 1047, SQLSTATE 08S01, at any
 *   statement from BEGIN to COMMIT once the node knows it is alone: the statement was refused
 *   before it ran, so nothing was applied. mysql2 labels 1047 with MySQL's name,
 *   ER_UNKNOWN_COM_ERROR ("Unknown command", also 08S01: a broken protocol exchange), so the
 *   number is matched with the SQLSTATE or the message.
 * - errno 1180 ER_ERROR_DURING_COMMIT with "… Not connected to Primary Component", at a COMMIT
 *   that was in flight when the node lost the cluster. Its write set may have reached the nodes
 *   that went on (seen in __tests__/scale-out/galera.test.ts: the row was there), so the outcome
 *   is unknown.
 */
function isGaleraNotReady(errno: unknown, sqlState: unknown, message: unknown): boolean {
  return isGaleraRefusal(errno, sqlState, message) || isGaleraCutOff(errno, message);
}

function isGaleraRefusal(errno: unknown, sqlState: unknown, message: unknown): boolean {
  return (
    errno === 1047 &&
    (sqlState === '08S01' || (typeof message === 'string' && message.includes('WSREP')))
  );
}

function isGaleraCutOff(errno: unknown, message: unknown): boolean {
  return (
    errno === 1180 &&
    typeof message === 'string' &&
    message.includes('Not connected to Primary Component')
  );
}

/**
 * PgBouncer's answer to a client whose query waited `query_wait_timeout` for a server connection
 * (SQLSTATE 08P01, FATAL, the connection is then closed). Like knex's own KnexTimeoutError it
 * means the pool is saturated: retrying at once only adds load, so it is not a connection error.
 */
const poolerSaturationMessages = ['query_wait_timeout'];

/** SQLSTATE classes (first two characters of pg's `error.code`) that mean connection loss. */
const pgConnectionClasses = new Set([
  '08', // connection_exception, including 08007 transaction_resolution_unknown
]);

/** Single SQLSTATEs after which the PostgreSQL session is gone or was never made. */
const pgConnectionStates = new Set([
  '57P01', // admin_shutdown: pg_terminate_backend, smart/fast shutdown
  '57P02', // crash_shutdown
  '57P03', // cannot_connect_now: starting up or shutting down
  '57P05', // idle_session_timeout
  '25P03', // idle_in_transaction_session_timeout
  '53300', // too_many_connections: refused at connect, nothing ran
]);

/**
 * Errors that node-postgres and pg-pool report by message only, without a `code` (pg
 * `lib/client.js`, pg-pool `index.js`). "Query read timeout" (`query_timeout`) leaves the
 * statement running on the server and the client busy with it, so it counts as lost.
 */
const pgConnectionMessages = [
  'Connection terminated unexpectedly',
  'Connection terminated',
  'Connection terminated due to connection timeout',
  'Client has encountered a connection error and is not queryable',
  'Client was closed and is not queryable',
  'timeout expired',
  'Query read timeout',
];

/** SQLSTATEs for which PostgreSQL aborted the whole transaction. */
const pgConflictStates = new Set([
  '40001', // serialization_failure
  '40P01', // deadlock_detected
]);

/**
 * MySQL/MariaDB error numbers for which InnoDB rolled back the whole transaction.
 * ER_LOCK_WAIT_TIMEOUT (1205) is left out: it rolls back only the statement unless
 * `innodb_rollback_on_timeout` is on, after a wait the caller already budgeted.
 */
const mysqlConflictErrnos = new Set([
  1213, // ER_LOCK_DEADLOCK
]);

/**
 * Primary SQLite result codes for lock contention; better-sqlite3 puts the extended code in
 * `error.code` (`SQLITE_BUSY_SNAPSHOT`, `SQLITE_LOCKED_SHAREDCACHE`), so only its first two
 * words are looked up.
 */
const sqliteConflictCodes = new Set(['SQLITE_BUSY', 'SQLITE_LOCKED']);

/** Deep enough for knex's wrapping plus a few layers of the caller's own. */
const maxDepth = 8;

interface ErrorFields {
  readonly name?: unknown;
  readonly message?: unknown;
  readonly code?: unknown;
  readonly errno?: unknown;
  readonly sqlState?: unknown;
  readonly fatal?: unknown;
  readonly cause?: unknown;
  readonly errors?: unknown;
}

/**
 * Tells whether `error` means the database connection was lost or could not be made, so the
 * connection must be discarded and the work can only be re-run as a whole, on a new connection.
 * Looks through knex's wrapping, `cause` chains and AggregateError `errors`. Covers:
 *
 * - Node socket and DNS errors (`ECONNRESET`, `ECONNREFUSED`, `EPIPE`, `ETIMEDOUT`, `ENOTFOUND`,
 *   `EAI_AGAIN`, …), including the AggregateError of a dual-stack connect;
 * - PostgreSQL: SQLSTATE class 08 (08007 included: the commit outcome is unknown, the connection
 *   is still gone), 57P01, 57P02, 57P03, 57P05, 25P03, 53300, and pg's message-only errors
 *   ("Connection terminated unexpectedly", "… is not queryable", "Query read timeout", …);
 * - mysql2: `fatal: true`, `PROTOCOL_CONNECTION_LOST`, `PROTOCOL_SEQUENCE_TIMEOUT`, and server
 *   errors 1040, 1053, 1158–1161, 1203, 1927 (MariaDB KILL), 2006, 2013, 3169, and Galera's
 *   answers from a node outside the primary component: 1047 (SQLSTATE 08S01, "WSREP has not yet
 *   prepared node…": refused, nothing applied) and, at COMMIT, 1180 "… Not connected to Primary
 *   Component" (cut off while replicating: the outcome is unknown).
 *
 * Never true for SQLite (in-process, there is no connection to lose), for knex's
 * `KnexTimeoutError` (pool exhausted or query `.timeout()`: waiting longer adds load) and
 * PgBouncer's `query_wait_timeout` (08P01: the pooler's queue is saturated, the same case), for
 * statement-level errors such as `KILL QUERY` or `pg_cancel_backend`, or for knex-scope's own
 * errors whatever their `cause`. A connection error during COMMIT leaves the commit outcome
 * unknown; telling that case apart is the caller's job.
 *
 * @example
 * try {
 *   await knex('orders').insert(order);
 * } catch (error) {
 *   if (isConnectionError(error)) return retryLater(order);
 *   throw error;
 * }
 */
export function isConnectionError(error: unknown): boolean {
  return someInChain(error, isConnectionLoss);
}

/**
 * Tells whether re-running the whole transaction (after rolling it back) may succeed:
 * everything {@link isConnectionError} accepts, plus conflicts for which the database aborted the
 * transaction — PostgreSQL 40001 serialization_failure and 40P01 deadlock_detected, MySQL/MariaDB
 * 1213 ER_LOCK_DEADLOCK, SQLite `SQLITE_BUSY*` and `SQLITE_LOCKED*`. Lock wait timeouts (MySQL
 * 1205, PostgreSQL 55P03) and statement timeouts are not included: they end only the statement.
 *
 * @example
 * retryTransaction(transferFunds, { total: 3, retryOn: isTransientError });
 */
export function isTransientError(error: unknown): boolean {
  return someInChain(error, (node) => isConnectionLoss(node) || isConflict(node));
}

function isConnectionLoss(node: ErrorFields): boolean {
  const { code, errno, fatal, message } = node;
  if (fatal === true) return true;
  if (typeof errno === 'number' && mysqlConnectionErrnos.has(errno)) return true;
  if (isGaleraNotReady(errno, node.sqlState, message)) return true;
  // mysql2 puts the bare server number into `code` for an error packet that arrives while no
  // command runs (lib/base/connection.js, protocolError); such errors are also fatal.
  if (typeof code === 'number') return mysqlConnectionErrnos.has(code);
  if (typeof code === 'string') {
    return (
      networkCodes.has(code) ||
      mysql2Codes.has(code) ||
      pgConnectionStates.has(code) ||
      (code.length === 5 && pgConnectionClasses.has(code.slice(0, 2)))
    );
  }
  return (
    code === undefined &&
    typeof message === 'string' &&
    pgConnectionMessages.some((text) => endsWithWord(message, text))
  );
}

function isConflict(node: ErrorFields): boolean {
  const { code, errno } = node;
  if (typeof errno === 'number' && mysqlConflictErrnos.has(errno)) return true;
  if (typeof code !== 'string') return false;
  return (
    pgConflictStates.has(code) ||
    (code.startsWith('SQLITE_') && sqliteConflictCodes.has(code.split('_', 2).join('_')))
  );
}

function isSaturation({ code, message }: ErrorFields): boolean {
  return (
    code === '08P01' &&
    typeof message === 'string' &&
    poolerSaturationMessages.some((text) => endsWithWord(message, text))
  );
}

/**
 * Tells whether the server refused `error`'s statement before running it, in a way that leaves
 * this connection unusable for the work: a Galera node outside the primary component answering
 * 1047. At COMMIT this is a known outcome, not applied, rather than an unknown one (unlike 1180,
 * a COMMIT cut off while it replicated). Internal to knex-scope.
 *
 * @example
 * if (refusedByServer(commitError)) return false; // not applied: retry on another connection
 */
export function refusedByServer(error: unknown): boolean {
  return someInChain(error, (node) => isGaleraRefusal(node.errno, node.sqlState, node.message));
}

/**
 * Tells whether a failed COMMIT (or XA END / PREPARE) leaves its outcome to be found out: the
 * connection was lost, and not because the server refused the statement first. Anything else is
 * the server's answer: not applied. Internal to knex-scope.
 *
 * @example
 * if (!outcomeUncertain(commitError)) return false; // rolled back: safe to retry
 */
export function outcomeUncertain(error: unknown): boolean {
  return isConnectionError(error) && !refusedByServer(error);
}

/**
 * Whether `message` ends with `text` on a word boundary: knex prefixes driver messages with the
 * SQL and " - " (knex `lib/execution/internal/query-executioner.js`).
 */
function endsWithWord(message: string, text: string): boolean {
  if (!message.endsWith(text)) return false;
  const before = message.charAt(message.length - text.length - 1);
  return before === '' || !/[\p{L}\p{N}_]/u.test(before);
}

/**
 * Runs `test` on `error`, its `cause` chain and AggregateError-style `errors`, depth-first, up
 * to `maxDepth` levels and visiting each object once (cause chains can be cyclic). Does not look
 * inside errors that already record a decision: knex's KnexTimeoutError (its `cause` is tarn's
 * TimeoutError) and knex-scope's own errors (an UnsafeRetryError wraps the connection error it
 * refused to retry).
 */
function someInChain(error: unknown, test: (node: ErrorFields) => boolean): boolean {
  const seen = new Set<object>();
  const visit = (node: unknown, depth: number): boolean => {
    if (typeof node !== 'object' || node === null || depth > maxDepth || seen.has(node)) {
      return false;
    }
    seen.add(node);
    const fields = node as ErrorFields;
    if (fields.name === 'KnexTimeoutError' || isKnexScopeError(node) || isSaturation(fields)) {
      return false;
    }
    if (test(fields)) return true;
    const { errors, cause } = fields;
    if (Array.isArray(errors) && errors.some((inner) => visit(inner, depth + 1))) return true;
    return visit(cause, depth + 1);
  };
  // A classifier runs inside catch blocks: a throwing getter or Proxy must not replace the error
  // being classified.
  try {
    return visit(error, 0);
  } catch {
    return false;
  }
}
