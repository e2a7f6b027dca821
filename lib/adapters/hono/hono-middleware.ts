import type { Context, MiddlewareHandler } from 'hono';
import { type Scope, type ScopeCore, scopeControl } from '../../core/scope';
import { scopeStorage } from '../../core/scope-storage';
import { type ClosingResponse, closeWithResponse } from '../close-with-response';

/** Puts the scope (or what it opens) on the context; a promise delays the handler until it resolves. */
export type HonoAttach = (c: Context, scope: Scope) => Promise<void> | undefined;

/**
 * The Hono adapter: one scope per request, ended when `await next()` settles, which is before
 * the server writes the response, or at once when the client disconnects (`watchSignal`). With
 * `commit: 'on-success'`, a `next()` after which `c.error` is unset and the status is below 400
 * commits the lazy or eager session there, and a failed COMMIT is thrown from the middleware, so
 * that Hono answers it through `app.onError`.
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
 * Ends the scope when the client disconnects before the middleware ended it: on
 * @hono/node-server, when the Node response closes first (what aborts the request's signal
 * there); elsewhere, when the request's signal aborts.
 */
function watchSignal(scope: Scope, c: Context): void {
  // Not `c.req.raw.signal` on @hono/node-server: its first read makes that server build an
  // AbortController, and the listener an EventTarget entry, for every request: about 26,000
  // instructions, 6 % of a route with one SELECT on SQLite (BENCHMARKS.md, b-hono-sqlite).
  const outgoing = (c.env as { outgoing?: Partial<ClosingResponse> } | undefined)?.outgoing;
  if (typeof outgoing?.on === 'function' && typeof outgoing.writableEnded === 'boolean') {
    closeWithResponse(scope, outgoing as ClosingResponse);
    return;
  }
  const signal = c.req.raw.signal;
  if (signal.aborted) {
    scopeControl.close(scope, true);
    return;
  }
  signal.addEventListener('abort', () => {
    if (!scope.ended) scopeControl.close(scope, true);
  });
}
