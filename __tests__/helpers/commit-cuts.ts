import type { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import type { Knex } from 'knex';
import { dialect } from './database';

/** The socket under a transaction's connection (pg.Client or mysql2 Connection). */
export async function socketOf(trx: Knex.Transaction): Promise<Socket> {
  const client = trx.client as unknown as { acquireConnection(): Promise<Record<string, never>> };
  const connection = (await client.acquireConnection()) as {
    connection?: { stream: Socket };
    stream?: Socket;
  };
  const socket = connection.connection?.stream ?? connection.stream;
  if (socket === undefined) throw new Error('no socket on this connection');
  return socket;
}

/**
 * Cuts the transaction's TCP connection at the first statement whose SQL `matches`: `before` its
 * bytes are written (the server never sees it), or right `after` (the server runs it, the reply
 * is lost). knex emits 'query' synchronously before handing the statement to the driver, which
 * writes it to the socket synchronously: a microtask runs after the bytes are in the kernel.
 * Resolves to a function telling whether the cut happened.
 */
export async function cutAt(
  trx: Knex.Transaction,
  matches: (sql: string) => boolean,
  when: 'before' | 'after',
): Promise<() => boolean> {
  const socket = await socketOf(trx);
  let cut = false;
  (trx.client as unknown as EventEmitter).on('query', (query: { sql: string }) => {
    if (cut || !matches(query.sql)) return;
    cut = true;
    if (when === 'before') socket.destroy();
    else queueMicrotask(() => socket.destroy());
  });
  return () => cut;
}

/** The prepared XA transactions on the MariaDB server whose data starts with `ks1:`. */
export async function knexScopeXids(admin: Knex): Promise<string[]> {
  const [rows] = (await admin.raw('xa recover')) as [{ data: string }[]];
  return rows.map((row) => String(row.data)).filter((data) => data.startsWith('ks1:'));
}

/** Whether the server session `id` (PostgreSQL pid, MariaDB thread id) still exists. */
export async function serverSessionExists(admin: Knex, id: number): Promise<boolean> {
  if (dialect === 'postgres') {
    const { rows } = await admin.raw('select 1 from pg_stat_activity where pid = ?', [id]);
    return rows.length > 0;
  }
  const [rows] = await admin.raw('select 1 from information_schema.processlist where id = ?', [id]);
  return rows.length > 0;
}

/** What the server session `id` is running now, or undefined if it is idle or gone. */
export async function runningStatement(admin: Knex, id: number): Promise<string | undefined> {
  if (dialect === 'postgres') {
    const { rows } = await admin.raw(
      "select query from pg_stat_activity where pid = ? and state = 'active'",
      [id],
    );
    return rows[0]?.query;
  }
  const [rows] = await admin.raw(
    'select info from information_schema.processlist where id = ? and info is not null',
    [id],
  );
  return rows[0]?.info ?? undefined;
}
