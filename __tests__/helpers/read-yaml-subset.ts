/** A YAML value as the subset reader returns it. */
export type YamlValue = string | YamlValue[] | { [key: string]: YamlValue };

interface Line {
  indent: number;
  text: string;
}

/**
 * Reads the YAML subset that docker-compose.test.yml and the GitHub workflow use: block maps and
 * lists (list items may be maps), plain and quoted scalars, flow lists of scalars (`[a, "b"]`)
 * and full-line comments. Scalars stay strings. Anything else (anchors, multi-line strings, flow
 * maps) is out of scope and throws.
 */
export function readYamlSubset(text: string): YamlValue {
  const lines: Line[] = text
    .split('\n')
    .filter((line) => line.trim() !== '' && !line.trim().startsWith('#'))
    .map((line) => ({ indent: line.length - line.trimStart().length, text: line.trim() }));
  let index = 0;

  function block(indent: number): YamlValue {
    const first = lines[index];
    if (first === undefined || first.indent < indent) return '';
    return first.text.startsWith('- ') || first.text === '-'
      ? list(first.indent)
      : map(first.indent);
  }

  function list(indent: number): YamlValue[] {
    const items: YamlValue[] = [];
    for (let line = lines[index]; line?.indent === indent && line.text.startsWith('-'); ) {
      const rest = line.text.slice(1).trim();
      if (rest === '') {
        index++;
        items.push(block(indent + 1));
      } else if (/^[\w.-]+:(\s|$)/.test(rest)) {
        // "- key: value": a map whose first line shares the dash; its other keys align after it.
        lines[index] = { indent: indent + 2, text: rest };
        items.push(map(indent + 2));
      } else {
        index++;
        items.push(scalar(rest));
      }
      line = lines[index];
    }
    return items;
  }

  function map(indent: number): { [key: string]: YamlValue } {
    const result: { [key: string]: YamlValue } = {};
    for (let line = lines[index]; line?.indent === indent; line = lines[index]) {
      const match = /^("[^"]*"|'[^']*'|[^:]+):(?:\s+(.*))?$/.exec(line.text);
      if (match === null) throw new Error(`Unsupported YAML line: ${line.text}`);
      const key = unquote(match[1] ?? '');
      index++;
      const value = match[2];
      result[key] = value === undefined || value === '' ? block(indent + 1) : scalar(value);
    }
    return result;
  }

  return block(0);
}

function scalar(text: string): YamlValue {
  if (text.startsWith('[')) {
    if (!text.endsWith(']')) throw new Error(`Unsupported flow list: ${text}`);
    const inner = text.slice(1, -1).trim();
    if (inner === '') return [];
    return (inner.match(/"[^"]*"|'[^']*'|[^,]+/g) ?? []).map((item) => unquote(item.trim()));
  }
  if (
    text.startsWith('{') ||
    text.startsWith('&') ||
    text.startsWith('*') ||
    text === '|' ||
    text === '>'
  ) {
    throw new Error(`Unsupported YAML value: ${text}`);
  }
  return unquote(text);
}

function unquote(text: string): string {
  if (text.length >= 2 && (text[0] === '"' || text[0] === "'") && text.at(-1) === text[0]) {
    return text.slice(1, -1);
  }
  return text;
}
