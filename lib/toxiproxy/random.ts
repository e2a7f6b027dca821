/** A source of uniformly distributed numbers in `[0, 1)`. */
export type Random = () => number;

/**
 * Returns a random number generator for toxicity draws, jitter and slice sizes. With a seed it
 * yields the same sequence on every run (mulberry32), so fault tests can be made deterministic;
 * without one it is `Math.random`.
 *
 * @example
 * const random = createRandom(42);
 * random() < 0.5; // the same answer on every run
 */
export function createRandom(seed?: number): Random {
  if (seed === undefined) return Math.random;
  let state = Math.trunc(seed) >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}
