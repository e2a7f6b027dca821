// @ts-check
'use strict';

/**
 * A job outside HTTP: db.wrap gives each run a scope of its own, ended when the run settles.
 * Cancels open orders older than `maxAgeMs`.
 * @param {import('knex-scope').Db} db
 * @param {number} maxAgeMs
 */
function expireOrdersJob(db, maxAgeMs) {
  return db.wrap(async (scope) => {
    const cutoff = new Date(Date.now() - maxAgeMs);
    return scope.getSession((trx) =>
      trx('orders')
        .where('status', 'open')
        .andWhere('created_at', '<', cutoff)
        .update({ status: 'expired' }),
    );
  });
}

module.exports = { expireOrdersJob };
