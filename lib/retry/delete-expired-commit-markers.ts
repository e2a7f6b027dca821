import type { Knex } from 'knex';
import { markerTokenAt } from './commit-marker';
import { commitMarkerTable } from './commit-marker-migration';

/** Options of `deleteExpiredCommitMarkers`. */
export interface DeleteExpiredCommitMarkersOptions {
  /**
   * Age in ms from which a marker is deleted. A marker is read only while its COMMIT is being
   * resolved (seconds), so anything above a minute is safe; below 60 000 is a TypeError.
   * @default 3_600_000 (one hour)
   */
  readonly olderThan?: number | undefined;
  /** Rows per DELETE statement, each its own short transaction. @default 1000 */
  readonly batchSize?: number | undefined;
  /** Stop after this many statements (the next call goes on). @default Infinity */
  readonly maxBatches?: number | undefined;
}

/** The shortest `olderThan`: markers are looked up for at most ~30 s after their COMMIT. */
const minimumAge = 60_000;

/**
 * Deletes the markers of `commitOutcome: 'marker'` older than `olderThan`, `batchSize` rows per
 * statement (each a short transaction of its own, so that it never holds many locks), until none
 * is left or `maxBatches` statements ran. Resolves to the number of rows deleted. Run it on a
 * timer (every few minutes) in one process, or from cron.
 *
 * @example
 * setInterval(() => deleteExpiredCommitMarkers(db.knex).catch(console.error), 300_000).unref();
 */
export async function deleteExpiredCommitMarkers(
  knex: Knex,
  options: DeleteExpiredCommitMarkersOptions = {},
): Promise<number> {
  const olderThan = numberOption(options.olderThan, 'olderThan', 3_600_000, minimumAge);
  const batchSize = Math.floor(numberOption(options.batchSize, 'batchSize', 1000, 1));
  const maxBatches = numberOption(options.maxBatches, 'maxBatches', Infinity, 1);
  const before = markerTokenAt(new Date(Date.now() - olderThan));
  const dialect = (knex.client as { dialect?: string }).dialect;
  let deleted = 0;
  for (let batch = 0; batch < maxBatches; batch++) {
    const n =
      dialect === 'mysql'
        ? affected(
            await knex.raw(
              `delete from ${commitMarkerTable} where token < ? order by token limit ?`,
              [before, batchSize],
            ),
          )
        : await knex(commitMarkerTable)
            .whereIn(
              'token',
              knex(commitMarkerTable)
                .select('token')
                .where('token', '<', before)
                .orderBy('token')
                .limit(batchSize),
            )
            .delete();
    deleted += n;
    if (n < batchSize) break;
  }
  return deleted;
}

function affected(result: unknown): number {
  return Number((result as [{ affectedRows?: number }])[0]?.affectedRows ?? 0);
}

function numberOption(value: unknown, name: string, fallback: number, minimum: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || Number.isNaN(value) || value < minimum) {
    throw new TypeError(
      `deleteExpiredCommitMarkers: option "${name}" must be a number of at least ${minimum}, got ${String(value)}`,
    );
  }
  return value;
}
