/**
 * The object of an Express copy that sits right above Node's `nodePrototype` in `proto`'s chain:
 * Express's base request (above `IncomingMessage.prototype`) or base response (above
 * `ServerResponse.prototype`). Every app and mounted sub-app of that Express copy inherits from it.
 * Null when the chain has no such object (a plain Node request or response).
 *
 * @example
 * expressBase(Object.getPrototypeOf(req), IncomingMessage.prototype); // express/lib/request.js
 */
export function expressBase(proto: object | null, nodePrototype: object): object | null {
  let base = proto;
  while (base !== null && Object.getPrototypeOf(base) !== nodePrototype) {
    base = Object.getPrototypeOf(base) as object | null;
  }
  return base;
}

/**
 * `res.locals` of an Express response, or undefined for any other response.
 *
 * @example
 * expressLocals(res)?.[key];
 */
export function expressLocals(res: unknown): Record<symbol, unknown> | undefined {
  const locals = (res as { locals?: unknown } | null | undefined)?.locals;
  return typeof locals === 'object' && locals !== null
    ? (locals as Record<symbol, unknown>)
    : undefined;
}
