// The database projects (sqlite, postgres, mariadb) share this file, and jest runs a globalSetup
// path once per run, not once per project: so it sets up every database project of the run, each
// under its own namespace (the project's name, which __tests__/setup/dialect.js gives its files).
import { createGlobalSetup } from '../../lib/jest';
import { createGlobalTeardown } from '../../lib/jest/create-global-teardown';
import { probeDatabases } from '../../scripts/probe-databases';

type Database = Awaited<ReturnType<typeof probeDatabases>>[number];

interface JestGlobalConfig {
  readonly maxWorkers: number;
  readonly selectProjects?: readonly string[];
  readonly ignoreProjects?: readonly string[];
}

/** The database projects this jest run includes. */
export async function selectedDatabases(config: JestGlobalConfig): Promise<Database[]> {
  const databases = await probeDatabases();
  return databases.filter(
    ({ name }) =>
      (config.selectProjects === undefined || config.selectProjects.includes(name)) &&
      !(config.ignoreProjects ?? []).includes(name),
  );
}

export default async function globalSetup(config: JestGlobalConfig): Promise<void> {
  const databases = await selectedDatabases(config);
  const results = await Promise.allSettled(
    databases.map(({ name, url }) =>
      createGlobalSetup({ url, namespace: name, workers: config.maxWorkers })(),
    ),
  );
  const failed = results.find((result) => result.status === 'rejected');
  if (failed !== undefined) {
    await Promise.all(databases.map(({ name }) => createGlobalTeardown({ namespace: name })()));
    throw failed.reason;
  }
}
