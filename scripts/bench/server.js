// @ts-check
'use strict';
// One side of an overhead scenario served over HTTP, in a process of its own (started by side.js
// for instructions.js and overhead.js) so that the load generator and the server do not share an
// event loop. It listens on an ephemeral port and answers its parent's messages:
//   { type: 'reset' }  → starts counting: CPU time, requests, pool acquires, queries, collections
//   { type: 'settle' } → answers once no request is in flight and the pool is idle (at most 5 s)
//   { type: 'drive', n } → handles n fabricated requests in-process, without HTTP (drive.js);
//                          answers { type: 'drive', failed } (those not answered 200)
//   { type: 'stats' }  → { type: 'stats', cpuUs, requests, errors, acquires, queries, majorGcs,
//                          markedDuring, poolUsed, poolPending }  (majorGcs: V8's mark-compact
//                          collections since reset; markedDuring: whether incremental marking ran
//                          at any time since)
//   { type: 'stop' }   → closes the server and the pool, then exits
// argv[2] is the side as JSON (apps.js), argv[3] pool.max.
const http = require('node:http');
const v8 = require('node:v8');
const { createApp } = require('./apps');
const { drive } = require('./drive');

/** @type {import('./apps').Side} */
const side = JSON.parse(process.argv[2] ?? '{}');
main().catch((error) => {
  console.error(error);
  process.exit(1);
});

async function main() {
  const app = await createApp(side, { poolMax: Number(process.argv[3] ?? 10) });
  const { pool, counters } = app;

  const server = http.createServer(app.listener);
  let requests = 0;
  let inFlight = 0;
  server.on('request', (_req, res) => {
    requests++;
    inFlight++;
    res.once('close', () => {
      inFlight--;
    });
  });
  let cpuStart = process.cpuUsage();

  // Counted synchronously when asked (a PerformanceObserver hears of a collection only later).
  let gcProfiler = new v8.GCProfiler();
  gcProfiler.start();
  let majorGcs = 0;
  // Whether incremental marking ran during the counted period: a round can hold marking steps, which
  // cost as much as a good part of a collection, and still end before the collection does.
  let marking = false;
  let markedDuring = false;
  function readCollections() {
    const { statistics } = gcProfiler.stop();
    for (const gc of statistics) {
      if (gc.gcType === 'IncrementalMarking') {
        marking = true;
        markedDuring = true;
      } else if (gc.gcType === 'MarkSweepCompact') {
        majorGcs++;
        marking = false;
        markedDuring = true;
      }
    }
    gcProfiler = new v8.GCProfiler();
    gcProfiler.start();
  }

  /**
   * Waits (up to 5 s) for the requests autocannon left in flight to finish and for the pool to be
   * idle again: a request cut off by the client ends at once, its ROLLBACK a moment later.
   */
  async function settle() {
    const deadline = Date.now() + 5_000;
    const busy = () =>
      inFlight > 0 || pool.numUsed() + pool.numPendingAcquires() + pool.numPendingCreates() > 0;
    while (busy() && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  }

  // Lets the handlers autocannon left in flight finish before the pool goes away.
  async function stop() {
    gcProfiler.stop();
    const closed = new Promise((resolve) => server.close(() => resolve(undefined)));
    server.closeIdleConnections();
    await settle();
    server.closeAllConnections();
    await closed;
    await app.close();
    process.disconnect?.();
  }

  const send = (/** @type {unknown} */ message) => process.send?.(message);

  process.on('message', (/** @type {{ type: string }} */ message) => {
    if (message.type === 'reset') {
      requests = 0;
      counters.errors = 0;
      counters.acquires = 0;
      counters.queries = 0;
      readCollections();
      majorGcs = 0;
      markedDuring = marking;
      cpuStart = process.cpuUsage();
      send({ type: 'reset' });
    } else if (message.type === 'stats') {
      const cpu = process.cpuUsage(cpuStart);
      readCollections();
      send({
        type: 'stats',
        cpuUs: cpu.user + cpu.system,
        requests,
        ...counters,
        majorGcs,
        markedDuring,
        poolUsed: pool.numUsed(),
        poolPending: pool.numPendingAcquires() + pool.numPendingCreates(),
      });
    } else if (message.type === 'drive') {
      const n = /** @type {{ n?: number }} */ (message).n ?? 0;
      requests += n;
      drive(app.listener, n).then((failed) => send({ type: 'drive', failed }));
    } else if (message.type === 'settle') {
      settle().then(() => send({ type: 'settle' }));
    } else if (message.type === 'stop') {
      stop().catch((error) => {
        console.error(error);
        process.exit(1);
      });
    }
  });
  // If the parent goes away, do not linger.
  process.on('disconnect', () => {
    server.close();
    server.closeAllConnections();
    void app.close();
  });

  server.listen(0, '127.0.0.1', () => {
    const { port } = /** @type {import('node:net').AddressInfo} */ (server.address());
    send({ type: 'ready', port });
  });
}
