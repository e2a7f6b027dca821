import type { RequestDescription } from '../../core/forgotten-sessions';

/**
 * The method, route and status of the request a Fastify scope serves, from its host, the reply:
 * `request.method`, the route's URL pattern (`request.routeOptions.url`) and `reply.statusCode`.
 * Only read when a forgotten session is reported.
 *
 * @example
 * describeReply(reply); // { method: 'POST', route: '/orders/:id', status: 201 }
 */
export function describeReply(host: unknown): RequestDescription {
  const reply = host as {
    statusCode?: unknown;
    request?: { method?: unknown; routeOptions?: { url?: unknown } };
  } | null;
  const request = reply?.request;
  return {
    method: text(request?.method),
    route: text(request?.routeOptions?.url),
    status: typeof reply?.statusCode === 'number' ? reply.statusCode : undefined,
  };
}

function text(value: unknown): string | undefined {
  return typeof value === 'string' && value !== '' ? value : undefined;
}
