// Fails when a relative import cycle exists among the project's modules (type-only imports and
// re-exports included).
import { readFileSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';

const roots = ['src', 'machines'];
const files: string[] = [];
const walk = (dir: string): void => {
  for (const name of readdirSync(dir)) {
    const p = path.join(dir, name);
    if (p.startsWith(path.join('src', 'generated'))) continue;
    if (statSync(p).isDirectory()) walk(p);
    else if (p.endsWith('.ts')) files.push(p);
  }
};
roots.forEach(walk);

const graph = new Map<string, string[]>();
for (const f of files) {
  const text = readFileSync(f, 'utf8');
  // Type-only imports count too: a circle of types still ties the modules' meaning together.
  const deps = [...text.matchAll(/^(?:import|export)(?:[^'";]*?from)?\s*['"](\.{1,2}\/[^'"]+)['"]/gm)]
    .map((m) => path.normalize(path.join(path.dirname(f), m[1]!)))
    .filter((p) => files.includes(p));
  graph.set(f, deps);
}

const state = new Map<string, 'visiting' | 'done'>();
const cycles: string[][] = [];
const visit = (f: string, stack: string[]): void => {
  if (state.get(f) === 'done') return;
  if (state.get(f) === 'visiting') {
    cycles.push([...stack.slice(stack.indexOf(f)), f]);
    return;
  }
  state.set(f, 'visiting');
  for (const d of graph.get(f) ?? []) visit(d, [...stack, f]);
  state.set(f, 'done');
};
for (const f of files) visit(f, []);
if (cycles.length > 0) {
  for (const c of cycles) console.error(`import cycle: ${c.join(' -> ')}`);
  process.exit(1);
}
console.log(`no import cycles among ${files.length} modules`);
