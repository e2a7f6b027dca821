import { AsyncLocalStorage } from 'node:async_hooks';
import type { Scope } from './scope';

/**
 * The async context that carries the active scope through a handler's call tree. Internal to
 * knex-scope: read it with `currentDb()`.
 *
 * @example
 * scopeStorage.run(scope, next);
 */
export const scopeStorage = new AsyncLocalStorage<Scope | undefined>();

/**
 * The `withDb` / `withLegacySession` results created without the `currentDb` option: their scopes
 * are not in `scopeStorage`, and `currentDb(db)` says so. Internal to knex-scope.
 *
 * @example
 * if (!core.context) contextFree.add(db);
 */
export const contextFree = new WeakSet<object>();
