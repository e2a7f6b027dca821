import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';

/** A `host:port` address split in two; `host` is `''` for "every interface". */
export interface HostPort {
  host: string;
  port: number;
}

/**
 * Splits `host:port` (`[v6]:port` for IPv6) as Go's `net.SplitHostPort` does, and checks the
 * port. Throws an `Error` worded like Go's when the address is malformed.
 *
 * @example
 * splitHostPort('localhost:8474'); // { host: 'localhost', port: 8474 }
 * splitHostPort('[::1]:0'); // { host: '::1', port: 0 }
 */
export function splitHostPort(address: string): HostPort {
  let host: string;
  let port: string;
  if (address.startsWith('[')) {
    const close = address.indexOf(']');
    if (close === -1) throw new Error(`address ${address}: missing ']' in address`);
    if (address[close + 1] !== ':') throw new Error(`address ${address}: missing port in address`);
    host = address.slice(1, close);
    port = address.slice(close + 2);
  } else {
    const colon = address.lastIndexOf(':');
    if (colon === -1) throw new Error(`address ${address}: missing port in address`);
    host = address.slice(0, colon);
    port = address.slice(colon + 1);
    if (host.includes(':')) throw new Error(`address ${address}: too many colons in address`);
  }
  const number = Number(port);
  if (!/^\d+$/.test(port) || number > 65_535) throw new Error(`address ${port}: invalid port`);
  return { host, port: number };
}

/**
 * Joins a host and a port into `host:port`, bracketing IPv6 addresses.
 *
 * @example
 * formatHostPort('::', 8474); // '[::]:8474'
 */
export function formatHostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

/**
 * The IP address to bind for a listen host. `localhost` is `127.0.0.1` (Go listens on one
 * address of a name, preferring IPv4); other names are looked up, IPv4 first; `''` stays `''`.
 *
 * @example
 * await resolveListenHost('localhost'); // '127.0.0.1'
 */
export async function resolveListenHost(host: string): Promise<string> {
  if (host === '' || isIP(host) !== 0) return host;
  if (host.toLowerCase() === 'localhost') return '127.0.0.1';
  try {
    return (await lookup(host, { family: 4 })).address;
  } catch {
    try {
      return (await lookup(host)).address;
    } catch {
      throw new Error(`lookup ${host}: no such host`);
    }
  }
}

/**
 * The address to connect to for a listening address: the loopback address of the same family in
 * place of a wildcard.
 *
 * @example
 * connectableHost('0.0.0.0'); // '127.0.0.1'
 */
export function connectableHost(host: string): string {
  if (host === '' || host === '::') return host === '' ? '127.0.0.1' : '::1';
  return host === '0.0.0.0' ? '127.0.0.1' : host;
}
