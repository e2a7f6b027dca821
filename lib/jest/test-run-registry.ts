import type { TestProxy } from './start-test-proxy';

/** What a global setup leaves for its teardown, in the jest parent process. */
export interface RegisteredTestRun {
  /** The environment variables the setup set, to be removed again. */
  readonly envKeys: readonly string[];
  readonly proxy: TestProxy | undefined;
}

const key = Symbol.for('knex-scope.jest.test-runs');

/**
 * The runs set up in this process, by namespace (`''` for none). Kept on `globalThis` because
 * jest may load the setup and the teardown modules in separate module registries.
 *
 * @example
 * testRunRegistry().set('postgres', { envKeys: ['KNEX_SCOPE_TEST_RUN__POSTGRES'], proxy });
 */
export function testRunRegistry(): Map<string, RegisteredTestRun> {
  const holder = globalThis as { [key]?: Map<string, RegisteredTestRun> };
  holder[key] ??= new Map();
  return holder[key];
}
