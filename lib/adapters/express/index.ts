// The same API as 'knex-scope'; req.db and req.dbSession are typed by the global Express
// augmentation that every entry point carries (see express-middleware.ts).
export * from '../../index';
