import type { RequestDescription } from '../core/forgotten-sessions';

/**
 * The method, route and status of the request a scope serves, from its host: Express's `res`
 * (the route Express matched, `req.baseUrl` + `req.route.path`) or Koa's `ctx` (the route
 * @koa/router and koa-router matched, `ctx._matchedRoute`). Only read when a forgotten session is
 * reported.
 *
 * @example
 * describeRequest(res); // { method: 'POST', route: '/orders/:id', status: 201 }
 */
export function describeRequest(host: unknown): RequestDescription {
  if (typeof host !== 'object' || host === null) return none;
  const koaRes = Reflect.get(host, 'res');
  if (typeof koaRes === 'object' && koaRes !== null) {
    const matched = Reflect.get(host, '_matchedRoute') ?? Reflect.get(host, 'routerPath');
    return {
      method: text(Reflect.get(host, 'method')),
      route: text(matched),
      status: status(Reflect.get(host, 'status')),
    };
  }
  const req = Reflect.get(host, 'req');
  if (typeof req !== 'object' || req === null) return none;
  const route = Reflect.get(req, 'route') as { path?: unknown } | undefined;
  const path = route?.path;
  return {
    method: text(Reflect.get(req, 'method')),
    route:
      path === undefined || path === null
        ? undefined
        : `${text(Reflect.get(req, 'baseUrl')) ?? ''}${String(path)}`,
    status: status(Reflect.get(host, 'statusCode')),
  };
}

const none: RequestDescription = { method: undefined, route: undefined, status: undefined };

function status(value: unknown): number | undefined {
  return typeof value === 'number' ? value : undefined;
}

function text(value: unknown): string | undefined {
  return typeof value === 'string' && value !== '' ? value : undefined;
}
