import { Client } from 'pg';
import { type ICreateToxicBody, type Proxy as ProxyHandle, Toxiproxy } from 'toxiproxy-node-client';
import { startToxiproxyServer, type ToxiproxyServer } from '../../lib/toxiproxy';
import { portOf, sleep } from './support';

// The fault proxy in front of the real PostgreSQL server (postgres@127.0.0.1:5432/test).
const pgUrl = process.env.KNEX_SCOPE_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const chosen = process.env.KNEX_SCOPE_TEST_DATABASES;
const describePg =
  chosen === undefined || chosen.split(',').includes('postgres') ? describe : describe.skip;

let server: ToxiproxyServer;
let toxiproxy: Toxiproxy;
let direct: Client;
const table = `toxiproxy_pg_${process.pid}`;
let counter = 0;

async function proxyToPostgres(): Promise<ProxyHandle> {
  counter += 1;
  const { hostname, port } = new URL(pgUrl);
  return toxiproxy.createProxy({
    name: `pg-${counter}`,
    listen: '127.0.0.1:0',
    upstream: `${hostname}:${port || 5432}`,
  });
}

/** A pg client that connects through `proxy`; errors after connect are recorded, not thrown. */
async function connectThrough(proxy: ProxyHandle): Promise<Client & { errors: Error[] }> {
  const url = new URL(pgUrl);
  url.host = proxy.listen;
  const client = Object.assign(new Client({ connectionString: url.toString() }), {
    errors: [] as Error[],
  });
  client.on('error', (error) => client.errors.push(error));
  await client.connect();
  return client;
}

function addToxic(proxy: ProxyHandle, body: Record<string, unknown>) {
  return proxy.addToxic(body as unknown as ICreateToxicBody<Record<string, number>>);
}

function elapsedOf(started: number): number {
  return performance.now() - started;
}

describePg('the fault proxy in front of PostgreSQL', () => {
  beforeAll(async () => {
    server = await startToxiproxyServer({ host: '127.0.0.1' });
    toxiproxy = new Toxiproxy(server.url);
    direct = new Client({ connectionString: pgUrl });
    await direct.connect();
    await direct.query(`create table if not exists ${table} (id serial primary key, name text)`);
  });

  afterAll(async () => {
    await direct?.query(`drop table if exists ${table}`);
    await direct?.end();
    await server?.close();
  });

  it('disabling kills open connections (the backend aborts its transaction) and refuses new ones; reset brings the same port back', async () => {
    const proxy = await proxyToPostgres();
    const client = await connectThrough(proxy);
    const { rows } = await client.query<{ pid: number }>('select pg_backend_pid() as pid');
    const pid = rows[0]!.pid;
    await client.query('begin');
    await client.query(`insert into ${table} (name) values ('never committed')`);

    await proxy.update({ enabled: false, listen: proxy.listen, upstream: proxy.upstream });

    await expect(client.query('select 1')).rejects.toThrow(/terminated|not queryable|ended/i);
    await expect(connectThrough(proxy)).rejects.toMatchObject({ code: 'ECONNREFUSED' });
    let alive = true;
    for (let i = 0; i < 100 && alive; i++) {
      const activity = await direct.query('select 1 from pg_stat_activity where pid = $1', [pid]);
      alive = activity.rowCount !== 0;
      if (alive) await sleep(20);
    }
    expect(alive).toBe(false);
    const count = await direct.query(`select count(*)::int as n from ${table}`);
    expect(count.rows[0].n).toBe(0);

    await toxiproxy.reset();
    const again = await connectThrough(proxy);
    expect((await again.query('select 1 as one')).rows).toEqual([{ one: 1 }]);
    expect(portOf((await toxiproxy.get(proxy.name)).listen)).toBe(portOf(proxy.listen));
    await again.end();
    await proxy.remove();
  });

  it('latency on the responses slows every query down by at least the latency', async () => {
    const proxy = await proxyToPostgres();
    const client = await connectThrough(proxy);
    await addToxic(proxy, { type: 'latency', attributes: { latency: 150 } });
    const started = performance.now();
    await client.query('select 1');
    expect(elapsedOf(started)).toBeGreaterThanOrEqual(145);
    await client.end();
    await proxy.remove();
  });

  it('timeout 0 makes a query hang; removing the toxic closes the connection', async () => {
    const proxy = await proxyToPostgres();
    const client = await connectThrough(proxy);
    const timeout = await addToxic(proxy, { type: 'timeout', attributes: { timeout: 0 } });
    let settled = false;
    const query = client.query('select 1').finally(() => {
      settled = true;
    });
    query.catch(() => {});
    await sleep(300);
    expect(settled).toBe(false);
    await timeout.remove();
    await expect(query).rejects.toThrow(/terminated/i);
    await proxy.remove();
  });

  it('reset_peer makes the next query fail with ECONNRESET', async () => {
    const proxy = await proxyToPostgres();
    const client = await connectThrough(proxy);
    await addToxic(proxy, { type: 'reset_peer', stream: 'upstream', attributes: { timeout: 0 } });
    const error = await client.query('select 1').then(
      () => undefined,
      (failure: NodeJS.ErrnoException) => failure,
    );
    expect(error?.code).toBe('ECONNRESET');
    await proxy.remove();
  });

  it('limit_data cuts a large result off and closes the connection', async () => {
    const proxy = await proxyToPostgres();
    const client = await connectThrough(proxy);
    await addToxic(proxy, { type: 'limit_data', attributes: { bytes: 2000 } });
    await expect(client.query("select repeat('x', 100000) as big")).rejects.toThrow(/terminated/i);
    await proxy.remove();
  });

  it('bandwidth slows a large result down to the rate', async () => {
    const proxy = await proxyToPostgres();
    const client = await connectThrough(proxy);
    await addToxic(proxy, { type: 'bandwidth', attributes: { rate: 200 } });
    const started = performance.now();
    const { rows } = await client.query("select repeat('x', 100000) as big");
    expect(rows[0].big).toHaveLength(100_000);
    expect(elapsedOf(started)).toBeGreaterThanOrEqual(450); // 100 000 bytes at 200 000 bytes/s
    await client.end();
    await proxy.remove();
  });

  it('slicer keeps the protocol intact while cutting every message into pieces', async () => {
    const proxy = await proxyToPostgres();
    await addToxic(proxy, {
      type: 'slicer',
      attributes: { average_size: 7, size_variation: 3, delay: 100 },
    });
    await addToxic(proxy, {
      type: 'slicer',
      stream: 'upstream',
      attributes: { average_size: 5, size_variation: 2, delay: 0 },
    });
    const client = await connectThrough(proxy);
    const { rows } = await client.query('select $1::text as echo, 42 as answer', ['sliced']);
    expect(rows).toEqual([{ echo: 'sliced', answer: 42 }]);
    await client.end();
    await proxy.remove();
  });

  it('slow_close holds the closing connection open for the delay', async () => {
    const proxy = await proxyToPostgres();
    const client = await connectThrough(proxy);
    await addToxic(proxy, { type: 'slow_close', attributes: { delay: 300 } });
    const started = performance.now();
    await client.end();
    expect(elapsedOf(started)).toBeGreaterThanOrEqual(290);
    await proxy.remove();
  });
});
