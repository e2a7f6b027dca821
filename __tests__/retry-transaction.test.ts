import {
  isConnectionError,
  isKnexScopeError,
  isTransientError,
  type RetryEvent,
  type RetryOptions,
  retryTransaction,
  UnsafeRetryError,
} from '../lib';
import { backoffDelay } from '../lib/retry/backoff-delay';
import { normalizeRetryOptions } from '../lib/retry/retry-options';

/** An error every driver could raise for a lost connection (Node's socket error code). */
function connectionLost(message = 'read ECONNRESET'): Error {
  return Object.assign(new Error(message), { code: 'ECONNRESET', errno: -104 });
}

/** A callee like upstream's Mock: returns or throws its side effects in order, counting calls. */
function sideEffects(...effects: unknown[]) {
  const callee = jest.fn(async () => {
    const effect = effects.shift();
    if (effect instanceof Error) throw effect;
    return effect;
  });
  return callee;
}

/** An injected sleep that records the delays instead of waiting (upstream monkeypatches sleep). */
function recordingSleep() {
  const delays: number[] = [];
  const sleep = async (ms: number) => {
    delays.push(ms);
  };
  return { delays, sleep };
}

describe('retryTransaction: upstream test_retry_configuration (all ten cases, delays in ms)', () => {
  // Upstream parametrises (total, backoff_factor, backoff_max, side effects) → (result, sleeps);
  // backoff_factor 0.5 s is 500 ms here, backoff_max 1.2 s is 1200 ms.
  const op = () => connectionLost();
  const value = () => new TypeError('not a connection error');
  const cases: [string, RetryOptions, unknown[], unknown, number[]][] = [
    ['1: total 0, immediate success', { total: 0, backoffFactor: 500 }, [1], 1, []],
    ['2: total 1, immediate success', { total: 1, backoffFactor: 500 }, [1], 1, []],
    ['3: total 1, one failure', { total: 1 }, [op(), 2], 2, [0]],
    ['4: total 2, stops at first success', { total: 2 }, [op(), 2], 2, [0]],
    ['5: other errors are not retried', { total: 1 }, [value()], TypeError, []],
    ['6: other error mid-sequence', { total: 10 }, [op(), value(), 3], TypeError, [0]],
    [
      '7: exponential backoff',
      { total: 10, backoffFactor: 500 },
      [op(), op(), op(), op(), 5],
      5,
      [0, 1000, 2000, 4000],
    ],
    [
      '8: capped by backoffMax',
      { total: 10, backoffFactor: 500, backoffMax: 1200 },
      [op(), op(), op(), op(), 5],
      5,
      [0, 1000, 1200, 1200],
    ],
    ['9: factor 0', { total: 10, backoffFactor: 0 }, [op(), op(), op(), op(), 5], 5, [0, 0, 0, 0]],
    [
      '10: gives up after total + 1 attempts',
      { total: 3, backoffFactor: 500 },
      [op(), op(), op(), op()],
      Error,
      [0, 1000, 2000],
    ],
  ];

  it.each(cases)('%s', async (_name, options, effects, expected, sleeps) => {
    const { delays, sleep } = recordingSleep();
    const callee = sideEffects(...effects);
    const lastError = effects.at(-1);
    const promise = retryTransaction(callee, { ...options, sleep })();
    if (typeof expected === 'function') {
      const error = await promise.catch((e: unknown) => e);
      expect(error).toBeInstanceOf(expected);
      if (expected === Error) expect(error).toBe(lastError); // the last attempt's, unchanged
    } else {
      await expect(promise).resolves.toBe(expected);
    }
    expect(delays).toEqual(sleeps);
  });

  it('the README schedule: total 5, factor 100 ms, max 1000 ms waits 0, 200, 400, 800, 1000', async () => {
    const { delays, sleep } = recordingSleep();
    const errors = Array.from({ length: 6 }, () => connectionLost());
    const callee = sideEffects(...errors);
    const error = await retryTransaction(callee, {
      total: 5,
      backoffFactor: 100,
      backoffMax: 1000,
      sleep,
    })().catch((e: unknown) => e);
    expect(error).toBe(errors[5]);
    expect(callee).toHaveBeenCalledTimes(6);
    expect(delays).toEqual([0, 200, 400, 800, 1000]);
  });

  it('waits for real with the default sleep (first retry immediate, second 2 × factor)', async () => {
    const callee = sideEffects(connectionLost(), connectionLost(), 'ok');
    const started = performance.now();
    await expect(retryTransaction(callee, { total: 2, backoffFactor: 30 })()).resolves.toBe('ok');
    expect(performance.now() - started).toBeGreaterThanOrEqual(55);
  });
});

describe('retryTransaction: upstream test_raises_if_connection_is_not_invalidated', () => {
  it('retries a connection error once by default, then rethrows it', async () => {
    const errors = [connectionLost(), connectionLost()];
    const callee = sideEffects(...errors);
    const error = await retryTransaction(callee, { sleep: async () => {} })().catch((e) => e);
    expect(error).toBe(errors[1]);
    expect(callee).toHaveBeenCalledTimes(2);
  });
});

describe('retryTransaction: forms and types', () => {
  it('bare, with options, and curried; keeps this, arguments, name and length', async () => {
    const service = {
      factor: 3,
      async multiply(this: { factor: number }, a: number, b: number) {
        return this.factor * a * b;
      },
    };
    const bare = retryTransaction(service.multiply);
    const withOptions = retryTransaction(service.multiply, { total: 2 });
    const curried = retryTransaction({ total: 2 })(service.multiply);
    const noOptions = retryTransaction()(service.multiply);
    for (const wrapped of [bare, withOptions, curried, noOptions]) {
      expect(await wrapped.call(service, 2, 5)).toBe(30);
      expect(wrapped.name).toBe('multiply');
      expect(wrapped.length).toBe(2);
    }
  });

  it('keeps the parameter and return types of fn', async () => {
    const wrapped = retryTransaction(async (id: number, label: string) => ({ id, label }));
    const result: { id: number; label: string } = await wrapped(1, 'a');
    expect(result).toEqual({ id: 1, label: 'a' });
    // @ts-expect-error: the first parameter is a number
    await expect(wrapped('1', 'a')).resolves.toBeDefined();
    const sync = retryTransaction((n: number) => n * 2);
    const doubled: number = await sync(4);
    expect(doubled).toBe(8);
    // The session function is typed by fn's parameters.
    retryTransaction(async (req: { db: undefined }) => req, { session: (req) => req.db });
  });

  it('a non-function to wrap throws a TypeError at once', () => {
    expect(() => retryTransaction(42 as never)).toThrow(TypeError);
    expect(() => retryTransaction('fn' as never)).toThrow(/expected a function to retry/);
    expect(() => retryTransaction({})(42 as never)).toThrow(/expected the function to retry/);
  });

  it('a session passed where the function goes is refused (the seed accepts it silently)', () => {
    const fakeTrx = Object.assign(() => {}, { isTransaction: true });
    expect(() => retryTransaction(fakeTrx as never)).toThrow(
      /first argument is a session.*retryTransaction\(fn, \{ session \}\)/,
    );
  });

  it.each([
    [{ total: '3' }, /option "total" must be a number, got the string "3"/],
    [{ total: Number.NaN }, /option "total" must be a number/],
    [{ backoffFactor: '100' }, /option "backoffFactor" must be a number/],
    [{ backoffMax: {} }, /option "backoffMax" must be a number, got an object/],
    [{ retryOn: true }, /option "retryOn" must be a function/],
    [{ onRetry: 'log' }, /option "onRetry" must be a function/],
    [{ sleep: 5 }, /option "sleep" must be a function/],
    [{ allowReplay: 'yes' }, /option "allowReplay" must be a boolean/],
    [{ signal: {} }, /option "signal" must be an AbortSignal/],
    [{ session: 'req.db' }, /option "session" must be a Knex transaction, a scope, or a function/],
    [{ backoff_factor: 0.1 }, /unknown option "backoff_factor"/],
    [
      { commitOutcome: 'XA' },
      /option "commitOutcome" must be one of 'auto', 'xa', 'marker', got the string "XA"/,
    ],
    [{ commitOutcome: true }, /option "commitOutcome" must be one of/],
  ])('option %j throws a TypeError naming it', (options, message) => {
    expect(() => retryTransaction(async () => {}, options as never)).toThrow(TypeError);
    expect(() => retryTransaction(async () => {}, options as never)).toThrow(message);
    expect(() => retryTransaction(options as never)).toThrow(message);
  });

  it('clamps as the seed does', () => {
    expect(normalizeRetryOptions({ total: 0 }).total).toBe(1);
    expect(normalizeRetryOptions({ total: -5 }).total).toBe(1);
    expect(normalizeRetryOptions({ total: 2.7 }).total).toBe(2);
    expect(normalizeRetryOptions({}).total).toBe(1);
    expect(normalizeRetryOptions({ backoffFactor: -1 }).backoffFactor).toBe(0);
    expect(normalizeRetryOptions({ backoffMax: -1 }).backoffMax).toBe(0);
    expect(normalizeRetryOptions({ backoffMax: null }).backoffMax).toBe(Number.POSITIVE_INFINITY);
    expect(normalizeRetryOptions({}).backoffMax).toBe(Number.POSITIVE_INFINITY);
    expect(normalizeRetryOptions({}).retryOn).toBe(isConnectionError);
    expect(normalizeRetryOptions({}).commitOutcome).toBe('auto');
    expect(normalizeRetryOptions({ commitOutcome: 'marker' }).commitOutcome).toBe('marker');
  });

  it('backoffDelay follows the seed: 0, then factor · 2^(k−1), capped', () => {
    expect([1, 2, 3, 4, 5].map((k) => backoffDelay(k, 100, 1000))).toEqual([
      0, 200, 400, 800, 1000,
    ]);
    expect([1, 2, 3].map((k) => backoffDelay(k, 100, 0))).toEqual([0, 0, 0]);
  });
});

describe('retryTransaction: decisions, retryOn, abort', () => {
  it('onRetry reports each retry with its delay, then giving up', async () => {
    const events: RetryEvent[] = [];
    const errors = [connectionLost(), connectionLost(), connectionLost()];
    await retryTransaction(sideEffects(...errors), {
      total: 2,
      backoffFactor: 10,
      sleep: async () => {},
      onRetry: (event) => events.push(event),
    })().catch(() => {});
    expect(events).toEqual([
      { decision: 'retry', error: errors[0], attempt: 1, delay: 0 },
      { decision: 'retry', error: errors[1], attempt: 2, delay: 20 },
      { decision: 'give-up', error: errors[2], attempt: 3, delay: 0 },
    ]);
  });

  it('onRetry reports an error that is not retryable', async () => {
    const events: RetryEvent[] = [];
    const error = new RangeError('bad input');
    await retryTransaction(sideEffects(error), { onRetry: (e) => events.push(e) })().catch(
      () => {},
    );
    expect(events).toEqual([{ decision: 'not-retryable', error, attempt: 1, delay: 0 }]);
  });

  it('retryOn widens what is retried, e.g. serialization failures with isTransientError', async () => {
    const serialization = Object.assign(new Error('could not serialize access'), {
      code: '40001',
    });
    const sleep = async () => {};
    await expect(retryTransaction(sideEffects(serialization, 'ok'), { sleep })()).rejects.toBe(
      serialization,
    );
    await expect(
      retryTransaction(sideEffects(serialization, 'ok'), { sleep, retryOn: isTransientError })(),
    ).resolves.toBe('ok');
  });

  it('an aborted signal stops retrying and rethrows the error', async () => {
    const controller = new AbortController();
    const events: RetryEvent[] = [];
    const error = connectionLost();
    const callee = jest.fn(async () => {
      controller.abort();
      throw error;
    });
    await expect(
      retryTransaction(callee, {
        total: 5,
        signal: controller.signal,
        onRetry: (e) => events.push(e),
      })(),
    ).rejects.toBe(error);
    expect(callee).toHaveBeenCalledTimes(1);
    expect(events.map((e) => e.decision)).toEqual(['aborted']);
  });

  it('an abort during the wait cuts it short and no further attempt runs', async () => {
    const controller = new AbortController();
    const callee = sideEffects(connectionLost(), connectionLost(), 'never');
    const events: string[] = [];
    const started = performance.now();
    const promise = retryTransaction(callee, {
      total: 3,
      backoffFactor: 5000,
      signal: controller.signal,
      onRetry: (e) => events.push(e.decision),
    })();
    setTimeout(() => controller.abort(), 50);
    await expect(promise).rejects.toMatchObject({ code: 'ECONNRESET' });
    expect(performance.now() - started).toBeLessThan(4000);
    expect(callee).toHaveBeenCalledTimes(2);
    expect(events).toEqual(['retry', 'retry', 'aborted']);
  });

  it('UnsafeRetryError is a knex-scope error with code and cause', () => {
    const cause = connectionLost();
    const error = new UnsafeRetryError('x', { cause });
    expect(isKnexScopeError(error)).toBe(true);
    expect(error.code).toBe('ERR_UNSAFE_RETRY');
    expect(error.cause).toBe(cause);
  });
});
