// The scale-out services (scripts/services/*.sh) behave as the tests that use them assume. Each
// block runs when its service is up and is reported as skipped otherwise.
import { randomBytes } from 'node:crypto';
import mysql from 'mysql2/promise';
import { Client } from 'pg';
import { describeService } from './helpers/services';

const table = `svc_${process.pid}_${randomBytes(3).toString('hex')}`;

async function pgClient(url: string): Promise<Client> {
  const client = new Client({ connectionString: url });
  await client.connect();
  return client;
}

async function backendPid(client: Client): Promise<number> {
  const { rows } = await client.query('select pg_backend_pid() as pid');
  return Number(rows[0].pid);
}

async function eventually<T>(read: () => Promise<T | undefined>, ms = 5_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await read();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`not seen within ${ms} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describeService('pgbouncer', (pgbouncer) => {
  const clients: Client[] = [];
  afterAll(() => Promise.all(clients.map((client) => client.end())));
  const open = async (url: string) => {
    const client = await pgClient(url);
    clients.push(client);
    return client;
  };

  test('pools per transaction: a client is not pinned to a server backend', async () => {
    // The `postgres` database: a pool of its own, which tests of the library through PgBouncer
    // (on `test`) do not take backends from meanwhile.
    const url = new URL(pgbouncer.url);
    url.pathname = '/postgres';
    const [a, b] = [await open(url.toString()), await open(url.toString())];
    const first = await backendPid(a); // a's transaction ends: its backend goes back to the pool
    await b.query('begin');
    // PgBouncer hands out the backend released last: b now holds a's first backend …
    expect(await backendPid(b)).toBe(first);
    // … so a's next transaction runs on another one (in session mode, b could not have had it).
    expect(await backendPid(a)).not.toBe(first);
    await b.query('commit');
  });

  test('the admin console answers SHOW POOLS and SHOW CONFIG', async () => {
    await (await open(pgbouncer.url)).query('select 1');
    const admin = await open(pgbouncer.adminUrl);
    const pools = await admin.query('SHOW POOLS');
    const test = pools.rows.find((row) => row.database === 'test' && row.user === 'postgres');
    expect(test?.pool_mode).toBe('transaction');
    const config = await admin.query('SHOW CONFIG');
    const setting = (key: string) => config.rows.find((row) => row.key === key)?.value;
    expect(setting('pool_mode')).toBe('transaction');
    expect(Number(setting('default_pool_size'))).toBeLessThanOrEqual(10);
  });
});

describeService('pg-failover', (pair) => {
  let primary: Client;
  let standby: Client;
  beforeAll(async () => {
    [primary, standby] = [await pgClient(pair.primaryUrl), await pgClient(pair.standbyUrl)];
  });
  afterAll(async () => {
    await primary?.query(`drop table if exists ${table}`).catch(() => {});
    await Promise.all([primary?.end(), standby?.end()]);
  });

  test('the standby is in recovery and replays what the primary commits', async () => {
    const recovery = async (client: Client) =>
      (await client.query('select pg_is_in_recovery() as r')).rows[0].r;
    expect(await recovery(primary)).toBe(false);
    expect(await recovery(standby)).toBe(true);
    await primary.query(`create table ${table} (id int primary key)`);
    await primary.query(`insert into ${table} values (42)`);
    const row = await eventually(async () => {
      const exists = await standby.query('select to_regclass($1) as t', [table]);
      if (exists.rows[0].t === null) return undefined;
      return (await standby.query(`select id from ${table}`)).rows[0];
    });
    expect(row).toEqual({ id: 42 });
  });
});

describeService('galera', (galera) => {
  const connections: mysql.Connection[] = [];
  const open = async (url: string) => {
    const connection = await mysql.createConnection({ uri: url });
    connections.push(connection);
    return connection;
  };
  // Even when the cluster is not healthy (then the drop fails): never leave jest waiting.
  afterAll(async () => {
    await connections[0]?.query(`drop table if exists ${table}`).catch(() => {});
    for (const connection of connections) connection.destroy();
  });

  test('3 synced nodes; a write on node 1 is read on node 3 with wsrep_sync_wait', async () => {
    for (const url of galera.urls) {
      const connection = await open(url);
      const [rows] = await connection.query<mysql.RowDataPacket[]>(
        "SHOW GLOBAL STATUS WHERE Variable_name IN ('wsrep_cluster_size', 'wsrep_ready')",
      );
      const status = Object.fromEntries(rows.map((row) => [row.Variable_name, row.Value]));
      expect(status).toEqual({ wsrep_cluster_size: '3', wsrep_ready: 'ON' });
    }
    const [node1, , node3] = connections as [mysql.Connection, mysql.Connection, mysql.Connection];
    await node1.query(`create table ${table} (id int primary key, name varchar(20)) engine=InnoDB`);
    await node1.query(`insert into ${table} values (1, 'from node 1')`);
    await node3.query('SET SESSION wsrep_sync_wait = 1');
    const [rows] = await node3.query<mysql.RowDataPacket[]>(`select id, name from ${table}`);
    expect(rows.map((row) => ({ ...row }))).toEqual([{ id: 1, name: 'from node 1' }]);
  });
});
