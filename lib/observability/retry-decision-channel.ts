import { type Channel, channel } from 'node:diagnostics_channel';

/**
 * `knex-scope:retry:decision`: every decision `retryTransaction` takes after a failed attempt,
 * the same object its `onRetry` receives (`{ decision, error, attempt, delay }`, a RetryEvent).
 *
 * @example
 * retryDecisionChannel.subscribe((event) => console.log((event as RetryEvent).decision));
 */
export const retryDecisionChannel: Channel = channel('knex-scope:retry:decision');
