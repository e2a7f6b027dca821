import type { Knex } from 'knex';
import {
  createToxiproxyController,
  type ToxiproxyController,
} from '../../lib/testing/toxiproxy-controller';
import { testToxiproxy } from '../../lib/testing/use-toxiproxy';
import { startToxiproxyServer } from '../../lib/toxiproxy';
import { testUrl, uniqueName } from './database';

/** A proxy in front of this file's database server, and the database URL through it. */
export interface FaultProxy {
  readonly toxiproxy: ToxiproxyController;
  /** The test database's URL with the proxy's host and port. */
  readonly url: string;
  close(): Promise<void>;
}

/**
 * A Toxiproxy proxy in front of this worker's test database. On an external Toxiproxy
 * (`TOXIPROXY_API_URL`, e.g. Shopify's in docker-compose.test.yml, whose proxies are made up
 * front) it is the test kit's proxy for this database project. Otherwise each call starts its own
 * in-process server and proxy, so test files never disturb each other's connections.
 */
export async function startFaultProxy(): Promise<FaultProxy> {
  const external = process.env.TOXIPROXY_API_URL === undefined ? undefined : testToxiproxy();
  if (external !== undefined) {
    const toxiproxy = createToxiproxyController(external);
    await toxiproxy.reset();
    return { toxiproxy, url: external.dbUrl, close: () => toxiproxy.reset() };
  }
  const server = await startToxiproxyServer();
  const database = new URL(testUrl());
  const toxiproxy = createToxiproxyController({
    apiUrl: server.url,
    proxyName: uniqueName('proxy'),
  });
  await toxiproxy.ensureProxy({ upstream: `${database.hostname}:${database.port}` });
  const url = await toxiproxy.proxyUrl(testUrl());
  return { toxiproxy, url, close: () => server.close() };
}

/** Knex config for `url` with a small pool, as a service behind the proxy would have. */
export function proxiedConfig(url: string, pool: Knex.PoolConfig = {}): Knex.Config {
  const client = url.startsWith('postgres') ? 'pg' : 'mysql2';
  return { client, connection: url, pool: { min: 0, max: 5, ...pool } };
}
