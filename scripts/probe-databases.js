// @ts-check
'use strict';
const net = require('node:net');

/** The servers the test suite runs against, overridable for other machines. */
const servers = {
  postgres: process.env.KNEX_SCOPE_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test',
  mariadb: process.env.KNEX_SCOPE_MYSQL_URL ?? 'mysql://root@127.0.0.1:3306/test',
};

/**
 * Tells whether something accepts TCP connections at the host and port of `url`.
 * @param {string} url
 * @param {number} [timeout]
 * @returns {Promise<boolean>}
 */
function answers(url, timeout = 1_000) {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    const socket = net.connect(Number(port), hostname);
    const done = (/** @type {boolean} */ ok) => {
      socket.destroy();
      resolve(ok);
    };
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
    socket.setTimeout(timeout, () => done(false));
  });
}

/**
 * The databases to test: SQLite always, PostgreSQL and MariaDB when their servers answer.
 * KNEX_SCOPE_TEST_DATABASES (comma-separated) overrides the probe.
 * @returns {Promise<{ name: string; url: string }[]>}
 */
async function probeDatabases() {
  const chosen = process.env.KNEX_SCOPE_TEST_DATABASES;
  const names = chosen
    ? chosen.split(',').map((name) => name.trim())
    : [
        'sqlite',
        ...((await answers(servers.postgres)) ? ['postgres'] : []),
        ...((await answers(servers.mariadb)) ? ['mariadb'] : []),
      ];
  return names.map((name) => ({
    name,
    url:
      name === 'sqlite' ? 'sqlite::memory:' : servers[/** @type {'postgres'|'mariadb'} */ (name)],
  }));
}

module.exports = { answers, probeDatabases, servers };
