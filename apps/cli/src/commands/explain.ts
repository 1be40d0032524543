import { describeExpectation, describeOutcome, formatAddrExpr, runScenario, show, type Scenario, type ScenarioResult, type TargetName } from '@ccmem/scenario';
import type { CliIo } from '../io.js';
import { EXIT_FAIL, EXIT_INVALID, EXIT_OK, extraMismatches, loadFiles, reportInvalid, resultJson, targetsOrReport, toJson } from './shared.js';

/**
 * The `--json` form of an explanation: the run's `--json` result (as `ccmem run --json` has it)
 * plus the scenario's description, and in every step its arguments (as written, names
 * unresolved) and its kernel events.
 */
/** step arguments as the file wrote them: `name+offset` addresses back to their text */
function writtenArgs(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(writtenArgs);
  if (typeof v === 'object' && v !== null) {
    const o = v as Record<string, unknown>;
    if (typeof o.ref === 'string' && typeof o.offset === 'number') return formatAddrExpr({ ref: o.ref, offset: o.offset });
    return Object.fromEntries(Object.entries(o).map(([k, x]) => [k, writtenArgs(x)]));
  }
  return v;
}

export function explainJson(scenario: Scenario, r: ScenarioResult) {
  const base = resultJson(r);
  return {
    ...base,
    ...(scenario.description !== undefined && { description: scenario.description.trim() }),
    steps: base.steps.map((s, i) => {
      const step = r.steps[i]!;
      const written = step.actor === undefined ? scenario.steps[step.index] : undefined;
      return { ...s, ...(written && { args: writtenArgs(written.args) }), events: step.outcome.events ?? [] };
    }),
  };
}

export async function explainCommand(io: CliIo, file: string, opts: { target: TargetName; json?: boolean }): Promise<number> {
  const { loaded, errors } = await loadFiles([file]);
  if (errors.length) return reportInvalid(io, errors, Boolean(opts.json));
  const [target] = (await targetsOrReport(io, opts.target)) ?? [];
  if (!target) return EXIT_INVALID;
  const { scenario } = loaded[0]!;
  const c = io.color;
  const r = runScenario(scenario, target, { file: loaded[0]!.file, trace: true });
  if (opts.json) {
    io.out(toJson(explainJson(scenario, r)));
    return r.pass ? EXIT_OK : EXIT_FAIL;
  }
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
    for (const m of extraMismatches(s)) io.out(`    ${c.red(m)}`);
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
