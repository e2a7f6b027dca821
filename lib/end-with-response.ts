import { OutgoingMessage, ServerResponse } from 'node:http';
import { expressBase, expressLocals } from './express-base';
import { type Scope, scopeControl } from './scope';

const endKey = Symbol('knex-scope.end');

type Locals = Record<symbol, Scope | Scope[] | undefined>;

let seen: object | null | undefined;
let hooked = false;
// Scopes listed in some response's `res.locals` and not yet taken off by `end` or `emit('close')`.
// While it is 0, which it is in any app whose in-flight requests have no open scope, the hooks read
// nothing from the response: on Express's per-request hidden classes a read of `res.locals`
// misses V8's caches and walks the prototype chain in the runtime.
let listed = 0;

/**
 * On a response of an Express app, arranges for `scope` to end with the response: inside
 * `res.end()`, where its open sessions are rolled back before the response is completed, or when
 * the response emits `close` first (the client went away). Returns false, arranging nothing, for any
 * other response.
 *
 * Express gives every response a hidden class of its own (`Object.setPrototypeOf(res,
 * app.response)`), so wrapping `res.end` per request, an own property added and later removed, cost
 * two new hidden classes per request, and `res.on('close')` three reads that miss V8's caches.
 * Instead one `end` and one `emit` on Express's base response object look for the scopes to end in
 * `res.locals`, under a symbol.
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
    hooked = installHooks(proto);
  }
  if (!hooked) return false;
  const pending = locals[endKey];
  locals[endKey] =
    pending === undefined ? scope : Array.isArray(pending) ? [...pending, scope] : [pending, scope];
  listed++;
  return true;
}

// On Express's base response object, so that every app and mounted sub-app of that Express copy
// has them. False, installing nothing, where there is no such object or it already has an `end` or
// an `emit` of someone else's.
function installHooks(proto: object | null): boolean {
  const base = expressBase(proto, ServerResponse.prototype);
  if (base === null) return false;
  const hooks = { end, emit };
  for (const [name, value] of Object.entries(hooks)) {
    const existing = Object.getOwnPropertyDescriptor(base, name);
    if (existing !== undefined && existing.value !== value) return false;
  }
  for (const [name, value] of Object.entries(hooks)) {
    Object.defineProperty(base, name, { configurable: true, writable: true, value });
  }
  return true;
}

type Method = (this: ServerResponse, ...args: unknown[]) => unknown;

/**
 * The getter of `res.writableEnded`, to call on a Node response. Express gives every response a
 * hidden class of its own, so every property read on `res` misses V8's inline caches and walks the
 * prototype chain in the runtime; `writableEnded` is a getter four objects up.
 *
 * @example
 * const ended = writableEnded.call(res);
 */
export const writableEnded = (
  Object.getOwnPropertyDescriptor(OutgoingMessage.prototype, 'writableEnded') as {
    get: (this: OutgoingMessage) => boolean;
  }
).get;

// Takes the response's scopes off the list: what `end` and `emit('close')` then end.
function takeListed(res: ServerResponse & { locals?: Locals }): Scope | Scope[] | undefined {
  const locals = res.locals;
  const pending = locals?.[endKey];
  if (pending === undefined) return undefined;
  (locals as Locals)[endKey] = undefined;
  listed -= Array.isArray(pending) ? pending.length : 1;
  return pending;
}

// Every response of the Express copy passes through here, with or without a scope: `arguments`,
// not a rest parameter, so that the common case allocates nothing.
function end(this: ServerResponse): ServerResponse {
  // Looked up on every call, so that a later patch of ServerResponse.prototype.end (an APM agent's,
  // say) still runs.
  const superEnd = (ServerResponse.prototype as unknown as { end: Method }).end;
  // biome-ignore lint/complexity/noArguments: see above
  const args = arguments as unknown as unknown[];
  if (listed === 0) return superEnd.apply(this, args) as ServerResponse;
  const pending = takeListed(this);
  if (pending === undefined) return superEnd.apply(this, args) as ServerResponse;
  const closing = Array.isArray(pending)
    ? Promise.all(pending.map((scope) => scopeControl.close(scope, false)))
    : scopeControl.close(pending, false);
  if (closing === undefined) return superEnd.apply(this, args) as ServerResponse;
  closing.then(() => {
    if (!this.writableEnded) superEnd.apply(this, args);
  });
  return this;
}

// Every event of every response of the Express copy passes through here. A scope still listed at
// `close` did not end in `res.end`: the client went away first, or the response was destroyed.
function emit(this: ServerResponse, name: unknown): boolean {
  const superEmit = (ServerResponse.prototype as unknown as { emit: Method }).emit;
  if (listed !== 0 && name === 'close') {
    const pending = takeListed(this);
    if (pending !== undefined) {
      const aborted = !writableEnded.call(this);
      for (const scope of Array.isArray(pending) ? pending : [pending]) {
        if (!scope.ended) scopeControl.close(scope, aborted);
      }
    }
  }
  // biome-ignore lint/complexity/noArguments: see end
  return superEmit.apply(this, arguments as unknown as unknown[]) as boolean;
}
