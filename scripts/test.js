// @ts-check
'use strict';
// The project's test command (`npm test`): type-check, lint, then the jest suite on SQLite and on
// PostgreSQL and MariaDB when their servers answer. Prints which databases ran, and ends with the
// line "N passed, M failed" (also written to .tmp/test-summary.txt for CI). With --docker (npm run
// test:docker) the fault tests use the Toxiproxy of docker-compose.test.yml instead of the
// in-process one. With --node24 (.ci/run) the suite then runs again on Node 24 (scripts/node24.js)
// and the last line is the sum of both runs. --skip-checks leaves out type-check and lint, which
// do not depend on the Node that runs them (the Node 24 run passes it).
const { spawn, spawnSync } = require('node:child_process');
const { closeSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } = require('node:fs');
const { join } = require('node:path');
const { dockerTestEnv } = require('./docker-test-env');
const { prepareInBackground, testOnNode24 } = require('./node24');
const { probeDatabases, servers } = require('./probe-databases');

const root = join(__dirname, '..');
const tmp = join(root, '.tmp');
mkdirSync(tmp, { recursive: true });

/**
 * @param {string} title
 * @param {string} command
 * @param {string[]} args
 * @param {NodeJS.ProcessEnv} [env]
 */
function step(title, command, args, env = process.env) {
  console.log(`\n── ${title}: ${command} ${args.join(' ')}`);
  const started = Date.now();
  const { status } = spawnSync(command, args, { cwd: root, stdio: 'inherit', env });
  const seconds = ((Date.now() - started) / 1000).toFixed(1);
  console.log(`── ${title}: ${status === 0 ? 'ok' : `failed (exit ${status})`} in ${seconds} s`);
  return status === 0;
}

const flags = ['--docker', '--node24', '--skip-checks', '--skip-scale-out'];
const skipChecks = process.argv.includes('--skip-checks');
const alsoNode24 = process.argv.includes('--node24');

async function main() {
  console.log(`Node ${process.version} (${process.execPath})`);
  // Fetching Node 24 and compiling better-sqlite3 for it (a minute or more) runs at the lowest
  // priority alongside this run, instead of after it.
  const node24Prepared = alsoNode24 ? prepareInBackground() : undefined;
  const databases = await probeDatabases();
  const names = databases.map((database) => database.name);
  const missing = Object.keys(servers).filter((name) => !names.includes(name));
  console.log(`Databases: ${names.join(', ')}`);
  for (const name of missing) {
    console.log(
      `  ${name}: not tested, no server answers at ${servers[/** @type {'postgres'|'mariadb'} */ (name)]}`,
    );
  }

  const results = join(tmp, 'jest-results.json');
  const failedSteps = [];
  if (!step('build', 'npx', ['tsc', '-p', 'tsconfig.build.json'])) failedSteps.push('build');
  // A native addon built for another Node fails every SQLite test with the same error: say it once.
  const sqlite = "new (require('better-sqlite3'))(':memory:').prepare('select 1').get()";
  if (!step('better-sqlite3 loads', process.execPath, ['-e', sqlite])) {
    failedSteps.push('better-sqlite3');
  }
  if (!skipChecks) {
    if (!step('type-check', 'npx', ['tsc', '-p', 'tsconfig.json'])) failedSteps.push('type-check');
    if (!step('lint', 'npx', ['biome', 'check', '.'])) failedSteps.push('lint');
  }
  const docker = process.argv.includes('--docker');
  const env = {
    ...process.env,
    ...(docker ? dockerTestEnv : {}),
    KNEX_SCOPE_TEST_DATABASES: names.join(','),
  };
  if (docker)
    console.log(`Toxiproxy: ${dockerTestEnv.TOXIPROXY_API_URL} (docker-compose.test.yml)`);
  // --forceExit: a suite that fails in afterAll can leave a pool open; CI must still finish.
  const extraArgs = process.argv.slice(2).filter((arg) => !flags.includes(arg));
  const totals = { passed: 0, failed: 0 };
  // A full run puts the scale-out tests (PgBouncer, the failover pair, Galera: mostly waiting for
  // faults to take effect) in a jest run of their own beside the rest, which keeps the CPU busy.
  const fullRun = extraArgs.length === 0;
  const scaleOut =
    fullRun && !process.argv.includes('--skip-scale-out') ? startScaleOut(env) : undefined;
  const projects = fullRun ? ['--selectProjects', 'unit', ...names] : [];
  const suite = runJest(
    'jest',
    ['jest', '--json', '--forceExit', ...projects],
    results,
    extraArgs,
    env,
  );
  if (!suite.ok) failedSteps.push('jest');
  add(totals, suite);
  console.log(
    `\nJest: ${suite.total} tests in ${suite.files} files on ${names.join(', ')}; ` +
      `${suite.skipped} skipped, ${suite.broken} files failed to run.`,
  );

  // The test-kit example (examples/testing), as a user runs it: its own jest config, once per
  // database. Only on a full run: arguments select part of the main suite.
  if (fullRun) {
    for (const { name, url } of databases) {
      const exampleEnv = { ...env, ...(name === 'sqlite' ? {} : { TEST_DB_URL: url }) };
      const output = join(tmp, `example-${name}-results.json`);
      const args = ['jest', '-c', 'examples/testing/jest.config.js', '--json', '--forceExit'];
      const example = runJest(`example on ${name}`, args, output, [], exampleEnv);
      if (!example.ok) failedSteps.push(`example on ${name}`);
      add(totals, example);
    }
  }
  let summary = `${totals.passed} passed, ${totals.failed} failed`;
  if (alsoNode24) {
    console.log(`${summary} on Node ${process.version}`);
    await node24Prepared;
    const again = [...(docker ? ['--docker'] : []), '--skip-scale-out', ...extraArgs];
    const node24 = testOnNode24(again);
    if (node24.failed > 0) failedSteps.push(`Node ${node24.version}`);
    console.log(`\n── Node ${process.version}: ${summary}`);
    console.log(`── Node ${node24.version}: ${node24.passed} passed, ${node24.failed} failed`);
    add(totals, node24);
    summary = `${totals.passed} passed, ${totals.failed} failed`;
  }
  if (scaleOut !== undefined) {
    const run = await scaleOut;
    if (!run.ok) failedSteps.push('scale-out');
    add(totals, run);
    console.log(
      `Scale-out: ${run.passed} passed, ${run.failed} failed, ${run.skipped} skipped ` +
        `(a service that is not up skips its tests; .tmp/scale-out.log has the run)`,
    );
    summary = `${totals.passed} passed, ${totals.failed} failed`;
  }
  if (failedSteps.length > 0) console.log(`Failed steps: ${failedSteps.join(', ')}`);
  writeFileSync(join(tmp, 'test-summary.txt'), `${summary}\n`);
  console.log(summary);
  process.exitCode = failedSteps.length > 0 || totals.failed > 0 ? 1 : 0;
}

/**
 * Starts the scale-out jest project in the background, its output in .tmp/scale-out.log, and
 * resolves to its counts when it ends.
 * @param {NodeJS.ProcessEnv} env
 * @returns {Promise<ReturnType<typeof readCounts>>}
 */
function startScaleOut(env) {
  const output = join(tmp, 'scale-out-results.json');
  const log = join(tmp, 'scale-out.log');
  rmSync(output, { force: true });
  console.log(`\n── scale-out: jest --selectProjects scale-out, in the background (${log})`);
  const started = Date.now();
  const fd = openSync(log, 'w');
  const child = spawn(
    'npx',
    ['jest', '--json', '--forceExit', '--selectProjects', 'scale-out', `--outputFile=${output}`],
    { cwd: root, stdio: ['ignore', fd, fd], env },
  );
  return new Promise((resolve) => {
    child.on('close', (status) => {
      closeSync(fd);
      const seconds = ((Date.now() - started) / 1000).toFixed(1);
      console.log(
        `\n── scale-out: ${status === 0 ? 'ok' : `failed (exit ${status})`} in ${seconds} s`,
      );
      if (status !== 0)
        process.stdout.write(readFileSync(log, 'utf8').split('\n').slice(-80).join('\n'));
      resolve(readCounts('scale-out', status === 0, output));
    });
  });
}

/**
 * Runs jest with `--outputFile` and reads its counts; a run that wrote no results counts as one
 * failure.
 * @param {string} title
 * @param {string[]} args
 * @param {string} output
 * @param {string[]} extraArgs
 * @param {NodeJS.ProcessEnv} env
 */
function runJest(title, args, output, extraArgs, env) {
  rmSync(output, { force: true });
  const ok = step(title, 'npx', [...args, `--outputFile=${output}`, ...extraArgs], env);
  return readCounts(title, ok, output);
}

/**
 * The counts of a jest `--json` results file; none counts as one failure.
 * @param {string} title
 * @param {boolean} ok
 * @param {string} output
 */
function readCounts(title, ok, output) {
  try {
    const report = JSON.parse(readFileSync(output, 'utf8'));
    return {
      ok,
      passed: report.numPassedTests,
      failed: report.numFailedTests + report.numRuntimeErrorTestSuites,
      total: report.numTotalTests,
      files: report.numTotalTestSuites,
      skipped: report.numPendingTests,
      broken: report.numRuntimeErrorTestSuites,
    };
  } catch {
    console.log(`${title} wrote no results.`);
    return { ok: false, passed: 0, failed: 1, total: 0, files: 0, skipped: 0, broken: 0 };
  }
}

/**
 * @param {{ passed: number, failed: number }} totals
 * @param {{ passed: number, failed: number }} run
 */
function add(totals, run) {
  totals.passed += run.passed;
  totals.failed += run.failed;
}

main().catch((error) => {
  console.error(error);
  console.log('0 passed, 1 failed');
  process.exitCode = 1;
});
