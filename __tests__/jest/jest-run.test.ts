// jest itself running a project that uses the kit (fixtures/project: two jest projects, SQLite and
// PostgreSQL, three test files each, two workers): the global setup is called by jest, every
// worker finds its own database through process.env, each test starts from the template, and
// after the run nothing is left and jest exits by itself.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { serverUrl } from '../is-connection-error/support';
import { availableTargets } from './support';

const postgres = serverUrl('postgres');

interface Record {
  project: string;
  worker: string;
  file: string;
  url: string;
  seen: string[];
}

let dir: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'knex-scope-jest-run-'));
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

it('gives every jest worker of every project its own database, and cleans up', async () => {
  const out = join(dir, 'records.jsonl');
  const sqliteDir = join(dir, 'sqlite');
  const child = spawnSync(
    process.execPath,
    [
      require.resolve('jest/bin/jest'),
      '-c',
      join(__dirname, 'fixtures/project/jest.config.js'),
      '--maxWorkers=2',
      `--cacheDirectory=${join(dir, 'cache')}`,
      '--ci',
    ],
    {
      encoding: 'utf8',
      timeout: 120_000,
      env: {
        ...process.env,
        FIXTURE_OUT: out,
        FIXTURE_SQLITE_URL: join(sqliteDir, 'test.sqlite'),
        FIXTURE_PG_URL: postgres ?? '',
      },
    },
  );
  expect(child.stderr).not.toMatch(/did not exit|open handle|FAIL/);
  expect(child.status).toBe(0);

  const records = readFileSync(out, 'utf8')
    .trim()
    .split('\n')
    .map((line) => JSON.parse(line) as Record);
  const projects = postgres === undefined ? ['sqlite'] : ['sqlite', 'postgres'];
  expect(records.map((record) => record.project).sort()).toEqual(
    projects.flatMap((project) => [project, project, project]).sort(),
  );
  for (const record of records) {
    expect(record.url).toMatch(new RegExp(`knex_scope_test_\\w+_w${record.worker}(\\.sqlite)?$`));
    expect(record.seen).toEqual(['seeded', record.file]);
  }
  expect(new Set(records.map((record) => record.worker)).size).toBe(2);
  const urls = new Set(records.map((record) => `${record.project} ${record.worker} ${record.url}`));
  expect(new Set(records.map((record) => record.url)).size).toBe(urls.size);

  expect(readdirSync(sqliteDir).filter((file) => file.startsWith('knex_scope_test_'))).toEqual([]);
  const target = availableTargets()
    .find((candidate) => candidate.name === 'postgres')
    ?.open();
  if (target !== undefined) {
    try {
      const left = await target.databases();
      for (const record of records.filter((r) => r.project === 'postgres')) {
        expect(left).not.toContain(new URL(record.url).pathname.slice(1));
      }
    } finally {
      await target.close();
    }
  }
}, 120_000);
