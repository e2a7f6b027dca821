import type { Knex } from 'knex';
import type { DbConfig } from '../core/create-knex';
import { createScopeCore } from '../core/create-scope-core';
import type { DbOptions } from '../core/normalize-db-options';
import { contextFree } from '../core/scope-storage';
import { describeRequest } from './describe-request';
import { requestSlot } from './express/request-slot';
import { openEager } from './open-eager';
import { type ScopeMiddleware, scopeMiddleware } from './scope-middleware';
import { type Wrap, wrapHandler } from './wrap/wrap-handler';

/** Options of `withLegacySession`: as `withDb`'s, with `property` defaulting to `dbSession`. */
export type LegacySessionOptions = DbOptions;

/** What `withLegacySession` returns: the middleware, `wrap`, `knex` and `destroy`, as `withDb`. */
export interface LegacySession extends ScopeMiddleware {
  readonly knex: Knex;
  /** Like `db.wrap`, but the handler's first argument is the already open transaction. */
  readonly wrap: Wrap<Knex.Transaction>;
  destroy(): Promise<void>;
}

/**
 * The eager session (nameko's `DatabaseSession`): a transaction is opened, BEGIN sent, before the
 * handler runs, and put on the request (`req.dbSession` / `ctx.dbSession`, or `options.property`;
 * never `session`, which express-session owns). It is rolled back at the end unless the handler
 * committed it. If it cannot be opened, the handler does not run and the error goes to the
 * framework's error handling.
 *
 * @example
 * app.use(withLegacySession(process.env.DATABASE_URL));
 * app.post('/orders', async (req, res) => {
 *   await req.dbSession('orders').insert(req.body);
 *   await req.dbSession.commit();
 *   res.status(201).end();
 * });
 */
export function withLegacySession(config: DbConfig, options?: LegacySessionOptions): LegacySession {
  const { core, property, destroy } = createScopeCore(config, options, 'dbSession');
  const slot = requestSlot(property);
  const middleware = scopeMiddleware(core, (target, scope, res) =>
    openEager(
      scope,
      () => (target as Record<string, unknown>)[property],
      (trx) => slot.put(target, res, trx),
    ),
  );
  const legacy: LegacySession = Object.assign(middleware, {
    knex: core.knex,
    wrap: wrapHandler(core, (scope) => scope.session),
    destroy,
  });
  core.owner = legacy;
  core.describe = describeRequest;
  core.eager = true;
  if (!core.context) contextFree.add(legacy);
  return legacy;
}
