import type { ServerResponse } from 'node:http';
import { type Scope, scopeControl } from '../../core/scope';
import { failResponse } from './fail-response';

/**
 * Arranges for `scope` to end inside `res.end()`: its open sessions are rolled back, and only then
 * is the response completed. It wraps this response's `end` with one that puts the previous `end`
 * back on its first call; two scopes on one response end one after the other.
 *
 * @example
 * endWithResponse(res, scope); // on the scope's first session
 */
export function endWithResponse(res: ServerResponse, scope: Scope): void {
  const end = res.end;
  const own = Object.hasOwn(res, 'end');
  res.end = function (this: ServerResponse, ...args: unknown[]) {
    if (own) res.end = end;
    else delete (res as Partial<ServerResponse>).end;
    // A status below 400 is what tells a handler that succeeded (commit: 'on-success'); a COMMIT
    // that fails turns the response into an error (failResponse) instead of completing it.
    const closing = scopeControl.close(scope, false, this.statusCode < 400);
    if (closing === undefined) return end.apply(this, args as Parameters<typeof end>);
    closing.then(
      () => {
        if (!this.writableEnded) end.apply(this, args as Parameters<typeof end>);
      },
      (error: unknown) => failResponse(this, error),
    );
    return this;
  } as typeof end;
}
