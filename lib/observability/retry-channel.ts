import { type TracingChannel, tracingChannel } from 'node:diagnostics_channel';
import type { RetryEvent } from '../retry/retry-options';
import type { RunInContext } from './run-in-context';

/** One call of a function wrapped by `retryTransaction`, shared by the contexts of its attempts. */
export interface RetryOperation {
  /** The wrapped function's name, or '' for an anonymous one. */
  readonly name: string;
}

/** The context object of one attempt on the `knex-scope:retry` tracing channel. */
export interface RetryAttemptMessage {
  /** From 1. */
  readonly attempt: number;
  readonly operation: RetryOperation;
  /** What the attempt resolved to; set before `asyncStart` when it succeeded. */
  readonly result: unknown;
  /** The error the attempt failed with; set before `error`. */
  readonly error: unknown;
  /** What `retryTransaction` decided after the attempt failed; set before `error`. */
  readonly decision: RetryEvent | undefined;
  /** A subscriber of `start` may set it: the attempt then runs through it. */
  runInContext?: RunInContext | undefined;
}

/**
 * `knex-scope:retry`: one trace per attempt of a function wrapped by `retryTransaction`. `start`
 * when the attempt begins, `end` once the function returned its promise, then `asyncStart` and
 * `asyncEnd` when it succeeded, or `error`, `asyncStart` and `asyncEnd` once the wrapper decided
 * what to do about its failure (`decision`). When the signal cuts a backoff wait short, the retry
 * that was due is traced as an attempt that ends at once with the `aborted` decision.
 *
 * @example
 * retryChannel.subscribe({
 *   start({ attempt }) { console.log('attempt', attempt) },
 *   end() {}, asyncStart() {}, asyncEnd() {},
 *   error({ decision }) { console.log(decision?.decision) },
 * });
 */
export const retryChannel: TracingChannel<unknown, RetryAttemptMessage> =
  tracingChannel('knex-scope:retry');
