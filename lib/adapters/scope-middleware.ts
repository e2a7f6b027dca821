import type { ScopeCore } from '../core/scope';
import type { Attach } from './attach';
import { type Defer, type ExpressHandler, expressMiddleware } from './express/express-middleware';
import { type KoaContextLike, type KoaHandler, koaMiddleware } from './koa/koa-middleware';

/** A middleware that works in Express 4/5 (`req, res, next`) and Koa 2/3 (`ctx, next`). */
export interface ScopeMiddleware {
  (
    req: Parameters<ExpressHandler>[0],
    res: Parameters<ExpressHandler>[1],
    next: Parameters<ExpressHandler>[2],
  ): void;
  (ctx: KoaContextLike, next: () => Promise<unknown>): Promise<void>;
}

/**
 * Builds the middleware function `app.use()` receives, for both frameworks: Express passes a
 * `next` callback as the third argument, Koa passes two arguments.
 *
 * @example
 * const middleware = scopeMiddleware(core, attach, slot.defer);
 * expressApp.use(middleware);
 * koaApp.use(middleware);
 */
export function scopeMiddleware(core: ScopeCore, attach: Attach, defer?: Defer): ScopeMiddleware {
  const express = expressMiddleware(core, attach, defer);
  const koa = koaMiddleware(core, attach);
  return function knexScope(first: unknown, second: unknown, third?: unknown) {
    if (typeof third === 'function') {
      return express(
        first as Parameters<ExpressHandler>[0],
        second as Parameters<ExpressHandler>[1],
        third as Parameters<ExpressHandler>[2],
      );
    }
    return koa(first as KoaContextLike, second as () => Promise<unknown>);
  } as ScopeMiddleware;
}

export type { KoaHandler };
