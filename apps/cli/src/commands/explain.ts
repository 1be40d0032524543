import { Command, Option } from 'commander';
import { describeExpectation, describeOutcome, runScenario, show, type TargetName } from '@ccmem/scenario';
import type { CliIo } from '../io.js';
import { EXIT_FAIL, EXIT_INVALID, EXIT_OK, loadFiles, reportInvalid, targetsOrReport } from './shared.js';

export async function explainCommand(io: CliIo, file: string, opts: { target: TargetName }): Promise<number> {
  const { loaded, errors } = loadFiles([file]);
  if (errors.length) return reportInvalid(io, errors, false);
  const [target] = (await targetsOrReport(io, opts.target)) ?? [];
  if (!target) return EXIT_INVALID;
  const { scenario } = loaded[0]!;
  const c = io.color;
  const r = runScenario(scenario, target, { file, trace: true });
  io.out(c.bold(scenario.name));
  if (scenario.description) io.out(c.dim(scenario.description.trim()));
  io.out(`vm: ${r.vm_type}, provider ${r.provider}, target ${r.target}`);
  if (r.error) io.out(c.red(r.error));
  for (const s of r.steps) {
    const step = s.actor === undefined ? scenario.steps[s.index] : undefined;
    const args = step ? show(step.args) : '';
    io.out(`\n${s.pass ? c.green('✓') : c.red('✗')} ${c.bold(`${s.index} ${s.op}`)}${s.actor ? ` [${s.actor}]` : ''} ${c.dim(args)}`);
    io.out(`    → ${describeOutcome(s.outcome)}${s.pass ? '' : `   (expected ${describeExpectation(s.expected)})`}`);
    if (s.rule) io.out(`    kernel rule: ${s.rule}`);
    for (const m of s.mismatches) io.out(`    ${c.red(m)}`);
    const events = s.outcome.events ?? [];
    if (events.length === 0) io.out(c.dim('    (no kernel events)'));
    for (const e of events) {
      const fields = Object.entries(e.fields)
        .map(([k, v]) => `${k}=${show(v)}`)
        .join(' ');
      io.out(`    ${c.cyan(e.name)} ${fields}`);
    }
  }
  if (r.skipped) io.out(c.yellow(`\nskipped: ${r.skipped}`));
  return r.pass ? EXIT_OK : EXIT_FAIL;
}

export function buildExplainCommand(io: CliIo, done: (code: number) => void): Command {
  return new Command('explain')
    .description('run a scenario and tell, step by step, the kernel events each step caused')
    .argument('<file>', 'scenario YAML file')
    .addOption(new Option('--target <target>', 'where to run it').choices(['model', 'kvm']).default('model'))
    .action(async (file: string, opts: { target: TargetName }) => done(await explainCommand(io, file, opts)));
}
