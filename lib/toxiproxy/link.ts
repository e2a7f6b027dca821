import type { Socket } from 'node:net';
import { createStage } from './create-stage';
import type { Random } from './random';
import type { Outlet, Stage } from './stage';
import type { Toxic, ToxicStream } from './toxic';

// Past this many bytes read but not yet handed to the destination socket's kernel buffer, the
// source stops being read; Toxiproxy gets the same backpressure from its bounded channels.
const highWater = 1024 * 1024;
const lowWater = 256 * 1024;

interface Slot {
  toxic: Toxic;
  stage: Stage;
  input: Outlet;
  next: Outlet;
  state: { transmitted: number };
  inputEnded: boolean;
  removed: boolean;
}

/** What a link needs from its connection. */
export interface LinkContext {
  random: Random;
  /** Resets both sockets of the connection (TCP RST). */
  reset(): void;
}

/** Fully closes a socket once everything written to it is flushed (no TCP half-close). */
function closeAfterFlush(socket: Socket): void {
  if (socket.destroyed) return;
  if (socket.writableFinished) {
    socket.destroy();
    return;
  }
  socket.once('finish', () => socket.destroy());
  socket.end();
}

/**
 * One direction of one proxied connection: data read from `source` runs through the chain of
 * this direction's toxics, in insertion order, and is written to `destination`. When the end of
 * the stream (EOF, error, or the source closing) comes out of the chain, the destination is
 * closed completely, which ends the other direction too.
 *
 * @example
 * const link = new Link(client, upstream, 'upstream', toxics, { random, reset });
 * link.start();
 */
export class Link {
  readonly stream: ToxicStream;
  readonly #source: Socket;
  readonly #destination: Socket;
  readonly #context: LinkContext;
  readonly #sink: Outlet;
  #slots: Slot[] = [];
  /** Stages taken off the chain that may still have a reset counting down. */
  readonly #retired: Stage[] = [];
  #head: Outlet;
  #sourceEnded = false;
  #ended = false;
  #paused = false;

  constructor(
    source: Socket,
    destination: Socket,
    stream: ToxicStream,
    toxics: readonly Toxic[],
    context: LinkContext,
  ) {
    this.#source = source;
    this.#destination = destination;
    this.stream = stream;
    this.#context = context;
    this.#sink = {
      push: (chunk) => {
        if (this.#ended || destination.destroyed) return;
        destination.write(chunk.data, this.#relieve);
      },
      end: () => {
        if (this.#ended) return;
        this.#ended = true;
        closeAfterFlush(destination);
      },
    };
    this.#head = this.#sink;
    for (const toxic of toxics) this.addToxic(toxic);
  }

  /** Starts reading the source. */
  start(): void {
    const source = this.#source;
    source.on('data', (data: Buffer) => {
      if (this.#sourceEnded) return;
      this.#head.push({ data, time: performance.now() });
      this.#relieve();
    });
    source.once('end', this.#endSource);
    source.once('close', this.#endSource);
  }

  addToxic(toxic: Toxic): void {
    if (this.#ended) return;
    const slot: Slot = {
      toxic,
      state: { transmitted: 0 },
      inputEnded: false,
      removed: false,
      next: this.#sink,
      input: {
        push: (chunk) => {
          if (!slot.inputEnded) slot.stage.push(chunk);
        },
        end: () => {
          if (slot.inputEnded) return;
          slot.inputEnded = true;
          slot.stage.end();
        },
      },
      stage: undefined as unknown as Stage,
    };
    slot.stage = this.#startStage(slot);
    this.#slots.push(slot);
    this.#rewire();
  }

  /** Restarts the toxic's stage with its current settings (a new toxicity draw). */
  updateToxic(name: string): void {
    const slot = this.#slots.find((candidate) => candidate.toxic.name === name);
    if (!slot) return;
    const held = slot.stage.detach();
    this.#retired.push(slot.stage);
    slot.stage = this.#startStage(slot);
    for (const chunk of held.chunks) slot.stage.push(chunk);
    if (held.ended) slot.stage.end();
  }

  /**
   * Takes the toxic off the chain. What it held goes on, in order; an active timeout instead
   * closes the connection.
   */
  removeToxic(name: string): void {
    const index = this.#slots.findIndex((candidate) => candidate.toxic.name === name);
    const slot = this.#slots[index];
    if (!slot) return;
    this.#slots.splice(index, 1);
    this.#rewire();
    slot.removed = true;
    const held = slot.stage.detach();
    this.#retired.push(slot.stage);
    if (slot.stage.closesOnRemove) {
      slot.next.end();
      return;
    }
    for (const chunk of held.chunks) slot.next.push(chunk);
    if (held.ended) slot.next.end();
    this.#relieve();
  }

  /** Stops every toxic's timers; the connection is being torn down. */
  dispose(): void {
    this.#ended = true;
    for (const slot of this.#slots) slot.stage.dispose();
    for (const stage of this.#retired) stage.dispose();
  }

  #startStage(slot: Slot): Stage {
    const stage = createStage(
      slot.toxic,
      {
        push: (chunk) => {
          if (slot.stage === stage && !slot.removed) slot.next.push(chunk);
        },
        end: () => {
          if (slot.stage === stage && !slot.removed) slot.next.end();
        },
      },
      {
        random: this.#context.random,
        now: () => performance.now(),
        reset: this.#context.reset,
        state: slot.state,
      },
    );
    return stage;
  }

  #rewire(): void {
    const slots = this.#slots;
    slots.forEach((slot, index) => {
      slot.next = slots[index + 1]?.input ?? this.#sink;
    });
    this.#head = slots[0]?.input ?? this.#sink;
  }

  #endSource = (): void => {
    if (this.#sourceEnded) return;
    this.#sourceEnded = true;
    this.#head.end();
  };

  #relieve = (): void => {
    if (this.#sourceEnded) return;
    let pending = this.#destination.writableLength;
    for (const slot of this.#slots) pending += slot.stage.held();
    if (!this.#paused && pending > highWater) {
      this.#paused = true;
      this.#source.pause();
    } else if (this.#paused && pending <= lowWater) {
      this.#paused = false;
      this.#source.resume();
    }
  };
}
