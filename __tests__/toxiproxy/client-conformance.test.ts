import {
  type ICreateProxyBody,
  type ICreateToxicBody,
  type Proxy as ProxyHandle,
  type ToxicType,
  Toxiproxy,
} from 'toxiproxy-node-client';
import type { IUpdateProxyBody, IUpdateToxicBody } from 'toxiproxy-node-client/dist/interfaces';
import { startToxiproxyServer, type ToxiproxyServer } from '../../lib/toxiproxy';

// toxiproxy-node-client's own spec files (src/tests/*.spec.ts), run against our server on a
// free port instead of a Docker container on 8474.

let server: ToxiproxyServer;
let toxiproxy: Toxiproxy;

beforeAll(async () => {
  server = await startToxiproxyServer({ host: '127.0.0.1' });
  toxiproxy = new Toxiproxy(server.url);
});

afterAll(() => server.close());

/** The client's TestHelper.createProxy: listen on localhost:0, an upstream nobody dials. */
async function createProxy(name: string): Promise<ProxyHandle> {
  return toxiproxy.createProxy({ listen: 'localhost:0', name, upstream: 'localhost:6379' });
}

/** The client's TestHelper.createToxic: only `type` and `attributes`. */
function createToxic<T>(proxy: ProxyHandle, type: ToxicType, attributes: T) {
  return proxy.addToxic<T>({ attributes, type } as ICreateToxicBody<T>);
}

async function failure(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (error) {
    return (error as Error).message;
  }
  throw new Error('expected the request to fail');
}

describe('Toxiproxy (client)', () => {
  it('creates a proxy, reporting the real port for localhost:0', async () => {
    const proxy = await createProxy('create-test');
    expect(proxy.name).toBe('create-test');
    expect(proxy.enabled).toBe(true);
    expect(proxy.upstream).toBe('localhost:6379');
    expect(proxy.listen).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(proxy.listen).not.toBe('127.0.0.1:0');
    await proxy.remove();
  });

  it('gets a proxy', async () => {
    const created = await createProxy('get-test');
    const fetched = await toxiproxy.get(created.name);
    expect(fetched.name).toBe(created.name);
    expect(fetched.listen).toBe(created.listen);
    await created.remove();
  });

  it('gets the version as text', async () => {
    const version = await toxiproxy.getVersion();
    expect(JSON.parse(version)).toEqual({ version: expect.stringMatching(/^2\.\d+\.\d+$/) });
  });

  it('resets', async () => {
    await expect(toxiproxy.reset()).resolves.toBeUndefined();
  });

  it('populates, then getAll returns the populated proxies', async () => {
    const bodies: ICreateProxyBody[] = [
      { listen: '127.0.0.1:0', name: 'get-all-test1', upstream: 'localhost:6379' },
      { listen: '127.0.0.1:0', name: 'get-all-test2', upstream: 'localhost:12345' },
    ];
    const populated = await toxiproxy.populate(bodies);
    expect(Object.keys(populated).sort()).toEqual(['get-all-test1', 'get-all-test2']);

    const proxies = await toxiproxy.getAll();
    expect(Object.keys(proxies).sort()).toEqual(['get-all-test1', 'get-all-test2']);
    for (const body of bodies) {
      expect(proxies[body.name]?.name).toBe(body.name);
      expect(proxies[body.name]?.upstream).toBe(body.upstream);
      expect(proxies[body.name]?.listen).toBe(populated[body.name]?.listen);
      expect(proxies[body.name]?.listen).toMatch(/^127\.0\.0\.1:[1-9]\d*$/);
    }
    await Promise.all(Object.values(proxies).map((proxy) => proxy.remove()));
  });
});

describe('Proxy (client)', () => {
  it('updates a proxy: disable, then enable with another upstream', async () => {
    const proxy = await createProxy('update-proxy-test');
    const disabled = await proxy.update({
      enabled: false,
      listen: proxy.listen,
      upstream: proxy.upstream,
    });
    expect(disabled.enabled).toBe(false);
    expect(disabled.listen).toBe(proxy.listen);

    const updated = await proxy.update({
      enabled: true,
      listen: proxy.listen,
      upstream: 'somehost:12345',
    });
    expect(updated.enabled).toBe(true);
    expect(updated.upstream).toBe('somehost:12345');
    expect(updated.listen).toBe(proxy.listen);
    await proxy.remove();
  });

  it('accepts a partial update body', async () => {
    const proxy = await createProxy('partial-update-test');
    const disabled = await proxy.update({ enabled: false } as IUpdateProxyBody);
    expect(disabled.enabled).toBe(false);
    expect(disabled.upstream).toBe('localhost:6379');
    await proxy.remove();
  });

  it('removes a proxy', async () => {
    const proxy = await createProxy('remove-test');
    await proxy.remove();
    expect(await failure(toxiproxy.get('remove-test'))).toBe('Request failed with status code 404');
  });

  it('refuses the same proxy twice with 409', async () => {
    const proxy = await createProxy('duplicate');
    expect(await failure(createProxy('duplicate'))).toBe('Request failed with status code 409');
    await proxy.remove();
  });
});

describe('Toxic (client)', () => {
  it('creates, gets, updates and removes a toxic', async () => {
    const proxy = await createProxy('remove-toxic-test');

    const toxic = await createToxic(proxy, 'latency', { latency: 1000, jitter: 100 });
    expect(toxic.name).toBe('latency_downstream');
    expect(toxic.stream).toBe('downstream');
    expect(toxic.toxicity).toBe(1);
    expect(toxic.attributes).toEqual({ latency: 1000, jitter: 100 });

    const fetched = await proxy.getToxic<{ latency: number; jitter: number }>(toxic.name);
    expect(fetched.toJson()).toEqual(toxic.toJson());

    const updated = await toxic.update({
      attributes: { latency: 12345, jitter: 42 },
    } as IUpdateToxicBody<{ latency: number; jitter: number }>);
    expect(updated.attributes).toEqual({ latency: 12345, jitter: 42 });

    const partial = await toxic.update({
      attributes: { latency: 7 },
    } as IUpdateToxicBody<{ latency: number; jitter: number }>);
    expect(partial.attributes).toEqual({ latency: 7, jitter: 42 });
    expect(partial.toxicity).toBe(1);
    expect(partial.stream).toBe('downstream');

    await toxic.remove();
    expect(await failure(proxy.getToxic(toxic.name))).toBe('Request failed with status code 404');
    await proxy.remove();
  });

  it('refuses the same toxic twice with 409', async () => {
    const proxy = await createProxy('duplicate-toxic-test');
    await createToxic(proxy, 'latency', { latency: 1000, jitter: 100 });
    expect(await failure(createToxic(proxy, 'latency', { latency: 1, jitter: 1 }))).toBe(
      'Request failed with status code 409',
    );
    await proxy.remove();
  });

  it.each<[ToxicType, Record<string, number>]>([
    ['latency', { latency: 1000, jitter: 100 }],
    ['bandwidth', { rate: 1000 }],
    ['slow_close', { delay: 1000 }],
    ['timeout', { timeout: 5000 }],
    ['slicer', { average_size: 1000, size_variation: 1000, delay: 1000 }],
    ['reset_peer', { timeout: 1000 }],
    ['limit_data', { bytes: 42 }],
  ])('adds a %s toxic', async (type, attributes) => {
    const proxy = await createProxy(`add-${type}-toxic-test`);
    const toxic = await createToxic(proxy, type, attributes);
    expect(toxic.type).toBe(type);
    expect(toxic.name).toBe(`${type}_downstream`);
    expect(toxic.attributes).toEqual(attributes);
    await proxy.remove();
  });

  it('takes name, stream and toxicity when given', async () => {
    const proxy = await createProxy('full-toxic-test');
    const toxic = await proxy.addToxic({
      name: 'slow-requests',
      type: 'latency',
      stream: 'upstream',
      toxicity: 0.5,
      attributes: { latency: 10, jitter: 0 },
    });
    expect(toxic.toJson()).toEqual({
      name: 'slow-requests',
      type: 'latency',
      stream: 'upstream',
      toxicity: 0.5,
      attributes: { latency: 10, jitter: 0 },
    });
    await proxy.remove();
  });
});
