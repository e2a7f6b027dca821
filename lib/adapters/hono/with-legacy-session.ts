import type { MiddlewareHandler } from 'hono';
import type { Knex } from 'knex';
import type { DbConfig } from '../../core/create-knex';
import { createScopeCore } from '../../core/create-scope-core';
import type { DbOptions } from '../../core/normalize-db-options';
import { contextFree } from '../../core/scope-storage';
import { openEager } from '../open-eager';
import { type Wrap, wrapHandler } from '../wrap/wrap-handler';
import { describeContext } from './describe-context';
import { honoMiddleware } from './hono-middleware';

/** What `withLegacySession` from `knex-scope/hono` returns: the middleware, `wrap`, `knex`, `destroy`. */
export interface LegacySession<Property extends string = 'dbSession'>
  extends MiddlewareHandler<{ Variables: { [K in Property]: Knex.Transaction } }> {
  readonly knex: Knex;
  /** Like `db.wrap`, but the handler's first argument is the already open transaction. */
  readonly wrap: Wrap<Knex.Transaction>;
  destroy(): Promise<void>;
}

/**
 * The eager session (nameko's `DatabaseSession`) for Hono 4: the transaction is opened, BEGIN
 * sent, before the handler runs, and set as `c.var.dbSession` (or `options.property`). It is
 * rolled back when the scope ends unless the handler committed it (or, with `commit:
 * 'on-success'`, committed when the handler succeeded). If it cannot be opened, the handler does
 * not run and the error goes to `app.onError`.
 *
 * @example
 * app.use(withLegacySession(process.env.DATABASE_URL));
 * app.post('/orders', async (c) => {
 *   await c.var.dbSession('orders').insert(await c.req.json());
 *   await c.var.dbSession.commit();
 *   return c.body(null, 201);
 * });
 */
export function withLegacySession<Property extends string = 'dbSession'>(
  config: DbConfig,
  options?: DbOptions & { readonly property?: Property },
): LegacySession<Property> {
  const { core, property, destroy } = createScopeCore(config, options, 'dbSession');
  const middleware = honoMiddleware(core, (c, scope) =>
    openEager(
      scope,
      () => c.get(property as never),
      (trx) => c.set(property as never, trx as never),
    ),
  );
  const legacy: LegacySession<Property> = Object.assign(middleware, {
    knex: core.knex,
    wrap: wrapHandler(core, (scope) => scope.session),
    destroy,
  });
  core.describe = describeContext;
  core.eager = true;
  core.owner = legacy;
  if (!core.context) contextFree.add(legacy);
  return legacy;
}
