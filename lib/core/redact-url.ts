const passwordParam = /([?&;](?:password|pass|pwd)=)[^&#;]*/gi;

/**
 * Replaces the password in a connection URL (in the user-info part and in `password=` query
 * parameters) with `***`, so the URL can go into an error message or a log line. Works on strings
 * that are not valid URLs too, erring towards hiding more rather than less.
 *
 * @example
 * redactUrl('postgres://app:s3cret@db:5432/shop'); // 'postgres://app:***@db:5432/shop'
 */
export function redactUrl(url: string): string {
  let redacted = url;
  const start = url.indexOf('://');
  const at = url.lastIndexOf('@');
  if (start !== -1 && at > start) {
    const colon = url.indexOf(':', start + 3);
    if (colon !== -1 && colon < at) redacted = `${url.slice(0, colon + 1)}***${url.slice(at)}`;
  }
  return redacted.replace(passwordParam, '$1***');
}
