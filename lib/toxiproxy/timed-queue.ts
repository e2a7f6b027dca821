import type { Chunk, HeldData, Outlet } from './stage';

interface Item {
  at: number;
  /** Absent for the end of the stream. */
  chunk?: Chunk;
  /** Emit the chunk stamped with its release time (latency) instead of its read time. */
  restamp: boolean;
}

/**
 * A FIFO that releases each chunk to an outlet at a given time, never before the chunks queued
 * ahead of it. Chunks already due when queued behind nothing go out synchronously.
 *
 * @example
 * const queue = new TimedQueue(outlet, () => performance.now());
 * queue.add(chunk, chunk.time + 100);
 */
export class TimedQueue {
  readonly #out: Outlet;
  readonly #now: () => number;
  #items: Item[] = [];
  #bytes = 0;
  #timer: NodeJS.Timeout | undefined;
  #last = Number.NEGATIVE_INFINITY;

  constructor(out: Outlet, now: () => number) {
    this.#out = out;
    this.#now = now;
  }

  /** The release time of the last thing queued so far (it may already be out). */
  get last(): number {
    return this.#last;
  }

  /** Queues `chunk` for release at `at`, or right after the one before it if that is later. */
  add(chunk: Chunk, at: number, restamp = false): void {
    this.#last = Math.max(at, this.#last);
    this.#items.push({ at: this.#last, chunk, restamp });
    this.#bytes += chunk.data.length;
    this.#pump();
  }

  /** Passes the end of the stream on once everything queued before it is out. */
  end(at = this.#now()): void {
    this.#last = Math.max(at, this.#last);
    this.#items.push({ at: this.#last, restamp: false });
    this.#pump();
  }

  held(): number {
    return this.#bytes;
  }

  detach(): HeldData {
    const items = this.#items;
    this.dispose();
    const chunks: Chunk[] = [];
    let ended = false;
    for (const item of items) {
      if (item.chunk) chunks.push(item.chunk);
      else ended = true;
    }
    return { chunks, ended };
  }

  dispose(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#items = [];
    this.#bytes = 0;
  }

  #pump = (): void => {
    if (this.#timer !== undefined) return;
    const now = this.#now();
    while (this.#items.length > 0) {
      const item = this.#items[0]!;
      if (item.at > now) {
        // Node timers have millisecond granularity and may fire early by a fraction of one.
        this.#timer = setTimeout(this.#fire, Math.max(1, Math.ceil(item.at - now)));
        return;
      }
      this.#items.shift();
      if (item.chunk) {
        this.#bytes -= item.chunk.data.length;
        this.#out.push(item.restamp ? { data: item.chunk.data, time: item.at } : item.chunk);
      } else {
        this.#out.end();
      }
    }
  };

  #fire = (): void => {
    this.#timer = undefined;
    this.#pump();
  };
}
