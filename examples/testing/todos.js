// @ts-check
'use strict';
const express = require('express');

/**
 * Adds a todo in the request's lazy session and commits it.
 * @param {import('knex-scope').Scope} db
 * @param {string} title
 */
async function addTodo(db, title) {
  const trx = await db.session;
  await trx('todos').insert({ title });
  await trx.commit();
}

/**
 * Every todo, in a callback session.
 * @param {import('knex-scope').Scope} db
 * @returns {Promise<string[]>}
 */
function todoTitles(db) {
  return db.getSession((trx) => trx('todos').orderBy('id').pluck('title'));
}

/**
 * The todo API on a `withDb` middleware.
 * @param {import('knex-scope').Db} db
 */
function createApp(db) {
  const app = express();
  app.use(express.json());
  app.use(db);
  app.post('/todos', async (req, res) => {
    await addTodo(req.db, req.body.title);
    res.status(201).json(await todoTitles(req.db));
  });
  app.get('/todos', async (req, res) => {
    res.json(await todoTitles(req.db));
  });
  return app;
}

module.exports = { addTodo, todoTitles, createApp };
