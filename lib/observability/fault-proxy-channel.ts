import { type Channel, channel } from 'node:diagnostics_channel';

/** A change the fault proxy (`knex-scope/toxiproxy`) made, as `knex-scope:fault-proxy` publishes it. */
export interface FaultProxyEvent {
  readonly action:
    | 'proxy-created'
    | 'proxy-updated'
    | 'proxy-removed'
    | 'toxic-added'
    | 'toxic-updated'
    | 'toxic-removed'
    | 'reset';
  /** The proxy's name; undefined for `reset`, which concerns them all. */
  readonly proxy: string | undefined;
  /** For the proxy actions: whether it now accepts connections, and where it listens and forwards. */
  readonly enabled?: boolean;
  readonly listen?: string;
  readonly upstream?: string;
  /** For the toxic actions: the toxic, as the API shows it. */
  readonly toxic?: {
    readonly name: string;
    readonly type: string;
    readonly stream: string;
    readonly toxicity: number;
    readonly attributes: Readonly<Record<string, number>>;
  };
}

/**
 * `knex-scope:fault-proxy`: every change the fault proxy applied, once it is in effect on live
 * connections, in the process the proxy runs in. For a flaky test: when was the proxy disabled,
 * which toxic was on.
 *
 * @example
 * faultProxyChannel.subscribe((event) => console.log((event as FaultProxyEvent).action));
 */
export const faultProxyChannel: Channel = channel('knex-scope:fault-proxy');
