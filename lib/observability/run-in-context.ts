/**
 * Set by a subscriber of a tracing channel's `start` event on the context it receives, to run
 * the traced work in an async context of its own (OpenTelemetry: the span made active), as
 * `context.with(ctx, fn, thisArg, ...args)` does. knex-scope calls it with the function to run,
 * its `this` and its arguments, and returns what it returns.
 *
 * @example
 * sessionChannel.start.subscribe((message) => {
 *   (message as SessionMessage).runInContext = (fn, thisArg, ...args) =>
 *     context.with(trace.setSpan(context.active(), span), fn, thisArg, ...args);
 * });
 */
export type RunInContext = <A extends unknown[], R>(
  fn: (...args: A) => R,
  thisArg: unknown,
  ...args: A
) => R;
