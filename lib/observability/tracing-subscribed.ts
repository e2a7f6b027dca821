import type { TracingChannel } from 'node:diagnostics_channel';

/**
 * True when any of the five channels of `channel` has a subscriber. `TracingChannel`'s own
 * `hasSubscribers` exists only from Node 20.13 and 22.0; this reads the channels one by one.
 *
 * @example
 * if (tracingSubscribed(sessionChannel)) sessionChannel.start.publish(context);
 */
export function tracingSubscribed(channel: TracingChannel<unknown, object>): boolean {
  return (
    channel.start.hasSubscribers ||
    channel.end.hasSubscribers ||
    channel.asyncStart.hasSubscribers ||
    channel.asyncEnd.hasSubscribers ||
    channel.error.hasSubscribers
  );
}
