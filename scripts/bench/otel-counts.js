// @ts-check
'use strict';
// For scripts/bench/recovery.js --otel: the OpenTelemetry SDK in the app process with
// knex-scope's instrumentation on, and exporters that only count what they are given, so that the
// benchmark can compare the spans and metrics with the requests, attempts and retries it counted.

/**
 * Registers the SDK (AsyncLocalStorage context manager, a BatchSpanProcessor, a metric reader read
 * on demand) and instruments knex-scope. `counts()` flushes and returns what was exported so far.
 */
function startOtelCounts() {
  const { context } = require('@opentelemetry/api');
  const { AsyncLocalStorageContextManager } = require('@opentelemetry/context-async-hooks');
  const { BasicTracerProvider, BatchSpanProcessor } = require('@opentelemetry/sdk-trace-base');
  const { MeterProvider, MetricReader } = require('@opentelemetry/sdk-metrics');
  const { instrumentKnexScope } = require('knex-scope/opentelemetry');

  /** @type {Record<string, number>} */
  const spans = {};
  /** @type {Record<string, number>} */
  const events = {};
  const count = (/** @type {Record<string, number>} */ into, /** @type {string} */ key) => {
    into[key] = (into[key] ?? 0) + 1;
  };
  const exporter = {
    export(/** @type {any[]} */ batch, /** @type {(r: { code: number }) => void} */ done) {
      for (const span of batch) {
        if (span.name.startsWith('transaction ')) {
          count(spans, `session ${span.attributes['knex_scope.session.outcome']}`);
        } else if (span.name.startsWith('retryTransaction')) {
          count(spans, `operation ${span.status.code === 2 ? 'error' : 'ok'}`);
          for (const event of span.events) {
            if (event.name !== 'knex_scope.retry.decision') continue; // not the 'exception' events
            count(events, String(event.attributes?.['knex_scope.retry.decision']));
          }
        } else count(spans, 'other');
      }
      done({ code: 0 });
    },
    async shutdown() {},
    async forceFlush() {},
  };
  class Reader extends MetricReader {
    async onForceFlush() {}
    async onShutdown() {}
  }
  const reader = new Reader();
  const processor = new BatchSpanProcessor(/** @type {never} */ (exporter));
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  const tracerProvider = new BasicTracerProvider({ spanProcessors: [processor] });
  const meterProvider = new MeterProvider({ readers: [reader] });
  const instrumentation = instrumentKnexScope({ tracerProvider, meterProvider });
  return {
    async counts() {
      await processor.forceFlush();
      const { resourceMetrics } = await reader.collect();
      /** @type {Record<string, number>} */
      const metrics = {};
      for (const scope of resourceMetrics.scopeMetrics) {
        for (const metric of scope.metrics) {
          for (const point of /** @type {any[]} */ (metric.dataPoints)) {
            const label = Object.entries(point.attributes)
              .filter(([key]) => !key.startsWith('db.'))
              .map(([key, value]) => `${key.replace(/^knex_scope\./, '')}=${value}`)
              .join(',');
            const value = typeof point.value === 'number' ? point.value : point.value.count;
            metrics[`${metric.descriptor.name} ${label}`] = value;
          }
        }
      }
      return { spans, events, metrics };
    },
    disable: () => instrumentation.disable(),
  };
}

module.exports = { startOtelCounts };
