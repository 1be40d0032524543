/**
 * `ccmem diff <files…>`: run each scenario on the model (under the host's kernel profile) and
 * on the machine's real KVM, compare the outcomes step by step (errno, values, exit fields,
 * dirty pages) and ignore the files' expectations. Exit 1 with a readable diff on any
 * disagreement, 0 when everything the host can run agrees, 2 on invalid input or a missing
 * target. `--json` prints
 * `{"scenarios":[{"file","name","agree","differences":[{"index","op","model","kvm","fields"}],"skipped":[…]}],"agreed","disagreed","skipped"}`
 * (docs/scenarios.md, "ccmem diff").
 */
import { describeOutcome, diffScenario, hostProfileMismatch, modelProfileName, type ScenarioDiff, type Target } from '@ccmem/scenario';
import type { CliIo } from '../io.js';
import { Command } from 'commander';
import { EXIT_FAIL, EXIT_INVALID, EXIT_OK, loadFiles, reportInvalid, targetsOrReport, toJson } from './shared.js';

export interface DiffOptions {
  json?: boolean;
}

/** the --json form of one scenario's comparison */
export function diffJson(d: ScenarioDiff) {
  return {
    file: d.file,
    name: d.name,
    agree: d.agree,
    differences: d.differences.map(({ index, op, model, kvm, fields }) => ({ index, op, model, kvm, fields })),
    skipped: d.skipped,
  };
}

export async function diffCommand(io: CliIo, files: string[], opts: DiffOptions): Promise<number> {
  const { loaded, errors } = loadFiles(files);
  if (errors.length) return reportInvalid(io, errors, Boolean(opts.json));
  const targets = await targetsOrReport(io, 'model', 'kvm');
  if (!targets) return EXIT_INVALID;
  const [model, kvm] = targets as [Target, Target];
  const c = io.color;
  // the model's `host` profile should be what this host is; say so when it is not
  let hostProfile: Parameters<typeof hostProfileMismatch>[0] | undefined;
  try {
    hostProfile = (kvm as Target & { profile?: Parameters<typeof hostProfileMismatch>[0] }).profile;
  } catch {
    hostProfile = undefined; // no /dev/kvm: every scenario reports it as skipped
  }
  if (hostProfile && typeof hostProfile === 'object') {
    const off = hostProfileMismatch(hostProfile, modelProfileName('host'));
    if (off.length) io.err(`${c.yellow('warning')} the model's host profile differs from this host (model vs host): ${off.join('; ')}`);
  }
  const diffs: ScenarioDiff[] = [];
  let agreed = 0;
  let disagreed = 0;
  let skipped = 0;
  for (const { file, scenario } of loaded) {
    const d = diffScenario(scenario, model, kvm, { file });
    diffs.push(d);
    const nothingRan = d.agree && d.compared === 0 && d.skipped.length > 0;
    if (nothingRan) skipped++;
    else if (d.agree) agreed++;
    else disagreed++;
    if (opts.json) continue;
    const where = c.dim(`(${file})`);
    if (nothingRan) {
      io.out(`${c.yellow('-')} ${d.name} ${where} ${c.yellow(`skipped: ${d.skipped[0]}`)}`);
      continue;
    }
    const partly = d.skipped.length ? c.yellow(` — compared ${d.compared} steps, then ${d.skipped[0]}`) : '';
    io.out(`${d.agree ? c.green('=') : c.red('≠')} ${d.name} ${where}${partly}`);
    for (const x of d.differences) {
      const step = x.index >= 0 ? `step ${x.index} ${c.bold(x.op)}` : c.bold(x.op);
      io.out(`    ${step}: ${c.red(x.fields.join('; '))}`);
      io.out(`      model: ${describeOutcome(x.model)}${ruleOf(x.model)}`);
      io.out(`      kvm:   ${describeOutcome(x.kvm)}${ruleOf(x.kvm)}`);
    }
  }
  if (opts.json) {
    io.out(toJson({ scenarios: diffs.map(diffJson), agreed, disagreed, skipped }));
  } else {
    const parts = [c.green(`${agreed} agree`), disagreed ? c.red(`${disagreed} disagree`) : '0 disagree'];
    if (skipped) parts.push(c.yellow(`${skipped} skipped`));
    io.out(`\n${parts.join(', ')} ${c.dim('(model under the host profile vs real KVM)')}`);
  }
  return disagreed > 0 ? EXIT_FAIL : EXIT_OK;
}

function ruleOf(o: { detail?: Record<string, unknown> }): string {
  return typeof o.detail?.check === 'string' ? `  [${o.detail.check}]` : '';
}

export function buildDiffCommand(io: CliIo, done: (code: number) => void): Command {
  return new Command('diff')
    .description('run scenario files on the model and on real KVM and show where their outcomes differ')
    .argument('<files...>', 'scenario YAML files')
    .option('--json', 'print one JSON document')
    .action(async (files: string[], opts: DiffOptions) => done(await diffCommand(io, files, opts)));
}
