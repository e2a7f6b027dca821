// The scale-out services scripts/services/*.sh start (README: "Scale-out services"), for tests:
// whether each is up, its URLs, and its controls (restart, kill, promote, heal …).
//
//   describeService('galera', (galera) => {
//     test('…', async () => { await galera.kill(2); … });
//   });
//
// runs the block when the service is up, and otherwise registers a skipped test whose name says
// which service is missing and the command that starts it. The probe (scripts/services/probe.js:
// a TCP connect and one cheap query per server) runs once per test file, synchronously, while jest
// collects tests. URLs: KNEX_SCOPE_PGBOUNCER_URL, KNEX_SCOPE_FAILOVER_URLS (primary,standby),
// KNEX_SCOPE_GALERA_URLS (node 1,2,3); the controls always run the local scripts.
import { execFile, execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { serviceUrls } from '../../scripts/services/probe.js';

const root = join(__dirname, '../..');
const scripts = join(root, 'scripts/services');

export type ServiceName = 'pgbouncer' | 'pg-failover' | 'galera';

/** PgBouncer in transaction mode (pool of 4 per database) in front of the main PostgreSQL. */
export interface PgBouncerService {
  /** The `test` database through PgBouncer; any other database name works too. */
  readonly url: string;
  /** PgBouncer's admin console (`SHOW POOLS`, `SHOW CONFIG`). */
  readonly adminUrl: string;
  /** Immediate restart (SIGTERM, then start): clients mid-transaction lose their connection. */
  restart(): Promise<void>;
  /** Re-reads the config (SIGHUP). */
  reload(): Promise<void>;
  start(): Promise<void>;
  stop(): Promise<void>;
}

export type FailoverRole = 'primary' | 'standby';

/** A PostgreSQL primary and its asynchronous streaming standby, for failover tests only. */
export interface PgFailoverService {
  readonly primaryUrl: string;
  readonly standbyUrl: string;
  /** Makes the standby a primary (stop or kill the old primary first for a real failover). */
  promote(): Promise<void>;
  /** Rebuilds the pair as it started: empty `test` databases, about 2 s. */
  reset(): Promise<void>;
  /** Clean shutdown (pg_ctl stop -m fast) of one server, or of both. */
  stop(role?: FailoverRole): Promise<void>;
  /** A crash (pg_ctl stop -m immediate). */
  kill(role: FailoverRole): Promise<void>;
  start(): Promise<void>;
}

export type GaleraNode = 1 | 2 | 3;

/** A 3-node MariaDB Galera cluster. */
export interface GaleraService {
  /** Node 1, 2 and 3's `test` database. */
  readonly urls: readonly [string, string, string];
  url(node: GaleraNode): string;
  /** SIGKILL: the other nodes stall commits ~6 s until they declare it gone (evs.suspect_timeout). */
  kill(node: GaleraNode): Promise<void>;
  /** Clean stop and start of one node; it rejoins by IST. */
  restart(node: GaleraNode): Promise<void>;
  /** `gmcast.isolate=1`: the node leaves the cluster (non-primary, errno 1047) but keeps running. */
  isolate(node: GaleraNode): Promise<void>;
  /** Lifts isolation, re-forms a primary component if none is left, restarts dead nodes; waits. */
  heal(): Promise<void>;
  start(): Promise<void>;
  stop(): Promise<void>;
}

interface Services {
  pgbouncer: PgBouncerService;
  'pg-failover': PgFailoverService;
  galera: GaleraService;
}

/** Runs scripts/services/<script>.sh without blocking the event loop (tests keep traffic going). */
function control(script: string, ...args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(
      join(scripts, `${script}.sh`),
      args,
      { encoding: 'utf8', timeout: 300_000 },
      (error, stdout, stderr) => {
        if (error === null) resolve();
        else {
          const output = `${stdout}${stderr}`.trim();
          reject(new Error(`scripts/services/${script}.sh ${args.join(' ')} failed:\n${output}`));
        }
      },
    );
  });
}

interface Probe {
  up: boolean;
  reason?: string;
}

let probed: Record<'pgbouncer' | 'failover' | 'galera', Probe> | undefined;

/** Which services are up, probed once per test file (synchronously: jest collects tests so). */
function probeAll(): NonNullable<typeof probed> {
  probed ??= JSON.parse(
    execFileSync(process.execPath, [join(scripts, 'probe.js')], {
      cwd: root,
      encoding: 'utf8',
      timeout: 15_000,
    }),
  ) as NonNullable<typeof probed>;
  return probed;
}

function status(name: ServiceName): Probe {
  return probeAll()[name === 'pg-failover' ? 'failover' : name];
}

/** PgBouncer's URLs and controls when it is up, else undefined. */
export function pgbouncer(): PgBouncerService | undefined {
  if (!status('pgbouncer').up) return undefined;
  const { url, adminUrl } = serviceUrls().pgbouncer;
  return {
    url,
    adminUrl,
    restart: () => control('pgbouncer', 'restart'),
    reload: () => control('pgbouncer', 'reload'),
    start: () => control('pgbouncer', 'start'),
    stop: () => control('pgbouncer', 'stop'),
  };
}

/** The failover pair's URLs and controls when both run in their roles, else undefined. */
export function pgFailover(): PgFailoverService | undefined {
  if (!status('pg-failover').up) return undefined;
  const [primaryUrl, standbyUrl] = serviceUrls().failover as [string, string];
  return {
    primaryUrl,
    standbyUrl,
    promote: () => control('pg-failover', 'promote'),
    reset: () => control('pg-failover', 'reset'),
    stop: (role) =>
      role === undefined ? control('pg-failover', 'stop') : control('pg-failover', 'stop', role),
    kill: (role) => control('pg-failover', 'kill', role),
    start: () => control('pg-failover', 'start'),
  };
}

/** The Galera cluster's URLs and controls when all 3 nodes are synced, else undefined. */
export function galera(): GaleraService | undefined {
  if (!status('galera').up) return undefined;
  const urls = serviceUrls().galera as [string, string, string];
  return {
    urls,
    url: (node) => urls[node - 1] as string,
    kill: (node) => control('galera', 'kill', String(node)),
    restart: (node) => control('galera', 'restart', String(node)),
    isolate: (node) => control('galera', 'isolate', String(node)),
    heal: () => control('galera', 'heal'),
    start: () => control('galera', 'start'),
    stop: () => control('galera', 'stop'),
  };
}

const locators: { [N in ServiceName]: () => Services[N] | undefined } = {
  pgbouncer,
  'pg-failover': pgFailover,
  galera,
};

/**
 * `describe(name, …)` with the service when it is up; otherwise a skipped test that names the
 * service, why it counts as down, and the command that starts it.
 */
export function describeService<N extends ServiceName>(
  name: N,
  body: (service: Services[N]) => void,
): void {
  // Test files run in parallel jest workers, and these tests kill, isolate and promote servers:
  // one file at a time per service, from before the probe (another file may be mid-fault) to the
  // end of the file (whose afterAll/afterEach leave the service healthy).
  const release = lockService(name);
  afterAll(release);
  const service = locators[name]();
  if (service !== undefined) {
    describe(`${name} (scale-out service)`, () => body(service));
    return;
  }
  const message =
    `${name} is not up (${status(name).reason ?? 'no answer'}); start it with ` +
    `scripts/services/${name}.sh start, or scripts/services/all.sh start`;
  // The skipped test's name shows in verbose output; the warning also in a many-file run.
  console.warn(`Skipping the ${name} tests: ${message}`);
  describe(`${name} (scale-out service)`, () => {
    test.skip(message, () => {});
  });
}

const lockRoot = join(
  process.env.KNEX_SCOPE_SERVICES_DIR ?? '/var/tmp/knex-scope-services',
  'locks',
);

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Takes the service's lock (a directory, created atomically), waiting synchronously while another
 * process holds it, for up to 10 minutes; a lock whose holder died is taken over. Returns the
 * release.
 */
function lockService(name: ServiceName): () => void {
  const dir = join(lockRoot, name);
  mkdirSync(lockRoot, { recursive: true });
  const deadline = Date.now() + 600_000;
  const pause = new Int32Array(new SharedArrayBuffer(4));
  for (;;) {
    try {
      mkdirSync(dir);
      writeFileSync(join(dir, 'pid'), String(process.pid));
      break;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      let holder = Number.NaN;
      try {
        holder = Number(readFileSync(join(dir, 'pid'), 'utf8'));
      } catch {}
      if (Number.isInteger(holder) && !alive(holder)) rmSync(dir, { recursive: true, force: true });
      else if (Date.now() > deadline) {
        throw new Error(`The ${name} service stayed locked by process ${holder} for 10 minutes`);
      } else Atomics.wait(pause, 0, 0, 200);
    }
  }
  let held = true;
  return () => {
    if (held) rmSync(dir, { recursive: true, force: true });
    held = false;
  };
}
