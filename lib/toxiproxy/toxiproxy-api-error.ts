/**
 * An error the Toxiproxy HTTP API answers with: the status code, and a body
 * `{"error": message, "status": status}`. The messages are Shopify Toxiproxy's own, so its
 * clients and CLI recognise them.
 *
 * @example
 * throw new ToxiproxyApiError(404, 'proxy not found');
 */
export class ToxiproxyApiError extends Error {
  readonly status: number;

  constructor(status: number, message: string) {
    super(message);
    this.status = status;
  }

  override get name(): string {
    return 'ToxiproxyApiError';
  }
}

/**
 * The errors of Shopify Toxiproxy's API (`api.go`), with their status codes.
 *
 * @example
 * throw apiErrors.missingField('upstream at proxy 2'); // 400 "missing required field: upstream at proxy 2"
 */
export const apiErrors = {
  badRequestBody: (detail: string) => new ToxiproxyApiError(400, `bad request body: ${detail}`),
  missingField: (field: string) => new ToxiproxyApiError(400, `missing required field: ${field}`),
  proxyNotFound: () => new ToxiproxyApiError(404, 'proxy not found'),
  proxyAlreadyExists: () => new ToxiproxyApiError(409, 'proxy already exists'),
  invalidStream: () =>
    new ToxiproxyApiError(400, 'stream was invalid, can be either upstream or downstream'),
  invalidToxicType: () => new ToxiproxyApiError(400, 'invalid toxic type'),
  toxicAlreadyExists: () => new ToxiproxyApiError(409, 'toxic already exists'),
  toxicNotFound: () => new ToxiproxyApiError(404, 'toxic not found'),
} as const;
