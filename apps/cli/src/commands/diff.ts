/**
 * `ccmem diff <files…>`: run each scenario on the model (under the host's kernel profile) and
 * on the machine's real KVM, compare the outcomes step by step (errno, values, exit fields,
 * dirty pages) and ignore the files' expectations. Exit 1 with a readable diff on any
 * disagreement, 0 when everything the host can run agrees, 2 on invalid input or a missing
 * target. `--json` prints
 * `{"scenarios":[{"file","name","agree","differences":[{"index","op","model","kvm","fields"}],"skipped":[…]}],"agreed","disagreed","skipped"}`
 * (docs/scenarios.md, "ccmem diff").
 */
import { comparedStats, describeOutcome, diffScenario, type ScenarioDiff, type Target } from '@ccmem/scenario';
import type { KernelProfile } from '@ccmem/core';
import type { CliIo } from '../io.js';
import { Command } from 'commander';
import { ALLOW_EMPTY_HELP, EXIT_FAIL, EXIT_INVALID, EXIT_OK, loadFiles, nothingRan, reportInvalid, targetsOrReport, toJson } from './shared.js';
import { getTargetFactory } from '../targets.js';

export interface DiffOptions {
  json?: boolean;
  /** compare the MMU statistics each step changes too */
  stats?: boolean;
  allowEmpty?: boolean;
}

/** the --json form of one scenario's comparison */
export function diffJson(d: ScenarioDiff) {
  return {
    file: d.file,
    name: d.name,
    agree: d.agree,
    differences: d.differences.map(({ index, op, model, kvm, fields }) => ({ index, op, model, kvm, fields })),
    skipped: d.skipped,
    compared: d.compared,
    stats_compared: d.statsCompared,
  };
}

export async function diffCommand(io: CliIo, files: string[], opts: DiffOptions): Promise<number> {
  const { loaded, errors } = loadFiles(files);
  if (errors.length) return reportInvalid(io, errors, Boolean(opts.json));
  const targets = await targetsOrReport(io, 'model', 'kvm');
  if (!targets) return EXIT_INVALID;
  const [baseModel, kvm] = targets as [Target, Target];
  const c = io.color;
  // the model follows this host: `profile: host` (and every scenario without a profile) runs
  // under the profile the kvm target detected
  let hostProfile: KernelProfile | undefined;
  try {
    hostProfile = (kvm as Target & { profile?: KernelProfile }).profile;
  } catch {
    hostProfile = undefined; // no /dev/kvm: every scenario reports it as skipped
  }
  const detected = hostProfile !== undefined && typeof hostProfile === 'object';
  const model = detected ? (await getTargetFactory('model'))({ hostProfile: hostProfile! }) : baseModel;
  const stats = opts.stats && detected ? comparedStats(hostProfile!) : undefined;
  if (opts.stats && !detected) io.err(`${c.yellow('warning')} --stats: no host profile was detected, so no stats are compared`);
  const diffs: ScenarioDiff[] = [];
  let agreed = 0;
  let disagreed = 0;
  let skipped = 0;
  for (const { file, scenario } of loaded) {
    const d = diffScenario(scenario, model, kvm, { file, ...(stats && { stats }) });
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
    const steps = diffs.reduce((n, d) => n + d.compared, 0);
    const nstats = diffs.reduce((n, d) => n + d.statsCompared, 0);
    io.out(`\n${parts.join(', ')} ${c.dim(`(model under the host profile vs real KVM: ${steps} steps${stats ? `, ${nstats} stat changes` : ''} compared)`)}`);
  }
  if (disagreed > 0) return EXIT_FAIL;
  if (agreed === 0) return nothingRan(io, 'every scenario was skipped', opts.allowEmpty);
  return EXIT_OK;
}

function ruleOf(o: { detail?: Record<string, unknown> }): string {
  return typeof o.detail?.check === 'string' ? `  [${o.detail.check}]` : '';
}

export function buildDiffCommand(io: CliIo, done: (code: number) => void): Command {
  return new Command('diff')
    .description('run scenario files on the model and on real KVM and show where their outcomes differ')
    .argument('<files...>', 'scenario YAML files')
    .option('--json', 'print one JSON document')
    .option('--stats', "also compare the MMU statistics (KVM_GET_STATS_FD) each step changes: the leaf counts, and the shadow MMU's counters on a shadow-paging host")
    .option('--allow-empty', ALLOW_EMPTY_HELP)
    .action(async (files: string[], opts: DiffOptions) => done(await diffCommand(io, files, opts)));
}
