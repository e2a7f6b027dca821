import type { Knex } from 'knex';
import type { SessionKind } from '../observability/session-channel';
import { isConnectionError } from '../retry/is-connection-error';
import { commitTracking } from './commit-tracking';
import { type DriverConnection, isClosed, refusedBeforeSending } from './connection-state';
import { ScopeClosedError, SessionClosedError } from './errors';
import {
  beginTraced,
  countStatement,
  resolveCommit,
  type SessionTrace,
  settleSession,
  traceClient,
  traceSession,
} from './session-trace';

/** How a session was asked for; it names the session in error messages. */
export type { SessionKind };

type State =
  | 'opening'
  | 'open'
  | 'committing'
  | 'committed'
  | 'rolling back'
  | 'rolled back'
  | 'failed';

type RawConnection = DriverConnection;

interface TxClient {
  query(connection: RawConnection, query: unknown): Promise<unknown>;
  on(event: 'query-error', listener: (error: unknown) => void): unknown;
}

const kindLabels: Record<SessionKind, string> = {
  lazy: 'scope.session',
  explicit: 'scope.getSession()',
  callback: 'scope.getSession(callback)',
  eager: 'withLegacySession',
};

// knex's pool validates every connection on acquire and destroys one that carries this property
// (lib/client.js, connectionIsDisposed); its own sqlite and pg dialects dispose connections this way.
const rollbackInFlight = 'knex-scope: ROLLBACK did not complete on this connection';

const noop = () => {};

const finished = Promise.resolve(undefined as unknown as Knex.Transaction);

// The owner (the scope) rides on the session's own `commit` wrapper. Not a WeakMap: an entry per transaction
// made every garbage collection walk thousands of ephemerons. Not a property of the transaction:
// knex's transaction object is a dictionary-mode function with ~200 properties, and one more made
// V8 grow and copy its dictionary, 12 KB of garbage per transaction
// (`git show 3c018c0:BENCHMARKS.md`, "What changed since the previous measurement").
const ownerKey = Symbol('knex-scope.owner');

type OwnedCommit = Knex.Transaction['commit'] & { [ownerKey]?: object };

/**
 * The owner given to the session that handed out `trx` (its scope), or undefined for a
 * transaction knex-scope did not open. Internal to knex-scope.
 *
 * @example
 * const scope = sessionOwner(req.dbSession);
 */
export function sessionOwner(trx: Knex.Transaction): object | undefined {
  return (trx.commit as OwnedCommit)[ownerKey];
}

/**
 * PostgreSQL answers COMMIT of a transaction in which a statement failed with the command tag
 * ROLLBACK and no error: a handler that caught the statement's error would otherwise commit
 * "successfully" and answer 200 for work that was thrown away. Rejects with SQLSTATE 25P02
 * (in_failed_sql_transaction), which PostgreSQL itself gives any other statement there.
 */
function refuseSilentRollback(result: unknown): unknown {
  if ((result as { response?: { command?: unknown } } | null)?.response?.command === 'ROLLBACK') {
    throw Object.assign(
      new Error(
        'COMMIT was answered with ROLLBACK: a statement of this transaction had failed, so ' +
          'PostgreSQL rolled all of it back and nothing was committed.',
      ),
      { code: '25P02' },
    );
  }
  return result;
}

/**
 * One Knex transaction handed out by a scope, on its own pooled connection. It makes the
 * transaction safe to hand to user code: `commit()` rejects when COMMIT fails (knex resolves),
 * a failed COMMIT is followed by ROLLBACK (SQLite keeps the transaction open otherwise), a
 * connection whose ROLLBACK did not complete never returns to use, and a query on a finished
 * session or after the scope ended fails with a named error instead of reaching the database.
 * Internal to knex-scope.
 *
 * @example
 * const session = new Session(1, 'explicit', core.begin, knex, scope, open); // leaves `open` when done
 * const trx = await session.ready;
 */
export class Session {
  readonly id: number;
  readonly kind: SessionKind;
  /**
   * Resolves to the transaction once BEGIN has run; rejects if it could not be opened. Read it only
   * while `live`: once the session is finished it no longer holds the transaction.
   */
  ready: Promise<Knex.Transaction>;
  #state: State = 'opening';
  #scopeEnded = false;
  #pending: Promise<void> | undefined;
  readonly #open: Session[];
  readonly #knex: Knex;
  readonly #owner: object;
  #commitUndelivered = false;
  readonly #trace: SessionTrace | undefined;

  /** `counted`: count its statements even when nobody traces sessions (forgotten sessions are reported). */
  constructor(
    id: number,
    kind: SessionKind,
    begin: () => Promise<Knex.Transaction>,
    knex: Knex,
    owner: object,
    open: Session[],
    counted = false,
  ) {
    this.id = id;
    this.kind = kind;
    this.#knex = knex;
    this.#owner = owner;
    this.#open = open;
    const trace = traceSession(kind, knex, counted);
    this.#trace = trace;
    this.ready = (trace === undefined ? begin() : beginTraced(trace, begin)).then(
      (trx) => (trx.isCompleted() ? this.#beginFailed(trx) : this.#attach(trx)),
      (error: unknown) => {
        this.#finish('failed', error);
        throw error;
      },
    );
    this.ready.catch(noop);
  }

  /** For error messages: `session #2 (scope.getSession())`. */
  get label(): string {
    return `session #${this.id} (${kindLabels[this.kind]})`;
  }

  /** Opening or open: it holds, or is about to hold, a connection. */
  get live(): boolean {
    return this.#state === 'opening' || this.#state === 'open';
  }

  get committed(): boolean {
    return this.#state === 'committed';
  }

  /** What the session ran, while someone listens (see `traceSession`). */
  get trace(): SessionTrace | undefined {
    return this.#trace;
  }

  /** Rolls back if still open (waiting for an opening or a COMMIT in flight first). Never rejects. */
  async rollback(): Promise<void> {
    const trx = await this.ready.catch(noop);
    if (this.#pending !== undefined) await this.#pending;
    if (trx !== undefined && this.#state === 'open') await trx.rollback();
  }

  /** The scope ended: roll back, and from now on refuse every use with ScopeClosedError. */
  discard(): Promise<void> {
    this.#scopeEnded = true;
    return this.rollback();
  }

  /**
   * The scope ended after a handler that succeeded, with `commit: 'on-success'`: commits if still
   * open (waiting for an opening or a COMMIT in flight first), and from now on refuses every use
   * with ScopeClosedError. Rejects with the COMMIT error, after the ROLLBACK that follows it.
   */
  async commitAtEnd(): Promise<void> {
    const trx = await this.ready.catch(noop);
    if (this.#pending !== undefined) await this.#pending;
    try {
      if (trx !== undefined && this.#state === 'open') await trx.commit();
    } finally {
      this.#scopeEnded = true;
    }
  }

  /** Commits unless the caller already committed or rolled back (used by the callback form). */
  async finish(trx: Knex.Transaction): Promise<void> {
    if (this.#state === 'committed' || this.#state === 'rolled back') return;
    await trx.commit();
  }

  // knex resolves knex.transaction() even when BEGIN fails (a pooled connection whose backend
  // died while idle): the transaction comes already complete, the error only in executionPromise.
  async #beginFailed(trx: Knex.Transaction): Promise<never> {
    const error = await trx.executionPromise.then(noop, (reason: unknown) => reason);
    this.#finish('failed', error);
    if (isConnectionError(error)) {
      // The server answered BEGIN with its farewell (PostgreSQL 57P01) but the driver does not
      // know yet that the socket is closing: keep the pool from handing the connection out again.
      const client = trx.client as unknown as { acquireConnection(): Promise<RawConnection> };
      const connection = await client.acquireConnection();
      connection.__knex__disposed ??= error;
    }
    if (error !== undefined) throw error;
    throw new SessionClosedError(`${this.label} could not be opened: BEGIN did not complete.`);
  }

  #attach(trx: Knex.Transaction): Knex.Transaction {
    const commit = trx.commit;
    const rollback = trx.rollback;
    const client = trx.client as unknown as TxClient;
    const trace = this.#trace;
    if (trace !== undefined) traceClient(client as never, trace);
    const query = client.query;
    // knex's transaction client refuses queries once the transaction is marked complete, which it
    // is as soon as COMMIT is sent; the prototype's query still reaches the connection.
    const direct = (Object.getPrototypeOf(client) as TxClient).query;

    // A transaction runs on one connection.
    let used: RawConnection | undefined;
    // A server that answers but will not serve this connection again (a Galera node outside the
    // primary component, a proxy relaying a lost backend) leaves the socket open, so neither the
    // driver nor knex marks the connection: without this, the pool would hand it out again. knex
    // emits query-error on the transaction's client for every statement the driver failed, before
    // the statement's promise rejects (lib/execution/internal/query-executioner.js): one listener
    // per transaction instead of a promise per statement.
    client.on('query-error', (error: unknown) => {
      if (used !== undefined && isConnectionError(error)) used.__knex__disposed ??= error;
    });

    client.query = (connection, sql) => {
      used = connection;
      if (typeof sql !== 'string') {
        if (this.#state !== 'open' || this.#scopeEnded) return Promise.reject(this.#closedError());
        if (trace !== undefined) countStatement(trace, sql);
        return query.call(client, connection, sql);
      }
      if (sql === 'COMMIT;') {
        const closed = isClosed(connection, rollbackInFlight);
        return query
          .call(client, connection, sql)
          .then(refuseSilentRollback, async (error: unknown) => {
            if (isConnectionError(error)) connection.__knex__disposed ??= error;
            this.#commitUndelivered = closed || refusedBeforeSending(error);
            try {
              await direct.call(client, connection, 'ROLLBACK');
            } catch {
              connection.__knex__disposed = error;
            }
            throw error;
          });
      }
      if (sql === 'ROLLBACK') {
        // knex gives up on ROLLBACK after 5 s and releases the connection while it is still in
        // flight (lib/execution/transaction.js); the mark keeps such a connection out of the pool.
        connection.__knex__disposed ??= rollbackInFlight;
        return query.call(client, connection, sql).then((result) => {
          if (connection.__knex__disposed === rollbackInFlight) delete connection.__knex__disposed;
          return result;
        });
      }
      return query.call(client, connection, sql);
    };

    const ownCommit = ((value?: unknown) => {
      const pending = this.#commit(trx, commit, value);
      // Also marks it handled: knex's own commit() never rejects, so code written for it may
      // not wait for this one.
      this.#pending = pending.catch(noop);
      return pending;
    }) as unknown as OwnedCommit;
    ownCommit[ownerKey] = this.#owner;
    trx.commit = ownCommit;

    trx.rollback = ((error?: unknown) => {
      if (this.#state !== 'open') return this.#pending ?? Promise.resolve();
      this.#state = 'rolling back';
      const pending = Promise.resolve(rollback(error))
        .then(() => trx.executionPromise)
        .then(noop, noop)
        .then(() => this.#finish('rolled back'));
      this.#pending = pending;
      return pending;
    }) as unknown as Knex.Transaction['rollback'];

    this.#state = 'open';
    if (this.#scopeEnded) {
      this.#pending = Promise.resolve(trx.rollback()).then(noop);
      throw this.#closedError();
    }
    return trx;
  }

  async #commit(
    trx: Knex.Transaction,
    commit: Knex.Transaction['commit'],
    value: unknown,
  ): Promise<void> {
    if (this.#state !== 'open' || this.#scopeEnded) throw this.#closedError();
    const tracker = commitTracking.getStore();
    if (tracker?.beforeCommit !== undefined) await tracker.beforeCommit(trx);
    if (this.#state !== 'open' || this.#scopeEnded) throw this.#closedError();
    this.#state = 'committing';
    try {
      // knex resolves commit() even when COMMIT fails, and it settles executionPromise first, with
      // the failure (lib/execution/transaction.js, query()): waiting for that alone is enough.
      commit(value);
      await trx.executionPromise;
    } catch (error) {
      let applied = false;
      try {
        // A COMMIT that never left the client cannot have been applied: the server rolls back
        // the transaction of a connection that closed.
        applied =
          tracker !== undefined &&
          !this.#commitUndelivered &&
          (await resolveCommit(this.#trace, error, tracker.commitFailed(trx, error, this.#knex)));
      } finally {
        if (!applied) this.#finish('failed', error);
      }
      if (!applied) throw error;
    }
    this.#finish('committed');
    tracker?.committed(trx);
  }

  #finish(state: State, error?: unknown): void {
    this.#state = state;
    const open = this.#open;
    const index = open.indexOf(this);
    if (index !== -1) open.splice(index, 1);
    // The scope keeps its lazy session until the next one, and an Express scope lives as long as
    // its response: without this, knex's ~60 KB transaction graph lived as long too, and more of it
    // survived garbage collections (`git show 3c018c0:BENCHMARKS.md`).
    this.ready = finished;
    if (this.#trace !== undefined) {
      settleSession(
        this.#trace,
        state === 'committed'
          ? 'committed'
          : state === 'failed'
            ? 'failed'
            : this.#scopeEnded
              ? 'rolled back at scope end'
              : 'rolled back',
        error,
      );
    }
  }

  #closedError(): Error {
    if (this.#scopeEnded && this.#state !== 'committed') {
      return new ScopeClosedError(
        `${this.label} cannot be used: its scope has ended (the response was sent, the client ` +
          'disconnected, or the wrapped handler settled) and it was rolled back. Finish database ' +
          'work before responding.',
      );
    }
    const what =
      this.#state === 'committing' || this.#state === 'committed'
        ? 'committed'
        : this.#state === 'failed'
          ? 'ended by a failed COMMIT'
          : 'rolled back';
    return new SessionClosedError(
      `${this.label} was already ${what}. Read scope.session or call scope.getSession() for a new session.`,
    );
  }
}
