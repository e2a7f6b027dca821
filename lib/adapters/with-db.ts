import type { Knex } from 'knex';
import type { DbConfig } from '../core/create-knex';
import { createScopeCore } from '../core/create-scope-core';
import type { DbOptions } from '../core/normalize-db-options';
import type { Scope } from '../core/scope';
import { contextFree } from '../core/scope-storage';
import { describeRequest } from './describe-request';
import { requestSlot } from './express/request-slot';
import { type ScopeMiddleware, scopeMiddleware } from './scope-middleware';
import { type Wrap, wrapHandler } from './wrap/wrap-handler';

/**
 * What `withDb` returns: a middleware for Express and Koa (`app.use(db)`), plus `db.wrap` for
 * any other async handler and `db.destroy` for shutdown.
 */
export interface Db extends ScopeMiddleware {
  /** The Knex instance the scopes use. */
  readonly knex: Knex;
  /**
   * Wraps an async function so that every call runs in a scope of its own, passed as the first
   * argument; the scope ends when the function's promise settles.
   *
   * @example
   * const handle = db.wrap(async (scope, job: Job) => {
   *   await scope.getSession((trx) => trx('jobs').where({ id: job.id }).update({ done: true }));
   * });
   * await handle(job);
   */
  readonly wrap: Wrap<Scope>;
  /**
   * Destroys the connection pool if knex-scope created it (nameko's stop/kill); a Knex instance
   * you passed in is left alone. Safe to call more than once.
   *
   * @example
   * process.on('SIGTERM', () => server.close(() => db.destroy()));
   */
  destroy(): Promise<void>;
}

/**
 * Request-scoped database sessions (nameko's `Database`). `config` is a Knex config, a connection
 * URL or an existing Knex instance; a config that cannot work throws InvalidConfigError here.
 * Each request gets its own scope as `req.db` / `ctx.db`; see Scope for the three ways to use it.
 *
 * @example
 * const db = withDb(process.env.DATABASE_URL ?? 'sqlite::memory:');
 * app.use(db);
 * app.get('/orders', async (req, res) => {
 *   res.json(await req.db.getSession((trx) => trx('orders').select()));
 * });
 */
export function withDb(config: DbConfig, options?: DbOptions): Db {
  const { core, property, destroy } = createScopeCore(config, options, 'db');
  const slot = requestSlot(property);
  const middleware = scopeMiddleware(
    core,
    (target, scope, res) => {
      slot.put(target, res, scope);
      return undefined;
    },
    slot.defer,
  );
  const db: Db = Object.assign(middleware, {
    knex: core.knex,
    wrap: wrapHandler(core, (scope) => scope),
    destroy,
  });
  core.owner = db;
  core.describe = describeRequest;
  if (!core.context) contextFree.add(db);
  return db;
}
