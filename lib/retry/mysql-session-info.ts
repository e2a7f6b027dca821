/** What knex-scope needs to know about one MySQL/MariaDB connection, asked once per connection. */
export interface MysqlSessionInfo {
  /** `CONNECTION_ID()`: the server's id of the session. */
  readonly id: number;
  /** `@@hostname:@@port:@@server_id`. */
  readonly server: string;
  /** `VERSION()`, e.g. `10.11.6-MariaDB-0+deb12u1`. */
  readonly version: string;
  /**
   * The driver's thread id (from the handshake) differs from `CONNECTION_ID()`: a proxy
   * (ProxySQL, MaxScale) stands between, which may move the session to other server
   * connections, so the id cannot name the server session to end.
   */
  readonly proxied: boolean;
  /** XA transactions survive their connection: MariaDB ≥ 10.5.2, MySQL ≥ 5.7.7. */
  readonly durableXa: boolean;
}

interface Queryable {
  query(connection: unknown, sql: string): Promise<{ response?: unknown }>;
}

const known = new WeakMap<object, MysqlSessionInfo>();

/**
 * Asks the server about `connection` through `client` (one round trip, the first time only:
 * the answer is kept as long as the connection lives). mysql2's `threadId` would be free, but
 * through a proxy it is the proxy's, and KILL of it could end an unrelated session.
 * Internal to knex-scope.
 *
 * @example
 * const { id, durableXa } = await mysqlSessionInfo(trxClient, connection);
 */
export async function mysqlSessionInfo(
  client: Queryable,
  connection: object,
): Promise<MysqlSessionInfo> {
  const cached = known.get(connection);
  if (cached !== undefined) return cached;
  const { response } = await client.query(
    connection,
    "select connection_id() as id, version() as version, concat(@@hostname, ':', @@port, ':', @@server_id) as server",
  );
  const row = (response as [Record<string, unknown>[]])[0][0] ?? {};
  const id = Number(row.id);
  const version = String(row.version);
  const info: MysqlSessionInfo = {
    id,
    server: String(row.server),
    version,
    proxied: (connection as { threadId?: unknown }).threadId !== id,
    durableXa: hasDurableXa(version),
  };
  known.set(connection, info);
  return info;
}

/**
 * True for servers whose prepared XA transactions survive the connection that prepared them
 * (MariaDB 10.5.2, MDEV-742; MySQL 5.7.7): before that a disconnect rolled them back, and
 * "absent from XA RECOVER" could not mean "committed".
 *
 * @example
 * hasDurableXa('10.11.6-MariaDB-0+deb12u1'); // true
 * hasDurableXa('10.4.32-MariaDB'); // false
 */
export function hasDurableXa(version: string): boolean {
  const match = /(\d+)\.(\d+)\.(\d+)/.exec(version.replace(/^5\.5\.5-/, ''));
  if (match === null) return false;
  const [major, minor, patch] = match.slice(1).map(Number) as [number, number, number];
  const at = major * 10_000 + minor * 100 + patch;
  return /mariadb/i.test(version) ? at >= 100_502 : at >= 50_707;
}
