import { type Scope, scopeControl } from '../core/scope';

/** What `closeWithResponse` reads of a Node response. */
export interface ClosingResponse {
  readonly writableEnded: boolean;
  readonly destroyed: boolean;
  on(event: 'close', listener: () => void): unknown;
}

/**
 * Ends `scope` when `res` closes while it is still open: the client disconnected before the
 * response was complete (the scope is then `aborted`), or a connection or request timeout
 * destroyed the socket. A response that already ended or closed ends the scope at once. Every
 * adapter watches its Node response this way from the first session of a scope on; each also ends
 * the scope earlier, where its framework says the handler is done.
 *
 * @example
 * const watch = (scope: Scope, ctx: { res: ServerResponse }) => closeWithResponse(scope, ctx.res);
 */
export function closeWithResponse(scope: Scope, res: ClosingResponse): void {
  if (res.writableEnded || res.destroyed) {
    scopeControl.close(scope, !res.writableEnded);
    return;
  }
  // `on`, not `once`: closing twice is harmless, and `once` allocates a wrapper per request.
  res.on('close', () => {
    // Usually fires after the adapter ended the scope: skip the getter then.
    if (!scope.ended) scopeControl.close(scope, !res.writableEnded);
  });
}
