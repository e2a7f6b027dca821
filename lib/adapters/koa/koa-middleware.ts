import type { ServerResponse } from 'node:http';
import { type Scope, type ScopeCore, scopeControl } from '../../core/scope';
import { scopeStorage } from '../../core/scope-storage';
import type { Attach } from '../attach';
import { closeWithResponse } from '../close-with-response';

/** The part of a Koa context knex-scope uses. */
export interface KoaContextLike {
  readonly res: ServerResponse;
}

/** The Koa signature of a knex-scope middleware. */
export type KoaHandler = (ctx: KoaContextLike, next: () => Promise<unknown>) => Promise<void>;

/**
 * The Koa adapter: one scope per request, torn down after `await next()` settles and so before
 * Koa writes the response, or at once when the client disconnects first. With `commit:
 * 'on-success'`, a `next()` that resolved with a status below 400 commits the lazy (or eager)
 * session there.
 *
 * @example
 * const slot = requestSlot('db');
 * app.use(koaMiddleware(core, (ctx, scope) => { slot.put(ctx, undefined, scope); return undefined; }));
 */
export function koaMiddleware(core: ScopeCore, attach: Attach): KoaHandler {
  const { context } = core;
  return async function knexScope(ctx, next) {
    const outer = context ? scopeStorage.getStore() : undefined;
    const scope = scopeControl.open(core, outer, watchClose, ctx);
    let succeeded = false;
    try {
      const ready = attach(ctx, scope, undefined);
      if (ready !== undefined) await ready;
      await (context ? scopeStorage.run(scope, next) : next());
      succeeded = ctx.res.statusCode < 400;
    } finally {
      // With commit: 'on-success', a failed COMMIT is thrown from here: Koa answers it with 500.
      const closing = scopeControl.close(scope, false, succeeded);
      if (closing !== undefined) await closing;
    }
  };
}

// Koa's middleware ends the scope after `next()`; its Node response's `close`, when the client left
// first.
function watchClose(scope: Scope, ctx: KoaContextLike): void {
  closeWithResponse(scope, ctx.res);
}
