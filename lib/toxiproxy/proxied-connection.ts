import { connect, type Socket } from 'node:net';
import { splitHostPort } from './host-port';
import { Link } from './link';
import type { Random } from './random';
import type { Toxic, ToxicStream } from './toxic';

/**
 * One accepted client connection and its upstream connection. The upstream address is dialled
 * on accept; if that fails the client socket is closed at once (the client sees a connection
 * that ends, not a refusal). Then two links run, client → upstream (`upstream` toxics) and
 * upstream → client (`downstream` toxics).
 *
 * @example
 * const connection = new ProxiedConnection(client, 'db:5432', (stream) => toxics, random);
 * connection.start();
 * await connection.destroy();
 */
export class ProxiedConnection {
  readonly #client: Socket;
  readonly #upstreamAddress: string;
  readonly #toxicsFor: (stream: ToxicStream) => readonly Toxic[];
  readonly #random: Random;
  readonly #sockets = new Set<Socket>();
  #links: Link[] = [];
  #gone = false;
  #resolveClosed!: () => void;
  /** Settles once every socket of the connection has closed. */
  readonly closed: Promise<void>;

  constructor(
    client: Socket,
    upstreamAddress: string,
    toxicsFor: (stream: ToxicStream) => readonly Toxic[],
    random: Random,
  ) {
    this.#client = client;
    this.#upstreamAddress = upstreamAddress;
    this.#toxicsFor = toxicsFor;
    this.#random = random;
    this.closed = new Promise((resolve) => {
      this.#resolveClosed = resolve;
    });
  }

  start(): void {
    const client = this.#client;
    this.#track(client);
    client.setNoDelay(true);
    let address: { host: string; port: number };
    try {
      address = splitHostPort(this.#upstreamAddress);
    } catch {
      client.destroy();
      return;
    }
    const upstream = connect({
      host: address.host || 'localhost',
      port: address.port,
      allowHalfOpen: true,
      noDelay: true,
    });
    this.#track(upstream);
    upstream.once('connect', () => {
      if (this.#gone || client.destroyed) {
        upstream.destroy();
        return;
      }
      const context = { random: this.#random, reset: this.reset };
      this.#links = [
        new Link(client, upstream, 'upstream', this.#toxicsFor('upstream'), context),
        new Link(upstream, client, 'downstream', this.#toxicsFor('downstream'), context),
      ];
      for (const link of this.#links) link.start();
    });
    upstream.once('close', () => {
      if (this.#links.length === 0) client.destroy();
    });
    client.once('close', () => {
      if (this.#links.length === 0) upstream.destroy();
    });
  }

  addToxic(toxic: Toxic): void {
    for (const link of this.#links) if (link.stream === toxic.stream) link.addToxic(toxic);
  }

  updateToxic(toxic: Toxic): void {
    for (const link of this.#links) if (link.stream === toxic.stream) link.updateToxic(toxic.name);
  }

  removeToxic(toxic: Toxic): void {
    for (const link of this.#links) if (link.stream === toxic.stream) link.removeToxic(toxic.name);
  }

  /** Closes both sockets now, dropping anything in flight; settles once they are closed. */
  destroy(): Promise<void> {
    this.#dispose();
    for (const socket of this.#sockets) socket.destroy();
    return this.closed;
  }

  /** Closes both sockets with a TCP RST. */
  reset = (): void => {
    this.#dispose();
    for (const socket of this.#sockets) {
      if (socket.destroyed) continue;
      if (socket.connecting) socket.destroy();
      else socket.resetAndDestroy();
    }
  };

  #dispose(): void {
    this.#gone = true;
    for (const link of this.#links) link.dispose();
  }

  #track(socket: Socket): void {
    this.#sockets.add(socket);
    // Errors (ECONNRESET, EPIPE, refused dials) only end the connection; they must not crash.
    socket.on('error', () => {});
    socket.once('close', () => {
      this.#sockets.delete(socket);
      if (this.#sockets.size === 0) {
        this.#dispose();
        this.#resolveClosed();
      }
    });
  }
}
