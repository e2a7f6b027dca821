/** The parts of a pg.Client or mysql2 Connection that tell whether it can still send. */
export interface DriverConnection {
  /** knex's mark of a connection that emitted 'error' or 'end' (lib/dialects/postgres, mysql). */
  __knex__disposed?: unknown;
  /** mysql2's socket. */
  stream?: SocketState;
  /** pg's protocol connection and its socket. */
  connection?: { stream?: SocketState };
}

interface SocketState {
  destroyed?: boolean;
  writableEnded?: boolean;
}

/**
 * Driver and Node messages for a statement refused before any byte of it was written: Node's
 * write after the peer's FIN (EPIPE) or after destroy, mysql2's closed-state refusal, pg's
 * "not queryable". knex prefixes the statement, so they are searched, not anchored.
 */
const refusals =
  /This socket has been ended by the other party|Cannot call write after a stream was destroyed|write after end|Can't add new command when connection is in closed state|is not queryable/;

/**
 * True when `connection` is known to be closed, so nothing more can reach the server on it:
 * knex marked it disposed (with anything but `ignoredMark`), or its socket is gone.
 *
 * @example
 * const closed = isClosed(connection, rollbackInFlight); // read before sending COMMIT
 */
export function isClosed(connection: DriverConnection, ignoredMark: unknown): boolean {
  const mark = connection.__knex__disposed;
  if (mark !== undefined && mark !== ignoredMark) return true;
  const socket = connection.stream ?? connection.connection?.stream;
  return socket?.destroyed === true || socket?.writableEnded === true;
}

/**
 * True when `error` says the driver refused the statement before writing any of it. A COMMIT
 * that was never sent was never applied: the server rolls back the transaction of a connection
 * that closed.
 *
 * @example
 * if (refusedBeforeSending(error)) // safe to run the transaction again
 */
export function refusedBeforeSending(error: unknown): boolean {
  const message = (error as { message?: unknown } | null)?.message;
  return typeof message === 'string' && refusals.test(message);
}
