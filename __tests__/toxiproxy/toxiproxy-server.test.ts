import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Toxiproxy } from 'toxiproxy-node-client';
import { startToxiproxyServer } from '../../lib/toxiproxy';
import { connectClient, portOf, startEchoServer, type TestServer } from './support';

let echo: TestServer;
let dir: string;

beforeAll(async () => {
  echo = await startEchoServer();
  dir = mkdtempSync(join(tmpdir(), 'knex-scope-toxiproxy-'));
});

afterAll(async () => {
  await echo.close();
  rmSync(dir, { recursive: true, force: true });
});

function writeConfig(name: string, content: unknown): string {
  const path = join(dir, name);
  writeFileSync(path, typeof content === 'string' ? content : JSON.stringify(content));
  return path;
}

describe('startToxiproxyServer', () => {
  it('listens on localhost (127.0.0.1) and a free port by default', async () => {
    const server = await startToxiproxyServer();
    expect(server.host).toBe('127.0.0.1');
    expect(server.port).toBeGreaterThan(0);
    expect(server.url).toBe(`http://127.0.0.1:${server.port}`);
    expect(await new Toxiproxy(server.url).getVersion()).toBe('{"version":"2.12.0"}\n');
    await server.close();
  });

  it('reports a loopback URL when listening on every interface', async () => {
    const server = await startToxiproxyServer({ host: '0.0.0.0' });
    expect(server.host).toBe('0.0.0.0');
    expect(server.url).toBe(`http://127.0.0.1:${server.port}`);
    await server.close();
  });

  it('creates the proxies of a -config file before answering', async () => {
    const config = writeConfig('proxies.json', [
      { name: 'echo', listen: '127.0.0.1:0', upstream: echo.address },
      { name: 'off', listen: 'localhost:0', upstream: echo.address, enabled: false },
    ]);
    const server = await startToxiproxyServer({ config });
    const proxies = await new Toxiproxy(server.url).getAll();
    expect(proxies.echo?.enabled).toBe(true);
    expect(proxies.off).toMatchObject({ enabled: false, listen: 'localhost:0' });
    const client = await connectClient(portOf(proxies.echo!.listen));
    client.socket.write('configured');
    expect((await client.receive(10)).toString()).toBe('configured');
    client.socket.destroy();
    await server.close();
  });

  it.each([
    ['missing.json', undefined, /Could not read the Toxiproxy config .*missing\.json/],
    ['broken.json', '[{', /Could not read the Toxiproxy config/],
    ['invalid.json', [{ name: 'x' }], /missing required field: upstream at proxy 1/],
  ])('rejects an unusable config (%s)', async (name, content, message) => {
    const path = content === undefined ? join(dir, name) : writeConfig(name, content);
    await expect(startToxiproxyServer({ config: path })).rejects.toThrow(message);
  });

  it('rejects when the port is taken', async () => {
    const first = await startToxiproxyServer();
    await expect(startToxiproxyServer({ port: first.port })).rejects.toMatchObject({
      code: 'EADDRINUSE',
    });
    await first.close();
  });

  it('with a seed, draws toxicity the same way on every run', async () => {
    const pattern = async (): Promise<string> => {
      const server = await startToxiproxyServer({ seed: 99 });
      const toxiproxy = new Toxiproxy(server.url);
      const proxy = await toxiproxy.createProxy({
        name: 'seeded',
        listen: '127.0.0.1:0',
        upstream: echo.address,
      });
      await proxy.addToxic({
        name: 'cut',
        type: 'limit_data',
        stream: 'downstream',
        toxicity: 0.5,
        attributes: { bytes: 0 },
      });
      let result = '';
      for (let i = 0; i < 12; i++) {
        const client = await connectClient(portOf(proxy.listen));
        client.socket.write('x');
        result += await client.receive(1).then(
          () => 'p',
          () => 'c',
        );
        client.socket.destroy();
      }
      await server.close();
      return result;
    };
    const first = await pattern();
    expect(first).toMatch(/c/);
    expect(first).toMatch(/p/);
    expect(await pattern()).toBe(first);
  });

  it('close() destroys live proxied sockets and idle API connections, and can be called twice', async () => {
    const server = await startToxiproxyServer({ seed: 3 });
    const toxiproxy = new Toxiproxy(server.url);
    const proxy = await toxiproxy.createProxy({
      name: 'live',
      listen: '127.0.0.1:0',
      upstream: echo.address,
    });
    await proxy.addToxic({
      name: 'hold',
      type: 'timeout',
      stream: 'downstream',
      toxicity: 1,
      attributes: { timeout: 0 },
    });
    const client = await connectClient(portOf(proxy.listen));
    const keepAlive = new Promise<void>((resolve) => {
      request(`${server.url}/version`, { agent: undefined }, (response) => {
        response.resume();
        response.on('end', resolve);
      }).end();
    });
    await keepAlive;

    await Promise.all([server.close(), server.close()]);
    const outcome = await client.closed;
    expect(outcome.data.length).toBe(0);
    await expect(connectClient(portOf(proxy.listen))).rejects.toMatchObject({
      code: 'ECONNREFUSED',
    });
    await expect(connectClient(server.port)).rejects.toMatchObject({ code: 'ECONNREFUSED' });
  });
});
