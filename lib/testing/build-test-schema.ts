import { isAbsolute, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Knex } from 'knex';
import { InvalidConfigError } from '../core/errors';

/** A function that creates the tables on the Knex it is given (nameko's `model_base`). */
export type SchemaFunction = (knex: Knex) => unknown;

/** How the test kit builds the schema of a test database. Both may be given: migrations first. */
export interface TestSchemaOptions {
  /**
   * Knex migrations to run (`knex.migrate.latest`): a folder, relative to the working directory,
   * or a full migrator config.
   */
  readonly migrations?: string | Knex.MigratorConfig;
  /**
   * A function that creates the tables, or the path of a module exporting one (as `default`,
   * `schema` or the module itself), relative to the working directory. TypeScript modules load in
   * a jest global setup, whose transform is active.
   */
  readonly schema?: string | SchemaFunction;
}

/**
 * Runs the migrations and then the schema function on `knex`.
 *
 * @example
 * await buildTestSchema(knex, { migrations: 'db/migrations', schema: 'test/schema.js' });
 */
export async function buildTestSchema(knex: Knex, options: TestSchemaOptions): Promise<void> {
  const { migrations, schema } = options;
  if (migrations !== undefined) {
    await knex.migrate.latest(
      typeof migrations === 'string' ? { directory: resolve(migrations) } : migrations,
    );
  }
  if (schema !== undefined) {
    const build = typeof schema === 'function' ? schema : await loadSchemaFunction(schema);
    await build(knex);
  }
}

/**
 * Loads the schema function from a module path (relative to the working directory).
 *
 * @example
 * const schema = await loadSchemaFunction('test/schema.js');
 * await schema(knex);
 */
export async function loadSchemaFunction(path: string): Promise<SchemaFunction> {
  const file = isAbsolute(path) ? path : resolve(path);
  let loaded: unknown;
  try {
    loaded = require(file);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ERR_REQUIRE_ESM') {
      throw new InvalidConfigError(
        `Could not load the schema module ${file}: ${(error as Error).message}`,
        { cause: error },
      );
    }
    loaded = await import(pathToFileURL(file).href);
  }
  const candidates = [loaded, ...['default', 'schema'].map((key) => property(loaded, key))];
  candidates.push(property(property(loaded, 'default'), 'default'));
  const found = candidates.find((candidate) => typeof candidate === 'function');
  if (found === undefined) {
    throw new InvalidConfigError(
      `The schema module ${file} exports no function: export \`async (knex) => { … }\` as ` +
        'module.exports, default or schema.',
    );
  }
  return found as SchemaFunction;
}

function property(value: unknown, key: string): unknown {
  return (typeof value === 'object' || typeof value === 'function') && value !== null
    ? (value as Record<string, unknown>)[key]
    : undefined;
}
