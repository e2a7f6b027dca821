import { type AddressInfo, createServer, type Server, type Socket } from 'node:net';
import { formatHostPort, resolveListenHost, splitHostPort } from './host-port';
import { ProxiedConnection } from './proxied-connection';
import type { Random } from './random';
import { type Toxic, toxicJson } from './toxic';
import { ToxiproxyApiError } from './toxiproxy-api-error';

/** A proxy as the API shows it, fields in Toxiproxy's order. */
export interface ProxyJson {
  name: string;
  listen: string;
  upstream: string;
  enabled: boolean;
  /** Upstream toxics first, then downstream ones, each in insertion order. */
  toxics: Toxic[];
}

const bindErrors: Record<string, string> = {
  EADDRINUSE: 'bind: address already in use',
  EACCES: 'bind: permission denied',
  EADDRNOTAVAIL: 'bind: cannot assign requested address',
};

/**
 * One proxy: a TCP listener on `listen` whose every accepted connection is relayed to
 * `upstream` through the proxy's toxics. Stopping it closes the listener, then every socket of
 * every connection, and settles only once they are all closed.
 *
 * @example
 * const proxy = new TcpProxy('pg', 'localhost:0', '127.0.0.1:5432', Math.random);
 * await proxy.start();
 * proxy.listen; // '127.0.0.1:40123'
 */
export class TcpProxy {
  readonly name: string;
  /** Rewritten to the bound address (`127.0.0.1:40123`) when the listener starts. */
  listen: string;
  /** Dialled once per accepted connection; never resolved or checked beforehand. */
  upstream: string;
  readonly #random: Random;
  readonly #toxics: Toxic[] = [];
  readonly #connections = new Set<ProxiedConnection>();
  #server: Server | undefined;

  constructor(name: string, listen: string, upstream: string, random: Random) {
    this.name = name;
    this.listen = listen;
    this.upstream = upstream;
    this.#random = random;
  }

  get enabled(): boolean {
    return this.#server !== undefined;
  }

  /** Upstream toxics first, then downstream ones, each in insertion order. */
  get toxics(): Toxic[] {
    return [
      ...this.#toxics.filter((toxic) => toxic.stream === 'upstream'),
      ...this.#toxics.filter((toxic) => toxic.stream === 'downstream'),
    ];
  }

  /** Binds the listen address; a failure is a 500 worded like Go's `net.Listen` error. */
  async start(): Promise<void> {
    if (this.#server) return;
    let host: string;
    let port: number;
    try {
      // Like Go's net.Listen, an empty address means every interface and a free port.
      ({ host, port } = this.listen === '' ? { host: '', port: 0 } : splitHostPort(this.listen));
      host = await resolveListenHost(host);
    } catch (error) {
      throw new ToxiproxyApiError(500, `listen tcp: ${(error as Error).message}`);
    }
    const server = createServer({ allowHalfOpen: true });
    server.on('connection', (socket) => this.#accept(socket));
    await new Promise<void>((resolve, reject) => {
      server.once('error', (error: NodeJS.ErrnoException) => {
        const reason = bindErrors[error.code ?? ''] ?? error.message;
        reject(new ToxiproxyApiError(500, `listen tcp ${formatHostPort(host, port)}: ${reason}`));
      });
      server.listen({ host: host || undefined, port }, () => resolve());
    });
    server.removeAllListeners('error');
    server.on('error', () => {});
    const address = server.address() as AddressInfo;
    this.listen = formatHostPort(address.address, address.port);
    this.#server = server;
  }

  /** Closes the listener, then every client and upstream socket; settles once all are closed. */
  async stop(): Promise<void> {
    const server = this.#server;
    if (!server) return;
    this.#server = undefined;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    await Promise.all([...this.#connections].map((connection) => connection.destroy()));
    await closed;
  }

  findToxic(name: string): Toxic | undefined {
    return this.#toxics.find((toxic) => toxic.name === name);
  }

  /** Appends a toxic to its stream's chain, on live connections too. */
  addToxic(toxic: Toxic): void {
    this.#toxics.push(toxic);
    for (const connection of this.#connections) connection.addToxic(toxic);
  }

  /** Restarts an updated toxic's stages on live connections. */
  updateToxic(toxic: Toxic): void {
    for (const connection of this.#connections) connection.updateToxic(toxic);
  }

  removeToxic(toxic: Toxic): void {
    const index = this.#toxics.indexOf(toxic);
    if (index === -1) return;
    this.#toxics.splice(index, 1);
    for (const connection of this.#connections) connection.removeToxic(toxic);
  }

  removeAllToxics(): void {
    for (const toxic of this.toxics) this.removeToxic(toxic);
  }

  toJSON(): ProxyJson {
    return {
      name: this.name,
      listen: this.listen,
      upstream: this.upstream,
      enabled: this.enabled,
      toxics: this.toxics.map(toxicJson),
    };
  }

  #accept(client: Socket): void {
    const connection = new ProxiedConnection(
      client,
      this.upstream,
      (stream) => this.#toxics.filter((toxic) => toxic.stream === stream),
      this.#random,
    );
    this.#connections.add(connection);
    void connection.closed.then(() => this.#connections.delete(connection));
    connection.start();
  }
}
