import type { Random } from './random';

/** A piece of data as one socket `data` event delivered it, with the time it was read. */
export interface Chunk {
  data: Buffer;
  /** `performance.now()` when the chunk was read; latency toxics move it forward. */
  time: number;
}

/** Where data and the end of the stream go next: a stage's input, or the destination socket. */
export interface Outlet {
  push(chunk: Chunk): void;
  end(): void;
}

/** What is left in a stage when it is taken off a link. */
export interface HeldData {
  chunks: Chunk[];
  /** The end of the stream reached the stage and was not passed on yet. */
  ended: boolean;
}

/**
 * One toxic running on one direction of one connection: it receives chunks and the end of the
 * stream, and passes them (delayed, cut, dropped) to its outlet.
 */
export interface Stage extends Outlet {
  /** Bytes queued inside the stage, counted for backpressure. */
  held(): number;
  /** Stops the stage and hands back, in order, what it still holds; it emits nothing after. */
  detach(): HeldData;
  /** Stops every timer; the connection is gone. */
  dispose(): void;
  /** Removing this toxic closes the connection instead of flushing (a timeout that was active). */
  readonly closesOnRemove: boolean;
}

/** What a stage may use besides its outlet. */
export interface StageContext {
  random: Random;
  now(): number;
  /** Closes both sockets of the connection with a TCP RST. */
  reset(): void;
  /** Per-link state of this toxic that survives toxic updates (limit_data's byte count). */
  state: { transmitted: number };
}

/**
 * A stage that passes everything through untouched: the `noop` toxic, and any toxic whose
 * toxicity draw did not select this link.
 *
 * @example
 * const stage = createPassThroughStage(outlet);
 */
export function createPassThroughStage(out: Outlet): Stage {
  return {
    push: (chunk) => out.push(chunk),
    end: () => out.end(),
    held: () => 0,
    detach: () => ({ chunks: [], ended: false }),
    dispose: () => {},
    closesOnRemove: false,
  };
}
