import type { Knex } from 'knex';
import type {} from 'koa';
import type { Scope } from '../../core/scope';

export * from '../../index';

// Importing 'knex-scope/koa' (or anything from it) types ctx.db and ctx.dbSession; the main entry
// cannot, because augmenting 'koa' fails to compile where Koa's types are not installed.
declare module 'koa' {
  interface DefaultContext {
    /** The request's scope, from `app.use(withDb(config))`. */
    db: Scope;
    /** The eager transaction, from `app.use(withLegacySession(config))`. */
    dbSession: Knex.Transaction;
  }
}
