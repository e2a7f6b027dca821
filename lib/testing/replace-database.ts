/**
 * `url` with its database (the path) replaced by `name`.
 *
 * @example
 * replaceDatabase('postgres://app@db:5432/test?sslmode=disable', 'x');
 * // 'postgres://app@db:5432/x?sslmode=disable'
 */
export function replaceDatabase(url: string, name: string): string {
  const parsed = new URL(url);
  parsed.pathname = `/${name}`;
  return parsed.toString();
}
