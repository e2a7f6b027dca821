import {
  type ICreateToxicBody,
  type Proxy as ProxyHandle,
  type Toxic,
  type ToxicType,
  Toxiproxy,
} from 'toxiproxy-node-client';
import { connectableHost, splitHostPort } from '../toxiproxy/host-port';
import { normalizeApiUrl, withProxyAddress } from './toxiproxy-urls';

/** Options of `createToxiproxyController`. */
export interface ToxiproxyControllerOptions {
  /**
   * The Toxiproxy API, e.g. `http://127.0.0.1:8474` (Shopify's server or
   * `startToxiproxyServer`'s `url`). A bare `host:port`, as nameko-sqlalchemy's
   * `--toxiproxy-api-url` takes it, gets `http://`.
   */
  readonly apiUrl: string;
  /** The proxy this controller drives (nameko's is `nameko_sqlalchemy_test_mysql`). */
  readonly proxyName: string;
}

/** A toxic to add; only `type` is required, the server fills in the rest. */
export interface ToxicOptions<T = Record<string, number>> {
  /** A Toxiproxy toxic type. ("down" is not one: use `disable()`.) */
  readonly type: Exclude<ToxicType, 'down'> | 'noop';
  /** Attributes of the type; missing ones are 0. Units: see Toxiproxy's README. */
  readonly attributes?: T;
  /** @default `${type}_${stream}` */
  readonly name?: string;
  /**
   * `upstream` is client → server, `downstream` server → client.
   * @default 'downstream'
   */
  readonly stream?: 'upstream' | 'downstream';
  /**
   * The probability, drawn per connection and direction, that the toxic applies.
   * @default 1
   */
  readonly toxicity?: number;
}

/** Where a proxy accepts connections. */
export interface ProxyAddress {
  /** A host to connect to (the loopback address when the proxy listens on every interface). */
  host: string;
  port: number;
}

/** Drives one Toxiproxy proxy for fault tests, through `toxiproxy-node-client`. */
export interface ToxiproxyController {
  /** The `toxiproxy-node-client` instance, for anything the controller does not cover. */
  readonly client: Toxiproxy;
  /** The API URL, normalized (`http://` added, no trailing slash). */
  readonly apiUrl: string;
  readonly proxyName: string;
  /**
   * Creates the proxy if it does not exist (listening on `listen`, default `127.0.0.1:0`), or
   * points it at `upstream` if it does; resolves to its address.
   */
  ensureProxy(options: { upstream: string; listen?: string }): Promise<ProxyAddress>;
  /** The address the proxy listens on. */
  address(): Promise<ProxyAddress>;
  /** `url` (a database URL) with its host and port replaced by the proxy's. */
  proxyUrl(url: string): Promise<string>;
  /**
   * Disables the proxy: `POST /proxies/{name}` with `{"enabled": false}`. Every live connection
   * is closed (the database sees its client vanish) and new connections are refused.
   */
  disable(): Promise<void>;
  /** Enables the proxy again, on the same port; toxics stay. */
  enable(): Promise<void>;
  /** Enables the proxy and removes all its toxics. Other proxies are left alone. */
  reset(): Promise<void>;
  /** `POST /reset`: enables every proxy of the server and removes every toxic. */
  resetAll(): Promise<void>;
  /**
   * Cuts every live connection. With `reconnect` (the default) the proxy is enabled again at
   * once, so pooled connections are dead but new ones work; without, it stays disabled.
   */
  disconnect(options?: { reconnect?: boolean }): Promise<void>;
  /** Adds a toxic, which applies to live connections too. */
  addToxic<T = Record<string, number>>(toxic: ToxicOptions<T>): Promise<Toxic<T>>;
  /** Removes a toxic by name. */
  removeToxic(name: string): Promise<void>;
  /** Deletes the proxy (closing its connections). */
  removeProxy(): Promise<void>;
}

interface ProxyResponse {
  name: string;
  listen: string;
  upstream: string;
  enabled: boolean;
  toxics?: { name: string }[];
}

type UpdateBody = Parameters<ProxyHandle['update']>[0];

function isNotFound(error: unknown): boolean {
  return error instanceof Error && error.message.endsWith('status code 404');
}

/**
 * Creates a controller for one proxy of a Toxiproxy server, after nameko-sqlalchemy's test
 * fixture: `disable()` posts `{"enabled": false}` to the proxy, `disconnect()` cuts every live
 * connection (and by default lets new ones through again). Unlike nameko's `enable()`/`reset()`
 * (both `POST /reset`, which touches every proxy), `enable()` and `reset()` act on this proxy
 * only, so test files running in parallel can share one server; `resetAll()` is nameko's reset.
 *
 * @example
 * const toxiproxy = createToxiproxyController({ apiUrl: server.url, proxyName: 'pg' });
 * await toxiproxy.ensureProxy({ upstream: '127.0.0.1:5432' });
 * const db = withDb(await toxiproxy.proxyUrl('postgres://postgres@127.0.0.1:5432/test'));
 * await toxiproxy.disconnect(); // pooled connections are now dead; the next query must retry
 * await toxiproxy.addToxic({ type: 'latency', attributes: { latency: 200 } });
 * await toxiproxy.reset();
 */
export function createToxiproxyController(
  options: ToxiproxyControllerOptions,
): ToxiproxyController {
  const apiUrl = normalizeApiUrl(options.apiUrl);
  const { proxyName } = options;
  const client = new Toxiproxy(apiUrl);
  const api = client.getApi();
  const proxyPath = `${apiUrl}/proxies/${encodeURIComponent(proxyName)}`;

  const fetchProxy = async (): Promise<ProxyResponse> =>
    (await api.get<ProxyResponse>(proxyPath)).data;

  const update = async (body: Partial<UpdateBody>): Promise<ProxyResponse> =>
    (await api.post<ProxyResponse>(proxyPath, body)).data;

  const addressOf = (proxy: ProxyResponse): ProxyAddress => {
    const { host, port } = splitHostPort(proxy.listen);
    return { host: connectableHost(host), port };
  };

  const removeToxic = async (name: string): Promise<void> => {
    await api.delete(`${proxyPath}/toxics/${encodeURIComponent(name)}`);
  };

  const enable = async (): Promise<void> => {
    await update({ enabled: true });
  };

  const disable = async (): Promise<void> => {
    await update({ enabled: false });
  };

  const address = async (): Promise<ProxyAddress> => addressOf(await fetchProxy());

  return {
    client,
    apiUrl,
    proxyName,
    async ensureProxy({ upstream, listen = '127.0.0.1:0' }) {
      let proxy: ProxyResponse;
      try {
        proxy = await fetchProxy();
      } catch (error) {
        if (!isNotFound(error)) throw error;
        const created = await client.createProxy({ name: proxyName, listen, upstream });
        return addressOf(created);
      }
      if (proxy.upstream !== upstream) proxy = await update({ upstream });
      return addressOf(proxy);
    },
    address,
    async proxyUrl(url) {
      return withProxyAddress(url, (await fetchProxy()).listen);
    },
    disable,
    enable,
    async reset() {
      const proxy = await update({ enabled: true });
      for (const toxic of proxy.toxics ?? []) await removeToxic(toxic.name);
    },
    async resetAll() {
      await client.reset();
    },
    async disconnect({ reconnect = true } = {}) {
      await disable();
      if (reconnect) await enable();
    },
    async addToxic<T>(toxic: ToxicOptions<T>): Promise<Toxic<T>> {
      const proxy = await client.get(proxyName);
      return proxy.addToxic<T>({ attributes: {}, ...toxic } as ICreateToxicBody<T>);
    },
    removeToxic,
    async removeProxy() {
      await api.delete(proxyPath);
    },
  };
}
