import type { Knex } from 'knex';
import { isKnexScopeError } from '../../lib';

/** What a run of `traffic` saw, request by request. */
export interface TrafficResult {
  /** Keys whose request succeeded: their rows must be in the database, once. */
  readonly ok: readonly string[];
  /** Keys whose request failed with CommitOutcomeUnknownError: their rows may or may not be there. */
  readonly unknown: readonly string[];
  /** Keys whose request failed otherwise: their rows must not be there. */
  readonly failed: readonly { readonly key: string; readonly error: unknown }[];
  /** The longest time without a successful request, in ms, from the fault to the end. */
  readonly longestStall: number;
}

/**
 * Sends requests from `workers` concurrent loops until `stop()` is called; each request writes the
 * row of its own unique key. `mark()` notes the time of a fault, from which stalls are counted.
 *
 * @example
 * const load = traffic((key) => insertRow(key), 8);
 * await kill(); load.mark();
 * const result = await load.stop();
 */
export function traffic(request: (key: string) => Promise<unknown>, workers: number) {
  const ok: string[] = [];
  const unknown: string[] = [];
  const failed: { key: string; error: unknown }[] = [];
  let running = true;
  let faultAt: number | undefined;
  let lastSuccess = Date.now();
  let longestStall = 0;
  const loop = async (worker: number) => {
    for (let i = 0; running; i++) {
      const key = `w${worker}-${i}`;
      try {
        await request(key);
        const now = Date.now();
        if (faultAt !== undefined) longestStall = Math.max(longestStall, now - lastSuccess);
        lastSuccess = now;
        ok.push(key);
      } catch (error) {
        if (isKnexScopeError(error) && error.code === 'ERR_COMMIT_OUTCOME_UNKNOWN') {
          unknown.push(key);
        } else failed.push({ key, error });
      }
    }
  };
  const loops = Array.from({ length: workers }, (_, worker) => loop(worker));
  return {
    /** The fault happens now: stalls are counted from here. */
    mark(): void {
      faultAt = Date.now();
      lastSuccess = faultAt;
    },
    /** How many requests have succeeded so far. */
    get successes(): number {
      return ok.length;
    },
    async stop(): Promise<TrafficResult> {
      running = false;
      await Promise.all(loops);
      if (faultAt !== undefined) longestStall = Math.max(longestStall, Date.now() - lastSuccess);
      return { ok, unknown, failed, longestStall };
    },
  };
}

/**
 * Checks the rows `table` holds (through `knex`, column `k`) against what the traffic saw: every
 * acknowledged key once, nothing for a failed request, at most the row for an outcome-unknown
 * one. Returns the keys of outcome-unknown requests that did commit.
 *
 * @example
 * const committedButUnknown = await expectRowsMatch(node1, table, result);
 */
export async function expectRowsMatch(
  knex: Knex,
  table: string,
  result: TrafficResult,
): Promise<string[]> {
  const rows: { k: string }[] = await knex(table).select('k');
  const keys = rows.map((row) => row.k);
  expect(new Set(keys).size).toBe(keys.length); // nothing twice
  const present = new Set(keys);
  expect(result.ok.filter((key) => !present.has(key))).toEqual([]); // nothing acknowledged lost
  expect(result.failed.filter(({ key }) => present.has(key)).map(({ key }) => key)).toEqual([]);
  const allowed = new Set([...result.ok, ...result.unknown]);
  expect(keys.filter((key) => !allowed.has(key))).toEqual([]);
  return result.unknown.filter((key) => present.has(key));
}

/** Resolves after `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
