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
const refusedBeforeSending =
  /This socket has been ended by the other party|Cannot call write after a stream was destroyed|write after end|Can't add new command when connection is in closed state|is not queryable/;

/**
 * True when a statement that failed on `connection` with `error` can be known never to have
 * reached the server: the connection was already closed when it was due (`ignoredMark` is a
 * disposal mark that does not mean closed), or the driver refused it before writing. A COMMIT that
 * was never sent was never applied: the server rolls back a transaction whose connection closed.
 *
 * @example
 * const undelivered = neverSent(connection, error, undefined);
 */
export function neverSent(
  connection: DriverConnection,
  error: unknown,
  ignoredMark: unknown,
): boolean {
  const mark = connection.__knex__disposed;
  if (mark !== undefined && mark !== ignoredMark) return true;
  const socket = connection.stream ?? connection.connection?.stream;
  if (socket?.destroyed === true || socket?.writableEnded === true) return true;
  const message = (error as { message?: unknown } | null)?.message;
  return typeof message === 'string' && refusedBeforeSending.test(message);
}
