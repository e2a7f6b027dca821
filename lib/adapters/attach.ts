import type { Scope } from '../core/scope';

/**
 * How an adapter puts the scope (or what it opens) on the request: `target` is Express's `req` or
 * Koa's `ctx`, `res` Express's response (undefined for Koa). A promise delays the handler until it
 * resolves.
 *
 * @example
 * const attach: Attach = (req, scope) => {
 *   (req as { db?: Scope }).db = scope;
 *   return undefined;
 * };
 */
export type Attach = (target: object, scope: Scope, res: unknown) => Promise<void> | undefined;
