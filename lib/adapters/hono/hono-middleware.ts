import type { Context, MiddlewareHandler } from 'hono';
import { type Scope, type ScopeCore, scopeControl } from '../../core/scope';
import { scopeStorage } from '../../core/scope-storage';

/** Puts the scope (or what it opens) on the context; a promise delays the handler until it resolves. */
export type HonoAttach = (c: Context, scope: Scope) => Promise<void> | undefined;

/**
 * The Hono adapter: one scope per request, ended when `await next()` settles, which is before
 * the server writes the response, or at once when the request's signal aborts (on
 * @hono/node-server: the client disconnected). With `commit: 'on-success'`, a `next()` after
 * which `c.error` is unset and the status is below 400 commits the lazy or eager session there,
 * and a failed COMMIT is thrown from the middleware, so that Hono answers it through `app.onError`.
 * Hono's compose keeps a handler's error in `c.error` rather than rethrowing it, which is why
 * `c.error` is read.
 *
 * @example
 * app.use(honoMiddleware(core, (c, scope) => { c.set('db', scope); return undefined; }));
 */
export function honoMiddleware(core: ScopeCore, attach: HonoAttach): MiddlewareHandler {
  const { context, commitOnSuccess } = core;
  return async function knexScope(c, next) {
    const scope = scopeControl.open(
      core,
      context ? scopeStorage.getStore() : undefined,
      watchSignal,
      c,
    );
    let succeeded = false;
    try {
      const ready = attach(c, scope);
      if (ready !== undefined) await ready;
      await (context ? scopeStorage.run(scope, next) : next());
      succeeded = commitOnSuccess && c.error === undefined && c.res.status < 400;
    } finally {
      const closing = scopeControl.close(scope, false, succeeded);
      if (closing !== undefined) await closing;
    }
  };
}

/**
 * Ends the scope when the request's signal aborts before the middleware ended it: on
 * @hono/node-server, when the client disconnects before the response is complete.
 *
 * @example
 * scopeControl.open(core, undefined, watchSignal, c);
 */
export function watchSignal(scope: Scope, c: Context): void {
  const signal = c.req.raw.signal;
  if (signal.aborted) {
    scopeControl.close(scope, true);
    return;
  }
  signal.addEventListener('abort', () => {
    if (!scope.ended) scopeControl.close(scope, true);
  });
}
