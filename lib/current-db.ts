import { NoScopeError } from './errors';
import { type Scope, scopeControl } from './scope';
import { scopeStorage } from './scope-storage';

/**
 * The scope of the request or wrapped handler this code runs in, from anywhere in its async
 * call tree. With several `withDb` middlewares, pass the `db` whose scope you want; without it
 * you get the innermost. Throws NoScopeError outside any scope.
 *
 * @example
 * async function saveOrder(order: Order) {
 *   const trx = await currentDb().session;
 *   await trx('orders').insert(order);
 * }
 */
export function currentDb(db?: object): Scope {
  let scope = scopeStorage.getStore();
  if (db !== undefined) {
    while (scope !== undefined && scopeControl.owner(scope) !== db)
      scope = scopeControl.outer(scope);
  }
  if (scope === undefined) {
    throw new NoScopeError(
      db === undefined
        ? 'currentDb() was called outside a scope: only code running inside a request handled by ' +
            'withDb() or inside a db.wrap() handler has one.'
        : 'currentDb(db) found no scope of that db here: is its middleware mounted before this handler?',
    );
  }
  return scope;
}
