import type { Knex } from 'knex';
import type { Scope } from '../../core/scope';

// The same API as 'knex-scope', except that withDb and withLegacySession return Fastify plugins.
export * from '../../index';
export { type Db, withDb } from './with-db';
export { type LegacySession, withLegacySession } from './with-legacy-session';

// Importing 'knex-scope/fastify' types request.db and request.dbSession.
declare module 'fastify' {
  interface FastifyRequest {
    /** The request's scope, from `await app.register(withDb(config))`. */
    db: Scope;
    /** The eager transaction, from `await app.register(withLegacySession(config))`. */
    dbSession: Knex.Transaction;
  }
}
