import type { IncomingMessage, RequestListener, ServerResponse } from 'node:http';
import type { PopulateResult, ProxyCollection } from './proxy-collection';
import type { ProxyJson, TcpProxy } from './tcp-proxy';
import { toxicJson } from './toxic';
import { ToxiproxyApiError } from './toxiproxy-api-error';

/** The Toxiproxy version the API reports: clients sniff it, so it is Toxiproxy's, not ours. */
export const toxiproxyVersion = '2.12.0';

type Method = 'GET' | 'POST' | 'PATCH' | 'DELETE';

interface Reply {
  status: number;
  body?: unknown;
}

type Action = (params: string[], body: () => unknown) => Promise<Reply>;

interface Route {
  pattern: string[];
  methods: Partial<Record<Method, Action>>;
}

function readBody(request: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    request.on('error', reject);
  });
}

/** Parses a request body as JSON whatever its content type (nameko sends none). */
function parseJson(text: string): unknown {
  if (text.trim() === '') throw new ToxiproxyApiError(400, 'bad request body: EOF');
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new ToxiproxyApiError(400, `bad request body: ${(error as Error).message}`);
  }
}

function sendJson(response: ServerResponse, status: number, body: unknown, newline = false): void {
  response.writeHead(status, { 'Content-Type': 'application/json' });
  response.end(`${JSON.stringify(body)}${newline ? '\n' : ''}`);
}

/** Go's `http.Error`: a JSON body, but a text/plain content type, and a trailing newline. */
function sendError(response: ServerResponse, error: ToxiproxyApiError): void {
  response.writeHead(error.status, {
    'Content-Type': 'text/plain; charset=utf-8',
    'X-Content-Type-Options': 'nosniff',
  });
  response.end(`${JSON.stringify({ error: error.message, status: error.status })}\n`);
}

function proxiesObject(proxies: TcpProxy[]): Record<string, ProxyJson> {
  const object: Record<string, ProxyJson> = {};
  for (const proxy of proxies) object[proxy.name] = proxy.toJSON();
  return object;
}

/**
 * The HTTP API of Toxiproxy 2.x over a proxy collection: every endpoint, status code and error
 * body of Shopify's server, for `node:http`'s `createServer`.
 *
 * @example
 * const server = createServer(createToxiproxyApi(new ProxyCollection(Math.random)));
 */
export function createToxiproxyApi(proxies: ProxyCollection): RequestListener {
  // Toxiproxy 2.6+ takes PATCH for updates; POST still works (deprecated).
  const updateProxy: Action = async ([name], body) => ({
    status: 200,
    body: (await proxies.update(name!, body())).toJSON(),
  });
  const updateToxic: Action = async ([name, toxic], body) => ({
    status: 200,
    body: toxicJson(await proxies.updateToxic(name!, toxic!, body())),
  });
  const routes: Route[] = [
    {
      pattern: ['version'],
      methods: {
        GET: async () => ({ status: 200, body: { version: toxiproxyVersion } }),
      },
    },
    {
      pattern: ['reset'],
      methods: {
        POST: async () => {
          await proxies.reset();
          return { status: 204 };
        },
      },
    },
    {
      pattern: ['populate'],
      methods: {
        POST: async (_, body) => {
          let result: PopulateResult;
          try {
            result = await proxies.populate(body());
          } catch (error) {
            if (!(error instanceof ToxiproxyApiError)) throw error;
            result = { proxies: [], error };
          }
          const list = result.proxies.map((proxy) => proxy.toJSON());
          const { error } = result;
          if (!error) return { status: 201, body: { proxies: list } };
          return {
            status: error.status,
            body: { error: error.message, status: error.status, proxies: list },
          };
        },
      },
    },
    {
      pattern: ['proxies'],
      methods: {
        GET: async () => ({ status: 200, body: proxiesObject(proxies.list()) }),
        POST: async (_, body) => ({ status: 201, body: (await proxies.create(body())).toJSON() }),
      },
    },
    {
      pattern: ['proxies', ':proxy'],
      methods: {
        GET: async ([name]) => ({ status: 200, body: proxies.get(name!).toJSON() }),
        POST: updateProxy,
        PATCH: updateProxy,
        DELETE: async ([name]) => {
          await proxies.remove(name!);
          return { status: 204 };
        },
      },
    },
    {
      pattern: ['proxies', ':proxy', 'toxics'],
      methods: {
        GET: async ([name]) => ({ status: 200, body: proxies.get(name!).toxics.map(toxicJson) }),
        POST: async ([name], body) => ({
          status: 200,
          body: toxicJson(await proxies.addToxic(name!, body())),
        }),
      },
    },
    {
      pattern: ['proxies', ':proxy', 'toxics', ':toxic'],
      methods: {
        GET: async ([name, toxic]) => ({
          status: 200,
          body: toxicJson(proxies.getToxic(name!, toxic!)),
        }),
        POST: updateToxic,
        PATCH: updateToxic,
        DELETE: async ([name, toxic]) => {
          await proxies.removeToxic(name!, toxic!);
          return { status: 204 };
        },
      },
    },
  ];

  const match = (segments: string[]): { route: Route; params: string[] } | undefined => {
    for (const route of routes) {
      if (route.pattern.length !== segments.length) continue;
      const params: string[] = [];
      const matches = route.pattern.every((part, index) => {
        const segment = segments[index]!;
        if (part.startsWith(':')) {
          params.push(segment);
          return segment !== '';
        }
        return part === segment;
      });
      if (matches) return { route, params };
    }
    return undefined;
  };

  const handle = async (request: IncomingMessage, response: ServerResponse): Promise<void> => {
    if (request.headers['user-agent']?.startsWith('Mozilla/')) {
      response.writeHead(403, { 'Content-Type': 'text/plain; charset=utf-8' });
      response.end('User agent not allowed\n');
      return;
    }
    const path = (request.url ?? '/').split('?')[0]!;
    let segments: string[];
    try {
      segments = path.slice(1).split('/').map(decodeURIComponent);
    } catch {
      throw new ToxiproxyApiError(404, 'not found');
    }
    const found = match(segments);
    if (!found) throw new ToxiproxyApiError(404, 'not found');
    const action = found.route.methods[request.method as Method];
    if (!action) throw new ToxiproxyApiError(405, 'method not allowed');
    const text = await readBody(request);
    const reply = await action(found.params, () => parseJson(text));
    if (reply.status === 204 || reply.body === undefined) {
      response.writeHead(reply.status);
      response.end();
    } else {
      sendJson(response, reply.status, reply.body, found.route.pattern[0] === 'version');
    }
  };

  return (request, response) => {
    handle(request, response).catch((error: unknown) => {
      if (response.headersSent) {
        response.destroy();
        return;
      }
      sendError(
        response,
        error instanceof ToxiproxyApiError
          ? error
          : new ToxiproxyApiError(500, error instanceof Error ? error.message : String(error)),
      );
    });
  };
}
