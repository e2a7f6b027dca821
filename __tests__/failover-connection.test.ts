import { failoverConnection, InvalidConfigError, isConnectionError, withDb } from '../lib';
import { createToxiproxyController } from '../lib/testing/toxiproxy-controller';
import { startToxiproxyServer } from '../lib/toxiproxy';
import { servers } from '../scripts/probe-databases';
import { describeService } from './helpers/services';

// A port nothing listens on.
const closed = 'postgres://postgres@127.0.0.1:1/test';

describe('failoverConnection(urls)', () => {
  it.each([
    ['no URLs', []],
    ['a URL that is not a string', [42]],
    ['PostgreSQL and MySQL URLs mixed', [servers.postgres, servers.mariadb]],
    ['an SQLite URL', ['sqlite::memory:']],
  ])('rejects %s with InvalidConfigError', (_what, urls) => {
    expect(() => failoverConnection(urls as string[])).toThrow(InvalidConfigError);
  });

  it('rejects a connectTimeout that is not a positive number', () => {
    expect(() => failoverConnection([servers.postgres], { connectTimeout: 0 })).toThrow(
      /connectTimeout/,
    );
  });

  it('rejects a client that does not match its URLs, and fills in a missing one', async () => {
    expect(() =>
      withDb({ client: 'mysql2', connection: failoverConnection([servers.postgres]) }),
    ).toThrow(/need the "pg" client/);
    const db = withDb({ connection: failoverConnection([servers.postgres]) });
    expect((db.knex.client as { config: { client: string } }).config.client).toBe('pg');
    await db.destroy();
  });

  it('skips a server that does not answer and connects to the next (PostgreSQL)', async () => {
    const connection = failoverConnection([closed, servers.postgres]);
    const db = withDb({ connection, pool: { min: 0, max: 1 } });
    try {
      const { rows } = await db.knex.raw('select 1 as one');
      expect(rows[0].one).toBe(1);
      expect(connection.current).toBe(servers.postgres);
    } finally {
      await db.destroy();
    }
  });

  it('takes a MariaDB without Galera as writable when read_only is off', async () => {
    const connection = failoverConnection([servers.mariadb]);
    const db = withDb({ connection, pool: { min: 0, max: 1 } });
    try {
      const [rows] = await db.knex.raw('select 1 as one');
      expect(rows[0].one).toBe(1);
      expect(connection.current).toBe(servers.mariadb);
    } finally {
      await db.destroy();
    }
  });

  it('fails with an error isConnectionError accepts when no server answers, so a retry can wait for one', async () => {
    const db = withDb({ connection: failoverConnection([closed]), pool: { min: 0, max: 1 } });
    try {
      const error = await db.knex.raw('select 1').catch((e: unknown) => e);
      expect(error).toBeInstanceOf(AggregateError);
      expect(isConnectionError(error)).toBe(true);
      expect((error as Error).message).toMatch(/None of 1 servers takes writes: .*ECONNREFUSED/);
    } finally {
      await db.destroy();
    }
  });

  it('keeps its server while nothing fails, and moves to the next after a connection to it failed', async () => {
    const server = await startToxiproxyServer();
    const toxiproxy = createToxiproxyController({ apiUrl: server.url, proxyName: 'failover' });
    try {
      await toxiproxy.ensureProxy({ upstream: '127.0.0.1:5432' });
      const proxied = await toxiproxy.proxyUrl(servers.postgres);
      const connection = failoverConnection([proxied, servers.postgres]);
      const db = withDb({ connection, pool: { min: 0, max: 2 } });
      try {
        await db.knex.raw('select 1');
        expect(connection.current).toBe(proxied);
        await toxiproxy.disable(); // live connections cut, new ones refused
        const error = await db.knex.raw('select 1').catch((e: unknown) => e);
        expect(isConnectionError(error)).toBe(true);
        await db.knex.raw('select 1');
        expect(connection.current).toBe(servers.postgres);
        await toxiproxy.enable();
        await Promise.all([db.knex.raw('select 1'), db.knex.raw('select 1')]);
        expect(connection.current).toBe(servers.postgres); // nothing failed: no reason to move back
      } finally {
        await db.destroy();
      }
    } finally {
      await toxiproxy.removeProxy().catch(() => {});
      await server.close();
    }
  });
});

describeService('pg-failover', (pair) => {
  it('passes over a standby (in recovery) for the primary, whichever is listed first', async () => {
    const connection = failoverConnection([pair.standbyUrl, pair.primaryUrl]);
    const db = withDb({ connection, pool: { min: 0, max: 1 } });
    try {
      const { rows } = await db.knex.raw('select pg_is_in_recovery() as standby');
      expect(rows[0].standby).toBe(false);
      expect(connection.current).toBe(pair.primaryUrl);
    } finally {
      await db.destroy();
    }
  });

  it('refuses with 57P03 when only a standby answers', async () => {
    const db = withDb({
      connection: failoverConnection([pair.standbyUrl]),
      pool: { min: 0, max: 1 },
    });
    try {
      const error = (await db.knex.raw('select 1').catch((e: unknown) => e)) as AggregateError;
      expect(error.errors[0]).toMatchObject({ code: '57P03' });
      expect(error.message).toMatch(/is a standby/);
      expect(isConnectionError(error)).toBe(true);
    } finally {
      await db.destroy();
    }
  });
});
