// @ts-check
'use strict';

/**
 * The example's schema, built once per test run by the global setup (nameko's model_base). Point
 * the setup at it with KNEX_SCOPE_TEST_SCHEMA (see jest.config.js), or use knex migrations with
 * KNEX_SCOPE_TEST_MIGRATIONS.
 * @param {import('knex').Knex} knex
 */
module.exports = async function schema(knex) {
  await knex.schema.createTable('todos', (t) => {
    t.increments('id');
    t.string('title', 200).notNullable();
    t.boolean('done').notNullable().defaultTo(false);
  });
};
