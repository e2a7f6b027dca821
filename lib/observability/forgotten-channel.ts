import { type Channel, channel } from 'node:diagnostics_channel';
import type { SessionKind } from './session-channel';

/**
 * A session rolled back because its scope ended while it was still open: the handler neither
 * committed nor rolled it back. What `knex-scope:scope:forgotten` publishes and `onForgotten`
 * receives.
 */
export interface ForgottenSession {
  readonly kind: SessionKind;
  /** Statements it sent, not counting BEGIN and ROLLBACK. */
  readonly statements: number;
  /** True if one of them may have changed data: that work is lost. */
  readonly wrote: boolean;
  /** The request's method (`POST`), where the adapter knows it. */
  readonly method: string | undefined;
  /** The route that handled the request (`/orders/:id`), where the adapter knows it. */
  readonly route: string | undefined;
  /**
   * The response status when the scope ended, where the adapter knows it (on Koa, the status set
   * so far: 404 while no body is set, even if the handler then threw).
   */
  readonly status: number | undefined;
  /** True when the scope ended because the client disconnected, not because the handler finished. */
  readonly aborted: boolean;
  /** As in SessionMessage: `postgresql`, `mysql`, `sqlite`… */
  readonly system: string;
  readonly namespace: string | undefined;
}

/**
 * `knex-scope:scope:forgotten`: one ForgottenSession per session rolled back because its scope
 * ended uncommitted. Sessions are counted from the first subscriber (or `onForgotten`) on: one
 * opened before is not reported.
 *
 * @example
 * forgottenChannel.subscribe((report) => logger.warn(report, 'uncommitted session rolled back'));
 */
export const forgottenChannel: Channel = channel('knex-scope:scope:forgotten');
