import type { TestDatabaseKind } from './test-env';

/**
 * What the test kit needs from a database server: list, create, copy and drop the databases it
 * names. Every method only ever receives names the kit generated. Internal to the test kit.
 */
export interface TestDatabaseServer {
  readonly kind: TestDatabaseKind;
  /** The URL the server was opened with (`TEST_DB_URL`). */
  readonly url: string;
  /** SQLite only: the folder that holds the databases. */
  readonly dir?: string;
  /** Every database on the server whose name starts with the test kit's marker. */
  list(): Promise<string[]>;
  exists(name: string): Promise<boolean>;
  create(name: string): Promise<void>;
  /**
   * Creates `name` as a copy of `template` (schema and rows). Resolves to false, having created
   * nothing, when this server cannot copy what `template` holds; the caller then builds `name`
   * from the schema instead.
   */
  copy(template: string, name: string): Promise<boolean>;
  /** Drops `name`, closing whatever connections still use it. No error if it does not exist. */
  drop(name: string): Promise<void>;
  /** The connection URL of database `name` on this server (SQLite: its file). */
  urlOf(name: string): string;
  /** Closes the server's admin connection, if one was opened. */
  close(): Promise<void>;
}
