import type { Knex } from 'knex';

/**
 * `db.destroy` for a Knex instance: destroys it only if knex-scope owns it. Safe to call twice.
 *
 * @example
 * const destroy = destroyer(knex, true);
 * await destroy();
 */
export function destroyer(knex: Knex, owned: boolean): () => Promise<void> {
  return async () => {
    if (owned) await knex.destroy();
  };
}
