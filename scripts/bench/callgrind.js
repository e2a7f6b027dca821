// @ts-check
'use strict';
// How instructions.js runs Node under callgrind.
const { execFileSync } = require('node:child_process');

/**
 * Node's flags for a counted process, plus BENCH_NODE_ARGS. `--single-threaded` keeps V8's
 * compiler and collector on the main thread, where they are counted the same way every run.
 * V8's memory reducer starts major collections when the allocation rate drops, which under
 * valgrind (20–50 times slower) it always seems to, and which a server under load never does.
 */
const nodeArgs = [
  '--single-threaded',
  '--no-memory-reducer',
  ...(process.env.BENCH_NODE_ARGS?.split(' ').filter((arg) => arg !== '') ?? []),
];

/**
 * valgrind's arguments to run `node …nodeArgs` under callgrind, plus BENCH_VALGRIND_ARGS.
 * @param {string[]} callgrindArgs  e.g. `--callgrind-out-file=…`
 * @example
 *   spawn('valgrind', [...valgrindArgs(['--callgrind-out-file=/dev/null']), script]);
 */
function valgrindArgs(callgrindArgs) {
  return [
    '--tool=callgrind',
    ...callgrindArgs,
    ...(process.env.BENCH_VALGRIND_ARGS?.split(' ').filter((arg) => arg !== '') ?? []),
    process.execPath,
    ...nodeArgs,
  ];
}

/** Throws a clear error where valgrind is missing. */
function requireValgrind() {
  try {
    execFileSync('valgrind', ['--version'], { stdio: 'ignore' });
  } catch {
    throw new Error('valgrind is not installed (Debian/Ubuntu: apt-get install valgrind)');
  }
}

module.exports = { nodeArgs, requireValgrind, valgrindArgs };
