import { request as httpRequest } from 'node:http';
import { startToxiproxyServer, type ToxiproxyServer } from '../../lib/toxiproxy';
import { connectClient, startEchoServer, type TestServer, unusedPort } from './support';

let server: ToxiproxyServer;
let echo: TestServer;

beforeAll(async () => {
  [server, echo] = await Promise.all([
    startToxiproxyServer({ host: '127.0.0.1', seed: 1 }),
    startEchoServer(),
  ]);
});

afterAll(async () => {
  await server.close();
  await echo.close();
});

afterEach(async () => {
  const proxies = (await call('GET', '/proxies')).json as Record<string, unknown>;
  for (const name of Object.keys(proxies)) await call('DELETE', `/proxies/${name}`);
});

interface Response {
  status: number;
  contentType: string | undefined;
  text: string;
  json: unknown;
}

/** One HTTP request; a string body is sent as is, with no content type (as nameko does). */
function call(
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<Response> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined || typeof body === 'string' ? body : JSON.stringify(body);
    const req = httpRequest(`${server.url}${path}`, { method, headers }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        text += chunk;
      });
      res.on('end', () => {
        let json: unknown;
        try {
          json = text === '' ? undefined : JSON.parse(text);
        } catch {
          json = undefined;
        }
        resolve({ status: res.statusCode!, contentType: res.headers['content-type'], text, json });
      });
    });
    req.on('error', reject);
    req.end(payload);
  });
}

function apiError(status: number, error: string) {
  return { status, json: { error, status } };
}

const proxyBody = () => ({ name: 'api', listen: '127.0.0.1:0', upstream: echo.address });

describe('GET /version', () => {
  it('answers 200 with a 2.x version as JSON and a trailing newline', async () => {
    const response = await call('GET', '/version');
    expect(response.status).toBe(200);
    expect(response.contentType).toBe('application/json');
    expect(response.text).toBe('{"version":"2.12.0"}\n');
  });
});

describe('POST /proxies', () => {
  it('answers 201 with the proxy, fields in order, the listen address rewritten', async () => {
    const response = await call('POST', '/proxies', proxyBody());
    expect(response.status).toBe(201);
    expect(response.contentType).toBe('application/json');
    expect(Object.keys(response.json as object)).toEqual([
      'name',
      'listen',
      'upstream',
      'enabled',
      'toxics',
    ]);
    expect(response.json).toEqual({
      name: 'api',
      listen: expect.stringMatching(/^127\.0\.0\.1:[1-9]\d*$/),
      upstream: echo.address,
      enabled: true,
      toxics: [],
    });
  });

  it('parses the body without a JSON content type', async () => {
    const response = await call('POST', '/proxies', JSON.stringify(proxyBody()));
    expect(response.status).toBe(201);
  });

  it('keeps a disabled proxy unbound, with its listen address verbatim', async () => {
    const response = await call('POST', '/proxies', {
      ...proxyBody(),
      listen: 'localhost:0',
      enabled: false,
    });
    expect(response).toMatchObject({
      status: 201,
      json: { listen: 'localhost:0', enabled: false },
    });
  });

  it('does not resolve or check the upstream', async () => {
    const response = await call('POST', '/proxies', { ...proxyBody(), upstream: 'nohost:1' });
    expect(response.status).toBe(201);
  });

  it.each([
    [{ listen: '127.0.0.1:0', upstream: 'x:1' }, 'missing required field: name'],
    [{ name: '', listen: '127.0.0.1:0', upstream: 'x:1' }, 'missing required field: name'],
    [{ name: 'a', listen: '127.0.0.1:0' }, 'missing required field: upstream'],
  ])('answers 400 for %j', async (body, message) => {
    const response = await call('POST', '/proxies', body);
    expect(response).toMatchObject(apiError(400, message));
    expect(response.contentType).toBe('text/plain; charset=utf-8');
    expect(response.text.endsWith('}\n')).toBe(true);
  });

  it.each([
    ['', 'bad request body: EOF'],
    ['{nope', expect.stringMatching(/^bad request body: /)],
    [{ name: 'a', upstream: 'x:1', enabled: 'yes' }, expect.stringMatching(/^bad request body: /)],
    [{ name: 5, upstream: 'x:1' }, expect.stringMatching(/^bad request body: /)],
  ])('answers 400 bad request body for %j', async (body, message) => {
    expect(await call('POST', '/proxies', body)).toMatchObject(apiError(400, message));
  });

  it('binds every interface for an empty listen address, as Go does', async () => {
    const response = await call('POST', '/proxies', { ...proxyBody(), listen: '' });
    expect(response).toMatchObject({
      status: 201,
      json: { listen: expect.stringMatching(/^(\[::\]|0\.0\.0\.0):[1-9]\d*$/) },
    });
  });

  it.each([
    ['foo', 'listen tcp: address foo: missing port in address'],
    ['127.0.0.1:99999', 'listen tcp: address 99999: invalid port'],
    ['nohost.invalid:0', 'listen tcp: lookup nohost.invalid: no such host'],
  ])('answers 500 for the listen address %s', async (listen, message) => {
    expect(await call('POST', '/proxies', { ...proxyBody(), listen })).toMatchObject(
      apiError(500, message),
    );
  });

  it('answers 409 for a duplicate name', async () => {
    await call('POST', '/proxies', proxyBody());
    expect(await call('POST', '/proxies', proxyBody())).toMatchObject(
      apiError(409, 'proxy already exists'),
    );
  });

  it('answers 500 with the OS error when the port is taken, and stores nothing', async () => {
    const taken = (await call('POST', '/proxies', proxyBody())).json as { listen: string };
    const response = await call('POST', '/proxies', {
      name: 'clash',
      listen: taken.listen,
      upstream: 'x:1',
    });
    expect(response).toMatchObject(
      apiError(500, `listen tcp ${taken.listen}: bind: address already in use`),
    );
    expect((await call('GET', '/proxies/clash')).status).toBe(404);
  });
});

describe('GET /proxies', () => {
  it('answers {} when empty', async () => {
    expect(await call('GET', '/proxies')).toMatchObject({ status: 200, json: {} });
  });

  it('answers an object keyed by name, with toxics', async () => {
    await call('POST', '/proxies', proxyBody());
    await call('POST', '/proxies/api/toxics', { type: 'latency', attributes: { latency: 5 } });
    const response = await call('GET', '/proxies');
    expect(response.json).toEqual({
      api: expect.objectContaining({
        name: 'api',
        toxics: [expect.objectContaining({ name: 'latency_downstream' })],
      }),
    });
  });
});

describe('/proxies/{name}', () => {
  it('GET answers the proxy, or 404', async () => {
    await call('POST', '/proxies', proxyBody());
    expect(await call('GET', '/proxies/api')).toMatchObject({ status: 200, json: { name: 'api' } });
    expect(await call('GET', '/proxies/nope')).toMatchObject(apiError(404, 'proxy not found'));
  });

  it.each(['POST', 'PATCH'])('%s updates with defaults from the current proxy', async (method) => {
    const created = (await call('POST', '/proxies', proxyBody())).json as { listen: string };
    const disabled = await call(method, '/proxies/api', '{"enabled": false}');
    expect(disabled).toMatchObject({
      status: 200,
      json: { name: 'api', listen: created.listen, upstream: echo.address, enabled: false },
    });
    const enabled = await call(method, '/proxies/api', { enabled: true });
    expect(enabled.json).toMatchObject({ listen: created.listen, enabled: true });
    const moved = await call(method, '/proxies/api', { upstream: 'elsewhere:5' });
    expect(moved.json).toMatchObject({ upstream: 'elsewhere:5', enabled: true });
  });

  it('update answers 404 for an unknown proxy and 400 for a bad body', async () => {
    expect(await call('POST', '/proxies/nope', { enabled: false })).toMatchObject(
      apiError(404, 'proxy not found'),
    );
    await call('POST', '/proxies', proxyBody());
    expect(await call('POST', '/proxies/api', '')).toMatchObject(
      apiError(400, 'bad request body: EOF'),
    );
  });

  it('update with a new listen address moves the proxy', async () => {
    const created = (await call('POST', '/proxies', proxyBody())).json as { listen: string };
    const port = await unusedPort();
    const moved = await call('POST', '/proxies/api', { listen: `localhost:${port}` });
    expect(moved.json).toMatchObject({ listen: `127.0.0.1:${port}`, enabled: true });
    await expect(connectClient(Number(created.listen.split(':')[1]))).rejects.toMatchObject({
      code: 'ECONNREFUSED',
    });
    const client = await connectClient(port);
    client.socket.write('ping');
    expect((await client.receive(4)).toString()).toBe('ping');
    client.socket.destroy();
  });

  it('DELETE answers 204 with no body, then 404', async () => {
    await call('POST', '/proxies', proxyBody());
    expect(await call('DELETE', '/proxies/api')).toMatchObject({ status: 204, text: '' });
    expect(await call('DELETE', '/proxies/api')).toMatchObject(apiError(404, 'proxy not found'));
  });
});

describe('/proxies/{name}/toxics', () => {
  beforeEach(async () => {
    await call('POST', '/proxies', proxyBody());
  });

  it('POST answers 200 (not 201) with defaults and every attribute', async () => {
    const response = await call('POST', '/proxies/api/toxics', { type: 'slicer' });
    expect(response.status).toBe(200);
    expect(Object.keys(response.json as object)).toEqual([
      'attributes',
      'name',
      'type',
      'stream',
      'toxicity',
    ]);
    expect(response.json).toEqual({
      attributes: { average_size: 0, size_variation: 0, delay: 0 },
      name: 'slicer_downstream',
      type: 'slicer',
      stream: 'downstream',
      toxicity: 1,
    });
  });

  it('POST reads the stream case-insensitively and ignores unknown attributes', async () => {
    const response = await call('POST', '/proxies/api/toxics', {
      type: 'noop',
      stream: 'UpStream',
      attributes: { whatever: 'x' },
    });
    expect(response.json).toEqual({
      attributes: {},
      name: 'noop_upstream',
      type: 'noop',
      stream: 'upstream',
      toxicity: 1,
    });
  });

  it.each([
    [{ type: 'down' }, apiError(400, 'invalid toxic type')],
    [{}, apiError(400, 'invalid toxic type')],
    [{ type: 'latency', stream: 'sideways' }, apiError(400, invalidStream())],
    [{ type: 'latency', attributes: { latency: 1.5 } }, { status: 400 }],
    [{ type: 'latency', attributes: { latency: '100' } }, { status: 400 }],
    [{ type: 'latency', toxicity: '1' }, { status: 400 }],
    [{ type: 'latency', attributes: 5 }, { status: 400 }],
  ])('POST %j is refused', async (body, expected) => {
    expect(await call('POST', '/proxies/api/toxics', body)).toMatchObject(expected);
  });

  it('POST answers 409 for a duplicate name in either stream, 404 for an unknown proxy', async () => {
    await call('POST', '/proxies/api/toxics', { type: 'latency', name: 'slow' });
    expect(
      await call('POST', '/proxies/api/toxics', {
        type: 'timeout',
        name: 'slow',
        stream: 'upstream',
      }),
    ).toMatchObject(apiError(409, 'toxic already exists'));
    expect(await call('POST', '/proxies/nope/toxics', { type: 'latency' })).toMatchObject(
      apiError(404, 'proxy not found'),
    );
  });

  it('GET lists upstream toxics first, then downstream, each in insertion order', async () => {
    for (const [name, stream] of [
      ['d1', 'downstream'],
      ['u1', 'upstream'],
      ['d2', 'downstream'],
      ['u2', 'upstream'],
    ]) {
      await call('POST', '/proxies/api/toxics', { type: 'noop', name, stream });
    }
    const response = await call('GET', '/proxies/api/toxics');
    expect((response.json as { name: string }[]).map((toxic) => toxic.name)).toEqual([
      'u1',
      'u2',
      'd1',
      'd2',
    ]);
    const proxy = (await call('GET', '/proxies/api')).json as { toxics: { name: string }[] };
    expect(proxy.toxics.map((toxic) => toxic.name)).toEqual(['u1', 'u2', 'd1', 'd2']);
  });
});

describe('/proxies/{name}/toxics/{toxic}', () => {
  beforeEach(async () => {
    await call('POST', '/proxies', proxyBody());
    await call('POST', '/proxies/api/toxics', {
      type: 'latency',
      toxicity: 0.5,
      attributes: { latency: 100, jitter: 10 },
    });
  });

  it('GET answers the toxic, or 404', async () => {
    expect(await call('GET', '/proxies/api/toxics/latency_downstream')).toMatchObject({
      status: 200,
      json: { name: 'latency_downstream', attributes: { latency: 100, jitter: 10 } },
    });
    expect(await call('GET', '/proxies/api/toxics/nope')).toMatchObject(
      apiError(404, 'toxic not found'),
    );
    expect(await call('GET', '/proxies/nope/toxics/latency_downstream')).toMatchObject(
      apiError(404, 'proxy not found'),
    );
  });

  it.each(['POST', 'PATCH'])('%s merges attributes and keeps the rest', async (method) => {
    const response = await call(method, '/proxies/api/toxics/latency_downstream', {
      name: 'renamed',
      type: 'timeout',
      stream: 'upstream',
      attributes: { latency: 200 },
    });
    expect(response).toMatchObject({
      status: 200,
      json: {
        attributes: { latency: 200, jitter: 10 },
        name: 'latency_downstream',
        type: 'latency',
        stream: 'downstream',
        toxicity: 0.5,
      },
    });
    const toxicity = await call(method, '/proxies/api/toxics/latency_downstream', {
      toxicity: 0,
    });
    expect(toxicity.json).toMatchObject({ attributes: { latency: 200, jitter: 10 }, toxicity: 0 });
  });

  it('update answers 400 for a bad body and changes nothing', async () => {
    expect(
      await call('POST', '/proxies/api/toxics/latency_downstream', {
        toxicity: 1,
        attributes: { latency: 1, jitter: 'x' },
      }),
    ).toMatchObject({ status: 400 });
    expect((await call('GET', '/proxies/api/toxics/latency_downstream')).json).toMatchObject({
      toxicity: 0.5,
      attributes: { latency: 100, jitter: 10 },
    });
  });

  it('update answers 404 for an unknown toxic', async () => {
    expect(await call('PATCH', '/proxies/api/toxics/nope', { toxicity: 1 })).toMatchObject(
      apiError(404, 'toxic not found'),
    );
  });

  it('DELETE answers 204, then 404', async () => {
    expect(await call('DELETE', '/proxies/api/toxics/latency_downstream')).toMatchObject({
      status: 204,
      text: '',
    });
    expect(await call('DELETE', '/proxies/api/toxics/latency_downstream')).toMatchObject(
      apiError(404, 'toxic not found'),
    );
  });
});

describe('POST /populate', () => {
  it('answers 201 with {proxies: [...]}, [] for an empty list', async () => {
    expect(await call('POST', '/populate', [])).toMatchObject({
      status: 201,
      json: { proxies: [] },
    });
    const response = await call('POST', '/populate', [proxyBody(), { ...proxyBody(), name: 'b' }]);
    expect(response.status).toBe(201);
    expect((response.json as { proxies: { name: string }[] }).proxies.map((p) => p.name)).toEqual([
      'api',
      'b',
    ]);
  });

  it('leaves an identical proxy untouched, toxics and enabled flag included', async () => {
    const created = (await call('POST', '/proxies', proxyBody())).json as { listen: string };
    await call('POST', '/proxies/api/toxics', { type: 'noop' });
    await call('POST', '/proxies/api', { enabled: false });
    const [, port] = created.listen.split(':');
    const response = await call('POST', '/populate', [
      { ...proxyBody(), listen: `localhost:${port}` },
    ]);
    expect(response.json).toEqual({
      proxies: [
        expect.objectContaining({
          listen: created.listen,
          enabled: false,
          toxics: [expect.anything()],
        }),
      ],
    });
  });

  it('replaces a proxy whose upstream changed, dropping its toxics', async () => {
    await call('POST', '/proxies', proxyBody());
    await call('POST', '/proxies/api/toxics', { type: 'noop' });
    const response = await call('POST', '/populate', [{ ...proxyBody(), upstream: 'other:1' }]);
    expect(response.json).toEqual({
      proxies: [expect.objectContaining({ upstream: 'other:1', enabled: true, toxics: [] })],
    });
  });

  it('validates every entry first and creates nothing when one is invalid', async () => {
    const response = await call('POST', '/populate', [proxyBody(), { name: 'b', listen: 'x:1' }]);
    expect(response).toMatchObject({
      status: 400,
      json: { error: 'missing required field: upstream at proxy 2', status: 400, proxies: [] },
    });
    expect(response.contentType).toBe('application/json');
    expect((await call('GET', '/proxies')).json).toEqual({});
  });

  it('reports a mid-list failure with the proxies created so far', async () => {
    const taken = (await call('POST', '/proxies', { ...proxyBody(), name: 'holder' })).json as {
      listen: string;
    };
    const response = await call('POST', '/populate', [
      proxyBody(),
      { name: 'clash', listen: taken.listen, upstream: 'x:1' },
      { ...proxyBody(), name: 'never' },
    ]);
    expect(response).toMatchObject({
      status: 500,
      json: {
        error: `listen tcp ${taken.listen}: bind: address already in use`,
        status: 500,
        proxies: [expect.objectContaining({ name: 'api' })],
      },
    });
    expect((await call('GET', '/proxies/never')).status).toBe(404);
  });

  it('answers 400 for a body that is not an array', async () => {
    expect(await call('POST', '/populate', proxyBody())).toMatchObject({ status: 400 });
  });
});

describe('POST /reset', () => {
  it('answers 204, enables every proxy on its port and removes every toxic', async () => {
    const a = (await call('POST', '/proxies', proxyBody())).json as { listen: string };
    await call('POST', '/proxies', { ...proxyBody(), name: 'b' });
    await call('POST', '/proxies/api/toxics', { type: 'latency' });
    await call('POST', '/proxies/b/toxics', { type: 'timeout', stream: 'upstream' });
    await call('POST', '/proxies/api', { enabled: false });

    expect(await call('POST', '/reset')).toMatchObject({ status: 204, text: '' });
    const proxies = (await call('GET', '/proxies')).json as Record<
      string,
      { listen: string; enabled: boolean; toxics: unknown[] }
    >;
    expect(proxies.api).toMatchObject({ listen: a.listen, enabled: true, toxics: [] });
    expect(proxies.b).toMatchObject({ enabled: true, toxics: [] });
  });
});

describe('routing', () => {
  it('answers 404 for an unknown path and 405 for a wrong method', async () => {
    expect(await call('GET', '/nope')).toMatchObject({ status: 404 });
    expect(await call('GET', '/proxies/')).toMatchObject({ status: 404 });
    expect(await call('DELETE', '/version')).toMatchObject({ status: 405 });
    expect(await call('PUT', '/proxies')).toMatchObject({ status: 405 });
    expect(await call('PATCH', '/proxies/api/toxics')).toMatchObject({ status: 405 });
  });

  it('refuses browsers with 403, as Toxiproxy does', async () => {
    const response = await call('GET', '/version', undefined, {
      'User-Agent': 'Mozilla/5.0 (X11; Linux x86_64)',
    });
    expect(response.status).toBe(403);
  });

  it('decodes percent-encoded names', async () => {
    await call('POST', '/proxies', { ...proxyBody(), name: 'a b' });
    expect(await call('GET', '/proxies/a%20b')).toMatchObject({
      status: 200,
      json: { name: 'a b' },
    });
    await call('DELETE', '/proxies/a%20b');
  });
});

function invalidStream(): string {
  return 'stream was invalid, can be either upstream or downstream';
}
