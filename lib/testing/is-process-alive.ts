/**
 * Tells whether a process with this id runs on this machine. A process of another user counts as
 * alive (the signal is refused, not undeliverable), so a doubtful case never looks dead.
 *
 * @example
 * isProcessAlive(process.pid); // true
 */
export function isProcessAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
