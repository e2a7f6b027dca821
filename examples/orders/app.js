// @ts-check
'use strict';
const express = require('express');
const { insertOrder } = require('./orders');

/**
 * The orders API. Every route shows one way to use the request's scope (req.db) or the eager
 * session (req.dbSession).
 * @param {import('knex-scope').Db} db
 * @param {import('knex-scope').LegacySession} legacy
 */
function createApp(db, legacy) {
  const app = express();
  app.use(express.json());

  app.use(db);

  // Routes that never read req.db never take a connection from the pool.
  app.get('/health', (_req, res) => {
    res.json({ ok: true });
  });

  // Callback session: commits when the callback resolves, rolls back if it throws.
  app.get('/orders', async (req, res) => {
    const orders = await req.db.getSession((trx) => trx('orders').select().orderBy('id'));
    res.json(orders);
  });

  // Lazy request session: BEGIN on first use (here inside insertOrder, through currentDb()),
  // committed explicitly before responding.
  app.post('/orders', async (req, res) => {
    const { item, quantity } = validOrder(req.body);
    const id = await insertOrder({ item, quantity });
    const trx = await req.db.session;
    await trx('audit_log').insert({ event: `order ${id} placed` });
    await trx.commit();
    res.status(201).json({ id, item, quantity, status: 'open' });
  });

  // Explicit sessions: two independent transactions. The audit entry is kept even when the
  // cancellation is refused and rolled back.
  app.post('/orders/:id/cancel', async (req, res) => {
    const audit = await req.db.getSession();
    await audit('audit_log').insert({ event: `cancel requested for order ${req.params.id}` });
    await audit.commit();

    const trx = await req.db.getSession();
    const changed = await trx('orders')
      .where({ id: req.params.id, status: 'open' })
      .update({ status: 'cancelled' });
    if (changed !== 1) {
      await trx.rollback();
      res.status(409).json({ error: 'order is not open' });
      return;
    }
    await trx.commit();
    res.json({ id: Number(req.params.id), status: 'cancelled' });
  });

  // A handler that forgets to commit: its insert is rolled back before the response is sent.
  app.post('/orders/draft', async (req, res) => {
    const trx = await req.db.session;
    await trx('orders').insert(validOrder(req.body));
    res.status(202).json({ saved: false });
  });

  // The eager (legacy) session: BEGIN is sent before the handler runs.
  app.post('/legacy/orders', legacy, async (req, res) => {
    const { item, quantity } = validOrder(req.body);
    const [row] = await req
      .dbSession('orders')
      .insert({ item, quantity, created_at: new Date() }, ['id']);
    await req.dbSession.commit();
    res.status(201).json({ id: typeof row === 'object' ? row.id : row });
  });

  app.use(onError);
  return app;
}

/**
 * Invalid input (a TypeError) is the client's fault; anything else is the server's.
 * @param {Error} error
 * @param {import('express').Request} _req
 * @param {import('express').Response} res
 * @param {import('express').NextFunction} _next
 */
function onError(error, _req, res, _next) {
  res.status(error instanceof TypeError ? 400 : 500).json({ error: error.message });
}

/**
 * @param {unknown} body
 * @returns {{ item: string, quantity: number }}
 */
function validOrder(body) {
  const { item, quantity } = /** @type {{ item?: unknown, quantity?: unknown }} */ (body ?? {});
  if (
    typeof item !== 'string' ||
    item === '' ||
    !Number.isInteger(quantity) ||
    Number(quantity) < 1
  ) {
    throw new TypeError('an order needs an item (string) and a quantity (positive integer)');
  }
  return { item, quantity: Number(quantity) };
}

module.exports = { createApp };
