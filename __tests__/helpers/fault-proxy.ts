import type { Knex } from 'knex';
import {
  createToxiproxyController,
  type ToxiproxyController,
} from '../../lib/testing/toxiproxy-controller';
import { startToxiproxyServer, type ToxiproxyServer } from '../../lib/toxiproxy';
import { testUrl, uniqueName } from './database';

/** A proxy in front of this file's database server, and the database URL through it. */
export interface FaultProxy {
  readonly toxiproxy: ToxiproxyController;
  /** The test database's URL with the proxy's host and port. */
  readonly url: string;
  close(): Promise<void>;
}

/**
 * Puts a Toxiproxy proxy in front of the test database: on the server `TOXIPROXY_API_URL` names
 * (Shopify's Toxiproxy in docker-compose.test.yml, or the kit's), else on an in-process
 * `startToxiproxyServer()`. Each call makes its own proxy, so test files never disturb each other.
 */
export async function startFaultProxy(): Promise<FaultProxy> {
  const server: ToxiproxyServer | undefined =
    process.env.TOXIPROXY_API_URL === undefined ? await startToxiproxyServer() : undefined;
  const apiUrl = process.env.TOXIPROXY_API_URL ?? (server as ToxiproxyServer).url;
  const database = new URL(testUrl());
  const upstream = process.env.TOXIPROXY_UPSTREAM_HOST
    ? `${process.env.TOXIPROXY_UPSTREAM_HOST}:${database.port}`
    : `${database.hostname}:${database.port}`;
  const toxiproxy = createToxiproxyController({ apiUrl, proxyName: uniqueName('proxy') });
  await toxiproxy.ensureProxy({ upstream });
  const url = await toxiproxy.proxyUrl(testUrl());
  return {
    toxiproxy,
    url,
    async close() {
      await toxiproxy.removeProxy().catch(() => {});
      await server?.close();
    },
  };
}

/** Knex config for `url` with a small pool, as a service behind the proxy would have. */
export function proxiedConfig(url: string, pool: Knex.PoolConfig = {}): Knex.Config {
  const client = url.startsWith('postgres') ? 'pg' : 'mysql2';
  return { client, connection: url, pool: { min: 0, max: 5, ...pool } };
}
