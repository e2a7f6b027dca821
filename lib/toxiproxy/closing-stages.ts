import type { Outlet, Stage, StageContext } from './stage';

/**
 * `timeout`: drops every chunk. With `timeout` > 0 it closes the connection once no chunk has
 * arrived for `timeout` ms (each dropped chunk restarts the clock); with 0 it holds the
 * connection open until the toxic is removed, and removing it closes the connection.
 *
 * @example
 * createTimeoutStage({ timeout: 0 }, outlet); // a black hole
 */
export function createTimeoutStage(attributes: { timeout: number }, out: Outlet): Stage {
  let timer: NodeJS.Timeout | undefined;
  let closed = false;
  const close = (): void => {
    if (closed) return;
    closed = true;
    clearTimeout(timer);
    out.end();
  };
  const arm = (): void => {
    if (attributes.timeout <= 0 || closed) return;
    clearTimeout(timer);
    timer = setTimeout(close, attributes.timeout);
  };
  arm();
  return {
    push: arm,
    end: close,
    held: () => 0,
    detach: () => {
      clearTimeout(timer);
      closed = true;
      return { chunks: [], ended: false };
    },
    dispose: () => clearTimeout(timer),
    closesOnRemove: true,
  };
}

/**
 * `reset_peer`: waits for the first chunk (or the end of the stream), drops it and everything
 * after, waits `timeout` ms, then resets both sockets (TCP RST, `ECONNRESET` on both peers). A
 * reset already counting down still happens if the toxic is updated or removed.
 *
 * @example
 * createResetPeerStage({ timeout: 0 }, context);
 */
export function createResetPeerStage(
  attributes: { timeout: number },
  context: StageContext,
): Stage {
  let timer: NodeJS.Timeout | undefined;
  const trigger = (): void => {
    if (timer !== undefined) return;
    timer = setTimeout(() => context.reset(), Math.max(0, attributes.timeout));
  };
  return {
    push: trigger,
    end: trigger,
    held: () => 0,
    detach: () => ({ chunks: [], ended: false }),
    dispose: () => clearTimeout(timer),
    closesOnRemove: false,
  };
}

/**
 * `slow_close`: data passes through; when the stream ends, passing the end on (closing the
 * connection) waits `delay` ms.
 *
 * @example
 * createSlowCloseStage({ delay: 500 }, outlet);
 */
export function createSlowCloseStage(attributes: { delay: number }, out: Outlet): Stage {
  let timer: NodeJS.Timeout | undefined;
  let ending = false;
  return {
    push: (chunk) => out.push(chunk),
    end: () => {
      ending = true;
      timer = setTimeout(
        () => {
          ending = false;
          out.end();
        },
        Math.max(0, attributes.delay),
      );
    },
    held: () => 0,
    detach: () => {
      clearTimeout(timer);
      return { chunks: [], ended: ending };
    },
    dispose: () => clearTimeout(timer),
    closesOnRemove: false,
  };
}

/**
 * `limit_data`: passes at most `bytes` bytes in this direction of this connection (cutting the
 * last chunk), then closes the connection. The count survives toxic updates.
 *
 * @example
 * createLimitDataStage({ bytes: 1024 }, outlet, context);
 */
export function createLimitDataStage(
  attributes: { bytes: number },
  out: Outlet,
  context: StageContext,
): Stage {
  const { state } = context;
  let closed = false;
  const close = (): void => {
    if (closed) return;
    closed = true;
    out.end();
  };
  return {
    push: (chunk) => {
      if (closed) return;
      const remaining = Math.max(0, attributes.bytes - state.transmitted);
      const data = remaining < chunk.data.length ? chunk.data.subarray(0, remaining) : chunk.data;
      if (data.length > 0) {
        state.transmitted += data.length;
        out.push({ data, time: chunk.time });
      }
      if (attributes.bytes - state.transmitted <= 0) close();
    },
    end: close,
    held: () => 0,
    detach: () => {
      closed = true;
      return { chunks: [], ended: false };
    },
    dispose: () => {},
    closesOnRemove: false,
  };
}
