// @ts-check
'use strict';

/**
 * Creates the example's tables if they are missing. Runs on every start.
 * @param {import('knex').Knex} knex
 */
async function ensureSchema(knex) {
  if (!(await knex.schema.hasTable('orders'))) {
    await knex.schema.createTable('orders', (t) => {
      t.increments('id');
      t.string('item', 100).notNullable();
      t.integer('quantity').notNullable();
      t.string('status', 20).notNullable().defaultTo('open');
      t.timestamp('created_at').notNullable().defaultTo(knex.fn.now());
    });
  }
  if (!(await knex.schema.hasTable('audit_log'))) {
    await knex.schema.createTable('audit_log', (t) => {
      t.increments('id');
      t.string('event', 200).notNullable();
      t.timestamp('at').notNullable().defaultTo(knex.fn.now());
    });
  }
}

module.exports = { ensureSchema };
