import { IncomingMessage } from 'node:http';

/** Puts `value` on `target[property]`; `res` is the Express response, or undefined for Koa. */
export type RequestSlot = (target: object, res: unknown, value: unknown) => void;

const keys = new Map<string, symbol>();
const accessors = new Map<string, PropertyDescriptor>();

/**
 * Makes the function that puts a request's scope (or eager transaction) on `req[property]` /
 * `ctx[property]`.
 *
 * Express gives every request a hidden class of its own (`Object.setPrototypeOf(req, app.request)`
 * in `app.handle`), so adding a property to `req` makes V8 build a new hidden class on every
 * request: about 1.5 µs, more than the rest of `app.use(db)` together on a route that never touches
 * the database (BENCHMARKS.md). So on Express the value goes into `res.locals`, a dictionary where
 * adding a key is a plain hash insert, under a symbol, and `req[property]` reads it through an
 * accessor on Express's request prototype. Assigning `req[property]` still works (it makes an own
 * property). Anything that is not a request of an Express app (Koa's context, a plain Node
 * request, a request that already has its own `property`) gets an ordinary property.
 *
 * @example
 * const put = requestSlot('db');
 * put(req, res, scope); // req.db === scope
 */
export function requestSlot(property: string): RequestSlot {
  const key = slotKey(property);
  let seen: object | null | undefined;
  let accessor = false;
  return (target, res, value) => {
    const locals = (res as { locals?: unknown } | undefined)?.locals;
    if (typeof locals === 'object' && locals !== null) {
      const proto = Object.getPrototypeOf(target) as object | null;
      if (proto !== seen) {
        accessor = installAccessor(proto, property);
        seen = proto;
      }
      if (accessor && !Object.hasOwn(target, property)) {
        (locals as Record<symbol, unknown>)[key] = value;
        return;
      }
    }
    (target as Record<string, unknown>)[property] = value;
  };
}

function slotKey(property: string): symbol {
  let key = keys.get(property);
  if (key === undefined) {
    key = Symbol(`knex-scope.${property}`);
    keys.set(property, key);
  }
  return key;
}

// On Express's base request object (the one whose prototype is IncomingMessage.prototype), so that
// every app and mounted sub-app of that Express copy sees it. False where there is no such object
// or it already has a `property` of someone else's.
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

function accessorFor(property: string): PropertyDescriptor {
  let descriptor = accessors.get(property);
  if (descriptor === undefined) {
    const key = slotKey(property);
    descriptor = {
      configurable: true,
      enumerable: false,
      get(this: { res?: { locals?: Record<symbol, unknown> } }) {
        return this.res?.locals?.[key];
      },
      set(this: object, value: unknown) {
        Object.defineProperty(this, property, {
          configurable: true,
          enumerable: true,
          writable: true,
          value,
        });
      },
    };
    accessors.set(property, descriptor);
  }
  return descriptor;
}
