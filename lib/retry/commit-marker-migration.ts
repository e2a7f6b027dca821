import type { Knex } from 'knex';

/**
 * The table of `commitOutcome: 'marker'`: one row per transaction committed inside
 * `retryTransaction`, keyed by its token (the time in base 36, 9 characters, then 24 random hex
 * digits, so that tokens sort by age and the index grows at its end).
 */
export const commitMarkerTable = 'knex_scope_commit_markers';

/** The name under which `commitMarkerMigrationSource` lists `commitMarkerMigration`. */
export const commitMarkerMigrationName = '20250601000000_knex_scope_commit_markers';

/**
 * The knex migration that creates (`up`) and drops (`down`) the commit marker table
 * `knex_scope_commit_markers (token varchar(40) primary key)`. Re-export it from a file of your
 * migrations directory, or run it with `commitMarkerMigrationSource`.
 *
 * @example
 * // migrations/20250601000000_knex_scope_commit_markers.js
 * module.exports = require('knex-scope').commitMarkerMigration;
 */
export const commitMarkerMigration: {
  up(knex: Knex): Promise<void>;
  down(knex: Knex): Promise<void>;
} = {
  async up(knex: Knex): Promise<void> {
    await knex.schema.createTable(commitMarkerTable, (table) => {
      table.string('token', 40).primary();
    });
  },
  async down(knex: Knex): Promise<void> {
    await knex.schema.dropTableIfExists(commitMarkerTable);
  },
};

/**
 * A knex migration source holding only `commitMarkerMigration`, for apps that keep their own
 * migrations elsewhere or have none. knex records it under `commitMarkerMigrationName`; give it
 * a migrations table of its own, or knex finds your other migrations missing from this source.
 *
 * @example
 * await knex.migrate.latest({
 *   migrationSource: commitMarkerMigrationSource,
 *   tableName: 'knex_scope_migrations',
 * });
 */
export const commitMarkerMigrationSource: Knex.MigrationSource<string> = {
  getMigrations: async () => [commitMarkerMigrationName],
  getMigrationName: (migration) => migration,
  getMigration: async () => commitMarkerMigration,
};
