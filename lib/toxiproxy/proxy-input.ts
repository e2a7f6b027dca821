import { apiErrors } from './toxiproxy-api-error';

/** The fields of a proxy that clients send (create, update, populate). */
export interface ProxyInput {
  name: string;
  listen: string;
  upstream: string;
  enabled: boolean;
}

function jsonType(value: unknown): string {
  if (Array.isArray(value)) return 'array';
  if (typeof value === 'boolean') return 'bool';
  return typeof value;
}

/**
 * Reads a proxy body over `defaults`: fields that are absent or `null` keep the default, unknown
 * fields are ignored, a field of the wrong JSON type is a 400 `bad request body`.
 *
 * @example
 * parseProxyInput({ enabled: false }, current); // { ...current, enabled: false }
 */
export function parseProxyInput(body: unknown, defaults: ProxyInput): ProxyInput {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw apiErrors.badRequestBody(
      `json: cannot unmarshal ${jsonType(body)} into Go value of type proxy.Proxy`,
    );
  }
  const input = { ...defaults };
  const fields = body as Record<string, unknown>;
  for (const key of ['name', 'listen', 'upstream', 'enabled'] as const) {
    const value = fields[key];
    if (value === undefined || value === null) continue;
    const expected = key === 'enabled' ? 'boolean' : 'string';
    if (typeof value !== expected) {
      throw apiErrors.badRequestBody(
        `json: cannot unmarshal ${jsonType(value)} into Go struct field Proxy.${key} of type ${
          key === 'enabled' ? 'bool' : 'string'
        }`,
      );
    }
    (input as Record<string, unknown>)[key] = value;
  }
  return input;
}

/**
 * Checks that a new proxy has a `name` and an `upstream`; `at` names the entry of a populate
 * list (`' at proxy 2'`, 1-based).
 *
 * @example
 * requireProxyFields({ name: 'pg', listen: '', upstream: '', enabled: true });
 * // throws 400 "missing required field: upstream"
 */
export function requireProxyFields(input: ProxyInput, at = ''): void {
  if (input.name.length === 0) throw apiErrors.missingField(`name${at}`);
  if (input.upstream.length === 0) throw apiErrors.missingField(`upstream${at}`);
}

/**
 * Reads and checks the body of `POST /populate` (or a `-config` file): an array of proxies,
 * each `enabled` by default. Nothing is created when any entry is invalid.
 *
 * @example
 * parseProxyList([{ name: 'pg', listen: '127.0.0.1:0', upstream: '127.0.0.1:5432' }]);
 */
export function parseProxyList(body: unknown): ProxyInput[] {
  if (!Array.isArray(body)) {
    throw apiErrors.badRequestBody(
      `json: cannot unmarshal ${jsonType(body)} into Go value of type []proxy.Proxy`,
    );
  }
  const inputs = body.map((entry) =>
    parseProxyInput(entry, { name: '', listen: '', upstream: '', enabled: true }),
  );
  inputs.forEach((input, index) => {
    requireProxyFields(input, ` at proxy ${index + 1}`);
  });
  return inputs;
}
