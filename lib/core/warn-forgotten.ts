import type { ForgottenSession } from '../observability/forgotten-channel';

const labels: Record<ForgottenSession['kind'], string> = {
  lazy: 'scope.session',
  explicit: 'a session from scope.getSession()',
  callback: 'a scope.getSession(callback) session',
  eager: 'the withLegacySession transaction',
};

// Per process, not per db: one warning per route and kind however many withDb instances there are.
const warned = new Set<string>();

/**
 * `onForgotten: 'warn'`: a `process.emitWarning` (code `KNEX_SCOPE_FORGOTTEN_SESSION`) the first
 * time each route rolls back each kind of session that wrote and was never committed. Sessions
 * that only read lose nothing; a client that disconnected, or a response with an error status
 * (400 and above), ends its scope uncommitted on purpose: none of them is warned about.
 *
 * @example
 * const onForgotten = warnForgotten();
 * onForgotten(report); // (node:4711) KnexScopeWarning: POST /orders: scope.session ran 2 statements …
 */
export function warnForgotten(
  emit: (message: string, options: { type: string; code: string }) => void = (message, options) =>
    process.emitWarning(message, options),
): (report: ForgottenSession) => void {
  return (report) => {
    if (!report.wrote || report.aborted || (report.status ?? 0) >= 400) return;
    const where =
      report.method === undefined && report.route === undefined
        ? 'a db.wrap handler'
        : `${report.method ?? '?'} ${report.route ?? '(no route)'}`;
    const key = `${where}\n${report.kind}`;
    if (warned.has(key)) return;
    warned.add(key);
    emit(
      `${where}: ${labels[report.kind]} ran ${report.statements} statement` +
        `${report.statements === 1 ? '' : 's'}, writes among them, and was never committed, so the ` +
        'scope rolled it back when it ended: that work is lost. Commit it before responding ' +
        '(await trx.commit()), or roll it back yourself if that is intended. Warned once per ' +
        'route and kind of session; withDb(config, { onForgotten: false }) turns this off.',
      { type: 'KnexScopeWarning', code: 'KNEX_SCOPE_FORGOTTEN_SESSION' },
    );
  };
}
