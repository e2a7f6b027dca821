// @ts-check
'use strict';
// Starts one side of an overhead benchmark, scripts/bench/server.js, in a child process of its
// own and talks to it over IPC; shared by scripts/bench/overhead.js and
// scripts/bench/instructions.js.
const { execFileSync, fork } = require('node:child_process');
const { join } = require('node:path');

/**
 * Pins every thread of a process to one CPU; false where taskset is missing or refuses.
 * @param {number | undefined} pid
 * @param {number} cpu
 */
function pinTo(pid, cpu) {
  try {
    execFileSync('taskset', ['-a', '-p', '-c', String(cpu), String(pid)], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/**
 * A bench-server.js child.
 * @param {import('./server').BenchSide} side
 * @param {{ cpu?: number | undefined; execPath?: string; execArgv?: string[] }} [options]
 *   cpu: pin the child to this CPU once it listens; execPath and execArgv: run it under another
 *   program (valgrind), as child_process.fork does: `execPath ...execArgv bench-server.js side`
 * @example
 *   const server = await startSide({ framework: 'koa', variant: 'plain' }, { cpu: 1 });
 *   await server.reset(); … ; const { requests, cpuUs } = await server.stats(); await server.stop();
 */
async function startSide(side, options = {}) {
  const child = fork(join(__dirname, 'server.js'), [JSON.stringify(side)], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    ...(options.execPath === undefined ? {} : { execPath: options.execPath }),
    ...(options.execArgv === undefined ? {} : { execArgv: options.execArgv }),
  });
  /** @type {Map<string, { resolve: (message: any) => void; reject: (error: Error) => void }>} */
  const waiting = new Map();
  child.on('message', (/** @type {{ type: string }} */ message) => {
    const pending = waiting.get(message.type);
    waiting.delete(message.type);
    pending?.resolve(message);
  });
  const exited = new Promise((resolve) => {
    child.once('exit', (code) => {
      for (const [type, pending] of waiting) {
        pending.reject(new Error(`bench server exited (${code}) before answering ${type}`));
      }
      waiting.clear();
      resolve(code);
    });
  });
  /**
   * @param {string} type
   * @param {boolean} [sendIt]
   * @returns {Promise<any>}
   */
  const ask = (type, sendIt = true) =>
    new Promise((resolve, reject) => {
      waiting.set(type, { resolve, reject });
      if (sendIt) child.send({ type });
    });
  const { port } = await ask('ready', false);
  if (options.cpu !== undefined) pinTo(child.pid, options.cpu);
  return {
    pid: /** @type {number} */ (child.pid),
    url: `http://127.0.0.1:${port}`,
    reset: () => ask('reset'),
    settle: () => ask('settle'),
    /** @returns {Promise<{ cpuUs: number; requests: number; errors: number; acquires: number; queries: number; majorGcs: number; markedDuring: boolean; poolUsed: number; poolPending: number }>} */
    stats: () => ask('stats'),
    stop: async () => {
      if (child.connected) child.send({ type: 'stop' });
      await exited;
    },
  };
}

module.exports = { pinTo, startSide };
