import { readFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { connectableHost, formatHostPort, resolveListenHost } from './host-port';
import { ProxyCollection } from './proxy-collection';
import { createRandom } from './random';
import { createToxiproxyApi } from './toxiproxy-api';

/** Options of `startToxiproxyServer`, named after Toxiproxy's flags. */
export interface ToxiproxyServerOptions {
  /**
   * The address the HTTP API listens on. `localhost` binds `127.0.0.1`, like Toxiproxy.
   * @default 'localhost'
   */
  readonly host?: string;
  /**
   * The port of the HTTP API; 0 picks a free one (the CLI's default is Toxiproxy's 8474).
   * @default 0
   */
  readonly port?: number;
  /**
   * A JSON file of proxies in the format of `POST /populate`, created before the API starts
   * (like `toxiproxy -config`). An unreadable or invalid file rejects.
   */
  readonly config?: string;
  /** Seeds the random draws (toxicity, jitter, slicer sizes) for repeatable runs (`-seed`). */
  readonly seed?: number;
}

/** A running Toxiproxy-compatible server. */
export interface ToxiproxyServer {
  /** The API's base URL, e.g. `http://127.0.0.1:8474`, for `new Toxiproxy(url)`. */
  readonly url: string;
  /** The address the API is bound to. */
  readonly host: string;
  /** The API's port (the real one when 0 was asked for). */
  readonly port: number;
  /** Stops the API and every proxy, destroying all their sockets. Safe to call twice. */
  close(): Promise<void>;
}

/**
 * Starts a server that speaks Toxiproxy 2.x's HTTP API (so `toxiproxy-node-client`, the Go
 * client and `toxiproxy-cli` drive it) and relays TCP through its proxies with the same toxics.
 * Pure Node, no Docker: for fault tests where Shopify's binary is not available.
 *
 * @example
 * const toxiproxy = await startToxiproxyServer();
 * const client = new Toxiproxy(toxiproxy.url);
 * const proxy = await client.createProxy({
 *   name: 'pg',
 *   listen: '127.0.0.1:0',
 *   upstream: '127.0.0.1:5432',
 * });
 * // connect to proxy.listen; proxy.update({ enabled: false, ... }) cuts every connection
 * await toxiproxy.close();
 */
export async function startToxiproxyServer(
  options: ToxiproxyServerOptions = {},
): Promise<ToxiproxyServer> {
  const { host = 'localhost', port = 0, config, seed } = options;
  const proxies = new ProxyCollection(createRandom(seed));
  if (config !== undefined) {
    let list: unknown;
    try {
      list = JSON.parse(await readFile(config, 'utf8'));
    } catch (error) {
      throw new Error(`Could not read the Toxiproxy config ${config}: ${(error as Error).message}`);
    }
    const { error } = await proxies.populate(list).catch((failure: Error) => ({ error: failure }));
    if (error) {
      await proxies.close();
      throw new Error(`Could not create the proxies of ${config}: ${error.message}`);
    }
  }

  const server = createServer(createToxiproxyApi(proxies));
  try {
    const address = await resolveListenHost(host);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host: address || undefined, port }, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (error) {
    await proxies.close();
    throw error;
  }

  const bound = server.address() as AddressInfo;
  let closing: Promise<void> | undefined;
  return {
    url: `http://${formatHostPort(connectableHost(bound.address), bound.port)}`,
    host: bound.address,
    port: bound.port,
    close() {
      closing ??= (async () => {
        const closed = new Promise<void>((resolve) => server.close(() => resolve()));
        server.closeAllConnections();
        await proxies.close();
        await closed;
      })();
      return closing;
    },
  };
}
