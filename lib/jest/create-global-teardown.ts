import { openTestDatabaseServer } from '../testing/open-test-database-server';
import { readTestRun, resolveNamespace, testEnv, testEnvKey } from '../testing/test-env';
import { dropTestRun } from '../testing/test-run';
import { testRunRegistry } from './test-run-registry';

/** Options of `createGlobalTeardown`. */
export interface GlobalTeardownOptions {
  /**
   * The namespace given to `createGlobalSetup`.
   * @default process.env.KNEX_SCOPE_TEST_NAMESPACE ?? none
   */
  readonly namespace?: string;
}

/**
 * Builds a jest `globalTeardown` function (it ignores the arguments jest passes) that undoes what
 * the global setup of the same namespace did: drops the run's template and every worker database
 * (also those created on demand), stops the fault proxy and removes the environment variables.
 * Does nothing when no setup ran.
 *
 * @example
 * // test/global-teardown.ts
 * import { createGlobalTeardown } from 'knex-scope/jest';
 * export default createGlobalTeardown();
 */
export function createGlobalTeardown(options: GlobalTeardownOptions = {}): () => Promise<void> {
  return async function globalTeardown(): Promise<void> {
    const namespace = resolveNamespace(options.namespace);
    const registry = testRunRegistry();
    const entry = registry.get(namespace ?? '');
    const run = readTestRun(namespace);
    try {
      if (run !== undefined) {
        const server = openTestDatabaseServer(run.server, run.dir);
        try {
          await dropTestRun(server, run);
        } finally {
          await server.close();
        }
      }
    } finally {
      registry.delete(namespace ?? '');
      await entry?.proxy?.close();
      for (const key of entry?.envKeys ?? [testEnvKey(testEnv.run, namespace)]) {
        delete process.env[key];
      }
    }
  };
}
