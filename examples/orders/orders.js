// @ts-check
'use strict';
const { currentDb } = require('knex-scope');

/**
 * Data access that needs no request object: it finds the request's scope with currentDb().
 * @param {{ item: string, quantity: number }} order
 */
async function insertOrder(order) {
  const trx = await currentDb().session;
  const [row] = await trx('orders').insert({ ...order, created_at: new Date() }, ['id']);
  return typeof row === 'object' ? row.id : row;
}

module.exports = { insertOrder };
