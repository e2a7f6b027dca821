import type { Knex } from 'knex';
import request from 'supertest';
import { type Db, type LegacySession, withDb, withLegacySession } from '../../lib';
import { poolStats, recordSql, testConfig } from '../helpers/database';

const { createApp } = require('../../examples/orders/app') as {
  createApp(db: Db, legacy: LegacySession): Parameters<typeof request>[0];
};
const { ensureSchema } = require('../../examples/orders/schema') as {
  ensureSchema(knex: Knex): Promise<void>;
};
const { expireOrdersJob } = require('../../examples/orders/expire-drafts') as {
  expireOrdersJob(db: Db, maxAgeMs: number): () => Promise<number>;
};

let db: Db;
let legacy: LegacySession;
let app: Parameters<typeof request>[0];
let sql: string[];

beforeAll(async () => {
  db = withDb(testConfig(), { currentDb: true });
  legacy = withLegacySession(db.knex);
  await db.knex.schema.dropTableIfExists('orders');
  await db.knex.schema.dropTableIfExists('audit_log');
  await ensureSchema(db.knex);
  app = createApp(db, legacy);
});

beforeEach(async () => {
  await db.knex('orders').delete();
  await db.knex('audit_log').delete();
  sql = recordSql(db.knex);
});

afterAll(async () => {
  await db.knex.schema.dropTableIfExists('orders');
  await db.knex.schema.dropTableIfExists('audit_log');
  await db.destroy();
});

describe('the orders example', () => {
  it('serves /health without touching the database', async () => {
    await request(app).get('/health').expect(200, { ok: true });
    expect(sql).toEqual([]);
  });

  it('places an order and its audit entry in one lazy session', async () => {
    const placed = await request(app)
      .post('/orders')
      .send({ item: 'tea', quantity: 2 })
      .expect(201);
    expect(placed.body).toMatchObject({ item: 'tea', quantity: 2, status: 'open' });
    const listed = await request(app).get('/orders').expect(200);
    expect(listed.body).toEqual([expect.objectContaining({ id: placed.body.id, item: 'tea' })]);
    expect(await db.knex('audit_log').pluck('event')).toEqual([`order ${placed.body.id} placed`]);
  });

  it('rejects an invalid order with 400 and writes nothing', async () => {
    await request(app).post('/orders').send({ item: '', quantity: 0 }).expect(400);
    expect(await db.knex('orders').count({ n: '*' })).toEqual([{ n: expect.anything() }]);
    expect(Number((await db.knex('orders').count({ n: '*' }))[0]?.n)).toBe(0);
  });

  it('cancels with two explicit sessions and keeps the audit entry of a refused cancel', async () => {
    const { body } = await request(app)
      .post('/orders')
      .send({ item: 'cake', quantity: 1 })
      .expect(201);
    await request(app)
      .post(`/orders/${body.id}/cancel`)
      .expect(200, { id: body.id, status: 'cancelled' });
    await request(app).post(`/orders/${body.id}/cancel`).expect(409);
    expect(await db.knex('orders').where({ id: body.id }).first()).toMatchObject({
      status: 'cancelled',
    });
    expect(
      (await db.knex('audit_log').pluck('event')).filter((e: string) => e.startsWith('cancel')),
    ).toHaveLength(2);
  });

  it('rolls back a draft the handler never committed', async () => {
    await request(app).post('/orders/draft').send({ item: 'draft', quantity: 1 }).expect(202);
    expect(Number((await db.knex('orders').count({ n: '*' }))[0]?.n)).toBe(0);
    expect(poolStats(db.knex).used).toBe(0);
  });

  it('writes through the eager legacy session', async () => {
    const { body } = await request(app)
      .post('/legacy/orders')
      .send({ item: 'legacy', quantity: 3 })
      .expect(201);
    expect(await db.knex('orders').where({ id: body.id }).first()).toMatchObject({
      item: 'legacy',
    });
  });

  it('expires old open orders in a db.wrap job', async () => {
    await db
      .knex('orders')
      .insert({ item: 'old', quantity: 1, created_at: new Date(Date.now() - 10_000) });
    await request(app).post('/orders').send({ item: 'new', quantity: 1 }).expect(201);
    expect(await expireOrdersJob(db, 5_000)()).toBe(1);
    expect(await db.knex('orders').orderBy('id').pluck('status')).toEqual(['expired', 'open']);
  });
});
