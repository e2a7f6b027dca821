// @ts-check
'use strict';
// What every bench script prints: the machine it ran on, and its results as a Markdown table
// (pasted into BENCHMARKS.md as they are).
const { writeFileSync } = require('node:fs');
const os = require('node:os');

/**
 * One line naming Node, the CPU and the load: the first line of every run.
 * @example
 *   console.log(`knex-scope soak: ${machine()}`);
 */
function machine() {
  const cpus = os.cpus();
  const load = os
    .loadavg()
    .map((n) => n.toFixed(2))
    .join(' ');
  return (
    `node ${process.version}, ${os.availableParallelism()} cores (${cpus[0]?.model ?? 'unknown CPU'}), ` +
    `load average ${load}, ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC`
  );
}

/**
 * A Markdown table. Columns whose header ends in ':' are right-aligned (the ':' is dropped).
 * @param {string[]} header
 * @param {(string | number)[][]} rows
 * @example
 *   console.log(markdownTable(['scenario', 'A/B:'], [['a-koa', '0.9950']]));
 */
function markdownTable(header, rows) {
  const right = header.map((title) => title.endsWith(':'));
  const titles = header.map((title, i) => (right[i] ? title.slice(0, -1) : title));
  const line = (/** @type {(string | number)[]} */ cells) => `| ${cells.join(' | ')} |`;
  return [
    line(titles),
    line(right.map((r) => (r ? '---:' : '---'))),
    ...rows.map((row) => line(row)),
  ].join('\n');
}

/**
 * Thousands with one decimal (`407.3k`), or '–' for NaN.
 * @param {number} x
 */
function k(x) {
  return Number.isNaN(x) ? '–' : `${(x / 1000).toFixed(1)}k`;
}

/** @param {number[]} values */
function median(values) {
  const sorted = [...values].sort((x, y) => x - y);
  const middle = Math.floor(sorted.length / 2);
  const upper = sorted[middle] ?? Number.NaN;
  return sorted.length % 2 === 1 ? upper : ((sorted[middle - 1] ?? Number.NaN) + upper) / 2;
}

/**
 * Writes `data` as JSON to `file` with the machine line, unless `file` is ''.
 * @param {string} file
 * @param {object} data
 */
function writeJson(file, data) {
  if (file === '') return;
  writeFileSync(file, `${JSON.stringify({ machine: machine(), ...data }, null, 2)}\n`);
}

module.exports = { k, machine, markdownTable, median, writeJson };
