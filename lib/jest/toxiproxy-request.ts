import { request } from 'node:http';
import { normalizeApiUrl } from '../testing/toxiproxy-urls';

/**
 * One call to a Toxiproxy HTTP API, on a connection of its own that is closed afterwards (nothing
 * left to keep jest's parent process alive). Resolves to the parsed JSON body (undefined when
 * empty); rejects on a status of 400 or more with the server's message.
 *
 * @example
 * await toxiproxyRequest('http://127.0.0.1:8474', 'POST', '/proxies', {
 *   name: 'pg',
 *   listen: '127.0.0.1:0',
 *   upstream: '127.0.0.1:5432',
 * });
 */
export function toxiproxyRequest<T = unknown>(
  apiUrl: string,
  method: 'GET' | 'POST' | 'DELETE',
  path: string,
  body?: unknown,
): Promise<T> {
  const url = new URL(path, `${normalizeApiUrl(apiUrl)}/`);
  const payload = body === undefined ? undefined : JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      {
        method,
        agent: false,
        headers: payload === undefined ? {} : { 'content-type': 'application/json' },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('error', reject);
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          if ((res.statusCode ?? 500) >= 400) {
            reject(
              new Error(`Toxiproxy ${method} ${url.pathname} failed (${res.statusCode}): ${text}`),
            );
            return;
          }
          try {
            resolve((text === '' ? undefined : JSON.parse(text)) as T);
          } catch (error) {
            reject(error);
          }
        });
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}
