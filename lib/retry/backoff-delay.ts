/**
 * The wait before retry number `retry` (1 for the first retry), in milliseconds, as the seed
 * (and urllib3's Retry) computes it: the first retry is immediate; retry k ≥ 2 waits
 * `factor · 2^(k−1)`, capped at `max`.
 *
 * @example
 * [1, 2, 3, 4, 5].map((k) => backoffDelay(k, 100, 1000)); // [0, 200, 400, 800, 1000]
 */
export function backoffDelay(retry: number, factor: number, max: number): number {
  if (retry <= 1) return 0;
  return Math.min(factor * 2 ** (retry - 1), max);
}
