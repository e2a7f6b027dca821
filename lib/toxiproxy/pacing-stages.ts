import type { Chunk, Outlet, Stage, StageContext } from './stage';
import { TimedQueue } from './timed-queue';

function queuedStage(queue: TimedQueue, push: (chunk: Chunk) => void, now: () => number): Stage {
  return {
    push,
    end: () => queue.end(now()),
    held: () => queue.held(),
    detach: () => queue.detach(),
    dispose: () => queue.dispose(),
    closesOnRemove: false,
  };
}

/**
 * `latency`: each chunk goes out `latency ± jitter` ms (jitter uniform in `[-jitter, +jitter)`)
 * after it was read, in order. Delays run from arrival, so queued chunks are pipelined; the chunk
 * is stamped with its release time, so two latency toxics add up.
 *
 * @example
 * createLatencyStage({ latency: 100, jitter: 10 }, outlet, context);
 */
export function createLatencyStage(
  attributes: { latency: number; jitter: number },
  out: Outlet,
  context: StageContext,
): Stage {
  const queue = new TimedQueue(out, context.now);
  const { latency, jitter } = attributes;
  return queuedStage(
    queue,
    (chunk) => {
      let delay = latency;
      if (jitter > 0) delay += Math.floor(context.random() * jitter * 2) - jitter;
      queue.add(chunk, chunk.time + delay, true);
    },
    context.now,
  );
}

/**
 * `bandwidth`: limits the stream to `rate` KB/s (1 KB = 1000 bytes, so `rate` bytes per ms).
 * A chunk larger than `rate × 100` bytes goes out in `rate × 100`-byte slices, one per 100 ms.
 * `rate` 0 (or less) means unlimited.
 *
 * @example
 * createBandwidthStage({ rate: 100 }, outlet, context); // 100 000 bytes per second
 */
export function createBandwidthStage(
  attributes: { rate: number },
  out: Outlet,
  context: StageContext,
): Stage {
  const queue = new TimedQueue(out, context.now);
  const { rate } = attributes;
  return queuedStage(
    queue,
    (chunk) => {
      let at = Math.max(context.now(), queue.last);
      if (rate <= 0) {
        queue.add(chunk, at);
        return;
      }
      const slice = rate * 100;
      let data = chunk.data;
      while (data.length > slice) {
        at += 100;
        queue.add({ data: data.subarray(0, slice), time: chunk.time }, at);
        data = data.subarray(slice);
      }
      queue.add({ data, time: chunk.time }, at + data.length / rate);
    },
    context.now,
  );
}

/**
 * `slicer`: cuts each chunk by recursive bisection into pieces of about
 * `average_size ± size_variation` bytes, and waits `delay` **microseconds** after each piece.
 *
 * @example
 * createSlicerStage({ average_size: 10, size_variation: 5, delay: 1000 }, outlet, context);
 */
export function createSlicerStage(
  attributes: { average_size: number; size_variation: number; delay: number },
  out: Outlet,
  context: StageContext,
): Stage {
  const queue = new TimedQueue(out, context.now);
  const { average_size: average, size_variation: variation } = attributes;
  const pause = Math.max(0, attributes.delay) / 1000;
  let free = Number.NEGATIVE_INFINITY;

  const cut = (start: number, end: number, bounds: number[]): void => {
    if (end - start - average <= variation || end - start <= 1) {
      bounds.push(end);
      return;
    }
    let middle = start + Math.floor((end - start) / 2);
    if (variation > 0) middle += Math.floor(context.random() * variation * 2) - variation;
    middle = Math.min(end - 1, Math.max(start + 1, middle));
    cut(start, middle, bounds);
    cut(middle, end, bounds);
  };

  return queuedStage(
    queue,
    (chunk) => {
      const bounds: number[] = [];
      cut(0, chunk.data.length, bounds);
      let at = Math.max(context.now(), free);
      let start = 0;
      for (const end of bounds) {
        queue.add({ data: chunk.data.subarray(start, end), time: chunk.time }, at);
        start = end;
        at += pause;
      }
      free = at;
    },
    () => Math.max(context.now(), free),
  );
}
