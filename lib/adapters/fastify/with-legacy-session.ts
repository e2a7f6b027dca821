import type { FastifyPluginCallback } from 'fastify';
import type { Knex } from 'knex';
import type { DbConfig } from '../../core/create-knex';
import { createScopeCore } from '../../core/create-scope-core';
import type { DbOptions } from '../../core/normalize-db-options';
import { contextFree } from '../../core/scope-storage';
import { type Wrap, wrapHandler } from '../wrap/wrap-handler';
import { describeReply } from './describe-reply';
import { scopePlugin } from './scope-plugin';

/** What `withLegacySession` from `knex-scope/fastify` returns: the plugin, `wrap`, `knex`, `destroy`. */
export interface LegacySession extends FastifyPluginCallback {
  readonly knex: Knex;
  /** Like `db.wrap`, but the handler's first argument is the already open transaction. */
  readonly wrap: Wrap<Knex.Transaction>;
  destroy(): Promise<void>;
}

/**
 * The eager session (nameko's `DatabaseSession`) for Fastify 5: the transaction is opened, BEGIN
 * sent, in a `preHandler` hook, and put on the request as `request.dbSession` (or
 * `options.property`). It is rolled back when the scope ends unless the handler committed it (or,
 * with `commit: 'on-success'`, committed when the handler succeeded). If it cannot be opened, the
 * handler does not run and the error goes to Fastify's error handling.
 *
 * @example
 * await app.register(withLegacySession(process.env.DATABASE_URL));
 * app.post('/orders', async (request, reply) => {
 *   await request.dbSession('orders').insert(request.body);
 *   await request.dbSession.commit();
 *   reply.code(201).send();
 * });
 */
export function withLegacySession(config: DbConfig, options?: DbOptions): LegacySession {
  const { core, property, destroy } = createScopeCore(config, options, 'dbSession');
  const legacy: LegacySession = Object.assign(scopePlugin(core, property, destroy, 'eager'), {
    knex: core.knex,
    wrap: wrapHandler(core, (scope) => scope.session),
    destroy,
  });
  core.describe = describeReply;
  core.eager = true;
  core.owner = legacy;
  if (!core.context) contextFree.add(legacy);
  return legacy;
}
