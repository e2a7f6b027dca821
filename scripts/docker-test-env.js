// @ts-check
'use strict';
// What `npm run test:docker` adds to the environment: the Toxiproxy of docker-compose.test.yml
// and its two proxies (scripts/toxiproxy.test.json), one per database project. The test kit's
// global setup finds each proxy's name from its port. __tests__/docker-compose.test.ts checks that
// these, the compose file, the proxies and the workflow agree.
const dockerTestEnv = {
  TOXIPROXY_API_URL: 'http://127.0.0.1:8474',
  TOXIPROXY_DB_URL__POSTGRES: 'postgres://postgres@127.0.0.1:15432/test',
  TOXIPROXY_DB_URL__MARIADB: 'mysql://root@127.0.0.1:13306/test',
};

module.exports = { dockerTestEnv };
