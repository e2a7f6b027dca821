import { type ForgottenSession, forgottenChannel } from '../observability/forgotten-channel';
import type { Session } from './session';

/** What an adapter knows of the request a scope serves. */
export interface RequestDescription {
  readonly method: string | undefined;
  readonly route: string | undefined;
  /** The response status when the scope ended. */
  readonly status: number | undefined;
}

/** Reads the method and route of the request from a scope's host (the adapter's `res` or context). */
export type DescribeRequest = (host: unknown) => RequestDescription;

/**
 * True when sessions must count their statements because forgotten ones are reported: an
 * `onForgotten` option, or a subscriber of `knex-scope:scope:forgotten`.
 *
 * @example
 * new Session(id, kind, begin, knex, scope, open, forgottenReported(core.onForgotten));
 */
export function forgottenReported(onForgotten: unknown): boolean {
  return onForgotten !== undefined || forgottenChannel.hasSubscribers;
}

/**
 * Reports the sessions a scope is rolling back because it ended while they were open: to
 * `knex-scope:scope:forgotten` and to `onForgotten`. Sessions opened before anyone listened
 * (they have no counts) are left out. An `onForgotten` that throws does so on the next tick, as
 * a diagnostics_channel subscriber does, so that the rollbacks still happen.
 *
 * @example
 * reportForgotten(open, core.onForgotten, core.describe, host, aborted);
 */
export function reportForgotten(
  sessions: Iterable<Session>,
  onForgotten: ((report: ForgottenSession) => void) | undefined,
  describe: DescribeRequest | undefined,
  host: unknown,
  aborted: boolean,
): void {
  let request: RequestDescription | undefined;
  for (const session of sessions) {
    const trace = session.trace;
    if (trace === undefined || !session.live) continue;
    request ??= describe?.(host) ?? { method: undefined, route: undefined, status: undefined };
    const report: ForgottenSession = {
      kind: trace.kind,
      statements: trace.statements,
      wrote: trace.wrote,
      method: request.method,
      route: request.route,
      status: request.status,
      aborted,
      system: trace.system,
      namespace: trace.namespace,
    };
    if (forgottenChannel.hasSubscribers) forgottenChannel.publish(report);
    if (onForgotten === undefined) continue;
    try {
      onForgotten(report);
    } catch (error) {
      process.nextTick(() => {
        throw error;
      });
    }
  }
}
