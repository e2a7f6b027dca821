import { type AddressInfo, connect, createServer, type Server, type Socket } from 'node:net';

/** A TCP server on 127.0.0.1 (port 0), standing in for the upstream. */
export interface TestServer {
  address: string;
  port: number;
  /** Sockets the server currently holds. */
  sockets: Set<Socket>;
  /** Every error a server-side socket reported (e.g. ECONNRESET). */
  errors: NodeJS.ErrnoException[];
  /** Every byte the server received, all connections together. */
  received(): Buffer;
  close(): Promise<void>;
}

async function listen(server: Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as AddressInfo).port;
}

/** Starts a server that runs `handle` on every connection. */
export async function startTestServer(handle: (socket: Socket) => void): Promise<TestServer> {
  const sockets = new Set<Socket>();
  const errors: NodeJS.ErrnoException[] = [];
  const chunks: Buffer[] = [];
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('error', (error) => errors.push(error));
    socket.on('close', () => sockets.delete(socket));
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    handle(socket);
  });
  const port = await listen(server);
  return {
    address: `127.0.0.1:${port}`,
    port,
    sockets,
    errors,
    received: () => Buffer.concat(chunks),
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** A server that echoes every byte back. */
export function startEchoServer(): Promise<TestServer> {
  return startTestServer((socket) => socket.pipe(socket));
}

/** A port nothing listens on (bound and released right away). */
export async function unusedPort(): Promise<number> {
  const server = createServer();
  const port = await listen(server);
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** What a client socket saw by the time it closed. */
export interface Outcome {
  data: Buffer;
  error?: NodeJS.ErrnoException;
  /** ms from `record()` to the close. */
  elapsed: number;
}

/** A client connection that records everything it receives. */
export interface Client {
  socket: Socket;
  /** Everything received so far. */
  received(): Buffer;
  /** Settles when at least `bytes` were received; rejects if the socket closes first. */
  receive(bytes: number): Promise<Buffer>;
  /** Settles when the socket has closed, with what it saw. */
  closed: Promise<Outcome>;
}

/** Connects to `port` on 127.0.0.1; rejects on a connect error (e.g. ECONNREFUSED). */
export function connectClient(port: number, host = '127.0.0.1'): Promise<Client> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const socket = connect({ port, host });
    const chunks: Buffer[] = [];
    let error: NodeJS.ErrnoException | undefined;
    let waiters: { bytes: number; resolve: (data: Buffer) => void; reject: (e: Error) => void }[] =
      [];
    const received = (): Buffer => Buffer.concat(chunks);
    const check = (): void => {
      const data = received();
      waiters = waiters.filter((waiter) => {
        if (data.length < waiter.bytes) return true;
        waiter.resolve(data);
        return false;
      });
    };
    socket.on('data', (chunk: Buffer) => {
      chunks.push(chunk);
      check();
    });
    socket.on('error', (failure: NodeJS.ErrnoException) => {
      error = failure;
    });
    const closed = new Promise<Outcome>((settle) => {
      socket.on('close', () => {
        for (const waiter of waiters) {
          waiter.reject(new Error(`closed after ${received().length} bytes (${error?.code})`));
        }
        waiters = [];
        settle({
          data: received(),
          elapsed: performance.now() - started,
          ...(error ? { error } : {}),
        });
      });
    });
    socket.once('connect', () => {
      resolve({
        socket,
        received,
        closed,
        receive: (bytes) =>
          new Promise((resolveWait, rejectWait) => {
            waiters.push({ bytes, resolve: resolveWait, reject: rejectWait });
            check();
            if (socket.destroyed) rejectWait(new Error('already closed'));
          }),
      });
    });
    socket.once('error', reject);
  });
}

/** Resolves after `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** The port of a `host:port` listen address. */
export function portOf(listen: string): number {
  return Number(listen.slice(listen.lastIndexOf(':') + 1));
}
