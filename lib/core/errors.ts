const brand = Symbol.for('knex-scope.error');

/** The stable `code` of every error knex-scope throws. */
export type ErrorCode =
  | 'ERR_INVALID_CONFIG'
  | 'ERR_NO_SCOPE'
  | 'ERR_SCOPE_CLOSED'
  | 'ERR_SESSION_CLOSED'
  | 'ERR_SESSION_LIMIT'
  | 'ERR_UNSAFE_RETRY'
  | 'ERR_COMMIT_OUTCOME_UNKNOWN'
  | 'ERR_COMMIT_OUTCOME_UNSUPPORTED'
  | 'ERR_TEST_DATABASE';

/**
 * The base class of every error knex-scope throws. Each subclass has a stable `code`; wrapped
 * failures keep the original error as `cause`.
 *
 * @example
 * try {
 *   await scope.getSession();
 * } catch (error) {
 *   if (isKnexScopeError(error)) console.error(error.code, error.message);
 *   throw error;
 * }
 */
export class KnexScopeError extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    Object.defineProperty(this, brand, { value: true });
  }

  override get name(): string {
    return this.constructor.name;
  }
}

// InvalidConfigError is a TypeError, as Node's own errors for bad arguments are: `instanceof
// KnexScopeError` holds for it all the same. The subclasses inherit this and keep the usual test.
Object.defineProperty(KnexScopeError, Symbol.hasInstance, {
  value: function hasInstance(this: object, value: unknown): boolean {
    if (this === KnexScopeError && value instanceof InvalidConfigError) return true;
    return Function.prototype[Symbol.hasInstance].call(this, value);
  },
});

/**
 * The configuration given to `withDb`, `withLegacySession` or the test kit cannot work. Thrown at
 * construction, before any connection is made. The message never contains a password. A
 * `TypeError`, as Node's own errors for bad arguments are, and a `KnexScopeError`
 * (`instanceof` and `isKnexScopeError` both hold) with the code `ERR_INVALID_CONFIG`.
 *
 * @example
 * withDb('ftp://example.com/db'); // throws InvalidConfigError (code ERR_INVALID_CONFIG)
 */
export class InvalidConfigError extends TypeError {
  readonly code = 'ERR_INVALID_CONFIG' as const;

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    Object.defineProperty(this, brand, { value: true });
  }

  override get name(): string {
    return this.constructor.name;
  }
}

/**
 * `currentDb()` was called outside any scope (outside a request handled by the middleware or a
 * `db.wrap` handler).
 *
 * @example
 * currentDb(); // at module top level: throws NoScopeError (code ERR_NO_SCOPE)
 */
export class NoScopeError extends KnexScopeError {
  constructor(message: string) {
    super('ERR_NO_SCOPE', message);
  }
}

/**
 * A scope, or a session it handed out, was used after the scope ended: after the response was
 * sent, after the client disconnected, or after a `db.wrap` handler settled. Nothing was sent to
 * the database.
 *
 * @example
 * app.get('/late', async (req, res) => {
 *   const trx = await req.db.session;
 *   res.send('done');
 *   await trx.commit(); // throws ScopeClosedError (code ERR_SCOPE_CLOSED): commit before you respond
 * });
 */
export class ScopeClosedError extends KnexScopeError {
  constructor(message: string) {
    super('ERR_SCOPE_CLOSED', message);
  }
}

/**
 * A session was used after it was committed or rolled back. Nothing was sent to the database.
 * Read `scope.session` again for a fresh lazy session.
 *
 * @example
 * const trx = await scope.getSession();
 * await trx.commit();
 * await trx('orders').insert(row); // throws SessionClosedError (code ERR_SESSION_CLOSED)
 */
export class SessionClosedError extends KnexScopeError {
  constructor(message: string) {
    super('ERR_SESSION_CLOSED', message);
  }
}

/**
 * A scope asked for more sessions at once than the pool can ever give it (SQLite has a single
 * connection; a pool has `max`). Waiting could only end in the pool's acquire timeout, so it
 * fails at once; the message lists the sessions the scope holds.
 *
 * @example
 * // SQLite, one connection:
 * const trx = await scope.session;
 * await scope.getSession(); // throws SessionLimitError (code ERR_SESSION_LIMIT)
 */
export class SessionLimitError extends KnexScopeError {
  constructor(message: string) {
    super('ERR_SESSION_LIMIT', message);
  }
}

/**
 * `retryTransaction` refused to retry because the failed attempt had already committed work that
 * a retry would do again. `cause` is the error that ended the attempt.
 *
 * @example
 * retryTransaction(fn, { session: (req) => req.db, allowReplay: true }); // opt out when fn is idempotent
 */
export class UnsafeRetryError extends KnexScopeError {
  constructor(message: string, options: { cause: unknown }) {
    super('ERR_UNSAFE_RETRY', message, options);
  }
}

/**
 * The connection died while COMMIT was in flight and the outcome could not be determined: the
 * transaction may or may not have been applied. `cause` is the connection error.
 *
 * @example
 * if (isKnexScopeError(error) && error.code === 'ERR_COMMIT_OUTCOME_UNKNOWN') {
 *   // check whether the write happened before doing it again
 * }
 */
export class CommitOutcomeUnknownError extends KnexScopeError {
  constructor(message: string, options: { cause: unknown }) {
    super('ERR_COMMIT_OUTCOME_UNKNOWN', message, options);
  }
}

/**
 * `retryTransaction`'s `commitOutcome` mode cannot work here, found before anything was committed:
 * `'xa'` on an engine or server version without XA transactions that survive their connection
 * (anything but MySQL ≥ 5.7.7 and MariaDB ≥ 10.5.2, or a connection through a proxy that hides
 * the server's session ids), or on a session opened outside the attempt; `'marker'` without the
 * commit marker table. `cause` is the driver's error, if any.
 *
 * @example
 * retryTransaction(fn, { commitOutcome: 'xa' }); // on PostgreSQL: the first session throws
 * // CommitOutcomeUnsupportedError (code ERR_COMMIT_OUTCOME_UNSUPPORTED)
 */
export class CommitOutcomeUnsupportedError extends KnexScopeError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_COMMIT_OUTCOME_UNSUPPORTED', message, options);
  }
}

/**
 * The test kit could not create, copy or drop a test database. `cause` is the driver's error.
 *
 * @example
 * // jest.config.js: globalSetup: 'knex-scope/jest/global-setup' with TEST_DB_URL naming a server
 * // that refuses CREATE DATABASE → TestDatabaseError (code ERR_TEST_DATABASE)
 */
export class TestDatabaseError extends KnexScopeError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_TEST_DATABASE', message, options);
  }
}

/**
 * Tells whether `error` was thrown by knex-scope, also across Jest's module registries where
 * `instanceof` fails.
 *
 * @example
 * if (isKnexScopeError(error) && error.code === 'ERR_SCOPE_CLOSED') return;
 */
export function isKnexScopeError(error: unknown): error is KnexScopeError {
  return (
    error instanceof KnexScopeError ||
    (typeof error === 'object' &&
      error !== null &&
      (error as Record<symbol, unknown>)[brand] === true)
  );
}
