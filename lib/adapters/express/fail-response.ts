import type { ServerResponse } from 'node:http';

/**
 * Turns the response of a request whose COMMIT failed at `res.end()` (`commit: 'on-success'`)
 * into an error, so that it never reaches the client as a success: while the headers are unsent,
 * the error goes to Express's error handling (`req.next(error)`, a 500 unless your error handler
 * says otherwise); once they are sent (a streamed body), or outside Express, the connection is
 * destroyed, which the client sees as a response cut short.
 *
 * @example
 * closing.then(() => end.apply(res, args), (error: unknown) => failResponse(res, error));
 */
export function failResponse(res: ServerResponse, error: unknown): void {
  const next = (res.req as { next?: unknown } | undefined)?.next;
  if (res.headersSent || res.writableEnded || typeof next !== 'function') {
    res.destroy();
    return;
  }
  (next as (error: unknown) => void)(error);
}
