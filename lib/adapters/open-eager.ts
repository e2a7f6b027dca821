import type { Knex } from 'knex';
import { type Scope, scopeControl } from '../core/scope';

/**
 * Opens the eager session of `withLegacySession` in `scope` and hands its transaction to `put`.
 * When `retryTransaction` rolls back an attempt, the scope asks for a new one: opened the same
 * way, as long as `current()` still returns the stale transaction (a handler that replaced it
 * keeps its own).
 *
 * @example
 * await openEager(scope, () => req.dbSession, (trx) => { req.dbSession = trx; });
 */
export function openEager(
  scope: Scope,
  current: () => unknown,
  put: (trx: Knex.Transaction) => void,
): Promise<void> {
  const open = () => scope.session.then(put);
  scopeControl.setReopen(scope, (stale) => (current() === stale ? open() : Promise.resolve()));
  return open();
}
