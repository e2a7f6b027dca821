import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Knex } from 'knex';
import { type Scope, type ScopeCore, scopeControl } from './scope';
import { scopeStorage } from './scope-storage';

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

/** Puts the scope (or what it opens) on the request; a promise delays the handler until it resolves. */
export type Attach = (target: Record<string, unknown>, scope: Scope) => Promise<void> | undefined;

/** The Express signature of a knex-scope middleware. */
export type ExpressHandler = (
  req: IncomingMessage,
  res: ServerResponse,
  next: (error?: unknown) => void,
) => void;

/**
 * The Express adapter: one scope per request, torn down when the handler ends the response
 * (`res.end`, which `res.send`, `res.json`, `res.sendFile` and `res.redirect` all call) and
 * before the response is completed, or at once when the client disconnects first.
 *
 * @example
 * app.use(expressMiddleware(core, (req, scope) => { req.db = scope; return undefined; }));
 */
export function expressMiddleware(core: ScopeCore, attach: Attach): ExpressHandler {
  return function knexScope(req, res, next) {
    const scope = scopeControl.open(core, scopeStorage.getStore());
    const end = res.end;
    res.end = function (this: ServerResponse, ...args: unknown[]) {
      res.end = end;
      const closing = scopeControl.close(scope, false);
      if (closing === undefined) return end.apply(this, args as Parameters<typeof end>);
      closing.then(() => {
        if (!this.writableEnded) end.apply(this, args as Parameters<typeof end>);
      });
      return this;
    } as typeof end;
    res.once('close', () => {
      scopeControl.close(scope, !res.writableEnded);
    });
    const ready = attach(req as unknown as Record<string, unknown>, scope);
    if (ready === undefined) scopeStorage.run(scope, next);
    else ready.then(() => scopeStorage.run(scope, next), next);
  };
}
