// docker-compose.test.yml, its Toxiproxy config, the npm scripts and the GitHub workflow must agree
// with each other and with the code: the ports and databases the suite probes, the proxies the
// test kit looks for, the environment variables it reads.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { testEnv, testEnvKey } from '../lib/testing/test-env';
import { toxiproxyVersion } from '../lib/toxiproxy';
import { dockerTestEnv } from '../scripts/docker-test-env';
import { servers } from '../scripts/probe-databases';
import { readYamlSubset, type YamlValue } from './helpers/read-yaml-subset';

const root = join(__dirname, '..');
const read = (file: string): string => readFileSync(join(root, file), 'utf8');

type Node = { [key: string]: YamlValue };
const asMap = (value: YamlValue | undefined): Node =>
  typeof value === 'object' && value !== null && !Array.isArray(value) ? value : {};
const asList = (value: YamlValue | undefined): YamlValue[] => (Array.isArray(value) ? value : []);

const compose = asMap(readYamlSubset(read('docker-compose.test.yml')));
const services = asMap(compose.services);
const workflow = asMap(readYamlSubset(read('.github/workflows/test.yml')));
const scripts = (JSON.parse(read('package.json')) as { scripts: Record<string, string> }).scripts;
const proxies = JSON.parse(read('scripts/toxiproxy.test.json')) as {
  name: string;
  listen: string;
  upstream: string;
  enabled: boolean;
}[];

/** The host port a service publishes for `containerPort`. */
function publishedPort(service: string, containerPort: string): string | undefined {
  for (const mapping of asList(asMap(services[service]).ports)) {
    const parts = String(mapping).split(':');
    if (parts.at(-1) === containerPort) return parts.at(-2);
  }
  return undefined;
}

describe('docker-compose.test.yml', () => {
  it('runs PostgreSQL, MySQL and Shopify Toxiproxy, each with a health check for --wait', () => {
    expect(Object.keys(services).sort()).toEqual(['mysql', 'postgres', 'toxiproxy']);
    for (const service of Object.values(services)) {
      expect(asList(asMap(asMap(service).healthcheck).test).length).toBeGreaterThan(0);
    }
  });

  it('runs the Toxiproxy version the in-process fault proxy imitates', () => {
    expect(asMap(services.toxiproxy).image).toBe(`ghcr.io/shopify/toxiproxy:${toxiproxyVersion}`);
  });

  it('serves PostgreSQL where the suite looks for it: trust auth, user postgres, database test', () => {
    const url = new URL(servers.postgres);
    const postgres = asMap(services.postgres);
    expect(publishedPort('postgres', '5432')).toBe(url.port);
    expect(asMap(postgres.environment)).toMatchObject({
      POSTGRES_HOST_AUTH_METHOD: 'trust',
      POSTGRES_USER: url.username,
      POSTGRES_DB: url.pathname.slice(1),
    });
  });

  it('serves MySQL where the suite looks for it: root without a password, database test', () => {
    const url = new URL(servers.mariadb);
    expect(publishedPort('mysql', '3306')).toBe(url.port);
    expect(url.username).toBe('root');
    expect(url.password).toBe('');
    expect(asMap(asMap(services.mysql).environment)).toMatchObject({
      MYSQL_ALLOW_EMPTY_PASSWORD: 'yes',
      MYSQL_DATABASE: url.pathname.slice(1),
    });
  });

  it('starts Toxiproxy on the API port of TOXIPROXY_API_URL with the proxies file', () => {
    const toxiproxy = asMap(services.toxiproxy);
    const command = asList(toxiproxy.command).map(String);
    expect(toxiproxy.network_mode).toBe('host');
    expect(command).toContain(`-port=${new URL(dockerTestEnv.TOXIPROXY_API_URL).port}`);
    const config = command.find((arg) => arg.startsWith('-config='))?.slice('-config='.length);
    expect(asList(toxiproxy.volumes)).toContain(`./scripts/toxiproxy.test.json:${config}:ro`);
  });
});

describe('scripts/toxiproxy.test.json and the environment of npm run test:docker', () => {
  const projects = Object.keys(servers);

  it('names Toxiproxy and one proxied database per database project, as the kit reads them', () => {
    expect(Object.keys(dockerTestEnv).sort()).toEqual(
      [
        testEnv.toxiproxyApiUrl,
        ...projects.map((project) => testEnvKey(testEnv.toxiproxyDbUrl, project)),
      ].sort(),
    );
  });

  it.each(projects)(
    'puts exactly one proxy in front of the %s server, on the port of its TOXIPROXY_DB_URL',
    (project) => {
      const server = new URL(servers[project as keyof typeof servers]);
      const proxied = new URL(
        dockerTestEnv[testEnvKey(testEnv.toxiproxyDbUrl, project) as keyof typeof dockerTestEnv],
      );
      expect(proxied.protocol).toBe(server.protocol);
      expect(proxied.username).toBe(server.username);
      expect(proxied.pathname).toBe(server.pathname);
      const matching = proxies.filter((proxy) => proxy.listen.endsWith(`:${proxied.port}`));
      expect(matching).toHaveLength(1);
      expect(matching[0]).toMatchObject({
        listen: `127.0.0.1:${proxied.port}`,
        upstream: `127.0.0.1:${server.port}`,
        enabled: true,
      });
    },
  );

  it('gives every proxy a distinct name and port', () => {
    expect(new Set(proxies.map((proxy) => proxy.name)).size).toBe(proxies.length);
    expect(new Set(proxies.map((proxy) => proxy.listen)).size).toBe(proxies.length);
  });
});

describe('npm scripts and .github/workflows/test.yml', () => {
  it('has test-deps (make test-deps), test:docker (make test) and test-deps:down', () => {
    expect(scripts['test-deps']).toBe('docker compose -f docker-compose.test.yml up -d --wait');
    expect(scripts['test:docker']).toBe('npm run test-deps && node scripts/test.js --docker');
    expect(scripts['test-deps:down']).toBe('docker compose -f docker-compose.test.yml down -v');
  });

  it('installs, starts the services, runs the whole suite against them and stops them, on Node 20, 22 and 24', () => {
    const steps = asList(asMap(asMap(asMap(workflow.jobs).test)).steps).map(asMap);
    const runs = steps.map((step) => step.run).filter((run) => run !== undefined);
    expect(runs).toEqual([
      'npm ci',
      'npm run test-deps',
      'npm run test:docker',
      'npm run test-deps:down',
    ]);
    expect(steps.at(-1)?.if).toBe('always()');
    const node = steps.find((step) => String(step.uses).startsWith('actions/setup-node'));
    // biome-ignore lint/suspicious/noTemplateCurlyInString: GitHub's expression syntax, not JS
    expect(asMap(node?.with)['node-version']).toBe('${{ matrix.node }}');
    const test = asMap(asMap(workflow.jobs).test);
    expect(asMap(asMap(test.strategy).matrix).node).toEqual(['20', '22', '24']);
    expect(asMap(test.strategy)['fail-fast']).toBe('false');
  });
});
