import { apiErrors } from './toxiproxy-api-error';

/** The toxic types of Toxiproxy 2.x. ("down" is not a toxic: it is `enabled: false`.) */
export type ToxicType =
  | 'latency'
  | 'bandwidth'
  | 'slow_close'
  | 'timeout'
  | 'reset_peer'
  | 'slicer'
  | 'limit_data'
  | 'noop';

/** `upstream` is client → server, `downstream` is server → client. */
export type ToxicStream = 'upstream' | 'downstream';

/** A toxic as the API shows it. Every attribute of the type is present; all are integers. */
export interface Toxic {
  name: string;
  type: ToxicType;
  stream: ToxicStream;
  /** The probability, drawn per link, that the toxic applies to it. */
  toxicity: number;
  attributes: Record<string, number>;
}

/**
 * The attributes of each toxic type, in the order Toxiproxy emits them. Units: ms, except
 * `bandwidth.rate` (KB/s, 1 KB = 1000 bytes), `slicer.average_size`/`size_variation` and
 * `limit_data.bytes` (bytes) and `slicer.delay` (µs).
 *
 * @example
 * toxicAttributes.slicer; // ['average_size', 'size_variation', 'delay']
 */
export const toxicAttributes: Readonly<Record<ToxicType, readonly string[]>> = {
  latency: ['latency', 'jitter'],
  bandwidth: ['rate'],
  slow_close: ['delay'],
  timeout: ['timeout'],
  reset_peer: ['timeout'],
  slicer: ['average_size', 'size_variation', 'delay'],
  limit_data: ['bytes'],
  noop: [],
};

function isToxicType(type: string): type is ToxicType {
  return Object.hasOwn(toxicAttributes, type);
}

function jsonType(value: unknown): string {
  if (Array.isArray(value)) return 'array';
  if (typeof value === 'boolean') return 'bool';
  return typeof value;
}

function mismatch(value: unknown, field: string, goType: string): Error {
  return apiErrors.badRequestBody(
    `json: cannot unmarshal ${jsonType(value)} into Go struct field ${field} of type ${goType}`,
  );
}

function asObject(body: unknown, goType: string): Record<string, unknown> {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw apiErrors.badRequestBody(
      `json: cannot unmarshal ${jsonType(body)} into Go value of type ${goType}`,
    );
  }
  return body as Record<string, unknown>;
}

function optionalString(body: Record<string, unknown>, key: string): string | undefined {
  const value = body[key];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string') throw mismatch(value, `ToxicWrapper.${key}`, 'string');
  return value;
}

function optionalToxicity(body: Record<string, unknown>): number | undefined {
  const value = body.toxicity;
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'number') throw mismatch(value, 'ToxicWrapper.toxicity', 'float32');
  return value;
}

function attributesObject(body: Record<string, unknown>): Record<string, unknown> {
  const value = body.attributes;
  if (value === undefined || value === null) return {};
  if (typeof value !== 'object' || Array.isArray(value)) {
    throw mismatch(value, 'ToxicWrapper.attributes', 'object');
  }
  return value as Record<string, unknown>;
}

/** The integer attribute values of `type` found in `given`; unknown keys and nulls are ignored. */
function readAttributes(type: ToxicType, given: Record<string, unknown>): Record<string, number> {
  const values: Record<string, number> = {};
  for (const key of toxicAttributes[type]) {
    const value = given[key];
    if (value === undefined || value === null) continue;
    if (typeof value !== 'number' || !Number.isSafeInteger(value)) {
      throw mismatch(value, `attributes.${key}`, 'int64');
    }
    values[key] = value;
  }
  return values;
}

/**
 * Validates the body of `POST /proxies/{p}/toxics` and fills in the defaults: stream
 * `downstream`, toxicity 1, name `<type>_<stream>`, missing attributes 0. Checks in Toxiproxy's
 * order: body, stream, type, duplicate name (`exists`), attribute values. Throws a
 * `ToxiproxyApiError`.
 *
 * @example
 * parseToxic({ type: 'latency', attributes: { latency: 100 } }, () => false);
 * // { name: 'latency_downstream', type: 'latency', stream: 'downstream', toxicity: 1,
 * //   attributes: { latency: 100, jitter: 0 } }
 */
export function parseToxic(body: unknown, exists: (name: string) => boolean): Toxic {
  const input = asObject(body, 'toxics.ToxicWrapper');
  const givenName = optionalString(input, 'name');
  const type = optionalString(input, 'type') ?? '';
  const givenStream = optionalString(input, 'stream');
  const toxicity = optionalToxicity(input) ?? 1;
  const given = attributesObject(input);

  const stream = (givenStream ?? 'downstream').toLowerCase();
  if (stream !== 'upstream' && stream !== 'downstream') throw apiErrors.invalidStream();
  const name = givenName || `${type}_${stream}`;
  if (!isToxicType(type)) throw apiErrors.invalidToxicType();
  if (exists(name)) throw apiErrors.toxicAlreadyExists();

  const attributes: Record<string, number> = {};
  for (const key of toxicAttributes[type]) attributes[key] = 0;
  Object.assign(attributes, readAttributes(type, given));
  return { name, type, stream, toxicity, attributes };
}

/**
 * Validates the body of a toxic update and applies it to `toxic`: given attribute keys are
 * merged in, `toxicity` changes only when present, `name`/`type`/`stream` are ignored. Nothing
 * changes when the body is invalid (a `ToxiproxyApiError` is thrown).
 *
 * @example
 * updateToxic(toxic, { attributes: { latency: 500 } }); // keeps jitter and toxicity
 */
export function updateToxic(toxic: Toxic, body: unknown): void {
  const input = asObject(body, 'struct { Attributes interface {}; Toxicity float32 }');
  const toxicity = optionalToxicity(input);
  const attributes = readAttributes(toxic.type, attributesObject(input));
  Object.assign(toxic.attributes, attributes);
  if (toxicity !== undefined) toxic.toxicity = toxicity;
}

/**
 * The JSON form of a toxic, fields in Toxiproxy's order.
 *
 * @example
 * JSON.stringify(toxicJson(toxic)); // '{"attributes":{...},"name":...,"type":...,...}'
 */
export function toxicJson(toxic: Toxic): Toxic {
  return {
    attributes: { ...toxic.attributes },
    name: toxic.name,
    type: toxic.type,
    stream: toxic.stream,
    toxicity: toxic.toxicity,
  };
}
