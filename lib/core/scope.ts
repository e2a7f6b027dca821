import type { Knex } from 'knex';
import type { ForgottenSession } from '../observability/forgotten-channel';
import { ScopeClosedError, SessionLimitError } from './errors';
import { type DescribeRequest, forgottenReported, reportForgotten } from './forgotten-sessions';
import { Session, type SessionKind } from './session';
import { refuseSession } from './session-trace';

/** What every scope of one `withDb(...)` shares. */
export interface ScopeCore {
  readonly knex: Knex;
  readonly transaction: Readonly<Knex.TransactionConfig> | undefined;
  /**
   * Opens a transaction with `transaction`'s settings, outside every scope's async context, so
   * that the pool's promises and timers, which outlive the request, do not keep the scope
   * reachable.
   */
  readonly begin: () => Promise<Knex.Transaction>;
  /** The `maxSessionsPerScope` option: a limit below the pool's `max` (Infinity when unset). */
  readonly maxSessions: number;
  /** Run every scope in `scopeStorage`, so that `currentDb()` finds it (the `currentDb` option). */
  readonly context: boolean;
  /** `commit: 'on-success'`: a scope closed as succeeded commits its lazy (or eager) session. */
  readonly commitOnSuccess: boolean;
  /** The `db` the scopes belong to, so `currentDb(db)` can find its own. */
  owner: object | undefined;
  /** Told of every session rolled back because its scope ended while it was open (`onForgotten`). */
  readonly onForgotten: ((report: ForgottenSession) => void) | undefined;
  /** Set by the adapter: the method and route of a scope's host, for forgotten-session reports. */
  describe?: DescribeRequest | undefined;
  /** Set by `withLegacySession`: its `scope.session` is the eager session. */
  eager?: boolean | undefined;
}

/**
 * How an adapter learns when a scope must end because of its host (an HTTP response): called once,
 * when the scope is first asked for a session or about its end (`signal`, `ended`, `aborted`),
 * never for a scope that is not. It ends the scope at once if the host already ended, or arranges
 * for `scopeControl.close` to be called when it does.
 */
export type Watch<Host> = (scope: Scope, host: Host) => void;

/** How a scope's life is controlled by the adapters. Internal to knex-scope. */
export interface ScopeControl {
  open<Host>(core: ScopeCore, outer: Scope | undefined, watch?: Watch<Host>, host?: Host): Scope;
  /**
   * Ends the scope; resolves once its sessions are rolled back, or returns undefined at once if it
   * held none. `succeeded`: the handler finished without an error and with a status below 400; with
   * `commit: 'on-success'` the lazy (or eager) session is then committed instead, and the promise
   * rejects with the COMMIT error if that failed (after every other session was rolled back). Only
   * the first call can reject; later ones wait for the same teardown.
   */
  close(scope: Scope, aborted: boolean, succeeded?: boolean): Promise<void> | undefined;
  outer(scope: Scope): Scope | undefined;
  owner(scope: Scope): object | undefined;
  /** Sets what re-opens an eager (legacy) session after `retryTransaction` rolled `stale` back. */
  setReopen(scope: Scope, reopen: (stale: Knex.Transaction) => Promise<void>): void;
  reopen(scope: Scope, stale: Knex.Transaction): Promise<void> | undefined;
}

export let scopeControl: ScopeControl;

/**
 * The database sessions of one request, job or `db.wrap` call: nameko's `Database` dependency.
 * You get it as `req.db` (Express), `ctx.db` (Koa), the first argument of a `db.wrap` handler, or
 * from `currentDb()`. It acquires no connection until a session is asked for, and when it ends
 * every session still open is rolled back and its connection released, never committed.
 *
 * @example
 * app.post('/orders', async (req, res) => {
 *   const trx = await req.db.session;            // lazy: BEGIN on first use
 *   await trx('orders').insert({ item: 'tea' });
 *   await trx.commit();
 *   res.status(201).end();
 * });
 */
export class Scope {
  /** The root Knex instance, for work outside any session. */
  readonly knex: Knex;
  readonly #core: ScopeCore;
  readonly #outer: Scope | undefined;
  // In the order they were opened; an array, not a Set: a scope holds one or two, and V8 shrinks
  // (rehashes) a Set as its last entry leaves.
  #open: Session[] | undefined;
  #lazy: Session | undefined;
  #count = 0;
  #ended = false;
  #aborted = false;
  #closing: Promise<void> | undefined;
  #abort: AbortController | undefined;
  #reopen: ((stale: Knex.Transaction) => Promise<void>) | undefined;
  #watch: Watch<unknown> | undefined;
  #host: unknown;

  private constructor(
    core: ScopeCore,
    outer: Scope | undefined,
    watch: Watch<unknown> | undefined,
    host: unknown,
  ) {
    this.knex = core.knex;
    this.#core = core;
    this.#outer = outer;
    this.#watch = watch;
    this.#host = host;
  }

  static {
    scopeControl = {
      open: (core, outer, watch, host) =>
        new Scope(core, outer, watch as Watch<unknown> | undefined, host),
      close: (scope, aborted, succeeded = false) => scope.#close(aborted, succeeded),
      outer: (scope) => scope.#outer,
      owner: (scope) => scope.#core.owner,
      setReopen: (scope, reopen) => {
        scope.#reopen = reopen;
      },
      reopen: (scope, stale) => (scope.#ended ? undefined : scope.#reopen?.(stale)),
    };
  }

  /**
   * The lazy request session (nameko's `db.session`): the first read acquires a connection and
   * sends BEGIN; every later read returns the same transaction until it is committed or rolled
   * back, after which the next read opens a fresh one.
   *
   * @example
   * const trx = await scope.session;
   * await trx('orders').insert(order);
   * await trx.commit();
   */
  get session(): Promise<Knex.Transaction> {
    const lazy = this.#lazy;
    if (lazy?.live) return lazy.ready;
    try {
      this.#lazy = this.#start(this.#core.eager === true ? 'eager' : 'lazy');
    } catch (error) {
      return Promise.reject(error);
    }
    return this.#lazy.ready;
  }

  /**
   * A new, independent transaction on its own pooled connection. Without a callback, you commit
   * or roll it back (whatever you leave open is rolled back when the scope ends). With a callback,
   * it commits when the callback resolves and returns its value; it rolls back and rethrows when
   * the callback throws; if COMMIT fails, it rolls back and rethrows the COMMIT error.
   *
   * @example
   * const id = await scope.getSession(async (trx) => {
   *   const [row] = await trx('orders').insert(order).returning('id');
   *   return row.id;
   * });
   */
  getSession(): Promise<Knex.Transaction>;
  getSession<T>(callback: (trx: Knex.Transaction) => T | PromiseLike<T>): Promise<T>;
  async getSession<T>(
    callback?: (trx: Knex.Transaction) => T | PromiseLike<T>,
  ): Promise<Knex.Transaction | T> {
    const session = this.#start(callback === undefined ? 'explicit' : 'callback');
    const trx = await session.ready;
    if (callback === undefined) return trx;
    let result: T;
    try {
      result = await callback(trx);
    } catch (error) {
      await session.rollback();
      throw error;
    }
    await session.finish(trx);
    return result;
  }

  /**
   * Rolls back every session of this scope that is still open; the scope stays usable and the
   * next `scope.session` opens a fresh transaction. `retryTransaction` calls it before a retry.
   *
   * @example
   * await scope.rollback();
   */
  async rollback(): Promise<void> {
    const open = this.#open;
    if (open === undefined || open.length === 0) return;
    // A copy: a session leaves `open` as it finishes.
    await Promise.all(open.slice().map((session) => session.rollback()));
  }

  /**
   * Aborted when the scope ends: the response was sent, the client disconnected, or the wrapped
   * handler settled. Pass it to anything that should stop with the request.
   *
   * @example
   * await fetch(url, { signal: req.db.signal });
   */
  get signal(): AbortSignal {
    this.#observe();
    if (this.#abort === undefined) {
      this.#abort = new AbortController();
      if (this.#ended) this.#abort.abort(this.#endedError());
    }
    return this.#abort.signal;
  }

  /** True once the scope has ended; every later use throws ScopeClosedError. */
  get ended(): boolean {
    this.#observe();
    return this.#ended;
  }

  /** True if the scope ended because the client disconnected before the response was complete. */
  get aborted(): boolean {
    this.#observe();
    return this.#aborted;
  }

  // A route that never touches the database pays for no response hooks: the host is watched only
  // from the first question whose answer depends on it.
  #observe(): void {
    const watch = this.#watch;
    if (watch === undefined) return;
    this.#watch = undefined;
    // The host stays until the scope ends, for a forgotten-session report.
    watch(this, this.#host);
  }

  #start(kind: SessionKind): Session {
    this.#observe();
    if (this.#ended) throw this.#endedError();
    this.#open ??= [];
    const open = this.#open;
    // Both limits are at least 1 (the options and tarn refuse less), so the first session of a
    // scope skips reading the pool, a property of knex's dictionary-mode instance.
    if (
      open.length > 0 &&
      (open.length >= this.#core.maxSessions || open.length >= poolMax(this.knex))
    ) {
      throw refuseSession(kind, this.knex, this.#limitError(open));
    }
    const counted = forgottenReported(this.#core.onForgotten);
    const session = new Session(
      ++this.#count,
      kind,
      this.#core.begin,
      this.knex,
      this,
      open,
      counted,
    );
    open.push(session);
    return session;
  }

  #limitError(open: Session[]): SessionLimitError {
    const held = open.map((session) => session.label).join(', ');
    const pool = poolMax(this.knex);
    const { maxSessions } = this.#core;
    const plural = (n: number) => `${n} connection${n === 1 ? '' : 's'}`;
    return new SessionLimitError(
      maxSessions < pool
        ? `This scope already holds ${open.length} sessions (${held}), the maxSessionsPerScope of ` +
            `${maxSessions}: behind a transaction pooler a new session could only wait for ` +
            'itself until the pooler times out. Commit or roll back a session first.'
        : `This scope already holds ${open.length} of the pool's ${plural(pool)} (${held}), so a ` +
            'new session could only wait for itself until the acquire timeout. Commit or roll ' +
            'back a session first, or raise pool.max.',
    );
  }

  #close(aborted: boolean, succeeded: boolean): Promise<void> | undefined {
    if (this.#ended) return this.#closing;
    this.#ended = true;
    this.#watch = undefined;
    const host = this.#host;
    this.#host = undefined;
    this.#aborted = aborted;
    this.#abort?.abort(this.#endedError());
    const open = this.#open;
    if (open === undefined || open.length === 0) return undefined;
    const lazy = succeeded && !aborted && this.#core.commitOnSuccess ? this.#lazy : undefined;
    const committing = lazy !== undefined && open.includes(lazy) ? lazy : undefined;
    const { onForgotten, describe } = this.#core;
    if (forgottenReported(onForgotten)) {
      const forgotten = committing === undefined ? open : open.filter((s) => s !== committing);
      reportForgotten(forgotten, onForgotten, describe, host, aborted);
    }
    if (committing === undefined) {
      this.#closing = Promise.all(open.slice().map((session) => session.discard())).then(noop);
      return this.#closing;
    }
    // The COMMIT's error is kept until every other session is rolled back, so that the error
    // response an adapter makes of it never goes out while this scope still holds a connection.
    let failure: { error: unknown } | undefined;
    const ending = open.slice().map((session) =>
      session === committing
        ? session.commitAtEnd().catch((error: unknown) => {
            failure = { error };
          })
        : session.discard(),
    );
    const closing = Promise.all(ending).then(() => {
      if (failure !== undefined) throw failure.error;
    });
    this.#closing = closing.catch(noop);
    return closing;
  }

  #endedError(): ScopeClosedError {
    return new ScopeClosedError(
      this.#aborted
        ? 'This scope has ended because the client disconnected; its sessions were rolled back.'
        : 'This scope has ended (the response was sent or the wrapped handler settled); ' +
            'its open sessions were rolled back. Finish database work before responding.',
    );
  }
}

function noop(): void {}

function poolMax(knex: Knex): number {
  const max = (knex.client as { pool?: { max?: unknown } }).pool?.max;
  return typeof max === 'number' && max > 0 ? max : Number.POSITIVE_INFINITY;
}
