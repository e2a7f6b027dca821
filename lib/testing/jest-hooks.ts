import { InvalidConfigError } from '../core/errors';

type Hook = (fn: () => unknown, timeout?: number) => void;

/** The hook functions a jest test file has as globals (Vitest's `globals: true` has them too). */
export interface JestHooks {
  readonly beforeAll: Hook;
  readonly beforeEach: Hook;
  readonly afterEach: Hook;
  readonly afterAll: Hook;
}

/**
 * jest's hook globals, without a compile-time dependency on jest's types. Throws
 * InvalidConfigError outside a test file.
 *
 * @example
 * const { beforeAll, afterAll } = jestHooks();
 */
export function jestHooks(): JestHooks {
  const scope = globalThis as Partial<JestHooks>;
  const { beforeAll, beforeEach, afterEach, afterAll } = scope;
  if (
    beforeAll === undefined ||
    beforeEach === undefined ||
    afterEach === undefined ||
    afterAll === undefined
  ) {
    throw new InvalidConfigError(
      'knex-scope/testing fixtures register jest hooks: call them at the top of a jest test file.',
    );
  }
  return { beforeAll, beforeEach, afterEach, afterAll };
}
