// @ts-check
'use strict';
const { withDb, withLegacySession } = require('knex-scope');
const { createApp } = require('./app');
const { expireOrdersJob } = require('./expire-drafts');
const { ensureSchema } = require('./schema');

const url = process.env.DATABASE_URL ?? 'sqlite:./orders.sqlite';
const port = Number(process.env.PORT ?? 3000);

async function main() {
  // currentDb: true lets orders.js find the request's scope without being handed req.db.
  const db = withDb(url, { currentDb: true });
  // The legacy middleware shares the same pool by taking the Knex instance.
  const legacy = withLegacySession(db.knex);
  await ensureSchema(db.knex);

  const expire = expireOrdersJob(db, 24 * 60 * 60 * 1000);
  const timer = setInterval(() => {
    expire().catch((error) => console.error('expiring orders failed:', error));
  }, 60_000);

  const server = createApp(db, legacy).listen(port, () => {
    console.log(`orders API on http://localhost:${port} (${db.knex.client.config.client}), try:`);
    console.log(
      `  curl -X POST localhost:${port}/orders -H 'content-type: application/json' -d '{"item":"tea","quantity":2}'`,
    );
    console.log(`  curl localhost:${port}/orders`);
  });

  const stop = () => {
    clearInterval(timer);
    server.close(() => {
      db.destroy().then(() => process.exit(0));
    });
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
