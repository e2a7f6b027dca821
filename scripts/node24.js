// @ts-check
'use strict';
// The suite on Node 24 as well as on the machine's Node. `npm run test:node24` runs it on Node 24
// only; `npm test -- --node24` (what .ci/run runs) runs it on the machine's Node, then on Node 24,
// and ends with the sum of both.
//
// Node 24 comes from the npm registry (the official build, packaged as node-<os>-<cpu>), into
// ~/.cache/knex-scope/node24 (KNEX_SCOPE_CACHE_DIR); delete that folder to get the newest 24.x.
// better-sqlite3 is a native addon built for one Node ABI, and `npm ci` builds it for the machine's Node only. Its loader (the `bindings`
// package) also looks in lib/binding/node-v<ABI>-<os>-<cpu>/, chosen by the running Node's ABI,
// but only after build/Release/, which any Node would load first (and refuse when it is another
// ABI's). So the binary `npm ci` built moves from build/Release/ to its own ABI's folder, and
// Node 24's goes next to it: each Node loads its own, `npm test` keeps working on the machine's
// Node, and both can run at once. Node 24's binary is compiled once (about a minute) with the
// headers that come with that Node package, and kept in ~/.cache/knex-scope/node24 for the next
// `npm ci` (and the next clone on this machine). With `npm test -- --node24`, fetching and
// compiling run at the lowest priority while the suite runs on the machine's Node
// (`prepareInBackground`).
const { spawn, spawnSync } = require('node:child_process');
const {
  closeSync,
  copyFileSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} = require('node:fs');
const os = require('node:os');
const { delimiter, dirname, join } = require('node:path');

const root = join(__dirname, '..');
const major = 24;
// Outside the checkout, so that a fresh clone on the same machine (CI's) reuses the download and
// the compiled addon: KNEX_SCOPE_CACHE_DIR, else ~/.cache/knex-scope.
const cache = process.env.KNEX_SCOPE_CACHE_DIR ?? join(os.homedir(), '.cache', 'knex-scope');
const home = join(cache, `node${major}`);
const platform = process.platform === 'win32' ? 'win' : process.platform;
const nodePackage = `node-${platform}-${process.arch}`;
const addon = 'better_sqlite3.node';

/** @param {string} message */
function log(message) {
  console.log(`── node${major}: ${message}`);
}

/**
 * @param {string} command
 * @param {string[]} args
 * @param {import('node:child_process').SpawnSyncOptions} [options]
 */
function run(command, args, options = {}) {
  const result = spawnSync(command, args, { cwd: root, encoding: 'utf8', ...options });
  if (result.status !== 0) {
    const output = `${result.stdout ?? ''}${result.stderr ?? ''}`.trim().split('\n').slice(-30);
    throw new Error(
      `${command} ${args.join(' ')} failed (${result.error?.message ?? `exit ${result.status}`})` +
        (output.length > 0 ? `:\n${output.join('\n')}` : ''),
    );
  }
  return String(result.stdout ?? '').trim();
}

/**
 * Node `major` from the npm registry into ~/.cache/knex-scope/node24, unless it is there already.
 * @returns {{ node: string; dir: string; version: string }}  node: the binary; dir: the package
 *   (its include/node holds the headers node-gyp needs)
 */
function installNode() {
  if (process.platform === 'win32') throw new Error('scripts/node24.js runs on Linux and macOS');
  const dir = join(home, 'node_modules', nodePackage);
  const node = join(dir, 'bin', 'node');
  if (!existsSync(node)) {
    const started = Date.now();
    // A package.json of its own, or npm would install into the project's node_modules.
    mkdirSync(home, { recursive: true });
    writeFileSync(join(home, 'package.json'), '{ "private": true }\n');
    run('npm', [
      'install',
      '--prefix',
      home,
      '--no-package-lock',
      '--no-audit',
      '--no-fund',
      `${nodePackage}@${major}`,
    ]);
    log(`installed ${nodePackage}@${major} in ${seconds(started)}`);
  }
  const version = run(node, ['--version']);
  if (!version.startsWith(`v${major}.`))
    throw new Error(`${node} is ${version}, not Node ${major}`);
  return { node, dir, version };
}

/** better-sqlite3's folder in node_modules, its version, and where a binary for an ABI goes. */
function betterSqlite3() {
  const pkg = dirname(require.resolve('better-sqlite3/package.json', { paths: [root] }));
  /** @type {string} */
  const version = JSON.parse(readFileSync(join(pkg, 'package.json'), 'utf8')).version;
  const bindingDir = (/** @type {string} */ abi) =>
    join(pkg, 'lib', 'binding', `node-v${abi}-${process.platform}-${process.arch}`);
  return { pkg, version, bindingDir };
}

/**
 * A better-sqlite3 binary for `node` in ~/.cache/knex-scope/node24, compiled unless it is there already. Changes
 * nothing in node_modules, so it can run while the suite runs on the machine's Node.
 * @param {{ node: string; dir: string }} target
 * @returns {string} the binary
 */
function buildBetterSqlite3({ node, dir }) {
  const { pkg, version } = betterSqlite3();
  const abi = run(node, ['-p', 'process.versions.modules']);
  const cached = join(
    home,
    `better-sqlite3-${version}-node-v${abi}-${process.platform}-${process.arch}.node`,
  );
  if (existsSync(cached)) return cached;
  const started = Date.now();
  // In a copy, outside the repository: the package's own build/ stays as npm left it, and jest
  // does not meet a second package named better-sqlite3.
  const work = mkdtempSync(join(os.tmpdir(), 'knex-scope-better-sqlite3-'));
  try {
    const source = join(work, 'better-sqlite3');
    const skip = [join(pkg, 'build'), join(pkg, 'lib', 'binding')];
    cpSync(pkg, source, { recursive: true, filter: (path) => !skip.includes(path) });
    const gyp = nodeGyp();
    run(
      node,
      [gyp, 'rebuild', '--release', `--nodedir=${dir}`, `--jobs=${os.availableParallelism()}`],
      {
        cwd: source,
        // node-gyp reads npm_config_nodedir too; a user's npmrc may point it at another Node.
        env: { ...process.env, PATH: pathWith(node), npm_config_nodedir: dir },
      },
    );
    copyFileSync(join(source, 'build', 'Release', addon), `${cached}.partial`);
    renameSync(`${cached}.partial`, cached);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  log(`built better-sqlite3 ${version} for Node ABI ${abi} in ${seconds(started)}`);
  return cached;
}

/**
 * Puts `binary` (built for `node`) next to the machine's Node's own (see the top), and checks
 * that both Nodes load their own.
 * @param {string} node
 * @param {string} binary
 */
function placeBetterSqlite3(node, binary) {
  const { pkg, bindingDir } = betterSqlite3();
  // What `npm ci` (or `npm rebuild`) built, for whichever Node ran it, moves to that ABI's folder.
  const built = join(pkg, 'build', 'Release', addon);
  if (existsSync(built)) {
    const abi = addonAbi(built);
    mkdirSync(bindingDir(abi), { recursive: true });
    renameSync(built, join(bindingDir(abi), addon));
    log(`moved better-sqlite3's ${addon} (ABI ${abi}) from build/Release to lib/binding`);
  }
  const target = join(bindingDir(addonAbi(binary)), addon);
  if (!existsSync(target)) {
    mkdirSync(dirname(target), { recursive: true });
    copyFileSync(binary, target);
  }
  const check = "new (require('better-sqlite3'))(':memory:').prepare('select 1 as one').get()";
  for (const each of [process.execPath, node]) run(each, ['-e', check]);
}

/**
 * Node 24 and its better-sqlite3 binary, fetched and compiled where missing.
 * @returns {{ node: string; dir: string; version: string; binary: string }}
 */
function prepare() {
  const target = installNode();
  return { ...target, binary: buildBetterSqlite3(target) };
}

/**
 * Starts `prepare()` in a child process at the lowest CPU priority, so that fetching Node 24 and
 * compiling better-sqlite3 (a minute or more) use what the suite on the machine's Node leaves
 * idle. Resolves once it is done (its output is in .tmp/node24-prepare.log); `testOnNode24` then
 * finds everything in place, or does what is missing itself and reports why.
 * @returns {Promise<void>}
 */
function prepareInBackground() {
  const logFile = join(root, '.tmp', 'node24-prepare.log');
  mkdirSync(dirname(logFile), { recursive: true });
  const out = openSync(logFile, 'w');
  const args = ['-n', '19', process.execPath, __filename, '--prepare'];
  return new Promise((/** @type {(value?: undefined) => void} */ resolve) => {
    const child = spawn('nice', args, { cwd: root, stdio: ['ignore', out, out] });
    child.on('error', () => resolve());
    child.on('exit', () => resolve());
  }).then(() => {
    closeSync(out);
    const output = readFileSync(logFile, 'utf8').trim();
    if (output !== '') console.log(output);
  });
}

/**
 * The Node ABI an addon was built for, from the `node_register_module_v<ABI>` symbol that
 * NODE_MODULE_INIT exports.
 * @param {string} file
 */
function addonAbi(file) {
  const match = /node_register_module_v(\d+)/.exec(readFileSync(file).toString('latin1'));
  if (match?.[1] === undefined) throw new Error(`${file} names no Node ABI`);
  return match[1];
}

/** node-gyp as npm bundles it: npm passes its path to scripts; otherwise next to npm itself. */
function nodeGyp() {
  const fromNpm = process.env.npm_config_node_gyp;
  if (fromNpm !== undefined && existsSync(fromNpm)) return fromNpm;
  const prefix = run('npm', ['prefix', '--global']);
  for (const lib of [join(prefix, 'lib'), prefix]) {
    const candidate = join(lib, 'node_modules/npm/node_modules/node-gyp/bin/node-gyp.js');
    if (existsSync(candidate)) return candidate;
  }
  throw new Error(
    "cannot find npm's node-gyp; set npm_config_node_gyp to node-gyp/bin/node-gyp.js",
  );
}

/** PATH with `node`'s folder first, so that `npx`, jest's workers and the tests' `node` are it. */
function pathWith(/** @type {string} */ node) {
  return `${dirname(node)}${delimiter}${process.env.PATH ?? ''}`;
}

/** @param {number} started */
function seconds(started) {
  return `${((Date.now() - started) / 1000).toFixed(1)} s`;
}

/**
 * `scripts/test.js` on Node 24, without type-check and lint (the same tools on any Node), passing
 * `args` on. The summary comes from .tmp/test-summary.txt; a run that could not start or wrote
 * none counts as one failure (`summarized` false: nothing printed the summary line).
 * @param {string[]} args
 * @returns {{ version: string; passed: number; failed: number; summarized: boolean }}
 */
function testOnNode24(args) {
  const summaryFile = join(root, '.tmp', 'test-summary.txt');
  let version = `${major}.x`;
  try {
    const started = Date.now();
    const target = prepare();
    version = target.version;
    placeBetterSqlite3(target.node, target.binary);
    log(`${version} ready in ${seconds(started)}: ${target.node}`);
    rmSync(summaryFile, { force: true });
    spawnSync(target.node, [join(__dirname, 'test.js'), '--skip-checks', ...args], {
      cwd: root,
      stdio: 'inherit',
      env: { ...process.env, PATH: pathWith(target.node) },
    });
    const match = /(\d+) passed, (\d+) failed/.exec(readFileSync(summaryFile, 'utf8'));
    if (match === null) throw new Error(`${summaryFile} holds no summary`);
    return { version, passed: Number(match[1]), failed: Number(match[2]), summarized: true };
  } catch (error) {
    console.log(`Node ${version} could not run the suite: ${String(error)}`);
    return { version, passed: 0, failed: 1, summarized: false };
  }
}

module.exports = { prepareInBackground, testOnNode24 };

if (require.main === module && process.argv[2] === '--prepare') {
  try {
    prepare();
  } catch (error) {
    console.log(`── node${major}: preparing failed: ${String(error)}`);
    process.exitCode = 1;
  }
} else if (require.main === module) {
  const { passed, failed, summarized } = testOnNode24(process.argv.slice(2));
  if (!summarized) console.log(`${passed} passed, ${failed} failed`);
  process.exitCode = failed > 0 ? 1 : 0;
}
