// Statements that read or set session state only; anything else may change data.
const readOnly = new Set([
  'select',
  'show',
  'explain',
  'describe',
  'desc',
  'values',
  'table',
  'pragma',
  'set',
  'lock',
]);

const readMethods = new Set(['select', 'first', 'pluck', 'columnInfo']);

const firstWord = /^[\s(]*([a-z]+)/i;
const writeWord = /\b(?:insert|update|delete|merge)\b/i;

/**
 * Whether a statement knex sends (its query object: `{ method, sql }`) may change data. Builder
 * queries are told by their method; raw SQL by its first keyword (a `WITH` by the words of its
 * body). When in doubt, true.
 *
 * @example
 * writesData({ method: 'insert', sql: 'insert into "orders" …' }); // true
 * writesData({ method: 'raw', sql: 'select 1' }); // false
 */
export function writesData(query: unknown): boolean {
  const { method, sql } = (query ?? {}) as { method?: unknown; sql?: unknown };
  if (typeof method === 'string' && readMethods.has(method)) return false;
  if (typeof method === 'string' && method !== 'raw' && method !== '') return true;
  if (typeof sql !== 'string') return true;
  const word = firstWord.exec(sql)?.[1]?.toLowerCase();
  if (word === undefined) return true;
  if (word === 'with') return writeWord.test(sql);
  return !readOnly.has(word);
}
