// @ts-check
'use strict';
// Requests without HTTP: fabricated IncomingMessage/ServerResponse pairs handed to an app's request
// listener one after the other, for `instructions.js --in-process`. No sockets, no parser, no
// event-loop turns between requests, so what is counted is the app and little else.
const http = require('node:http');
const net = require('node:net');
const { Writable } = require('node:stream');

const socket = new net.Socket();
// Takes every write at once, as a socket with room in its buffer does.
const out = /** @type {net.Socket} */ (
  /** @type {unknown} */ (
    new Writable({
      write(_chunk, _encoding, callback) {
        callback();
      },
    })
  )
);

/**
 * Sends `n` GET / requests to `listener`, each after the previous one finished; resolves to how
 * many were not answered 200. After `finish` a response is detached and closed as Node's HTTP
 * server does it (`resOnFinish`, `emitCloseNT`), so `close` listeners run as they would.
 * @param {import('node:http').RequestListener} listener
 * @param {number} n
 * @example
 *   const failed = await drive(app.listener, 1000);
 */
async function drive(listener, n) {
  let failed = 0;
  for (let i = 0; i < n; i++) if ((await request(listener)) !== 200) failed++;
  return failed;
}

/**
 * @param {import('node:http').RequestListener} listener
 * @returns {Promise<number>} the status
 */
function request(listener) {
  return new Promise((resolve) => {
    const req = new http.IncomingMessage(socket);
    req.method = 'GET';
    req.url = '/';
    req.headers = { host: 'localhost' };
    req.push(null);
    const res = new http.ServerResponse(req);
    res.assignSocket(out);
    res.once('finish', () => {
      res.detachSocket(out);
      process.nextTick(() => {
        res.destroyed = true;
        res.emit('close');
        resolve(res.statusCode);
      });
    });
    listener(req, res);
  });
}

module.exports = { drive };
