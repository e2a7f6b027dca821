import type * as OpenTelemetry from '@opentelemetry/api';
import type { ForgottenSession } from '../forgotten-channel';
import { forgottenChannel } from '../forgotten-channel';
import type { RetryAttemptMessage, RetryOperation } from '../retry-channel';
import { retryChannel } from '../retry-channel';
import { retryDecisionChannel } from '../retry-decision-channel';
import type { RunInContext } from '../run-in-context';
import type { SessionMessage } from '../session-channel';
import { sessionChannel } from '../session-channel';

/** Options of `instrumentKnexScope`. */
export interface KnexScopeInstrumentationOptions {
  /** Where the spans go. @default the global tracer provider (`trace.getTracerProvider()`) */
  readonly tracerProvider?: OpenTelemetry.TracerProvider | undefined;
  /** Where the metrics go. @default the global meter provider (`metrics.getMeterProvider()`) */
  readonly meterProvider?: OpenTelemetry.MeterProvider | undefined;
}

/** What `instrumentKnexScope` returns. */
export interface KnexScopeInstrumentation {
  /** Unsubscribes from every channel and ends the spans still open. Safe to call more than once. */
  disable(): void;
}

type Api = typeof OpenTelemetry;

interface OpenSession {
  readonly span: OpenTelemetry.Span;
  readonly started: number;
}

interface OpenOperation {
  readonly span: OpenTelemetry.Span;
  readonly active: OpenTelemetry.Context;
}

const scopeName = 'knex-scope';

/**
 * Turns knex-scope's diagnostics channels into OpenTelemetry spans and metrics. A span per session
 * (kind CLIENT, from the moment it is asked for to its COMMIT or ROLLBACK), active while the
 * session runs its statements, so that the spans of `@opentelemetry/instrumentation-pg`, `-mysql2`
 * and `-knex` nest under the transaction they ran in; a span per call of a `retryTransaction`
 * function covering all its attempts, with each decision as an event; and the metrics
 * `knex_scope.session.duration`, `knex_scope.retry.decisions`, `knex_scope.session.forgotten` and
 * `knex_scope.commit.resolutions`. Needs `@opentelemetry/api` 1.x (an optional peer dependency).
 *
 * @example
 * import { instrumentKnexScope } from 'knex-scope/opentelemetry';
 * const instrumentation = instrumentKnexScope({ tracerProvider, meterProvider });
 * // on shutdown
 * instrumentation.disable();
 */
export function instrumentKnexScope(
  options: KnexScopeInstrumentationOptions = {},
): KnexScopeInstrumentation {
  const api = require('@opentelemetry/api') as Api;
  const tracer = (options.tracerProvider ?? api.trace.getTracerProvider()).getTracer(scopeName);
  const meter = (options.meterProvider ?? api.metrics.getMeterProvider()).getMeter(scopeName);
  const duration = meter.createHistogram('knex_scope.session.duration', {
    description: 'How long sessions lasted, from being asked for to their COMMIT or ROLLBACK.',
    unit: 's',
  });
  const decisions = meter.createCounter('knex_scope.retry.decisions', {
    description: 'Decisions retryTransaction took after a failed attempt.',
    unit: '{decision}',
  });
  const forgotten = meter.createCounter('knex_scope.session.forgotten', {
    description: 'Sessions rolled back because their scope ended while they were still open.',
    unit: '{session}',
  });
  const resolutions = meter.createCounter('knex_scope.commit.resolutions', {
    description: 'COMMITs that lost their connection, by what the lookup of their outcome found.',
    unit: '{commit}',
  });

  const sessions = new Map<SessionMessage, OpenSession>();
  const operations = new Map<RetryOperation, OpenOperation>();
  const ignore = () => {};

  const sessionHandlers = {
    start(message: SessionMessage) {
      const parent = api.context.active();
      const parentSpan = api.trace.getSpan(parent);
      const attributes: OpenTelemetry.Attributes = {
        'db.system.name': message.system,
        'knex_scope.session.kind': message.kind,
      };
      if (message.namespace !== undefined) attributes['db.namespace'] = message.namespace;
      if (message.serverAddress !== undefined) attributes['server.address'] = message.serverAddress;
      if (message.serverPort !== undefined) attributes['server.port'] = message.serverPort;
      const span = tracer.startSpan(
        `transaction ${message.namespace ?? message.system}`,
        { kind: api.SpanKind.CLIENT, attributes },
        parent,
      );
      const active = api.trace.setSpan(parent, span);
      sessions.set(message, { span, started: performance.now() });
      // The session's span becomes the parent only where the caller's span still is: a statement
      // run under a span of its own (instrumentation-knex's) keeps that one.
      message.runInContext = ((fn, thisArg, ...args) =>
        api.trace.getSpan(api.context.active()) === parentSpan
          ? api.context.with(active, fn, thisArg, ...args)
          : fn.apply(thisArg, args)) as RunInContext;
    },
    end: ignore,
    asyncStart: ignore,
    error(message: SessionMessage) {
      const open = sessions.get(message);
      if (open === undefined) return;
      failed(api, open.span, message.error);
    },
    asyncEnd(message: SessionMessage) {
      const open = sessions.get(message);
      if (open === undefined) return;
      sessions.delete(message);
      const outcome = message.outcome ?? 'rolled back';
      open.span.setAttributes({
        'knex_scope.session.outcome': outcome,
        'knex_scope.session.statements': message.statements,
      });
      open.span.end();
      const attributes: OpenTelemetry.Attributes = {
        'db.system.name': message.system,
        'knex_scope.session.kind': message.kind,
        'knex_scope.session.outcome': outcome,
      };
      if (message.namespace !== undefined) attributes['db.namespace'] = message.namespace;
      if (message.outcome === 'failed') attributes['error.type'] = errorType(message.error);
      duration.record((performance.now() - open.started) / 1000, attributes);
      if (message.commitResolution !== undefined) {
        resolutions.add(1, {
          'db.system.name': message.system,
          'knex_scope.commit.resolution': message.commitResolution,
        });
      }
    },
  };

  const retryHandlers = {
    start(message: RetryAttemptMessage) {
      let open = operations.get(message.operation);
      if (open === undefined) {
        const parent = api.context.active();
        const name = message.operation.name;
        const span = tracer.startSpan(
          name === '' ? 'retryTransaction' : `retryTransaction ${name}`,
          { kind: api.SpanKind.INTERNAL, attributes: { 'code.function.name': name } },
          parent,
        );
        open = { span, active: api.trace.setSpan(parent, span) };
        operations.set(message.operation, open);
      }
      open.span.setAttribute('knex_scope.retry.attempts', message.attempt);
      const active = open.active;
      message.runInContext = ((fn, thisArg, ...args) =>
        api.context.with(active, fn, thisArg, ...args)) as RunInContext;
    },
    end: ignore,
    asyncStart: ignore,
    error: ignore,
    asyncEnd(message: RetryAttemptMessage) {
      const open = operations.get(message.operation);
      if (open === undefined) return;
      const event = message.decision;
      if (event !== undefined) {
        const attributes: OpenTelemetry.Attributes = {
          'knex_scope.retry.decision': event.decision,
          'knex_scope.retry.attempt': event.attempt,
          'error.type': errorType(event.error),
        };
        if (event.decision === 'retry') attributes['knex_scope.retry.delay'] = event.delay / 1000;
        open.span.addEvent('knex_scope.retry.decision', attributes);
        if (event.decision === 'retry') return;
        failed(api, open.span, event.error);
      }
      operations.delete(message.operation);
      open.span.end();
    },
  };

  const onDecision = (message: unknown) => {
    decisions.add(1, { 'knex_scope.retry.decision': (message as { decision: string }).decision });
  };

  const onForgotten = (message: unknown) => {
    const report = message as ForgottenSession;
    const attributes: OpenTelemetry.Attributes = {
      'db.system.name': report.system,
      'knex_scope.session.kind': report.kind,
      'knex_scope.session.wrote': report.wrote,
    };
    if (report.method !== undefined) attributes['http.request.method'] = report.method;
    if (report.route !== undefined) attributes['http.route'] = report.route;
    forgotten.add(1, attributes);
  };

  sessionChannel.subscribe(sessionHandlers);
  retryChannel.subscribe(retryHandlers);
  retryDecisionChannel.subscribe(onDecision);
  forgottenChannel.subscribe(onForgotten);
  let enabled = true;
  return {
    disable() {
      if (!enabled) return;
      enabled = false;
      sessionChannel.unsubscribe(sessionHandlers);
      retryChannel.unsubscribe(retryHandlers);
      retryDecisionChannel.unsubscribe(onDecision);
      forgottenChannel.unsubscribe(onForgotten);
      for (const { span } of sessions.values()) span.end();
      for (const { span } of operations.values()) span.end();
      sessions.clear();
      operations.clear();
    },
  };
}

/**
 * OpenTelemetry's `error.type`: the error's code (a SQLSTATE such as `57P01`, a driver code such as
 * `ECONNRESET`, or knex-scope's `ERR_…`), else its class name.
 */
function errorType(error: unknown): string {
  if (typeof error === 'object' && error !== null) {
    const code = (error as { code?: unknown }).code;
    if (typeof code === 'string' && code !== '') return code;
    if (typeof code === 'number') return String(code);
    const name = (error as { name?: unknown }).name;
    if (typeof name === 'string' && name !== '') return name;
  }
  return '_OTHER';
}

function failed(api: Api, span: OpenTelemetry.Span, error: unknown): void {
  span.setAttribute('error.type', errorType(error));
  if (error instanceof Error) span.recordException(error);
  span.setStatus({
    code: api.SpanStatusCode.ERROR,
    ...(error instanceof Error ? { message: error.message } : {}),
  });
}
