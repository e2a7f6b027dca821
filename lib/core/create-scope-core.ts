import { createKnex, type DbConfig } from './create-knex';
import { destroyer } from './destroyer';
import { normalizeDbOptions, settingsFor, transactionFor } from './normalize-db-options';
import type { ScopeCore } from './scope';
import { transactionStarter } from './transaction-starter';

/** A scope core, plus what `withDb` and `withLegacySession` build around it. */
export interface ScopeSetup {
  readonly core: ScopeCore;
  readonly property: string;
  readonly destroy: () => Promise<void>;
}

/**
 * Validates the config and options of `withDb` / `withLegacySession` and builds the Knex instance
 * and the scope core from them. Every mistake is an InvalidConfigError, thrown before any
 * connection is made.
 *
 * @example
 * const { core, property, destroy } = createScopeCore('sqlite::memory:', undefined, 'db');
 */
export function createScopeCore(
  config: DbConfig,
  options: unknown,
  defaultProperty: string,
): ScopeSetup {
  const normalized = normalizeDbOptions(options, defaultProperty);
  const { knex, owned } = createKnex(config);
  const destroy = destroyer(knex, owned);
  try {
    const transaction = transactionFor(knex, normalized.transaction);
    const settings = settingsFor(knex, normalized.settings);
    return {
      core: {
        knex,
        transaction,
        begin: transactionStarter(knex, transaction, settings),
        maxSessions: normalized.maxSessionsPerScope,
        context: normalized.currentDb,
        commitOnSuccess: normalized.commit === 'on-success',
        owner: undefined,
        onForgotten: normalized.onForgotten,
      },
      property: normalized.property,
      destroy,
    };
  } catch (error) {
    void destroy();
    throw error;
  }
}
