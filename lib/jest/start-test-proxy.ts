import { normalizeApiUrl, withProxyAddress } from '../testing/toxiproxy-urls';
import { startToxiproxyServer } from '../toxiproxy';
import { toxiproxyRequest } from './toxiproxy-request';

/** A Toxiproxy proxy in front of the test database server. */
export interface TestProxy {
  /** The Toxiproxy API (`TOXIPROXY_API_URL`). */
  readonly apiUrl: string;
  /** The server URL with the proxy's host and port (`TOXIPROXY_DB_URL`). */
  readonly dbUrl: string;
  readonly proxyName: string;
  /** Removes the proxy, and stops the server if this started it. */
  close(): Promise<void>;
}

interface ProxyJson {
  name: string;
  listen: string;
}

const defaultPorts: Record<string, string> = { postgres: '5432', postgresql: '5432' };

/**
 * Creates proxy `proxyName` in front of the host and port of `serverUrl`, listening on a free
 * loopback port: on the Toxiproxy API `apiUrl`, or, without one, on a Toxiproxy-compatible
 * server started in this process (`startToxiproxyServer`).
 *
 * @example
 * const proxy = await startTestProxy('postgres://postgres@127.0.0.1:5432/test', 'knex_scope_pg');
 * proxy.dbUrl; // 'postgres://postgres@127.0.0.1:40211/test'
 * await proxy.close();
 */
export async function startTestProxy(
  serverUrl: string,
  proxyName: string,
  apiUrl?: string,
): Promise<TestProxy> {
  const started =
    apiUrl === undefined ? await startToxiproxyServer({ host: '127.0.0.1' }) : undefined;
  const api = started?.url ?? normalizeApiUrl(apiUrl ?? '');
  const server = new URL(serverUrl);
  const scheme = server.protocol.slice(0, -1);
  const upstream = `${server.hostname}:${server.port || (defaultPorts[scheme] ?? '3306')}`;
  const path = `/proxies/${encodeURIComponent(proxyName)}`;
  try {
    await toxiproxyRequest(api, 'POST', '/proxies', {
      name: proxyName,
      listen: '127.0.0.1:0',
      upstream,
    });
    const { listen } = await toxiproxyRequest<ProxyJson>(api, 'GET', path);
    let closing: Promise<void> | undefined;
    return {
      apiUrl: api,
      dbUrl: withProxyAddress(serverUrl, listen),
      proxyName,
      close() {
        closing ??= (async () => {
          if (started !== undefined) await started.close();
          else await toxiproxyRequest(api, 'DELETE', path).catch(() => {});
        })();
        return closing;
      },
    };
  } catch (error) {
    await started?.close();
    throw error;
  }
}

/**
 * The name of the proxy of the Toxiproxy API `apiUrl` that listens on the port of `dbUrl`, or
 * undefined. Finds the proxies of a Toxiproxy started with a config file (docker-compose).
 *
 * @example
 * await findProxyName('http://127.0.0.1:8474', 'postgres://postgres@127.0.0.1:15432/test');
 * // 'knex_scope_postgres'
 */
export async function findProxyName(apiUrl: string, dbUrl: string): Promise<string | undefined> {
  const proxies = await toxiproxyRequest<Record<string, ProxyJson>>(apiUrl, 'GET', '/proxies');
  const port = new URL(dbUrl).port;
  return Object.values(proxies ?? {}).find((proxy) => proxy.listen.endsWith(`:${port}`))?.name;
}
