import { knex } from 'knex';
import { databaseIdentity } from '../lib/core/database-identity';

// What spans and forgotten-session reports say about the database: never the user or password.
describe('databaseIdentity', () => {
  it.each([
    ['pg', { connectionString: 'postgres://u:secret@db.internal:6432/shop' }, 'postgresql'],
    ['pg', 'postgres://u:secret@db.internal:6432/shop', 'postgresql'],
    ['mysql2', { uri: 'mysql://u:secret@db.internal:6432/shop' }, 'mysql'], // failoverConnection's form
    ['mysql2', { host: 'db.internal', port: 6432, database: 'shop', password: 'secret' }, 'mysql'],
  ])('%s with %j', async (client, connection, system) => {
    const db = knex({ client, connection });
    try {
      const identity = databaseIdentity(db);
      expect(identity).toEqual({
        system,
        namespace: 'shop',
        serverAddress: 'db.internal',
        serverPort: 6432,
      });
      expect(JSON.stringify(identity)).not.toContain('secret');
    } finally {
      await db.destroy();
    }
  });
});
