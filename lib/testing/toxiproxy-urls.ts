import { connectableHost, splitHostPort } from '../toxiproxy/host-port';

/**
 * A Toxiproxy API URL with `http://` added to nameko's bare `host:port` form and no trailing
 * slash.
 *
 * @example
 * normalizeApiUrl('127.0.0.1:8474'); // 'http://127.0.0.1:8474'
 */
export function normalizeApiUrl(apiUrl: string): string {
  return (/^[a-z][a-z\d+.-]*:\/\//i.test(apiUrl) ? apiUrl : `http://${apiUrl}`).replace(/\/+$/, '');
}

/**
 * `url` (a database URL) with the host and port of a proxy's `listen` address; a proxy listening
 * on every interface is reached on the loopback address.
 *
 * @example
 * withProxyAddress('postgres://postgres@127.0.0.1:5432/test', '0.0.0.0:15432');
 * // 'postgres://postgres@127.0.0.1:15432/test'
 */
export function withProxyAddress(url: string, listen: string): string {
  const { host, port } = splitHostPort(listen);
  const connectable = connectableHost(host);
  const parsed = new URL(url);
  parsed.hostname = connectable.includes(':') ? `[${connectable}]` : connectable;
  parsed.port = String(port);
  return parsed.toString();
}
