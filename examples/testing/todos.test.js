// @ts-check
'use strict';
const request = require('supertest');
const { useTestDatabase, useToxiproxy } = require('knex-scope/testing');
const { withDb } = require('knex-scope');
const { addTodo, createApp, todoTitles } = require('./todos');

// One database per jest worker; each test runs in a transaction rolled back afterwards.
const testDb = useTestDatabase();

describe('handlers, given the test scope (nameko database fixture)', () => {
  it('adds a todo', async () => {
    await addTodo(testDb.database, 'write tests');
    expect(await todoTitles(testDb.database)).toEqual(['write tests']);
  });

  it('starts every test from the empty schema', async () => {
    expect(await todoTitles(testDb.database)).toEqual([]);
  });

  it('sees rows the test committed in its own session (nameko db_session)', async () => {
    const trx = await testDb.session;
    await trx('todos').insert([{ title: 'a' }, { title: 'b' }]);
    await trx.commit();
    expect(await todoTitles(testDb.database)).toEqual(['a', 'b']);
  });
});

describe('the Express app on the test database', () => {
  it('adds and lists todos', async () => {
    const app = createApp(testDb.db);
    await request(app).post('/todos').send({ title: 'ship it' }).expect(201, ['ship it']);
    await request(app).get('/todos').expect(200, ['ship it']);
  });
});

// Through the fault proxy the global setup starts in front of PostgreSQL or MySQL (or the
// Toxiproxy named by TOXIPROXY_API_URL / TOXIPROXY_DB_URL). Skipped on SQLite.
const toxiproxy = useToxiproxy();
(toxiproxy.available ? describe : describe.skip)('when the database is unreachable', () => {
  it('fails the request, and works again once the proxy is back', async () => {
    const db = withDb(toxiproxy.dbUrl);
    try {
      const app = createApp(db);
      await request(app).get('/todos').expect(200);
      await toxiproxy.controller.disable();
      await request(app).get('/todos').expect(500);
      await toxiproxy.controller.enable();
      await request(app).get('/todos').expect(200);
    } finally {
      await db.destroy();
    }
  });
});
