const knex = require('knex')({ client: 'pg', connection: 'postgres://postgres@127.0.0.1:5432/test' });
(async () => {
  const trx = await knex.transaction();
  try { await trx.raw('select 1/0'); } catch (e) { console.log('stmt error', e.code); }
  const r = await trx.raw('commit').catch(e => 'err ' + e.message);
  console.log('raw commit result', r && r.command);
  await knex.destroy();
})();
