import { createGlobalTeardown } from '../../lib/jest';

// A namespace whose setup did not run is left alone.
export default async function globalTeardown(): Promise<void> {
  await Promise.all(
    ['sqlite', 'postgres', 'mariadb'].map((name) => createGlobalTeardown({ namespace: name })()),
  );
}
