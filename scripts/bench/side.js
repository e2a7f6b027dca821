// @ts-check
'use strict';
// Starting the benchmarks' servers: a child process that listens on an ephemeral port, says
// { type: 'ready', port } over IPC, answers messages by type, and exits on { type: 'stop' }.
// server.js (the overhead scenarios' sides) and recovery.js's app are such children.
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
 * Forks `file` with `args` and waits until it listens.
 * @param {string} file
 * @param {string[]} args
 * @param {{ execPath?: string | undefined; execArgv?: string[] | undefined }} [options]
 *   run it under another program (valgrind), as child_process.fork does:
 *   `execPath ...execArgv file ...args`
 * @example
 *   const child = await startChild(__filename, ['--serve', spec]);
 *   const stats = await child.ask('stats'); await child.stop();
 */
async function startChild(file, args, options = {}) {
  const child = fork(file, args, {
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
        pending.reject(new Error(`${file} exited (${code}) before answering ${type}`));
      }
      waiting.clear();
      resolve(code);
    });
  });
  /**
   * Sends { type, ...payload } (unless `sendIt` is false) and resolves to the child's answer of
   * that type.
   * @param {string} type
   * @param {boolean} [sendIt]
   * @param {object} [payload]
   * @returns {Promise<any>}
   */
  const ask = (type, sendIt = true, payload = {}) =>
    new Promise((resolve, reject) => {
      if (child.exitCode !== null) {
        reject(new Error(`${file} exited (${child.exitCode}) before answering ${type}`));
        return;
      }
      waiting.set(type, { resolve, reject });
      if (sendIt) child.send({ ...payload, type });
    });
  const { port } = await ask('ready', false);
  return {
    pid: /** @type {number} */ (child.pid),
    /** @type {number} */
    port,
    ask,
    stop: async () => {
      if (child.connected) child.send({ type: 'stop' });
      await exited;
    },
  };
}

/**
 * One side of an overhead scenario, served over HTTP by server.js.
 * @param {import('./apps').Side} side
 * @param {{ poolMax: number; cpu?: number | undefined; execPath?: string; execArgv?: string[] }} options
 *   cpu: pin the server to this CPU once it listens; execPath and execArgv: see startChild
 * @example
 *   const server = await startSide({ framework: 'koa', route: 'plain' }, { poolMax: 10, cpu: 1 });
 *   await server.reset(); … ; const { requests, cpuUs } = await server.stats(); await server.stop();
 */
async function startSide(side, options) {
  const child = await startChild(
    join(__dirname, 'server.js'),
    [JSON.stringify(side), String(options.poolMax)],
    options,
  );
  if (options.cpu !== undefined) pinTo(child.pid, options.cpu);
  return {
    pid: child.pid,
    url: `http://127.0.0.1:${child.port}`,
    reset: () => child.ask('reset'),
    settle: () => child.ask('settle'),
    /**
     * Has the server handle `n` fabricated requests in-process (drive.js), without HTTP.
     * @param {number} n
     * @returns {Promise<{ failed: number }>}
     */
    drive: (n) => child.ask('drive', true, { n }),
    /** @returns {Promise<{ cpuUs: number; requests: number; errors: number; acquires: number; queries: number; majorGcs: number; markedDuring: boolean; poolUsed: number; poolPending: number }>} */
    stats: () => child.ask('stats'),
    stop: child.stop,
  };
}

module.exports = { pinTo, startChild, startSide };
