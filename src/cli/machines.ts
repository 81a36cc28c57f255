import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Command } from 'commander';
import type { AnyStateMachine } from 'xstate';
import { machines as registered } from '../../machines/index.ts';
import { renderMachineSvg } from '../diagram/index.ts';
import { analyzeMachine, type MachineAnalysis } from '../domain/index.ts';

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows
    .map((r) =>
      r
        .map((c, i) => c.padEnd(widths[i]!))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

/** A human-readable report of one analysis. */
export function formatAnalysis(a: MachineAnalysis): string {
  const head = `machine ${a.name} (${a.ordering}-ordered, initial ${a.initial || 'none'}, final ${a.finalStates.join(', ') || 'none'})`;
  const rows = [
    ['event', 'rank', 'target', 'from'],
    ...a.events.map((e) => [e.type, String(e.rank), e.target, e.from.join(', ') || '(start)']),
  ];
  const diags = a.diagnostics.map(
    (d) => `  ${d.level.padEnd(7)} ${d.message.startsWith(d.code) ? d.message : `${d.code}: ${d.message}`}`,
  );
  return [
    head,
    table(rows).replace(/^/gm, '  '),
    ...(diags.length ? ['diagnostics:', ...diags] : ['diagnostics: none']),
  ].join('\n');
}

function isMachine(x: unknown): x is AnyStateMachine {
  return (
    typeof x === 'object' &&
    x !== null &&
    'root' in x &&
    'config' in x &&
    typeof (x as { transition?: unknown }).transition === 'function'
  );
}

/** Machines exported by a module file (a registry object or individual machines). */
async function machinesOf(file: string): Promise<Record<string, AnyStateMachine>> {
  const mod = (await import(pathToFileURL(path.resolve(file)).href)) as Record<string, unknown>;
  const out: Record<string, AnyStateMachine> = {};
  for (const value of Object.values(mod)) {
    if (isMachine(value)) out[value.id] = value;
    else if (typeof value === 'object' && value !== null) {
      for (const [k, v] of Object.entries(value)) if (isMachine(v)) out[k] = v;
    }
  }
  return out;
}

/** `machines check|export|diagram`. */
export function registerMachines(program: Command): void {
  const cmd = program.command('machines').description('check, export and draw the machine definitions');
  cmd
    .command('check')
    .description("print each machine's events, ranks, targets and diagnostics; exit 1 on any error")
    .argument('[files...]', 'modules exporting machines to check instead of the registry (machines/index.ts)')
    .option('--json', 'print the analysis as JSON')
    .addHelpText(
      'after',
      '\nExamples:\n  promosync machines check\n  promosync machines check machines/promotion.ts --json',
    )
    .action(async (files: string[], o: { json?: boolean }) => {
      let set: Record<string, AnyStateMachine> = { ...registered };
      if (files.length > 0) {
        set = {};
        for (const f of files) Object.assign(set, await machinesOf(f));
        if (Object.keys(set).length === 0)
          throw new Error(`no XState machine exported by ${files.join(', ')}`);
      }
      const analyses = Object.entries(set).map(([name, m]) => analyzeMachine(name, m));
      process.stdout.write(
        o.json ? `${JSON.stringify(analyses, null, 2)}\n` : `${analyses.map(formatAnalysis).join('\n\n')}\n`,
      );
      const errors = analyses.flatMap((a) => a.diagnostics.filter((d) => d.level === 'error'));
      if (errors.length > 0) {
        if (!o.json) process.stderr.write(`${errors.length} error(s)\n`);
        process.exitCode = 1;
      }
    });
  cmd
    .command('export')
    .description('print a machine as code that Stately Studio imports ("Import from code")')
    .argument('<name>', 'machine name, e.g. promotion')
    .action((name: string) => {
      const m = registered[name];
      if (!m) throw new Error(`no machine ${name}; known: ${Object.keys(registered).join(', ')}`);
      process.stdout.write(
        `import { createMachine } from 'xstate';\n\nexport const machine = createMachine(${JSON.stringify(m.config, null, 2)});\n`,
      );
    });
  cmd
    .command('diagram')
    .description("print a machine as an SVG diagram: states, transitions and each event's rank")
    .argument('<name>', 'machine name, e.g. promotion')
    .addHelpText('after', '\nExample:\n  promosync machines diagram campaign > campaign.svg')
    .action((name: string) => {
      const m = registered[name];
      if (!m) throw new Error(`no machine ${name}; known: ${Object.keys(registered).join(', ')}`);
      process.stdout.write(`${renderMachineSvg(analyzeMachine(name, m))}\n`);
    });
}
