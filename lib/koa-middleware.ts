import type { ServerResponse } from 'node:http';
import type { Attach } from './express-middleware';
import { type ScopeCore, scopeControl } from './scope';
import { scopeStorage } from './scope-storage';

/** The part of a Koa context knex-scope uses. */
export interface KoaContextLike {
  readonly res: ServerResponse;
}

/** The Koa signature of a knex-scope middleware. */
export type KoaHandler = (ctx: KoaContextLike, next: () => Promise<unknown>) => Promise<void>;

/**
 * The Koa adapter: one scope per request, torn down after `await next()` settles and so before
 * Koa writes the response, or at once when the client disconnects first.
 *
 * @example
 * app.use(koaMiddleware(core, (ctx, scope) => { ctx.db = scope; return undefined; }));
 */
export function koaMiddleware(core: ScopeCore, attach: Attach): KoaHandler {
  return async function knexScope(ctx, next) {
    const scope = scopeControl.open(core, scopeStorage.getStore());
    const res = ctx.res;
    const onClose = () => {
      scopeControl.close(scope, !res.writableEnded);
    };
    res.once('close', onClose);
    try {
      const ready = attach(ctx as unknown as Record<string, unknown>, scope);
      if (ready !== undefined) await ready;
      await scopeStorage.run(scope, next);
    } finally {
      res.off('close', onClose);
      const closing = scopeControl.close(scope, false);
      if (closing !== undefined) await closing;
    }
  };
}
