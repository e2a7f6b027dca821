import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';

// Runs against the packed tarball, as users get it: `npm pack`, unpacked under a node_modules
// folder inside the repository so that knex and the drivers resolve from our own node_modules.
const root = join(__dirname, '..');
const manifest = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
  exports: Record<string, unknown>;
  bin: Record<string, string>;
};
const subpaths = Object.keys(manifest.exports)
  .filter((key) => key !== './package.json')
  .map((key) => key.replace(/^\./, 'knex-scope'));

let project: string;

beforeAll(() => {
  mkdirSync(join(root, '.tmp'), { recursive: true });
  project = mkdtempSync(join(root, '.tmp', 'pack-'));
  const packed = JSON.parse(
    execFileSync('npm', ['pack', '--json', '--pack-destination', project], {
      cwd: root,
      encoding: 'utf8',
    }),
  ) as { filename: string; files: { path: string }[] }[];
  const target = join(project, 'node_modules', 'knex-scope');
  mkdirSync(target, { recursive: true });
  execFileSync('tar', [
    '-xzf',
    join(project, packed[0]!.filename),
    '-C',
    target,
    '--strip-components=1',
  ]);
}, 120_000);

afterAll(() => {
  rmSync(project, { recursive: true, force: true });
});

function node(args: string[]): string {
  const result = spawnSync(process.execPath, args, { cwd: project, encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`node ${args.join(' ')} failed:\n${result.stderr}`);
  return result.stdout;
}

describe('the packed package', () => {
  it('ships the compiled files and no sources or tests', () => {
    const files = readdirSync(join(project, 'node_modules', 'knex-scope'));
    expect(files.sort()).toEqual(expect.arrayContaining(['README.md', 'dist', 'package.json']));
    expect(files).not.toContain('lib');
    expect(files).not.toContain('__tests__');
  });

  it('loads every subpath with require() and with import, with the same named exports', () => {
    const script = `
      const { createRequire } = require('node:module');
      const subpaths = ${JSON.stringify(subpaths)};
      (async () => {
        const out = {};
        for (const subpath of subpaths) {
          const cjs = Object.keys(require(subpath)).filter((k) => k !== 'default' && k !== '__esModule').sort();
          const esm = Object.keys(await import(subpath)).filter((k) => k !== 'default' && k !== 'module.exports' && k !== '__esModule').sort();
          out[subpath] = { cjs, esm };
        }
        console.log(JSON.stringify(out));
      })();`;
    const loaded = JSON.parse(node(['-e', script])) as Record<
      string,
      { cjs: string[]; esm: string[] }
    >;
    for (const subpath of subpaths) {
      expect(loaded[subpath]?.cjs.length).toBeGreaterThan(0);
      expect(loaded[subpath]?.esm).toEqual(loaded[subpath]?.cjs);
    }
    expect(loaded['knex-scope']?.cjs).toEqual(
      expect.arrayContaining([
        'withDb',
        'withLegacySession',
        'currentDb',
        'isConnectionError',
        'retryTransaction',
      ]),
    );
  });

  it('shares one AsyncLocalStorage between import and require', () => {
    const script = `
      import { createRequire } from 'node:module';
      import { withDb } from 'knex-scope';
      const { currentDb } = createRequire(import.meta.url)('knex-scope');
      const { currentDb: fromExpress } = await import('knex-scope/express');
      const db = withDb('sqlite::memory:', { currentDb: true });
      const same = await db.wrap(async (scope) => currentDb() === scope && fromExpress() === scope)();
      await db.destroy();
      console.log(JSON.stringify({ same }));`;
    expect(JSON.parse(node(['--input-type=module', '-e', script]))).toEqual({ same: true });
  });

  it('serves knex-scope/fastify and knex-scope/hono without loading either framework itself', () => {
    const script = `
      import { createRequire } from 'node:module';
      const require = createRequire(import.meta.url);
      const fastifyEntry = require('knex-scope/fastify');
      const { withDb: honoDb } = await import('knex-scope/hono');
      const frameworks = (name) =>
        Object.keys(require.cache).filter((path) => path.includes('/node_modules/' + name + '/')).length;
      const before = frameworks('fastify') + frameworks('hono');
      const Fastify = require('fastify');
      const { Hono } = await import('hono');
      const after = frameworks('fastify') > 0; // the check can see a loaded framework

      const db = fastifyEntry.withDb('sqlite::memory:', { commit: 'on-success' });
      const app = Fastify();
      await app.register(db);
      app.get('/', async (request) => (await request.db.getSession((trx) => trx.raw('select 1 as one'))).length);
      const url = await app.listen({ port: 0, host: '127.0.0.1' });
      const fastify = await (await fetch(url)).text();
      await app.close();

      const hdb = honoDb('sqlite::memory:');
      const hono = await new Hono()
        .use(hdb)
        .get('/', async (c) => c.text(typeof c.var.db.getSession))
        .request('/');
      await hdb.destroy();
      console.log(JSON.stringify({ before, after, fastify, hono: await hono.text(), retry: typeof fastifyEntry.retryTransaction }));`;
    expect(JSON.parse(node(['--input-type=module', '-e', script]))).toEqual({
      before: 0,
      after: true,
      fastify: '1',
      hono: 'function',
      retry: 'function',
    });
  });

  it('has a working bin for the fault proxy', () => {
    const bin = join(project, 'node_modules', 'knex-scope', manifest.bin['knex-scope-toxiproxy']!);
    const script = `
      const { spawn } = require('node:child_process');
      const child = spawn(process.execPath, [${JSON.stringify(bin)}, '-host', '127.0.0.1', '-port', '0']);
      let output = '';
      child.stdout.on('data', async (chunk) => {
        output += chunk;
        const match = /127\\.0\\.0\\.1:(\\d+)/.exec(output);
        if (!match) return;
        child.stdout.removeAllListeners('data');
        const response = await fetch('http://127.0.0.1:' + match[1] + '/version');
        console.log(JSON.stringify(await response.json()));
        child.kill('SIGTERM');
      });
      setTimeout(() => { child.kill('SIGKILL'); process.exit(1); }, 10000).unref();`;
    expect(JSON.parse(node(['-e', script]))).toEqual({ version: expect.stringMatching(/^2\./) });
  });
});
