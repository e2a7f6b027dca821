import {
  accessSync,
  constants,
  copyFileSync,
  mkdirSync,
  readdirSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import type { TestDatabaseServer } from './test-database-server';
import { testRunMarker } from './test-run-name';

const suffixes = ['', '-wal', '-shm', '-journal'];

/**
 * The test kit's view of SQLite: a database is the file `<dir>/<name>.sqlite`, copied to clone
 * it. `filename` is `TEST_DB_URL`'s file, whose folder holds the run's files; for `:memory:` the
 * folder is `/dev/shm/knex-scope` when the machine has a RAM-backed /dev/shm, else one in the OS
 * temp folder. `folder`, when given, is used instead.
 *
 * @example
 * const server = sqliteTestServer(':memory:');
 * server.urlOf('knex_scope_test_…_w1'); // '/dev/shm/knex-scope/knex_scope_test_…_w1.sqlite'
 */
export function sqliteTestServer(filename: string, folder?: string): TestDatabaseServer {
  const dir = folder ?? (filename === ':memory:' ? memoryDir() : dirname(resolve(filename)));
  const fileOf = (name: string): string => join(dir, `${name}.sqlite`);
  return {
    kind: 'sqlite',
    url: filename,
    dir,
    async list() {
      let files: string[];
      try {
        files = readdirSync(dir);
      } catch {
        return [];
      }
      const names = files
        .filter((file) => file.startsWith(testRunMarker))
        .map((file) => file.replace(/\.sqlite(-wal|-shm|-journal)?$/, ''));
      return [...new Set(names)];
    },
    async exists(name) {
      try {
        accessSync(fileOf(name));
        return true;
      } catch {
        return false;
      }
    },
    async create(name) {
      mkdirSync(dir, { recursive: true });
      writeFileSync(fileOf(name), '');
    },
    async copy(template, name) {
      copyFileSync(fileOf(template), fileOf(name));
      return true;
    },
    async drop(name) {
      for (const suffix of suffixes) rmSync(`${fileOf(name)}${suffix}`, { force: true });
    },
    urlOf(name) {
      return fileOf(name);
    },
    async close() {},
  };
}

function memoryDir(): string {
  const shm = '/dev/shm';
  try {
    accessSync(shm, constants.W_OK);
    return join(shm, 'knex-scope');
  } catch {
    return join(tmpdir(), 'knex-scope');
  }
}
