import type {
  FastifyInstance,
  FastifyPluginCallback,
  FastifyReply,
  FastifyRequest,
  HookHandlerDoneFunction,
} from 'fastify';
import type { Knex } from 'knex';
import { NoScopeError } from '../../core/errors';
import { Scope, type ScopeCore, scopeControl } from '../../core/scope';
import { scopeStorage } from '../../core/scope-storage';
import { closeWithResponse } from '../close-with-response';
import { openEager } from '../open-eager';
import { markPlugin } from './mark-plugin';

/** What the plugin puts on the request: the lazy scope (`withDb`) or the eager transaction. */
export type PluginKind = 'scope' | 'eager';

type Slots = Record<symbol, unknown>;

/**
 * The Fastify plugin of `withDb` and `withLegacySession`: one scope per request, ended in
 * `onSend` (so before the response is written; with `commit: 'on-success'`, a status below 400
 * commits the lazy or eager session there, and a failed COMMIT becomes Fastify's error
 * response), in `onError`, or at once when the client disconnects (the response's `close`, which
 * also covers timeouts that destroy the socket). `destroy` runs on `onClose`.
 *
 * `withDb`'s scope is made on the first read of `request[property]`: an `onRequest` hook only
 * keeps the reply in a slot declared with `decorateRequest(slot, null)`, so a route that never
 * reads it allocates nothing. `withLegacySession` opens its transaction in `preHandler`, after the
 * body was parsed and validated. With `currentDb`, the handler runs inside the scope from
 * `preHandler` on.
 *
 * @example
 * const plugin = scopePlugin(core, 'db', destroy, 'scope');
 * await app.register(plugin);
 */
export function scopePlugin(
  core: ScopeCore,
  property: string,
  destroy: () => Promise<void>,
  kind: PluginKind,
): FastifyPluginCallback {
  // Holds null, then (withDb) the reply until the first read of request[property], then the scope.
  const slot = Symbol(`knex-scope.${property}`);
  // withLegacySession: the eager transaction.
  const trxSlot = Symbol(`knex-scope.${property}.transaction`);
  const { context } = core;

  const unavailable = (when: string) =>
    new NoScopeError(
      `request.${property} is not available here: ${when}. Read it in route handlers and in ` +
        'hooks added after app.register(), in the plugin it was registered in or below.',
    );

  const scopeOf = (request: FastifyRequest): Scope => {
    const value = (request as unknown as Slots)[slot];
    if (value instanceof Scope) return value;
    if (value === null || value === undefined) {
      throw unavailable("withDb's onRequest hook has not run for this request");
    }
    const scope = scopeControl.open(
      core,
      context ? scopeStorage.getStore() : undefined,
      watchReply,
      value as FastifyReply,
    );
    (request as unknown as Slots)[slot] = scope;
    return scope;
  };

  const keepReply = (
    request: FastifyRequest,
    reply: FastifyReply,
    done: HookHandlerDoneFunction,
  ) => {
    (request as unknown as Slots)[slot] = reply;
    done();
  };

  const enterScope = (
    request: FastifyRequest,
    _reply: FastifyReply,
    done: HookHandlerDoneFunction,
  ) => {
    scopeStorage.run(scopeOf(request), done);
  };

  const openEagerSession = (
    request: FastifyRequest,
    reply: FastifyReply,
    done: HookHandlerDoneFunction,
  ) => {
    const slots = request as unknown as Slots;
    const scope = scopeControl.open(
      core,
      context ? scopeStorage.getStore() : undefined,
      watchReply,
      reply,
    );
    slots[slot] = scope;
    openEager(
      scope,
      () => slots[trxSlot],
      (trx) => {
        slots[trxSlot] = trx;
      },
    ).then(() => (context ? scopeStorage.run(scope, done) : done()), done);
  };

  const endOnSend = (
    request: FastifyRequest,
    reply: FastifyReply,
    _payload: unknown,
    done: (error?: Error | null) => void,
  ) => {
    const scope = (request as unknown as Slots)[slot];
    if (!(scope instanceof Scope)) {
      done();
      return;
    }
    const closing = scopeControl.close(scope, false, reply.statusCode < 400);
    if (closing === undefined) done();
    // A second send (a handler that settled after Fastify's handlerTimeout sent the error
    // response, or a reply.send() without `return reply`) waits here on the same teardown as the
    // first: once the first has written its head, the second is dropped rather than letting
    // Fastify write headers twice (fastify/fastify#4908).
    else
      closing.then(
        () => {
          if (!reply.raw.headersSent) done();
        },
        (error: Error) => {
          if (!reply.raw.headersSent) done(error);
        },
      );
  };

  // Not waiting for the rollbacks here: a handler that resolves while an onError hook is pending
  // makes Fastify throw FST_ERR_SEND_INSIDE_ONERR outside any catch. The error response still
  // waits for them, in onSend.
  const endOnError = (
    request: FastifyRequest,
    _reply: FastifyReply,
    _error: Error,
    done: () => void,
  ) => {
    const scope = (request as unknown as Slots)[slot];
    if (scope instanceof Scope) scopeControl.close(scope, false);
    done();
  };

  const plugin = (fastify: FastifyInstance, _options: unknown, done: (error?: Error) => void) => {
    fastify.decorateRequest(slot, null);
    if (kind === 'scope') {
      fastify.decorateRequest(property, {
        getter(this: FastifyRequest) {
          return scopeOf(this);
        },
      });
      fastify.addHook('onRequest', keepReply);
      if (context) fastify.addHook('preHandler', enterScope);
    } else {
      fastify.decorateRequest(trxSlot, null);
      fastify.decorateRequest(property, {
        getter(this: FastifyRequest): Knex.Transaction {
          const trx = (this as unknown as Slots)[trxSlot];
          if (trx === null || trx === undefined) {
            throw unavailable('withLegacySession opens it in a preHandler hook, which has not run');
          }
          return trx as Knex.Transaction;
        },
      });
      fastify.addHook('preHandler', openEagerSession);
    }
    fastify.addHook('onError', endOnError);
    fastify.addHook('onSend', endOnSend);
    fastify.addHook('onClose', (_instance, closed) => {
      destroy().then(() => closed(), closed);
    });
    done();
  };
  return markPlugin(plugin, 'knex-scope', '5.x') as unknown as FastifyPluginCallback;
}

// `onSend` ends the scope; its Node response's `close`, when the client left first.
function watchReply(scope: Scope, reply: FastifyReply): void {
  closeWithResponse(scope, reply.raw);
}
