import type { Knex } from 'knex';

let engineOptions: Readonly<Partial<Knex.Config>> = {};

/**
 * Sets the engine options of this test file (nameko's `db_engine_options` fixture): Knex config
 * keys such as `pool`, `acquireConnectionTimeout`, `log` or `postProcessResponse` that
 * `useTestDatabase` lays over the test database's config when it opens its Knex instance (in
 * `beforeAll`). Call it at the top of the file; each jest test file has its own.
 *
 * @example
 * useDbEngineOptions({ pool: { min: 0, max: 2 }, acquireConnectionTimeout: 2_000 });
 * const testDb = useTestDatabase();
 */
export function useDbEngineOptions(options: Readonly<Partial<Knex.Config>>): void {
  engineOptions = options;
}

/**
 * The engine options of this test file: what `useDbEngineOptions` set, `{}` by default.
 *
 * @example
 * dbEngineOptions(); // {}
 */
export function dbEngineOptions(): Readonly<Partial<Knex.Config>> {
  return engineOptions;
}
