import { type FaultProxyEvent, faultProxyChannel } from '../observability/fault-proxy-channel';
import { resolveListenHost, splitHostPort } from './host-port';
import {
  type ProxyInput,
  parseProxyInput,
  parseProxyList,
  requireProxyFields,
} from './proxy-input';
import type { Random } from './random';
import { TcpProxy } from './tcp-proxy';
import { parseToxic, type Toxic, updateToxic } from './toxic';
import { apiErrors, type ToxiproxyApiError } from './toxiproxy-api-error';

/** What `populate` did: the proxies so far, and the error that stopped it, if any. */
export interface PopulateResult {
  proxies: TcpProxy[];
  error?: ToxiproxyApiError;
}

/** Whether two listen addresses are the same once their hosts are resolved. */
async function sameListen(a: string, b: string): Promise<boolean> {
  if (a === b) return true;
  try {
    const left = splitHostPort(a);
    const right = splitHostPort(b);
    if (left.port !== right.port) return false;
    return (await resolveListenHost(left.host)) === (await resolveListenHost(right.host));
  } catch {
    return false;
  }
}

function publishProxy(action: FaultProxyEvent['action'], proxy: TcpProxy): void {
  const event: FaultProxyEvent = {
    action,
    proxy: proxy.name,
    enabled: proxy.enabled,
    listen: proxy.listen,
    upstream: proxy.upstream,
  };
  faultProxyChannel.publish(event);
}

function publishToxic(action: FaultProxyEvent['action'], proxy: string, toxic: Toxic): void {
  const { name, type, stream, toxicity, attributes } = toxic;
  const event: FaultProxyEvent = {
    action,
    proxy,
    toxic: { name, type, stream, toxicity, attributes: { ...attributes } },
  };
  faultProxyChannel.publish(event);
}

/**
 * Every proxy of one Toxiproxy server, and the operations of its API. Changes run one at a time
 * (as Toxiproxy's locks make them), and each is in effect on every live connection when its
 * promise settles. Errors are `ToxiproxyApiError`s with Toxiproxy's statuses and messages.
 *
 * @example
 * const proxies = new ProxyCollection(Math.random);
 * await proxies.create({ name: 'pg', listen: 'localhost:0', upstream: '127.0.0.1:5432' });
 */
export class ProxyCollection {
  readonly #proxies = new Map<string, TcpProxy>();
  readonly #random: Random;
  #queue: Promise<unknown> = Promise.resolve();

  constructor(random: Random) {
    this.#random = random;
  }

  list(): TcpProxy[] {
    return [...this.#proxies.values()];
  }

  get(name: string): TcpProxy {
    const proxy = this.#proxies.get(name);
    if (!proxy) throw apiErrors.proxyNotFound();
    return proxy;
  }

  getToxic(proxyName: string, toxicName: string): Toxic {
    const toxic = this.get(proxyName).findToxic(toxicName);
    if (!toxic) throw apiErrors.toxicNotFound();
    return toxic;
  }

  /** `POST /proxies`: creates a proxy, enabled (bound) unless `enabled: false`. */
  create(body: unknown): Promise<TcpProxy> {
    return this.#exclusive(async () => {
      const input = parseProxyInput(body, { name: '', listen: '', upstream: '', enabled: true });
      requireProxyFields(input);
      if (this.#proxies.has(input.name)) throw apiErrors.proxyAlreadyExists();
      return this.#add(input);
    });
  }

  /**
   * `POST /populate`: creates or replaces the listed proxies, in order. An existing proxy with
   * the same listen address and upstream is left as it is (toxics and enabled flag included).
   */
  populate(body: unknown): Promise<PopulateResult> {
    return this.#exclusive(async () => {
      const inputs = parseProxyList(body);
      const proxies: TcpProxy[] = [];
      for (const input of inputs) {
        const existing = this.#proxies.get(input.name);
        if (existing) {
          if (
            existing.upstream === input.upstream &&
            (await sameListen(existing.listen, input.listen))
          ) {
            proxies.push(existing);
            continue;
          }
          this.#proxies.delete(input.name);
          await existing.stop();
        }
        try {
          proxies.push(await this.#add(input));
        } catch (error) {
          return { proxies, error: error as ToxiproxyApiError };
        }
      }
      return { proxies };
    });
  }

  /**
   * `POST`/`PATCH /proxies/{name}`: omitted fields keep their values. A new listen address or
   * upstream restarts the proxy (dropping its connections); `enabled: false` closes the listener
   * and every connection before settling; `enabled: true` binds the stored listen address.
   */
  update(name: string, body: unknown): Promise<TcpProxy> {
    return this.#exclusive(async () => {
      const proxy = this.get(name);
      const input = parseProxyInput(body, {
        name: proxy.name,
        listen: proxy.listen,
        upstream: proxy.upstream,
        enabled: proxy.enabled,
      });
      if (input.upstream !== proxy.upstream || !(await sameListen(proxy.listen, input.listen))) {
        await proxy.stop();
        proxy.listen = input.listen;
        proxy.upstream = input.upstream;
      }
      if (input.enabled && !proxy.enabled) await proxy.start();
      if (!input.enabled) await proxy.stop();
      if (faultProxyChannel.hasSubscribers) publishProxy('proxy-updated', proxy);
      return proxy;
    });
  }

  /** `DELETE /proxies/{name}`: stops the proxy and forgets it and its toxics. */
  remove(name: string): Promise<void> {
    return this.#exclusive(async () => {
      const proxy = this.get(name);
      this.#proxies.delete(name);
      await proxy.stop();
      if (faultProxyChannel.hasSubscribers)
        faultProxyChannel.publish({ action: 'proxy-removed', proxy: name });
    });
  }

  /** `POST /proxies/{name}/toxics`: adds a toxic, on live connections too. */
  addToxic(name: string, body: unknown): Promise<Toxic> {
    return this.#exclusive(async () => {
      const proxy = this.get(name);
      const toxic = parseToxic(body, (toxicName) => proxy.findToxic(toxicName) !== undefined);
      proxy.addToxic(toxic);
      if (faultProxyChannel.hasSubscribers) publishToxic('toxic-added', name, toxic);
      return toxic;
    });
  }

  /** `POST`/`PATCH /proxies/{name}/toxics/{toxic}`: merges attributes, restarts the toxic. */
  updateToxic(name: string, toxicName: string, body: unknown): Promise<Toxic> {
    return this.#exclusive(async () => {
      const toxic = this.getToxic(name, toxicName);
      updateToxic(toxic, body);
      this.get(name).updateToxic(toxic);
      if (faultProxyChannel.hasSubscribers) publishToxic('toxic-updated', name, toxic);
      return toxic;
    });
  }

  /** `DELETE /proxies/{name}/toxics/{toxic}`. */
  removeToxic(name: string, toxicName: string): Promise<void> {
    return this.#exclusive(async () => {
      const toxic = this.getToxic(name, toxicName);
      this.get(name).removeToxic(toxic);
      if (faultProxyChannel.hasSubscribers) publishToxic('toxic-removed', name, toxic);
    });
  }

  /**
   * `POST /reset`: enables every proxy (binding its stored listen address) and removes every
   * toxic. Proxies are not deleted. The first bind failure is thrown after all were tried.
   */
  reset(): Promise<void> {
    return this.#exclusive(async () => {
      let failure: unknown;
      for (const proxy of this.#proxies.values()) {
        try {
          await proxy.start();
        } catch (error) {
          failure ??= error;
        }
        proxy.removeAllToxics();
      }
      if (faultProxyChannel.hasSubscribers)
        faultProxyChannel.publish({ action: 'reset', proxy: undefined });
      if (failure !== undefined) throw failure;
    });
  }

  /** Stops every proxy, closing all their sockets, and forgets them. */
  close(): Promise<void> {
    return this.#exclusive(async () => {
      const proxies = this.list();
      this.#proxies.clear();
      await Promise.all(proxies.map((proxy) => proxy.stop()));
    });
  }

  async #add(input: ProxyInput): Promise<TcpProxy> {
    const proxy = new TcpProxy(input.name, input.listen, input.upstream, this.#random);
    if (input.enabled) await proxy.start();
    this.#proxies.set(input.name, proxy);
    if (faultProxyChannel.hasSubscribers) publishProxy('proxy-created', proxy);
    return proxy;
  }

  #exclusive<T>(task: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(task);
    this.#queue = run.catch(() => {});
    return run;
  }
}
