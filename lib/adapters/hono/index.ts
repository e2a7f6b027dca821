import type { Knex } from 'knex';
import type { Scope } from '../../core/scope';

// The same API as 'knex-scope', except that withDb and withLegacySession return Hono middleware.
export * from '../../index';
export { type Db, withDb } from './with-db';
export { type LegacySession, withLegacySession } from './with-legacy-session';

// Importing 'knex-scope/hono' types c.var.db and c.var.dbSession in every app, as importing
// 'knex-scope/koa' types ctx.db; the middleware's own type carries them (and a custom `property`)
// through chained calls: `new Hono().use(withDb(config)).get('/', (c) => c.var.db)`.
declare module 'hono' {
  interface ContextVariableMap {
    /** The request's scope, from `app.use(withDb(config))`. */
    db: Scope;
    /** The eager transaction, from `app.use(withLegacySession(config))`. */
    dbSession: Knex.Transaction;
  }
}
