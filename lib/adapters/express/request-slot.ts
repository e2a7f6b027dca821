import { IncomingMessage, type ServerResponse } from 'node:http';

/** Where a middleware puts the request's scope (or eager transaction): `req[property]` / `ctx[property]`. */
export interface RequestSlot {
  /** Puts `value` on `target[property]`; `res` is Express's response, undefined for Koa. */
  put(target: object, res: unknown, value: unknown): void;
  /**
   * On a request of an Express app, puts `value` there unmade: the first read of `req[property]`
   * calls `value.make(res)` and keeps what it returns. Returns false, and puts nothing, elsewhere.
   */
  defer(target: object, res: ServerResponse, value: Deferred): boolean;
}

/**
 * A value made on first read (see `RequestSlot.defer`). One per middleware, shared by its requests.
 *
 * @example
 * const deferred = new Deferred((res) => scopeControl.open(core, undefined, watchResponse, res));
 */
export class Deferred {
  readonly make: (res: ServerResponse) => unknown;

  constructor(make: (res: ServerResponse) => unknown) {
    this.make = make;
  }
}

type Locals = Record<symbol, unknown>;

const keys = new Map<string, symbol>();
const accessors = new Map<string, PropertyDescriptor>();

/**
 * Makes the slot for `property`. On Express the value goes into `res.locals` under a symbol, and
 * `req[property]` reads it through an accessor on Express's base request object (so every app and
 * mounted sub-app has it); assigning `req[property]` writes there too. Koa's context, a plain Node
 * request and a request without `res.locals` get an ordinary property.
 *
 * Why: Express gives every request a hidden class of its own (`Object.setPrototypeOf(req,
 * app.request)`, then properties added), so a property added to `req` copies that hidden class
 * on every request; adding a key to `res.locals`, a dictionary, does not. Saves about 25,000
 * instructions per request on a route without database (a-express in-process: 443.0k with a
 * plain `req.db = scope`, 417.3k with this; BENCHMARKS.md), without which a-express misses 0.99.
 *
 * @example
 * const slot = requestSlot('db');
 * slot.put(req, res, scope); // req.db === scope
 */
export function requestSlot(property: string): RequestSlot {
  const key = slotKey(property);
  let seen: object | null | undefined;
  let accessor = false;
  const localsOf = (target: object, res: unknown): Locals | undefined => {
    const locals = localsIn(res);
    if (locals === undefined) return undefined;
    const proto = Object.getPrototypeOf(target) as object | null;
    if (proto !== seen) {
      seen = proto;
      accessor = installAccessor(proto, property);
      // Set by a middleware that ran before the accessor existed: it would hide the accessor.
      if (accessor && Object.hasOwn(target, property)) {
        delete (target as Record<string, unknown>)[property];
      }
    }
    return accessor ? locals : undefined;
  };
  return {
    put(target, res, value) {
      const locals = localsOf(target, res);
      if (locals === undefined) (target as Record<string, unknown>)[property] = value;
      else locals[key] = value;
    },
    defer(target, res, value) {
      const locals = localsOf(target, res);
      if (locals === undefined) return false;
      locals[key] = value;
      return true;
    },
  };
}

// `res.locals` of an Express response, or undefined for any other response.
function localsIn(res: unknown): Locals | undefined {
  const locals =
    typeof res === 'object' && res !== null ? (res as { locals?: unknown }).locals : undefined;
  return typeof locals === 'object' && locals !== null ? (locals as Locals) : undefined;
}

function slotKey(property: string): symbol {
  let key = keys.get(property);
  if (key === undefined) {
    key = Symbol(`knex-scope.${property}`);
    keys.set(property, key);
  }
  return key;
}

// On Express's base request object, the one right above `IncomingMessage.prototype` in the chain,
// so that every app and mounted sub-app of that Express copy sees it. False where there is no
// such object or it already has a `property` of someone else's.
function installAccessor(proto: object | null, property: string): boolean {
  let base = proto;
  while (base !== null && Object.getPrototypeOf(base) !== IncomingMessage.prototype) {
    base = Object.getPrototypeOf(base) as object | null;
  }
  if (base === null) return false;
  const descriptor = accessorFor(property);
  const existing = Object.getOwnPropertyDescriptor(base, property);
  if (existing !== undefined) return existing.get === descriptor.get;
  Object.defineProperty(base, property, descriptor);
  return true;
}

interface ExpressRequest {
  res?: unknown;
}

function accessorFor(property: string): PropertyDescriptor {
  let descriptor = accessors.get(property);
  if (descriptor === undefined) {
    const key = slotKey(property);
    descriptor = {
      configurable: true,
      enumerable: false,
      get(this: ExpressRequest) {
        const res = this.res;
        const locals = localsIn(res);
        const value = locals?.[key];
        if (!(value instanceof Deferred)) return value;
        const made = value.make(res as ServerResponse);
        (locals as Locals)[key] = made;
        return made;
      },
      set(this: ExpressRequest, value: unknown) {
        const locals = localsIn(this.res);
        if (locals !== undefined) locals[key] = value;
        else {
          Object.defineProperty(this, property, {
            configurable: true,
            enumerable: true,
            writable: true,
            value,
          });
        }
      },
    };
    accessors.set(property, descriptor);
  }
  return descriptor;
}
