// @ts-check
'use strict';
/**
 * What one property read on an Express request or response costs, as a named read (`res.locals`)
 * and through `Reflect.get(res, 'locals')`, on Express 5 and 4.
 *
 * Express gives every request and response a hidden class of its own, so the named read misses
 * V8's inline cache every time. knex-scope reads Express's objects through `Reflect.get`
 * (lib/express-base.ts, `readProperty`); this script is the measurement behind that choice.
 *
 * Each round makes 20,000 fresh request/response pairs by passing them through a real
 * `app.handle()`, then times one read per response for each way of reading. Prints the median
 * over the rounds after two warm-up rounds, with the cost of a loop that reads nothing
 * subtracted.
 *
 *   node scripts/bench/property-read.js [--rounds=N] [--count=N]
 */
const http = require('node:http');
const net = require('node:net');

/**
 * @param {string} name
 * @param {number} fallback
 */
function option(name, fallback) {
  const arg = process.argv.find((a) => a.startsWith(`--${name}=`));
  const value = arg === undefined ? fallback : Number(arg.slice(name.length + 3));
  if (!Number.isInteger(value) || value < 1)
    throw new Error(`--${name} must be a positive integer`);
  return value;
}
const rounds = option('rounds', 10);
const count = option('count', 20_000);

/** @typedef {{ locals?: unknown }} Response */

/**
 * Makes request/response pairs the way Express does, returning each response.
 * @param {() => { use(fn: (req: unknown, res: Response) => void): void, handle(req: unknown, res: unknown, done: () => void): void }} express
 * @returns {() => Response}
 */
function pairs(express) {
  const app = express();
  /** @type {Response} */
  let captured = {};
  app.use((_req, res) => {
    captured = res;
  });
  const socket = new net.Socket();
  return () => {
    const req = new http.IncomingMessage(socket);
    req.method = 'GET';
    req.url = '/';
    const res = new http.ServerResponse(req);
    app.handle(req, res, () => {});
    return captured;
  };
}

// Each in its own function, so that each has its own inline cache.
/** @type {Record<'none' | 'named' | 'reflect', (res: Response) => unknown>} */
const ways = {
  none: (res) => res,
  named: (res) => res.locals,
  reflect: (res) => Reflect.get(res, 'locals'),
};

/** @param {number[]} values */
const median = (values) => [...values].sort((a, b) => a - b)[values.length >> 1] ?? Number.NaN;

/** @param {() => Response} make */
function measure(make) {
  /** @type {Record<string, number[]>} */
  const samples = { none: [], named: [], reflect: [] };
  for (let round = 0; round < rounds + 2; round++) {
    for (const [name, read] of Object.entries(ways)) {
      const responses = Array.from({ length: count }, make);
      let found = 0;
      const start = process.hrtime.bigint();
      for (const res of responses) if (read(res) !== undefined) found++;
      const ns = Number(process.hrtime.bigint() - start) / count;
      if (found !== count && name !== 'none') throw new Error(`${name} found ${found} of ${count}`);
      if (round >= 2) samples[name]?.push(ns);
    }
  }
  const loop = median(samples.none ?? []);
  return {
    named: median(samples.named ?? []) - loop,
    reflect: median(samples.reflect ?? []) - loop,
  };
}

console.log(`node ${process.version}, ${rounds} rounds × ${count} responses, median ns per read`);
for (const [label, name] of /** @type {const} */ ([
  ['Express 5', 'express'],
  ['Express 4', 'express4'],
])) {
  const { named, reflect } = measure(pairs(require(name)));
  console.log(
    `${label}: res.locals ${named.toFixed(0)} ns, Reflect.get ${reflect.toFixed(0)} ns, ` +
      `named / Reflect.get ${(named / reflect).toFixed(2)}`,
  );
}
