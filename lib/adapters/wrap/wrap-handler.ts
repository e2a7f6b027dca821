import { type Scope, type ScopeCore, scopeControl } from '../../core/scope';
import { scopeStorage } from '../../core/scope-storage';

/** `db.wrap`: gives any async function a scope of its own, as its first argument. */
export type Wrap<Value> = <This, A extends unknown[], R>(
  handler: (this: This, value: Value, ...args: A) => R,
) => (this: This, ...args: A) => Promise<Awaited<R>>;

/**
 * Builds `db.wrap` for a scope core: every call of the wrapped function runs in a scope of its
 * own, which ends, rolling back whatever is still open, when the handler's promise settles and
 * before the wrapped function's promise does. With `commit: 'on-success'`, a handler that resolved
 * has its lazy (or eager) session committed first, and a failed COMMIT rejects the call.
 *
 * @example
 * const wrap = wrapHandler(core, (scope) => scope);
 * const consume = wrap(async (scope, message: Message) => { ... });
 */
export function wrapHandler<Value>(
  core: ScopeCore,
  prepare: (scope: Scope) => Value | Promise<Value>,
): Wrap<Value> {
  return <This, A extends unknown[], R>(handler: (this: This, value: Value, ...args: A) => R) =>
    function wrapped(this: This, ...args: A): Promise<Awaited<R>> {
      const scope = scopeControl.open(core, core.context ? scopeStorage.getStore() : undefined);
      const run = async (): Promise<Awaited<R>> => {
        let succeeded = false;
        try {
          const result = await handler.call(this, await prepare(scope), ...args);
          succeeded = true;
          return result;
        } finally {
          // With commit: 'on-success', a failed COMMIT rejects in place of the handler's result.
          const closing = scopeControl.close(scope, false, succeeded);
          if (closing !== undefined) await closing;
        }
      };
      return core.context ? scopeStorage.run(scope, run) : run();
    };
}
