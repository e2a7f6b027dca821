import type { Knex } from 'knex';

/** Which database a Knex instance talks to, in OpenTelemetry's terms. */
export interface DatabaseIdentity {
  /** `db.system.name`: `postgresql`, `mysql` (MariaDB too), `sqlite`, or knex's dialect name. */
  readonly system: string;
  /** `db.namespace`: the database name, or the SQLite file. */
  readonly namespace: string | undefined;
  readonly serverAddress: string | undefined;
  readonly serverPort: number | undefined;
}

const systems: Record<string, string> = {
  postgresql: 'postgresql',
  mysql: 'mysql',
  sqlite3: 'sqlite',
  mssql: 'microsoft.sql_server',
  oracledb: 'oracle.db',
};

interface Settings {
  host?: unknown;
  port?: unknown;
  database?: unknown;
  filename?: unknown;
  connectionString?: unknown;
  /** mysql2's name for it (failoverConnection gives MySQL its URL so). */
  uri?: unknown;
}

/**
 * The database `knex` talks to, read from its connection settings (which knex resolves from a
 * `connection` function before the first connection). Never the user or password.
 *
 * @example
 * databaseIdentity(knex); // { system: 'postgresql', namespace: 'shop', serverAddress: 'db', serverPort: 5432 }
 */
export function databaseIdentity(knex: Knex): DatabaseIdentity {
  const client = knex.client as { dialect?: string; connectionSettings?: unknown };
  const dialect = client.dialect ?? 'other_sql';
  let settings = client.connectionSettings as Settings | string | undefined;
  if (typeof settings === 'string') settings = { connectionString: settings };
  const address = settings?.connectionString ?? settings?.uri;
  if (typeof address === 'string' && URL.canParse(address)) {
    const url = new URL(address);
    settings = {
      host: url.hostname || undefined,
      port: url.port || undefined,
      database: decodeURIComponent(url.pathname.slice(1)) || undefined,
    };
  }
  const port = Number(settings?.port);
  return {
    system: systems[dialect] ?? dialect,
    namespace: text(settings?.database) ?? text(settings?.filename),
    serverAddress: text(settings?.host),
    serverPort: Number.isInteger(port) && port > 0 ? port : undefined,
  };
}

function text(value: unknown): string | undefined {
  return typeof value === 'string' && value !== '' ? value : undefined;
}
