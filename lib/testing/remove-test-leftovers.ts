import { isProcessAlive } from './is-process-alive';
import { published } from './published';
import type { TestDatabaseServer } from './test-database-server';
import { hostTag, parseTestRunName } from './test-run-name';

/**
 * Drops what crashed runs left on `server`: every database named by the test kit on this machine
 * (same host hash) whose process is gone. A database of a live process, of another machine, or not
 * named by the kit is never touched. Resolves to the names it dropped.
 *
 * @example
 * await removeTestLeftovers(server); // ['knex_scope_test_a41f0c_4242_mgz1k2pq_w1', …]
 */
export async function removeTestLeftovers(
  server: TestDatabaseServer,
  alive: (pid: number) => boolean = isProcessAlive,
): Promise<string[]> {
  const host = hostTag();
  const dead = (await server.list()).filter((name) => {
    const parsed = parseTestRunName(name);
    return parsed !== undefined && parsed.host === host && !alive(parsed.pid);
  });
  // Worker databases first, so a half-removed run still shows its template next time.
  dead.sort((a, b) => b.length - a.length);
  for (const name of dead) {
    await server.drop(name);
    published(server, { action: 'leftover-dropped', role: 'leftover', name });
  }
  return dead;
}
