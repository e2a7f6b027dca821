import type { FastifyPluginCallback } from 'fastify';
import type { Knex } from 'knex';
import type { DbConfig } from '../../core/create-knex';
import { createScopeCore } from '../../core/create-scope-core';
import type { DbOptions } from '../../core/normalize-db-options';
import type { Scope } from '../../core/scope';
import { contextFree } from '../../core/scope-storage';
import { type Wrap, wrapHandler } from '../wrap/wrap-handler';
import { describeReply } from './describe-reply';
import { scopePlugin } from './scope-plugin';

/**
 * What `withDb` from `knex-scope/fastify` returns: a Fastify 5 plugin
 * (`await app.register(db)`), plus `db.wrap` for any other async handler and `db.destroy`.
 */
export interface Db extends FastifyPluginCallback {
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
   */
  readonly wrap: Wrap<Scope>;
  /**
   * Destroys the connection pool if knex-scope created it; a Knex instance you passed in is left
   * alone. The plugin calls it on Fastify's `onClose`; safe to call more than once.
   *
   * @example
   * await app.close(); // destroys the pool too
   */
  destroy(): Promise<void>;
}

/**
 * Request-scoped database sessions for Fastify 5: `await app.register(withDb(config))` gives
 * every request a scope as `request.db` (nameko's `Database`). The scope is made on the first
 * read of `request.db`, so a route that never reads it acquires nothing; it ends in `onSend`,
 * before the response is written, in `onError`, or when the client disconnects. A config or
 * option that cannot work throws InvalidConfigError here.
 *
 * @example
 * import Fastify from 'fastify';
 * import { withDb } from 'knex-scope/fastify';
 *
 * const app = Fastify();
 * await app.register(withDb(process.env.DATABASE_URL, { commit: 'on-success' }));
 * app.post('/orders', async (request, reply) => {
 *   const trx = await request.db.session;
 *   const [order] = await trx('orders').insert(request.body, ['id']);
 *   reply.code(201);
 *   return order; // committed before the response is sent
 * });
 */
export function withDb(config: DbConfig, options?: DbOptions): Db {
  const { core, property, destroy } = createScopeCore(config, options, 'db');
  const db: Db = Object.assign(scopePlugin(core, property, destroy, 'scope'), {
    knex: core.knex,
    wrap: wrapHandler(core, (scope) => scope),
    destroy,
  });
  core.describe = describeReply;
  core.owner = db;
  if (!core.context) contextFree.add(db);
  return db;
}
