import { createGlobalTeardown } from './create-global-teardown';

/**
 * The zero-config jest `globalTeardown`, the counterpart of `knex-scope/jest/global-setup`: drops
 * every database the setup created and stops its fault proxy. It ignores jest's arguments.
 *
 * @example
 * // jest.config.js
 * module.exports = {
 *   globalSetup: 'knex-scope/jest/global-setup',
 *   globalTeardown: 'knex-scope/jest/global-teardown',
 * };
 */
export default function globalTeardown(): Promise<void> {
  return createGlobalTeardown()();
}

export { globalTeardown };
