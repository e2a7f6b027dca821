import diagnostics from 'node:diagnostics_channel';
import { Pool } from 'pg';
import { createToxiproxyController } from '../../lib/testing/toxiproxy-controller';
import { startToxiproxyServer, type ToxiproxyServer } from '../../lib/toxiproxy';
import { connectClient, startEchoServer, type TestServer } from './support';

const pgUrl = process.env.KNEX_SCOPE_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const chosen = process.env.KNEX_SCOPE_TEST_DATABASES;
const itPg = chosen === undefined || chosen.split(',').includes('postgres') ? it : it.skip;

let server: ToxiproxyServer;
let echo: TestServer;
let counter = 0;

beforeAll(async () => {
  [server, echo] = await Promise.all([
    startToxiproxyServer({ host: '127.0.0.1' }),
    startEchoServer(),
  ]);
});

afterAll(async () => {
  await server.close();
  await echo.close();
});

function controller(apiUrl = server.url) {
  counter += 1;
  return createToxiproxyController({ apiUrl, proxyName: `controlled-${counter}` });
}

/** Whether a byte sent through `port` comes back within `patience` ms. */
async function echoes(port: number, patience = 2_000): Promise<boolean> {
  let client: Awaited<ReturnType<typeof connectClient>>;
  try {
    client = await connectClient(port);
  } catch {
    return false;
  }
  client.socket.write('?');
  let timer: NodeJS.Timeout | undefined;
  const answered = await Promise.race([
    client.receive(1).then(
      () => true,
      () => false,
    ),
    new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), patience);
    }),
  ]);
  clearTimeout(timer);
  client.socket.destroy();
  return answered;
}

describe('createToxiproxyController', () => {
  it('normalizes the API URL; a bare host:port (nameko style) gets http://', () => {
    const bare = createToxiproxyController({
      apiUrl: `127.0.0.1:${server.port}/`,
      proxyName: 'x',
    });
    expect(bare.apiUrl).toBe(`http://127.0.0.1:${server.port}`);
    expect(bare.proxyName).toBe('x');
    expect(createToxiproxyController({ apiUrl: `${server.url}/`, proxyName: 'x' }).apiUrl).toBe(
      server.url,
    );
  });

  it('ensureProxy creates the proxy once, then keeps its port; address and proxyUrl point at it', async () => {
    const toxiproxy = controller();
    const created = await toxiproxy.ensureProxy({ upstream: echo.address });
    expect(created).toEqual({ host: '127.0.0.1', port: expect.any(Number) });
    expect(await toxiproxy.ensureProxy({ upstream: echo.address })).toEqual(created);
    expect(await toxiproxy.address()).toEqual(created);
    expect(await toxiproxy.proxyUrl('postgres://app:secret@db.internal:5432/shop?ssl=false')).toBe(
      `postgres://app:secret@127.0.0.1:${created.port}/shop?ssl=false`,
    );
    expect(await echoes(created.port)).toBe(true);
    await toxiproxy.removeProxy();
  });

  it('ensureProxy points an existing proxy at a new upstream', async () => {
    const toxiproxy = controller();
    await toxiproxy.ensureProxy({ upstream: 'nowhere:1' });
    const { port } = await toxiproxy.ensureProxy({ upstream: echo.address });
    expect(await echoes(port)).toBe(true);
    await toxiproxy.removeProxy();
  });

  it('the fault proxy publishes each change once it applied it, on knex-scope:fault-proxy', async () => {
    const events: unknown[] = [];
    const record = (event: unknown) => events.push(event);
    diagnostics.subscribe('knex-scope:fault-proxy', record);
    const toxiproxy = controller();
    try {
      const { port } = await toxiproxy.ensureProxy({ upstream: echo.address });
      await toxiproxy.disconnect();
      await toxiproxy.addToxic({ name: 'slow', type: 'latency', attributes: { latency: 5 } });
      await toxiproxy.removeToxic('slow');
      await toxiproxy.removeProxy();
      const proxy = {
        proxy: toxiproxy.proxyName,
        listen: `127.0.0.1:${port}`,
        upstream: echo.address,
      };
      const toxic = { name: 'slow', type: 'latency', stream: 'downstream', toxicity: 1 };
      expect(events).toEqual([
        { action: 'proxy-created', enabled: true, ...proxy },
        { action: 'proxy-updated', enabled: false, ...proxy },
        { action: 'proxy-updated', enabled: true, ...proxy },
        {
          action: 'toxic-added',
          proxy: toxiproxy.proxyName,
          toxic: { ...toxic, attributes: { latency: 5, jitter: 0 } },
        },
        {
          action: 'toxic-removed',
          proxy: toxiproxy.proxyName,
          toxic: { ...toxic, attributes: { latency: 5, jitter: 0 } },
        },
        { action: 'proxy-removed', proxy: toxiproxy.proxyName },
      ]);
    } finally {
      diagnostics.unsubscribe('knex-scope:fault-proxy', record);
    }
  });

  it('disable refuses connections; enable brings the same port back', async () => {
    const toxiproxy = controller();
    const { port } = await toxiproxy.ensureProxy({ upstream: echo.address });
    await toxiproxy.disable();
    expect(await echoes(port)).toBe(false);
    await toxiproxy.enable();
    expect(await echoes(port)).toBe(true);
    await toxiproxy.removeProxy();
  });

  it('disconnect cuts live connections; by default new ones work right away', async () => {
    const toxiproxy = controller();
    const { port } = await toxiproxy.ensureProxy({ upstream: echo.address });
    const live = await connectClient(port);
    await toxiproxy.disconnect();
    await live.closed;
    expect(await echoes(port)).toBe(true);

    const another = await connectClient(port);
    await toxiproxy.disconnect({ reconnect: false });
    await another.closed;
    expect(await echoes(port)).toBe(false);
    await toxiproxy.enable();
    await toxiproxy.removeProxy();
  });

  it('adds and removes toxics; reset re-enables and clears only its own proxy', async () => {
    const toxiproxy = controller();
    const other = controller();
    const { port } = await toxiproxy.ensureProxy({ upstream: echo.address });
    await other.ensureProxy({ upstream: echo.address });
    await other.addToxic({ type: 'latency', attributes: { latency: 1 } });

    const toxic = await toxiproxy.addToxic({ type: 'timeout', attributes: { timeout: 0 } });
    expect(toxic.toJson()).toEqual({
      name: 'timeout_downstream',
      type: 'timeout',
      stream: 'downstream',
      toxicity: 1,
      attributes: { timeout: 0 },
    });
    expect(await echoes(port, 200)).toBe(false);
    await toxiproxy.removeToxic('timeout_downstream');
    expect(await echoes(port)).toBe(true);

    await toxiproxy.addToxic({ type: 'limit_data', name: 'cut', attributes: { bytes: 0 } });
    await toxiproxy.addToxic({ type: 'noop', stream: 'upstream' });
    await toxiproxy.disable();
    await toxiproxy.reset();
    expect(await echoes(port)).toBe(true);
    const proxy = (
      await toxiproxy.client
        .getApi()
        .get<{ toxics: unknown[] }>(`${server.url}/proxies/${toxiproxy.proxyName}`)
    ).data;
    expect(proxy.toxics).toEqual([]);
    const untouched = (
      await other.client
        .getApi()
        .get<{ toxics: unknown[] }>(`${server.url}/proxies/${other.proxyName}`)
    ).data;
    expect(untouched.toxics).toHaveLength(1);

    await other.resetAll();
    const cleared = (
      await other.client
        .getApi()
        .get<{ toxics: unknown[] }>(`${server.url}/proxies/${other.proxyName}`)
    ).data;
    expect(cleared.toxics).toEqual([]);
    await toxiproxy.removeProxy();
    await other.removeProxy();
  });

  it('surfaces API errors from toxiproxy-node-client', async () => {
    const toxiproxy = controller();
    await expect(toxiproxy.disable()).rejects.toThrow('Request failed with status code 404');
    await expect(toxiproxy.address()).rejects.toThrow('Request failed with status code 404');
  });

  itPg(
    'reproduces nameko-sqlalchemy: after disconnect a pooled connection fails, a retry on a new one succeeds',
    async () => {
      const toxiproxy = controller();
      const { hostname, port } = new URL(pgUrl);
      await toxiproxy.ensureProxy({ upstream: `${hostname}:${port || 5432}` });
      const pool = new Pool({ connectionString: await toxiproxy.proxyUrl(pgUrl), max: 2 });
      pool.on('error', () => {});
      try {
        const held = await pool.connect();
        held.on('error', () => {});
        await held.query('begin');
        await toxiproxy.disconnect();
        const failure = await held.query('select 1').catch((error: Error) => error);
        expect(failure).toBeInstanceOf(Error);
        expect((failure as Error).message).toMatch(/terminated|ECONNRESET|not queryable/i);
        held.release(failure as Error);
        expect((await pool.query('select 2 as two')).rows).toEqual([{ two: 2 }]);

        await toxiproxy.disconnect({ reconnect: false });
        await expect(pool.query('select 3')).rejects.toBeDefined();
        await expect(pool.query('select 3')).rejects.toMatchObject({ code: 'ECONNREFUSED' });
        await toxiproxy.enable();
        expect((await pool.query('select 4 as four')).rows).toEqual([{ four: 4 }]);
      } finally {
        await pool.end();
        await toxiproxy.removeProxy();
      }
    },
  );
});
