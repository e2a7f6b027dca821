import type { Knex } from 'knex';

/** One statement on a fresh connection: `?` placeholders; resolves to the rows. */
export type FreshQuery = (
  sql: string,
  bindings?: readonly unknown[],
) => Promise<Record<string, unknown>[]>;

interface RawClient {
  dialect?: string;
  connectionConfigProvider?: () => Promise<Record<string, unknown>>;
  connectionConfigExpirationChecker?: (() => boolean) | null;
  connectionSettings?: unknown;
  acquireRawConnection(): Promise<RawConnection>;
  destroyRawConnection(connection: RawConnection): Promise<void>;
  positionBindings(sql: string): string;
  _query(
    connection: RawConnection,
    query: { sql: string; bindings: readonly unknown[] },
  ): Promise<{ response: unknown }>;
}

interface RawConnection {
  /** mysql2 */
  destroy?(): void;
  /** pg */
  connection?: { stream?: { destroy(): void } };
}

const noop = () => {};

/**
 * Runs `work` on a new connection made from `knex`'s config, outside its pool, and closes it
 * afterwards. Outside the pool because the pool may be full of sessions waiting for this very
 * answer, and may hand out another connection killed by the same fault. Rejects with an
 * `ETIMEDOUT` error (a connection error) once `deadline` (a `Date.now()` value) passes,
 * destroying the connection. Internal to knex-scope.
 *
 * @example
 * const rows = await withFreshConnection(knex, Date.now() + 5_000, (query) =>
 *   query('select txid_status(?::bigint) as status', [xid]),
 * );
 */
export async function withFreshConnection<T>(
  knex: Knex,
  deadline: number,
  work: (query: FreshQuery) => Promise<T>,
): Promise<T> {
  const client = knex.client as unknown as RawClient;
  const provider = client.connectionConfigProvider;
  const expired = client.connectionConfigExpirationChecker;
  if (typeof provider === 'function' && typeof expired === 'function' && expired()) {
    // A `connection` function (the failover pattern): asked again when its own expiration
    // checker says so, as knex's pool does before a new connection (lib/client.js), so that
    // this connection reaches the server the pool would reach now.
    const settings = { ...(await provider()) };
    client.connectionConfigExpirationChecker =
      typeof settings.expirationChecker === 'function'
        ? (settings.expirationChecker as () => boolean)
        : null;
    delete settings.expirationChecker;
    client.connectionSettings = settings;
  }
  const connecting = client.acquireRawConnection();
  const connection = await beforeDeadline(connecting, deadline, () => {
    connecting.then(destroyNow, noop);
  });
  const query: FreshQuery = async (sql, bindings = []) => {
    const { response } = await client._query(connection, {
      sql: client.positionBindings(sql),
      bindings,
    });
    // pg answers a Result, mysql2 [rows, fields]
    const rows = Array.isArray(response) ? response[0] : (response as { rows: unknown }).rows;
    return rows as Record<string, unknown>[];
  };
  let ok = false;
  try {
    const result = await beforeDeadline(work(query), deadline, () => destroyNow(connection));
    ok = true;
    return result;
  } finally {
    if (ok) await client.destroyRawConnection(connection).catch(() => destroyNow(connection));
    else destroyNow(connection);
  }
}

function beforeDeadline<T>(promise: Promise<T>, deadline: number, onTimeout: () => void) {
  const wait = deadline - Date.now();
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(
      () => {
        onTimeout();
        reject(
          Object.assign(new Error('knex-scope: no answer from a fresh connection in time'), {
            code: 'ETIMEDOUT',
          }),
        );
      },
      Math.max(wait, 0),
    );
    promise.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (error: unknown) => {
        clearTimeout(timer);
        reject(error);
      },
    );
  });
}

function destroyNow(connection: RawConnection): void {
  try {
    if (typeof connection.destroy === 'function') connection.destroy();
    else connection.connection?.stream?.destroy();
  } catch {}
}
