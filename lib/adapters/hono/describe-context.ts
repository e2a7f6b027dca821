import type { RequestDescription } from '../../core/forgotten-sessions';

/**
 * The method, route and status of the request a Hono scope serves, from its host, the context:
 * `c.req.method`, the matched route's path (`c.req.routePath`) and `c.res.status`. Only read
 * when a forgotten session is reported.
 *
 * @example
 * describeContext(c); // { method: 'POST', route: '/orders/:id', status: 201 }
 */
export function describeContext(host: unknown): RequestDescription {
  const c = host as {
    req?: { method?: unknown; routePath?: unknown };
    res?: { status?: unknown };
  } | null;
  // c.res is made on first read; a scope ends after the handler, when it exists.
  const status = c?.res?.status;
  return {
    method: text(c?.req?.method),
    route: text(c?.req?.routePath),
    status: typeof status === 'number' ? status : undefined,
  };
}

function text(value: unknown): string | undefined {
  return typeof value === 'string' && value !== '' ? value : undefined;
}
