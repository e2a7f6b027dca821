import { NoScopeError } from './errors';
import { type Scope, scopeControl } from './scope';
import { contextFree, scopeStorage } from './scope-storage';

/**
 * The scope of the request or wrapped handler this code runs in, from anywhere in its async
 * call tree, for scopes of a `withDb(config, { currentDb: true })`. With several `withDb`
 * middlewares, pass the `db` whose scope you want; without it you get the innermost. Throws
 * NoScopeError outside any such scope.
 *
 * @example
 * const db = withDb(config, { currentDb: true });
 * app.use(db);
 *
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
    if (db !== undefined && contextFree.has(db)) {
      throw new NoScopeError(
        'currentDb(db) cannot find the scopes of a db created without the currentDb option: ' +
          'create it with withDb(config, { currentDb: true }), or pass req.db / the scope along.',
      );
    }
    throw new NoScopeError(
      db === undefined
        ? 'currentDb() found no scope here: it finds the scope of a request or db.wrap() handler ' +
            'of a withDb(config, { currentDb: true }) only. Pass that option, call it inside such ' +
            'a handler, or pass req.db / the scope along.'
        : 'currentDb(db) found no scope of that db here: is its middleware mounted before this handler?',
    );
  }
  return scope;
}
