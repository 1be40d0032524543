/**
 * `ccmem diff <files…>`: run each scenario on the model (under the host's kernel profile) and
 * on the machine's real KVM, compare the outcomes step by step (errno, values, exit fields,
 * dirty pages) and ignore the files' expectations. Exit 1 with a readable diff on any
 * disagreement, 0 when everything the host can run agrees, 2 on invalid input or a missing
 * target. `--json` prints
 * `{"scenarios":[{"file","name","agree","differences":[{"index","op","model","kvm","fields"}],"skipped":[…]}],"agreed","disagreed","skipped"}`
 * (docs/scenarios.md, "ccmem diff").
 */
import { buildDiffReport, comparedStats, createModelTarget, describeOutcome, diffScenario, type ReportData, type Scenario, type ScenarioDiff, type Target } from '@ccmem/scenario';
import type { CliIo } from '../io.js';
import { detectedHostProfile, EXIT_FAIL, EXIT_INVALID, EXIT_OK, invalid, loadFiles, nothingRan, reportInvalid, targetsOrReport, tick, toJson } from './shared.js';
import { getTargetFactory } from '../targets.js';
import { writeDiffReports } from './report.js';
import pc from 'picocolors';
import type { ReportOptions } from '../define/options.js';
import type { ReportCase } from '../report/cases.js';
import { emitReport, jsonOnStdout, reportUsageError, textOnStdout } from '../report/emit.js';

const noColor = pc.createColors(false);

export interface DiffOptions extends ReportOptions {
  json?: boolean;
  /** compare the MMU statistics each step changes too */
  stats?: boolean;
  /** write an HTML report (model and kvm side by side, the model's state after each step) here */
  report?: string;
  /** exit 0 even when every scenario was skipped */
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

/** the text lines of one scenario's differences (the text output and report files) */
function differenceLines(d: ScenarioDiff, c: CliIo['color']): string[] {
  const lines: string[] = [];
  for (const x of d.differences) {
    const step = x.index >= 0 ? `step ${x.index} ${c.bold(x.op)}` : c.bold(x.op);
    lines.push(`    ${step}: ${c.red(x.fields.join('; '))}`);
    lines.push(`      model: ${describeOutcome(x.model)}${ruleOf(x.model)}`);
    lines.push(`      kvm:   ${describeOutcome(x.kvm)}${ruleOf(x.kvm)}`);
  }
  return lines;
}

/** the report case of one scenario's comparison */
function diffCase(d: ScenarioDiff, timeMs: number): ReportCase {
  const base = { suite: 'ccmem diff (model vs kvm)', classname: d.file, name: d.name, timeMs };
  if (d.agree && d.compared === 0 && d.skipped.length > 0) return { ...base, status: 'skip', message: d.skipped[0]! };
  if (d.agree) return { ...base, status: 'pass' };
  const first = d.differences[0];
  return {
    ...base,
    status: 'fail',
    message: first ? `step ${first.index} ${first.op}: ${first.fields.join('; ')}` : 'the model and kvm disagree',
    details: differenceLines(d, noColor).join('\n'),
  };
}

export async function diffCommand(io: CliIo, files: string[], opts: DiffOptions): Promise<number> {
  const usage = reportUsageError(opts);
  if (usage) return invalid(io, usage);
  const json = jsonOnStdout(opts);
  const text = textOnStdout(opts);
  const { loaded, errors } = await loadFiles(files);
  if (errors.length) return reportInvalid(io, errors, json);
  const targets = await targetsOrReport(io, 'model', 'kvm');
  if (!targets) return EXIT_INVALID;
  const [baseModel, kvm] = targets as [Target, Target];
  const c = io.color;
  // the model follows this host: `profile: host` (and every scenario without a profile) runs
  // under the profile the kvm target detected
  // (no /dev/kvm: no profile, and every scenario reports it as skipped)
  const hostProfile = detectedHostProfile(kvm);
  const model = hostProfile ? (await getTargetFactory('model'))({ hostProfile }) : baseModel;
  const stats = opts.stats && hostProfile ? comparedStats(hostProfile) : undefined;
  if (opts.stats && !hostProfile) io.err(`${c.yellow('warning')} --stats: no host profile was detected, so no stats are compared`);
  const diffs: ScenarioDiff[] = [];
  const times: number[] = [];
  let agreed = 0;
  let disagreed = 0;
  let skipped = 0;
  // --report: the model runs with snapshots (buildDiffReport), and that one comparison is both
  // the report page and the result below
  const reportModel = opts.report !== undefined ? createModelTarget(hostProfile ? { hostProfile } : {}) : null;
  const pages: { file: string; scenario: Scenario; data: ReportData }[] = [];
  for (const { file, scenario } of loaded) {
    const t0 = performance.now();
    let d: ScenarioDiff;
    if (reportModel) {
      const built = buildDiffReport(scenario, reportModel, kvm, { file, ...(stats && { stats }) });
      pages.push({ file, scenario, data: built.data });
      d = built.diff;
    } else d = diffScenario(scenario, model, kvm, { file, ...(stats && { stats }) });
    times.push(performance.now() - t0);
    diffs.push(d);
    await tick();
    const nothingRan = d.agree && d.compared === 0 && d.skipped.length > 0;
    if (nothingRan) skipped++;
    else if (d.agree) agreed++;
    else disagreed++;
    if (!text) continue;
    const where = c.dim(`(${file})`);
    if (nothingRan) {
      io.out(`${c.yellow('-')} ${d.name} ${where} ${c.yellow(`skipped: ${d.skipped[0]}`)}`);
      continue;
    }
    const partly = d.skipped.length ? c.yellow(` — compared ${d.compared} steps, then ${d.skipped[0]}`) : '';
    io.out(`${d.agree ? c.green('=') : c.red('≠')} ${d.name} ${where}${partly}`);
    for (const l of differenceLines(d, c)) io.out(l);
  }
  const doc = () => toJson({ scenarios: diffs.map(diffJson), agreed, disagreed, skipped });
  if (opts.json) {
    io.out(doc());
  } else if (text) {
    const parts = [c.green(`${agreed} agree`), disagreed ? c.red(`${disagreed} disagree`) : '0 disagree'];
    if (skipped) parts.push(c.yellow(`${skipped} skipped`));
    const steps = diffs.reduce((n, d) => n + d.compared, 0);
    const nstats = diffs.reduce((n, d) => n + d.statsCompared, 0);
    io.out(`\n${parts.join(', ')} ${c.dim(`(model under the host profile vs real KVM: ${steps} steps${stats ? `, ${nstats} stat changes` : ''} compared)`)}`);
  }
  if (opts.report !== undefined) writeDiffReports(io, pages, opts.report);
  if (!emitReport(io, opts, 'ccmem diff', () => diffs.map((d, i) => diffCase(d, times[i] ?? 0)), doc)) return EXIT_INVALID;
  if (disagreed > 0) return EXIT_FAIL;
  if (agreed === 0) return nothingRan(io, 'every scenario was skipped', opts.allowEmpty);
  return EXIT_OK;
}

function ruleOf(o: { detail?: Record<string, unknown> }): string {
  return typeof o.detail?.check === 'string' ? `  [${o.detail.check}]` : '';
}
