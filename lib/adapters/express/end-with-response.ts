import { ServerResponse } from 'node:http';
import { type Scope, scopeControl } from '../../core/scope';
import { expressBase, expressLocals } from './express-base';
import { failResponse } from './fail-response';

const endKey = Symbol('knex-scope.end');

type Locals = Record<symbol, Scope | Scope[] | undefined>;

let seen: object | null | undefined;
let hooked = false;
// Scopes listed in some response's `res.locals` and not yet taken off by `end` or `forgetEnd`.
// While it is 0, which it is in any app whose in-flight requests have no open scope, `end` reads
// nothing from the response: on Express's per-request hidden classes a read of `res.locals`
// misses V8's caches and walks the prototype chain in the runtime.
let listed = 0;

/**
 * On a response of an Express app, arranges for `scope` to end inside `res.end()`: its open
 * sessions are rolled back and only then is the response completed. Returns false, arranging
 * nothing, for any other response.
 *
 * Express gives every response a hidden class of its own (`Object.setPrototypeOf(res,
 * app.response)`), so wrapping `res.end` per request, an own property added and later removed, cost
 * two new hidden classes per request. Instead one `end` on Express's base response object looks
 * for the scopes to end in `res.locals`, under a symbol.
 *
 * @example
 * if (!endWithResponse(res, scope)) wrapEnd(res, scope);
 */
export function endWithResponse(res: ServerResponse, scope: Scope): boolean {
  const locals = expressLocals(res) as Locals | undefined;
  if (locals === undefined) return false;
  const proto = Object.getPrototypeOf(res) as object | null;
  if (proto !== seen) {
    seen = proto;
    hooked = installEnd(proto);
  }
  if (!hooked) return false;
  const pending = locals[endKey];
  locals[endKey] =
    pending === undefined ? scope : Array.isArray(pending) ? [...pending, scope] : [pending, scope];
  listed++;
  return true;
}

/**
 * Takes `scope` off the list of its response (see `endWithResponse`) when it ended without
 * `res.end()`: the client went away first. Call it once per such scope.
 *
 * @example
 * if (!scope.ended) { scopeControl.close(scope, true); forgetEnd(res, scope); } // on 'close'
 */
export function forgetEnd(res: ServerResponse, scope: Scope): void {
  listed--;
  const locals = expressLocals(res) as Locals | undefined;
  const pending = locals?.[endKey];
  if (pending === scope) (locals as Locals)[endKey] = undefined;
  else if (Array.isArray(pending)) {
    const rest = pending.filter((other) => other !== scope);
    (locals as Locals)[endKey] = rest.length === 0 ? undefined : rest.length === 1 ? rest[0] : rest;
  }
}

// On Express's base response object, so that every app and mounted sub-app of that Express copy
// has it. False where there is no such object or it already has an `end` of someone else's.
function installEnd(proto: object | null): boolean {
  const base = expressBase(proto, ServerResponse.prototype);
  if (base === null) return false;
  const existing = Object.getOwnPropertyDescriptor(base, 'end');
  if (existing !== undefined) return existing.value === end;
  Object.defineProperty(base, 'end', { configurable: true, writable: true, value: end });
  return true;
}

type End = (this: ServerResponse, ...args: unknown[]) => ServerResponse;

// Every response of the Express copy passes through here, with or without a scope: `arguments`,
// not a rest parameter, so that the common case allocates nothing.
function end(this: ServerResponse): ServerResponse {
  // Looked up on every call, so that a later patch of ServerResponse.prototype.end (an APM agent's,
  // say) still runs.
  const superEnd = (ServerResponse.prototype as unknown as { end: End }).end;
  // biome-ignore lint/complexity/noArguments: see above
  const args = arguments as unknown as unknown[];
  if (listed === 0) return superEnd.apply(this, args);
  const locals = expressLocals(this) as Locals | undefined;
  const pending = locals?.[endKey];
  if (pending === undefined) return superEnd.apply(this, args);
  (locals as Locals)[endKey] = undefined;
  listed -= Array.isArray(pending) ? pending.length : 1;
  // A status below 400 is what tells a handler that succeeded (commit: 'on-success').
  const succeeded = this.statusCode < 400;
  const closing = Array.isArray(pending)
    ? closeAll(pending, succeeded)
    : scopeControl.close(pending, false, succeeded);
  if (closing === undefined) return superEnd.apply(this, args);
  closing.then(
    () => {
      if (!this.writableEnded) superEnd.apply(this, args);
    },
    (error: unknown) => failResponse(this, error),
  );
  return this;
}

// Every scope ends before the first COMMIT error, if any, is rethrown.
async function closeAll(scopes: Scope[], succeeded: boolean): Promise<void> {
  let failure: { error: unknown } | undefined;
  await Promise.all(
    scopes.map((scope) =>
      scopeControl.close(scope, false, succeeded)?.catch((error: unknown) => {
        failure ??= { error };
      }),
    ),
  );
  if (failure !== undefined) throw failure.error;
}
