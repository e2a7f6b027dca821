import type { Knex } from 'knex';

/** The pool's counters: connections in use, idle, and acquires waiting. */
export function poolStats(knex: Knex): { used: number; free: number; pending: number } {
  const pool = (knex.client as { pool: TarnPool }).pool;
  return {
    used: pool.numUsed(),
    free: pool.numFree(),
    pending: pool.numPendingAcquires() + pool.numPendingCreates(),
  };
}

interface TarnPool {
  numUsed(): number;
  numFree(): number;
  numPendingAcquires(): number;
  numPendingCreates(): number;
}
