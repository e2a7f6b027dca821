// @ts-check
'use strict';
// The project's test command (`npm test`): type-check, lint, then the jest suite on SQLite and on
// PostgreSQL and MariaDB when their servers answer. Prints which databases ran, and ends with the
// line "N passed, M failed" (also written to .tmp/test-summary.txt for CI). With --docker (npm run
// test:docker) the fault tests use the Toxiproxy of docker-compose.test.yml instead of the
// in-process one.
const { spawnSync } = require('node:child_process');
const { mkdirSync, readFileSync, writeFileSync } = require('node:fs');
const { join } = require('node:path');
const { dockerTestEnv } = require('./docker-test-env');
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

async function main() {
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
  if (!step('type-check', 'npx', ['tsc', '-p', 'tsconfig.json'])) failedSteps.push('type-check');
  if (!step('lint', 'npx', ['biome', 'check', '.'])) failedSteps.push('lint');
  const docker = process.argv.includes('--docker');
  const env = {
    ...process.env,
    ...(docker ? dockerTestEnv : {}),
    KNEX_SCOPE_TEST_DATABASES: names.join(','),
  };
  if (docker)
    console.log(`Toxiproxy: ${dockerTestEnv.TOXIPROXY_API_URL} (docker-compose.test.yml)`);
  // --forceExit: a suite that fails in afterAll can leave a pool open; CI must still finish.
  const jestArgs = [
    'jest',
    '--json',
    '--forceExit',
    `--outputFile=${results}`,
    ...process.argv.slice(2).filter((arg) => arg !== '--docker'),
  ];
  if (!step('jest', 'npx', jestArgs, env)) failedSteps.push('jest');

  let passed = 0;
  let failed = 0;
  try {
    const report = JSON.parse(readFileSync(results, 'utf8'));
    passed = report.numPassedTests;
    failed = report.numFailedTests + report.numRuntimeErrorTestSuites;
    console.log(
      `\nJest: ${report.numTotalTests} tests in ${report.numTotalTestSuites} files on ${names.join(', ')}; ` +
        `${report.numPendingTests} skipped, ${report.numRuntimeErrorTestSuites} files failed to run.`,
    );
  } catch {
    failed += 1;
    console.log('\nJest wrote no results.');
  }
  if (failedSteps.length > 0) console.log(`Failed steps: ${failedSteps.join(', ')}`);
  const summary = `${passed} passed, ${failed} failed`;
  writeFileSync(join(tmp, 'test-summary.txt'), `${summary}\n`);
  console.log(summary);
  process.exitCode = failedSteps.length > 0 || failed > 0 ? 1 : 0;
}

main().catch((error) => {
  console.error(error);
  console.log('0 passed, 1 failed');
  process.exitCode = 1;
});
