import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Knex } from 'knex';
import { type Scope, type ScopeCore, scopeControl } from '../../core/scope';
import { scopeStorage } from '../../core/scope-storage';
import type { Attach } from '../attach';
import { closeWithResponse } from '../close-with-response';
import { endWithResponse } from './end-with-response';
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
 * `withDb`'s way on Express (`RequestSlot.defer`): puts a scope that is opened on the first read
 * of `req.db`; false where it cannot, and the scope is then opened at once.
 */
export type Defer = (req: object, res: ServerResponse, value: Deferred) => boolean;

/** The Express signature of a knex-scope middleware. */
export type ExpressHandler = (
  req: IncomingMessage,
  res: ServerResponse,
  next: (error?: unknown) => void,
) => void;

/**
 * The Express adapter: one scope per request. A scope that is asked for a session (or for
 * `signal`, `ended`, `aborted`) is torn down when the handler ends the response (`res.end`, which
 * `res.send`, `res.json`, `res.sendFile` and `res.redirect` all call) and before the response is
 * completed, or at once when the client disconnects first. A request that never asks gets no hook
 * and no listener, and with `defer` (withDb) no scope either, only a key in `res.locals`.
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
  closeWithResponse(scope, res);
  if (!scope.ended) endWithResponse(res, scope);
}
