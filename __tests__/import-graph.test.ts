import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';

// The architecture of lib/ (DESIGN.md §3), checked on the source: no import cycles, type-only
// imports included, and the folders depend on each other only downwards.
const lib = join(__dirname, '..', 'lib');

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(path);
    return entry.name.endsWith('.ts') ? [path] : [];
  });
}

const specifier = /(?:\bfrom\s+|\bimport\s*\(?\s*|\brequire\(\s*)['"](\.{1,2}\/[^'"]*)['"]/g;

function resolveImport(from: string, spec: string): string {
  const base = resolve(dirname(from), spec);
  for (const candidate of [base, `${base}.ts`, join(base, 'index.ts')]) {
    try {
      if (statSync(candidate).isFile()) return candidate;
    } catch {}
  }
  throw new Error(`${relative(lib, from)} imports ${spec}, which does not exist`);
}

/** Every lib file (relative to lib/) and the lib files it imports, `import type` included. */
function importGraph(): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  for (const file of sourceFiles(lib)) {
    const text = readFileSync(file, 'utf8');
    const targets = Array.from(text.matchAll(specifier), (match) =>
      relative(lib, resolveImport(file, match[1] as string)),
    );
    graph.set(relative(lib, file), Array.from(new Set(targets)));
  }
  return graph;
}

/** The strongly connected components with more than one file, or a file importing itself (Tarjan). */
function findCycles(graph: ReadonlyMap<string, readonly string[]>): string[][] {
  let next = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const cycles: string[][] = [];
  const visit = (node: string): void => {
    index.set(node, next);
    low.set(node, next);
    next++;
    stack.push(node);
    onStack.add(node);
    for (const target of graph.get(node) ?? []) {
      if (!index.has(target)) {
        visit(target);
        low.set(node, Math.min(low.get(node)!, low.get(target)!));
      } else if (onStack.has(target)) {
        low.set(node, Math.min(low.get(node)!, index.get(target)!));
      }
    }
    if (low.get(node) !== index.get(node)) return;
    const component: string[] = [];
    let member: string;
    do {
      member = stack.pop()!;
      onStack.delete(member);
      component.push(member);
    } while (member !== node);
    if (component.length > 1 || graph.get(node)?.includes(node)) cycles.push(component.sort());
  };
  for (const node of graph.keys()) if (!index.has(node)) visit(node);
  return cycles;
}

function folderOf(file: string): string {
  const parts = file.split('/');
  return parts.length === 1 ? '.' : parts[0] === 'adapters' ? 'adapters' : (parts[0] as string);
}

// What each folder may import besides itself. The core knows no framework and no retry policy but
// the connection-error classifier (a pure function the session needs to keep dead connections out
// of the pool); nothing but the test kit's own entry points imports the test kit. The diagnostics
// channels (observability/) are the bottom layer, which everything may publish on; they know only
// the type of what onRetry receives, and the OpenTelemetry subpath (observability/opentelemetry/)
// knows nothing but the channels.
const allowed: Record<string, readonly string[]> = {
  core: ['retry/is-connection-error.ts', 'observability'],
  retry: ['core', 'observability'],
  adapters: ['core'],
  observability: ['retry/retry-options.ts'],
  toxiproxy: ['observability'],
  testing: ['core', 'adapters', 'retry', 'toxiproxy', 'observability', '.'],
  jest: ['core', 'testing', 'toxiproxy', 'observability'],
  '.': ['.', 'core', 'adapters', 'retry', 'observability'],
};

function permitted(from: string, to: string): boolean {
  // A subpath's entry point (knex-scope/koa: adapters/koa/index.ts) re-exports the main entry.
  const source = /^adapters\/[^/]+\/index\.ts$/.test(from) ? '.' : folderOf(from);
  const target = folderOf(to);
  if (source === target && source !== '.') return true;
  const rules = allowed[source] ?? [];
  return rules.includes(target) || rules.includes(to);
}

describe('lib/ import graph', () => {
  const graph = importGraph();

  it('finds every lib file', () => {
    expect(graph.size).toBeGreaterThan(50);
    expect(graph.get('core/scope.ts')).toContain('core/session.ts');
  });

  it('has no import cycles, counting type-only imports', () => {
    expect(findCycles(graph)).toEqual([]);
  });

  it('has folders that import only downwards: the core no adapter, nothing the test kit', () => {
    const violations = Array.from(graph).flatMap(([from, targets]) =>
      targets.filter((to) => !permitted(from, to)).map((to) => `${from} → ${to}`),
    );
    expect(violations).toEqual([]);
  });

  it('keeps the adapters of one framework out of another', () => {
    const crossing = Array.from(graph).flatMap(([from, targets]) =>
      targets
        .filter((to) => {
          const [a, b] = [from.split('/'), to.split('/')];
          return a[0] === 'adapters' && b[0] === 'adapters' && a.length > 2 && b.length > 2
            ? a[1] !== b[1] && b[1] !== 'wrap'
            : false;
        })
        .map((to) => `${from} → ${to}`),
    );
    expect(crossing).toEqual([]);
  });
});

describe('findCycles', () => {
  it('reports a cycle through type-only imports and a file that imports itself', () => {
    const graph = new Map([
      ['a.ts', ['b.ts']],
      ['b.ts', ['c.ts']],
      ['c.ts', ['a.ts']],
      ['d.ts', ['d.ts']],
      ['e.ts', ['a.ts']],
    ]);
    expect(findCycles(graph)).toEqual([['a.ts', 'b.ts', 'c.ts'], ['d.ts']]);
  });

  it('reports nothing for a graph without cycles', () => {
    expect(
      findCycles(
        new Map([
          ['a.ts', ['b.ts']],
          ['b.ts', []],
        ]),
      ),
    ).toEqual([]);
  });
});
