import {
  type RetryAttemptMessage,
  type RetryOperation,
  retryChannel,
} from '../observability/retry-channel';
import { retryDecisionChannel } from '../observability/retry-decision-channel';
import type { RunInContext } from '../observability/run-in-context';
import { tracingSubscribed } from '../observability/tracing-subscribed';
import type { RetryEvent } from './retry-options';

/**
 * The context of one attempt on `knex-scope:retry`, made only while the channel has subscribers.
 * Internal to knex-scope.
 *
 * @example
 * const trace = traceAttempt(1, fn, undefined);
 */
export class AttemptTrace implements RetryAttemptMessage {
  readonly attempt: number;
  readonly operation: RetryOperation;
  result: unknown = undefined;
  error: unknown = undefined;
  decision: RetryEvent | undefined = undefined;
  runInContext: RunInContext | undefined = undefined;

  constructor(attempt: number, operation: RetryOperation) {
    this.attempt = attempt;
    this.operation = operation;
  }
}

/**
 * Starts the trace of attempt `attempt` of a call of `fn` (publishing `start`), sharing the
 * operation of the call's `previous` attempt; undefined, allocating nothing, when nobody listens.
 *
 * @example
 * trace = traceAttempt(attempt, fn, trace);
 */
export function traceAttempt(
  attempt: number,
  fn: { readonly name: string },
  previous: AttemptTrace | undefined,
): AttemptTrace | undefined {
  if (!tracingSubscribed(retryChannel)) return undefined;
  const trace = new AttemptTrace(attempt, previous?.operation ?? { name: fn.name });
  if (retryChannel.start.hasSubscribers) retryChannel.start.publish(trace);
  return trace;
}

/**
 * Runs a traced attempt through the subscriber's `runInContext`, publishes `end`, and
 * `asyncStart` and `asyncEnd` once it succeeded. A failure is left for `decide`.
 *
 * @example
 * return await runAttempt(trace, () => commitTracking.run(tracker, attemptFn));
 */
export async function runAttempt<R>(trace: AttemptTrace, run: () => Promise<R>): Promise<R> {
  let pending: Promise<R>;
  try {
    pending = trace.runInContext === undefined ? run() : trace.runInContext(run, undefined);
  } finally {
    if (retryChannel.end.hasSubscribers) retryChannel.end.publish(trace);
  }
  const result = await pending;
  trace.result = result;
  if (retryChannel.asyncStart.hasSubscribers) retryChannel.asyncStart.publish(trace);
  if (retryChannel.asyncEnd.hasSubscribers) retryChannel.asyncEnd.publish(trace);
  return result;
}

/**
 * Traces the attempt a retry was due to make when the signal cut its backoff wait short: `start`
 * and `end` at once, leaving the `aborted` decision to `decide`.
 *
 * @example
 * decide(cancelAttempt(attempt + 1, fn, trace), onRetry, { decision: 'aborted', error, attempt, delay: 0 });
 */
export function cancelAttempt(
  attempt: number,
  fn: { readonly name: string },
  previous: AttemptTrace | undefined,
): AttemptTrace | undefined {
  const trace = traceAttempt(attempt, fn, previous);
  if (trace !== undefined && retryChannel.end.hasSubscribers) retryChannel.end.publish(trace);
  return trace;
}

/**
 * Tells a decision taken after a failed attempt: to `knex-scope:retry:decision`, to the attempt's
 * trace (`error`, `asyncStart`, `asyncEnd`), and to `onRetry`.
 *
 * @example
 * decide(trace, onRetry, { decision: 'give-up', error, attempt, delay: 0 });
 */
export function decide(
  trace: AttemptTrace | undefined,
  onRetry: ((event: RetryEvent) => void) | undefined,
  event: RetryEvent,
): void {
  if (retryDecisionChannel.hasSubscribers) retryDecisionChannel.publish(event);
  if (trace !== undefined) {
    trace.error = event.error;
    trace.decision = event;
    if (retryChannel.error.hasSubscribers) retryChannel.error.publish(trace);
    if (retryChannel.asyncStart.hasSubscribers) retryChannel.asyncStart.publish(trace);
    if (retryChannel.asyncEnd.hasSubscribers) retryChannel.asyncEnd.publish(trace);
  }
  onRetry?.(event);
}
