import type { MiddlewareHandler } from 'hono';
import type { Knex } from 'knex';
import type { DbConfig } from '../../core/create-knex';
import { createScopeCore } from '../../core/create-scope-core';
import type { DbOptions } from '../../core/normalize-db-options';
import type { Scope } from '../../core/scope';
import { contextFree } from '../../core/scope-storage';
import { type Wrap, wrapHandler } from '../wrap/wrap-handler';
import { describeContext } from './describe-context';
import { honoMiddleware } from './hono-middleware';

/**
 * What `withDb` from `knex-scope/hono` returns: a Hono middleware (`app.use(db)`) that sets
 * `c.var[Property]`, plus `db.wrap` for any other async handler and `db.destroy` for shutdown.
 */
export interface Db<Property extends string = 'db'>
  extends MiddlewareHandler<{ Variables: { [K in Property]: Scope } }> {
  /** The Knex instance the scopes use. */
  readonly knex: Knex;
  /**
   * Wraps an async function so that every call runs in a scope of its own, passed as the first
   * argument; the scope ends when the function's promise settles. Use it for the callback of
   * `stream()` / `streamSSE()`, which runs after the request's scope has ended.
   *
   * @example
   * app.get('/events', (c) => streamSSE(c, db.wrap(async (scope, sse) => {
   *   const rows = await scope.getSession((trx) => trx('events').select());
   *   await sse.writeSSE({ data: JSON.stringify(rows) });
   * })));
   */
  readonly wrap: Wrap<Scope>;
  /**
   * Destroys the connection pool if knex-scope created it; a Knex instance you passed in is left
   * alone. Safe to call more than once.
   *
   * @example
   * process.on('SIGTERM', () => server.close(() => db.destroy()));
   */
  destroy(): Promise<void>;
}

/**
 * Request-scoped database sessions for Hono 4: `app.use(withDb(config))` gives every request a
 * scope as `c.var.db` / `c.get('db')` (nameko's `Database`). The scope acquires no connection
 * until a session is asked for; it ends when `await next()` settles, before the response is
 * written, or when the request's signal aborts (the client disconnected). A config or option that
 * cannot work throws InvalidConfigError here.
 *
 * @example
 * import { Hono } from 'hono';
 * import { withDb } from 'knex-scope/hono';
 *
 * const app = new Hono();
 * app.use(withDb(process.env.DATABASE_URL, { commit: 'on-success' }));
 * app.post('/orders', async (c) => {
 *   const trx = await c.var.db.session;
 *   const [order] = await trx('orders').insert(await c.req.json(), ['id']);
 *   return c.json(order, 201); // committed before the response is sent
 * });
 */
export function withDb<Property extends string = 'db'>(
  config: DbConfig,
  options?: DbOptions & { readonly property?: Property },
): Db<Property> {
  const { core, property, destroy } = createScopeCore(config, options, 'db');
  const middleware = honoMiddleware(core, (c, scope) => {
    c.set(property as never, scope as never);
    return undefined;
  });
  const db: Db<Property> = Object.assign(middleware, {
    knex: core.knex,
    wrap: wrapHandler(core, (scope) => scope),
    destroy,
  });
  core.describe = describeContext;
  core.owner = db;
  if (!core.context) contextFree.add(db);
  return db;
}
