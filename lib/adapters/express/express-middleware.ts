import { EventEmitter } from 'node:events';
import { type IncomingMessage, OutgoingMessage, type ServerResponse } from 'node:http';
import type { Knex } from 'knex';
import { type Scope, type ScopeCore, scopeControl } from '../../core/scope';
import { scopeStorage } from '../../core/scope-storage';
import type { Attach } from '../attach';
import { endWithResponse, forgetEnd } from './end-with-response';
import { readProperty } from './express-base';
import { failResponse } from './fail-response';
import { Deferred } from './request-slot';

declare global {
  // Express reads request augmentations from this global namespace (@types/express-serve-static-core).
  namespace Express {
    interface Request {
      /** The request's scope, from `app.use(withDb(config))`. */
      db: Scope;
      /** The eager transaction, from `app.use(withLegacySession(config))`. */
      dbSession: Knex.Transaction;
    }
  }
}

/**
 * `withDb`'s fast path on Express (`RequestSlot.defer`): puts a scope that is opened on the first
 * read of `req.db`; false where it cannot, and the scope is then opened at once.
 */
export type Defer = (req: object, res: ServerResponse, value: Deferred) => boolean;

/** The Express signature of a knex-scope middleware. */
export type ExpressHandler = (
  req: IncomingMessage,
  res: ServerResponse,
  next: (error?: unknown) => void,
) => void;

/**
 * The Express adapter: one scope per request. A scope that is asked for a session is torn down
 * when the handler ends the response (`res.end`, which `res.send`, `res.json`, `res.sendFile` and
 * `res.redirect` all call) and before the response is completed, or at once when the client
 * disconnects first. On Express, a request that never reads `req.db` costs one key in
 * `res.locals`: no scope, no hook, no listener (see `requestSlot`).
 *
 * @example
 * const slot = requestSlot('db');
 * const attach = (req, scope, res) => { slot.put(req, res, scope); return undefined; };
 * app.use(expressMiddleware(core, attach, slot.defer));
 */
export function expressMiddleware(core: ScopeCore, attach: Attach, defer?: Defer): ExpressHandler {
  if (core.context) {
    return function knexScope(req, res, next) {
      const scope = scopeControl.open(core, scopeStorage.getStore(), watchResponse, res);
      const ready = attach(req, scope, res);
      if (ready === undefined) scopeStorage.run(scope, next);
      else ready.then(() => scopeStorage.run(scope, next), next);
    };
  }
  // A route that never reads req.db then costs a key in res.locals and nothing else.
  const deferred = new Deferred((res) => scopeControl.open(core, undefined, watchResponse, res));
  return function knexScope(req, res, next) {
    if (defer?.(req, res, deferred)) {
      next();
      return;
    }
    const scope = scopeControl.open(core, undefined, watchResponse, res);
    const ready = attach(req, scope, res);
    if (ready === undefined) next();
    else ready.then(() => next(), next);
  };
}

/**
 * Ends the scope with the response: inside `res.end`, rolling back before the response is
 * completed, or on `close` when the client went away first. A response that already ended or
 * closed ends the scope at once.
 *
 * @example
 * scopeControl.open(core, undefined, watchResponse, res);
 */
export function watchResponse(scope: Scope, res: ServerResponse): void {
  // A test double may not be one.
  const node = (res as unknown) instanceof OutgoingMessage;
  const ended = node ? writableEnded.call(res) : res.writableEnded;
  if (ended || readProperty(res, 'destroyed')) {
    scopeControl.close(scope, !ended);
    return;
  }
  const listed = endWithResponse(res, scope);
  if (!listed) wrapEnd(res, scope);
  // `on`, not `once`: closing twice is harmless, and `once` allocates a wrapper per request.
  const onClose = () => {
    // Usually fires after the response, when the scope has already ended.
    if (scope.ended) return;
    scopeControl.close(scope, !res.writableEnded);
    if (listed) forgetEnd(res, scope);
  };
  if (node) EventEmitter.prototype.on.call(res, 'close', onClose);
  else res.on('close', onClose);
}

// Express gives every response a hidden class of its own, so every property read on `res` misses
// V8's inline caches and walks the prototype chain in the runtime: `writableEnded` is a getter four
// objects up and `on` six. Reading both from their owners, with a smaller change to the close
// listener, took 13,000 instructions off each request of a route with a transaction
// (BENCHMARKS.md, section 1).
const writableEnded = (
  Object.getOwnPropertyDescriptor(OutgoingMessage.prototype, 'writableEnded') as {
    get: (this: OutgoingMessage) => boolean;
  }
).get;

// For a response that is not Express's: wrap its own `end`.
function wrapEnd(res: ServerResponse, scope: Scope): void {
  const end = res.end;
  const ownEnd = Object.hasOwn(res, 'end');
  res.end = function (this: ServerResponse, ...args: unknown[]) {
    if (ownEnd) res.end = end;
    else delete (res as Partial<ServerResponse>).end;
    const closing = scopeControl.close(scope, false, this.statusCode < 400);
    if (closing === undefined) return end.apply(this, args as Parameters<typeof end>);
    closing.then(
      () => {
        if (!this.writableEnded) end.apply(this, args as Parameters<typeof end>);
      },
      (error: unknown) => failResponse(this, error),
    );
    return this;
  } as typeof end;
}
