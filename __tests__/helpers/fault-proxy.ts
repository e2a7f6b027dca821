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
 * A Toxiproxy proxy of its own in front of this worker's test database, so test files never
 * disturb each other's connections: on the server `TOXIPROXY_API_URL` names (Shopify's, in
 * docker-compose.test.yml, runs on the host's network), else on an in-process server.
 */
export async function startFaultProxy(): Promise<FaultProxy> {
  const external = process.env.TOXIPROXY_API_URL;
  const server = external === undefined ? await startToxiproxyServer() : undefined;
  const apiUrl = external ?? (server as ToxiproxyServer).url;
  const database = new URL(testUrl());
  const toxiproxy = createToxiproxyController({ apiUrl, proxyName: uniqueName('proxy') });
  await toxiproxy.ensureProxy({ upstream: `${database.hostname}:${database.port}` });
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
