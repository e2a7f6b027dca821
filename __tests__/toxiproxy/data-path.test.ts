import { randomBytes } from 'node:crypto';
import { type ICreateToxicBody, type Proxy as ProxyHandle, Toxiproxy } from 'toxiproxy-node-client';
import { startToxiproxyServer, type ToxiproxyServer } from '../../lib/toxiproxy';
import {
  type Client,
  connectClient,
  portOf,
  sleep,
  startEchoServer,
  startTestServer,
  type TestServer,
  unusedPort,
} from './support';

// Elapsed-time checks are lower bounds with a margin; upper bounds only where the alternative is
// many times larger (a toxic that was not applied).

let server: ToxiproxyServer;
let toxiproxy: Toxiproxy;
let echo: TestServer;
let counter = 0;

beforeAll(async () => {
  [server, echo] = await Promise.all([
    startToxiproxyServer({ host: '127.0.0.1', seed: 7 }),
    startEchoServer(),
  ]);
  toxiproxy = new Toxiproxy(server.url);
});

afterAll(async () => {
  await server.close();
  await echo.close();
});

async function proxyTo(upstream: string = echo.address): Promise<ProxyHandle> {
  counter += 1;
  return toxiproxy.createProxy({ name: `data-${counter}`, listen: '127.0.0.1:0', upstream });
}

function toxic(
  proxy: ProxyHandle,
  body: { type: ICreateToxicBody<unknown>['type']; attributes: Record<string, number> } & Partial<
    Pick<ICreateToxicBody<unknown>, 'name' | 'stream' | 'toxicity'>
  >,
) {
  return proxy.addToxic(body as ICreateToxicBody<Record<string, number>>);
}

async function roundTrip(client: Client, payload: Buffer | string): Promise<number> {
  const started = performance.now();
  const expected = client.received().length + Buffer.byteLength(payload);
  client.socket.write(payload);
  await client.receive(expected);
  return performance.now() - started;
}

describe('the data path', () => {
  it('relays bytes both ways, unchanged, with backpressure on large transfers', async () => {
    const proxy = await proxyTo();
    const client = await connectClient(portOf(proxy.listen));
    const payload = randomBytes(4 * 1024 * 1024);
    client.socket.write(payload);
    expect((await client.receive(payload.length)).equals(payload)).toBe(true);
    client.socket.destroy();
    await proxy.remove();
  }, 30_000); // 4 MB each way: seconds on a busy machine

  it('accepts then closes the client when the upstream refuses (EOF, not ECONNREFUSED)', async () => {
    const proxy = await proxyTo(`127.0.0.1:${await unusedPort()}`);
    const client = await connectClient(portOf(proxy.listen));
    const outcome = await client.closed;
    expect(outcome.data.length).toBe(0);
    expect(outcome.error).toBeUndefined();
    await proxy.remove();
  });

  it('closes the whole connection when the upstream closes (no half-close)', async () => {
    const upstream = await startTestServer((socket) => socket.end('bye'));
    const proxy = await proxyTo(upstream.address);
    const client = await connectClient(portOf(proxy.listen));
    const outcome = await client.closed;
    expect(outcome.data.toString()).toBe('bye');
    await proxy.remove();
    await upstream.close();
  });

  it('disabling closes live connections on both sides and refuses new ones; enabling reopens the port', async () => {
    const proxy = await proxyTo();
    const port = portOf(proxy.listen);
    const client = await connectClient(port);
    await roundTrip(client, 'ping');
    expect(echo.sockets.size).toBeGreaterThan(0);

    const disabled = await proxy.update({
      enabled: false,
      listen: proxy.listen,
      upstream: proxy.upstream,
    });
    expect(disabled.enabled).toBe(false);
    const outcome = await client.closed;
    expect(outcome.data.toString()).toBe('ping');
    await expect(connectClient(port)).rejects.toMatchObject({ code: 'ECONNREFUSED' });
    for (let i = 0; i < 50 && echo.sockets.size > 0; i++) await sleep(10);
    expect(echo.sockets.size).toBe(0);

    const enabled = await proxy.update({
      enabled: true,
      listen: proxy.listen,
      upstream: proxy.upstream,
    });
    expect(enabled.listen).toBe(proxy.listen);
    const again = await connectClient(port);
    await roundTrip(again, 'pong');
    again.socket.destroy();
    await proxy.remove();
  });

  it('reset brings a disabled proxy back on the same port', async () => {
    const proxy = await proxyTo();
    await proxy.update({ enabled: false, listen: proxy.listen, upstream: proxy.upstream });
    await toxiproxy.reset();
    expect((await toxiproxy.get(proxy.name)).enabled).toBe(true);
    const client = await connectClient(portOf(proxy.listen));
    await roundTrip(client, 'back');
    client.socket.destroy();
    await proxy.remove();
  });

  it('deleting a proxy closes its connections and frees the port', async () => {
    const proxy = await proxyTo();
    const port = portOf(proxy.listen);
    const client = await connectClient(port);
    await roundTrip(client, 'x');
    await proxy.remove();
    await client.closed;
    await expect(connectClient(port)).rejects.toMatchObject({ code: 'ECONNREFUSED' });
  });
});

describe('latency', () => {
  it('delays each direction by its latency, and two toxics add up', async () => {
    const proxy = await proxyTo();
    const client = await connectClient(portOf(proxy.listen));
    expect(await roundTrip(client, 'warm')).toBeLessThan(1000);

    await toxic(proxy, { type: 'latency', attributes: { latency: 100 } });
    expect(await roundTrip(client, 'a')).toBeGreaterThanOrEqual(95);

    await toxic(proxy, { type: 'latency', stream: 'upstream', attributes: { latency: 100 } });
    expect(await roundTrip(client, 'b')).toBeGreaterThanOrEqual(195);

    await toxic(proxy, { type: 'latency', name: 'more', attributes: { latency: 100 } });
    expect(await roundTrip(client, 'c')).toBeGreaterThanOrEqual(295);
    client.socket.destroy();
    await proxy.remove();
  });

  it('pipelines: chunks sent 50 ms apart arrive 50 ms apart, not serialized', async () => {
    const proxy = await proxyTo();
    await toxic(proxy, { type: 'latency', attributes: { latency: 200 } });
    const client = await connectClient(portOf(proxy.listen));
    const started = performance.now();
    for (const part of ['1', '2', '3', '4']) {
      client.socket.write(part);
      await sleep(50);
    }
    await client.receive(4);
    const elapsed = performance.now() - started;
    expect(elapsed).toBeGreaterThanOrEqual(340);
    expect(elapsed).toBeLessThan(790); // serialized would be 4 × 200 ms after the first write
    expect(client.received().toString()).toBe('1234');
    client.socket.destroy();
    await proxy.remove();
  });

  it('removing the toxic releases held data at once, in order', async () => {
    const proxy = await proxyTo();
    const latency = await toxic(proxy, { type: 'latency', attributes: { latency: 10_000 } });
    const client = await connectClient(portOf(proxy.listen));
    client.socket.write('held');
    await sleep(50);
    expect(client.received().length).toBe(0);
    const started = performance.now();
    await latency.remove();
    client.socket.write('-then');
    await client.receive(9);
    expect(performance.now() - started).toBeLessThan(5_000);
    expect(client.received().toString()).toBe('held-then');
    client.socket.destroy();
    await proxy.remove();
  });

  it('keeps every byte in order while toxics come and go on a live connection', async () => {
    const proxy = await proxyTo();
    const client = await connectClient(portOf(proxy.listen));
    const sent: Buffer[] = [];
    const writer = (async () => {
      for (let i = 0; i < 60; i++) {
        const part = randomBytes(1000 + i);
        sent.push(part);
        client.socket.write(part);
        await sleep(2);
      }
    })();
    for (let i = 0; i < 5; i++) {
      const a = await toxic(proxy, { type: 'latency', attributes: { latency: 20, jitter: 15 } });
      const b = await toxic(proxy, {
        type: 'slicer',
        stream: 'upstream',
        attributes: { average_size: 300, size_variation: 100, delay: 500 },
      });
      await sleep(15);
      await a.update({ attributes: { latency: 5 } } as never);
      await sleep(5);
      await a.remove();
      await b.remove();
    }
    await writer;
    const expected = Buffer.concat(sent);
    expect((await client.receive(expected.length)).equals(expected)).toBe(true);
    client.socket.destroy();
    await proxy.remove();
  });
});

describe('bandwidth', () => {
  it('limits the rate in KB/s (1000 bytes)', async () => {
    const proxy = await proxyTo();
    await toxic(proxy, { type: 'bandwidth', attributes: { rate: 100 } });
    const client = await connectClient(portOf(proxy.listen));
    const payload = randomBytes(50_000);
    const elapsed = await roundTrip(client, payload);
    expect(elapsed).toBeGreaterThanOrEqual(450); // 50 000 bytes at 100 000 bytes/s
    expect(client.received().equals(payload)).toBe(true);
    client.socket.destroy();
    await proxy.remove();
  });

  it('treats rate 0 as unlimited', async () => {
    const proxy = await proxyTo();
    await toxic(proxy, { type: 'bandwidth', attributes: { rate: 0 } });
    const client = await connectClient(portOf(proxy.listen));
    const elapsed = await roundTrip(client, randomBytes(200_000));
    expect(elapsed).toBeLessThan(2_000);
    client.socket.destroy();
    await proxy.remove();
  });
});

describe('slicer', () => {
  it('cuts data into pieces with a delay in microseconds between them', async () => {
    const upstream = await startTestServer(() => {});
    const proxy = await proxyTo(upstream.address);
    await toxic(proxy, {
      type: 'slicer',
      stream: 'upstream',
      attributes: { average_size: 100, size_variation: 0, delay: 20_000 },
    });
    const pieces: number[] = [];
    const client = await connectClient(portOf(proxy.listen));
    await sleep(20);
    const [socket] = upstream.sockets;
    socket!.on('data', (chunk: Buffer) => pieces.push(chunk.length));
    const payload = randomBytes(800);
    const started = performance.now();
    client.socket.write(payload);
    while (upstream.received().length < payload.length) await sleep(5);
    expect(performance.now() - started).toBeGreaterThanOrEqual(7 * 20 - 10);
    expect(upstream.received().equals(payload)).toBe(true);
    expect(pieces.length).toBeGreaterThanOrEqual(4);
    expect(Math.max(...pieces)).toBeLessThanOrEqual(200);
    client.socket.destroy();
    await proxy.remove();
    await upstream.close();
  });
});

describe('slow_close', () => {
  it('delays the close after the upstream ends, passing the data at once', async () => {
    const upstream = await startTestServer((socket) => socket.end('bye'));
    const proxy = await proxyTo(upstream.address);
    await toxic(proxy, { type: 'slow_close', attributes: { delay: 300 } });
    const client = await connectClient(portOf(proxy.listen));
    await client.receive(3);
    const outcome = await client.closed;
    expect(outcome.data.toString()).toBe('bye');
    expect(outcome.elapsed).toBeGreaterThanOrEqual(290);
    await proxy.remove();
    await upstream.close();
  });
});

describe('timeout', () => {
  it('with 0 drops data and holds the connection until the toxic is removed', async () => {
    const proxy = await proxyTo();
    const timeout = await toxic(proxy, { type: 'timeout', attributes: { timeout: 0 } });
    const client = await connectClient(portOf(proxy.listen));
    client.socket.write('lost');
    await sleep(300);
    expect(client.received().length).toBe(0);
    expect(client.socket.destroyed).toBe(false);
    await timeout.remove();
    const outcome = await client.closed;
    expect(outcome.data.length).toBe(0);

    const fresh = await connectClient(portOf(proxy.listen));
    await roundTrip(fresh, 'fine');
    fresh.socket.destroy();
    await proxy.remove();
  });

  it('closes the connection after the given idle time', async () => {
    const proxy = await proxyTo();
    await toxic(proxy, { type: 'timeout', stream: 'upstream', attributes: { timeout: 200 } });
    const client = await connectClient(portOf(proxy.listen));
    await sleep(100);
    client.socket.write('restarts the clock');
    const outcome = await client.closed;
    expect(outcome.data.length).toBe(0);
    expect(outcome.elapsed).toBeGreaterThanOrEqual(290);
    expect(echo.received().includes('restarts the clock')).toBe(false);
    await proxy.remove();
  });
});

describe('reset_peer', () => {
  it('resets both sides (ECONNRESET) after the first upstream chunk and the timeout', async () => {
    const upstream = await startEchoServer();
    const proxy = await proxyTo(upstream.address);
    await toxic(proxy, { type: 'reset_peer', stream: 'upstream', attributes: { timeout: 100 } });
    const client = await connectClient(portOf(proxy.listen));
    client.socket.write('trigger');
    const outcome = await client.closed;
    expect(outcome.error?.code).toBe('ECONNRESET');
    expect(outcome.elapsed).toBeGreaterThanOrEqual(95);
    expect(upstream.received().length).toBe(0);
    for (let i = 0; i < 50 && upstream.errors.length === 0; i++) await sleep(10);
    expect(upstream.errors.map((error) => error.code)).toContain('ECONNRESET');
    await proxy.remove();
    await upstream.close();
  });

  it('on downstream, fires on a server that speaks first', async () => {
    const upstream = await startTestServer((socket) => socket.write('hello'));
    const proxy = await proxyTo(upstream.address);
    await toxic(proxy, { type: 'reset_peer', attributes: { timeout: 0 } });
    const client = await connectClient(portOf(proxy.listen));
    const outcome = await client.closed;
    expect(outcome.error?.code).toBe('ECONNRESET');
    expect(outcome.data.length).toBe(0);
    await proxy.remove();
    await upstream.close();
  });
});

describe('limit_data', () => {
  it('passes exactly `bytes` bytes, then closes the connection', async () => {
    const proxy = await proxyTo();
    await toxic(proxy, { type: 'limit_data', attributes: { bytes: 10 } });
    const client = await connectClient(portOf(proxy.listen));
    client.socket.write('0123456');
    await client.receive(7);
    client.socket.write('789abcdef');
    const outcome = await client.closed;
    expect(outcome.data.toString()).toBe('0123456789');
    await proxy.remove();
  });

  it('keeps counting across a toxic update', async () => {
    const proxy = await proxyTo();
    const limit = await toxic(proxy, { type: 'limit_data', attributes: { bytes: 10 } });
    const client = await connectClient(portOf(proxy.listen));
    await roundTrip(client, '012345');
    await limit.update({ attributes: { bytes: 8 } } as never);
    client.socket.write('6789');
    const outcome = await client.closed;
    expect(outcome.data.toString()).toBe('01234567');
    await proxy.remove();
  });
});

describe('toxicity', () => {
  it('with 0 never applies the toxic; updated to 1 it applies to the live connection', async () => {
    const proxy = await proxyTo();
    const latency = await toxic(proxy, {
      type: 'latency',
      toxicity: 0,
      attributes: { latency: 10_000 },
    });
    const client = await connectClient(portOf(proxy.listen));
    expect(await roundTrip(client, 'fast')).toBeLessThan(5_000);
    await latency.update({ toxicity: 1, attributes: { latency: 150 } } as never);
    expect(await roundTrip(client, 'slow')).toBeGreaterThanOrEqual(145);
    client.socket.destroy();
    await proxy.remove();
  });

  it('is drawn per connection', async () => {
    const proxy = await proxyTo();
    await toxic(proxy, { type: 'limit_data', toxicity: 0.5, attributes: { bytes: 0 } });
    let cut = 0;
    for (let i = 0; i < 20; i++) {
      const client = await connectClient(portOf(proxy.listen));
      client.socket.write('x');
      if (
        (await client.receive(1).then(
          () => 'passed',
          () => 'cut',
        )) === 'cut'
      )
        cut += 1;
      client.socket.destroy();
    }
    expect(cut).toBeGreaterThan(0);
    expect(cut).toBeLessThan(20);
    await proxy.remove();
  });
});
