/**
 * Builds the data of a `ccmem report` page: runs the scenario (or replays an exploration
 * schedule) on the model and takes a snapshot of its state (snapshotVm) after every step or
 * phase. The snapshots come from the model that ran the steps, never from a second one.
 */
import type { TraceEvent } from '@ccmem/core';
import { createModelTarget, type ModelTarget } from '../model-target.js';
import { describeExpectation, describeOutcome, runScenario, show, type ScenarioResult, type StepResult } from '../runner.js';
import type { Provider, Scenario, Step, VmType } from '../schema.js';
import type { Outcome, ResolvedStep, RunContext, Support, Target, TargetOpName } from '../target.js';
import { diffScenario, type ScenarioDiff } from '../differential.js';
import { explore, formatSchedule, parseSchedule, runOnce, type ExploreOptions, type PhaseReport } from '../explore/engine.js';
import type { ExploreResultJson } from '../explore/merge.js';
import { REPORT_FORMAT, type ReportData, type ReportEvent, type ReportOutcome, type ReportSchedule, type ReportStep, type SchedulePoint } from './data.js';
import { snapshotVm, type StateSnapshot } from './snapshot.js';

/** distinct snapshots, each stored once (a step that changes nothing reuses the one before) */
export class StateTable {
  readonly states: StateSnapshot[] = [];
  private readonly index = new Map<string, number>();
  add(s: StateSnapshot): number {
    const key = JSON.stringify(s);
    let i = this.index.get(key);
    if (i === undefined) {
      i = this.states.length;
      this.states.push(s);
      this.index.set(key, i);
    }
    return i;
  }
}

/**
 * A model target that takes a snapshot of the model after every step it executes: the
 * runner drives it like any target; `stateAfter` maps a step's index to its state.
 */
export class SnapshotTarget implements Target {
  readonly name = 'model' as const;
  readonly stateAfter = new Map<number, number>();
  readonly failures: string[] = [];

  constructor(
    readonly inner: ModelTarget,
    readonly table: StateTable,
  ) {}

  begin(scenario: Scenario, ctx: RunContext): void {
    this.inner.begin(scenario, ctx);
  }
  execute(step: ResolvedStep, ctx: RunContext): Outcome {
    const outcome = this.inner.execute(step, ctx);
    const vm = this.inner.vm;
    if (vm) {
      try {
        this.stateAfter.set(step.index, this.table.add(snapshotVm(vm)));
      } catch (e) {
        this.failures.push(`no state after step ${step.index}: ${e instanceof Error ? e.message : String(e)}`);
      }
    }
    return outcome;
  }
  end(): void {
    this.inner.end();
  }
  supports(op: TargetOpName, ctx: RunContext): Support {
    return this.inner.supports?.(op, ctx) ?? { ok: true };
  }
  stats(): Record<string, number> {
    return this.inner.stats();
  }
  checkInvariant(name: string, ctx: RunContext): string[] {
    return this.inner.checkInvariant?.(name, ctx) ?? [];
  }
}

export function reportEvents(events: readonly TraceEvent[] | undefined): ReportEvent[] {
  return (events ?? []).map((e) => ({ name: e.name, fields: Object.fromEntries(Object.entries(e.fields).map(([k, v]) => [k, show(v)])) }));
}

function reportOutcome(target: string, s: StepResult): ReportOutcome {
  return {
    target,
    pass: s.pass,
    outcome: describeOutcome(s.outcome),
    expected: describeExpectation(s.expected),
    mismatches: s.mismatches,
    ...(s.rule !== undefined && { rule: s.rule }),
    ...(s.skipped !== undefined && { skipped: s.skipped }),
    events: reportEvents(s.outcome.events),
    ...(s.outcome.stats !== undefined && { stats: s.outcome.stats }),
  };
}

/** the step's arguments as the file wrote them, or '' for an invariant check */
function argsOf(result: StepResult, scenario: Scenario): string {
  if (result.op.startsWith('invariant ')) return '';
  if (result.actor === undefined) {
    const step = scenario.steps[result.index];
    return step ? show(step.args) : '';
  }
  // a concurrent step (the runner numbers them in its round-robin order): found by its line
  const actorSteps: Step[] = scenario.concurrent?.actors[result.actor] ?? [];
  const step = actorSteps.find((s) => s.op === result.op && s.line === result.line);
  return step ? show(step.args) : '';
}

function verdictOf(r: ScenarioResult): string {
  if (r.error) return `error: ${r.error}`;
  const failed = r.steps.filter((s) => !s.pass).length;
  if (r.skipped !== undefined) return `skipped: ${r.skipped}`;
  return failed ? `${failed} of ${r.steps.length} steps failed` : `all ${r.steps.length} steps passed`;
}

export interface RunReportOptions {
  file?: string;
  /** run as this VM type / provider instead of the scenario's own (a matrix cell) */
  vmType?: VmType;
  provider?: Provider;
  /** the model target to wrap (default: a fresh one) */
  model?: ModelTarget;
}

/** The run view: the scenario on the model, with the state after every step. */
export function buildRunReport(scenario: Scenario, opts: RunReportOptions = {}): ReportData {
  const table = new StateTable();
  const target = new SnapshotTarget(opts.model ?? createModelTarget(), table);
  const r = runScenario(scenario, target, {
    trace: true,
    stats: true,
    ...(opts.file !== undefined && { file: opts.file }),
    ...(opts.vmType !== undefined && { vmType: opts.vmType }),
    ...(opts.provider !== undefined && { provider: opts.provider }),
  });
  let last: number | null = null;
  const steps: ReportStep[] = r.steps.map((s) => {
    const st = target.stateAfter.get(s.index) ?? last;
    last = st;
    return {
      index: s.index,
      op: s.op,
      ...(s.actor !== undefined && { actor: s.actor }),
      ...(s.line !== undefined && { line: s.line }),
      args: argsOf(s, scenario),
      result: reportOutcome('model', s),
      state: st,
    };
  });
  return {
    format: REPORT_FORMAT,
    kind: 'run',
    title: scenario.name,
    ...(scenario.description !== undefined && { description: scenario.description.trim() }),
    file: opts.file ?? '',
    vm: { type: r.vm_type, provider: r.provider, ...(scenario.vm.profile !== undefined && { profile: scenario.vm.profile }) },
    verdict: verdictOf(r),
    pass: r.pass,
    steps,
    states: table.states,
    notes: [...target.failures, ...(r.error ? [r.error] : [])],
  };
}

export interface DiffReportOptions {
  file?: string;
  /** MMU statistics to compare (comparedStats()) */
  stats?: readonly string[];
}

/** The diff view: model and kvm outcomes side by side, the model's state after each step. */
export function buildDiffReport(scenario: Scenario, model: ModelTarget, kvm: Target, opts: DiffReportOptions = {}): { data: ReportData; diff: ScenarioDiff } {
  const table = new StateTable();
  const target = new SnapshotTarget(model, table);
  const d = diffScenario(scenario, target, kvm, { trace: true, ...(opts.file !== undefined && { file: opts.file }), ...(opts.stats && { stats: opts.stats }) });
  const byIndex = new Map(d.differences.map((x) => [x.index, x.fields]));
  const n = Math.max(d.model.steps.length, d.kvm.steps.length);
  const steps: ReportStep[] = [];
  let last: number | null = null;
  for (let i = 0; i < n; i++) {
    const m = d.model.steps[i];
    const k = d.kvm.steps[i];
    const s = (m ?? k)!;
    const st: number | null = target.stateAfter.get(s.index) ?? last;
    last = st;
    const empty = (t: string): ReportOutcome => ({ target: t, pass: false, outcome: 'did not run', expected: '', mismatches: [], events: [] });
    const diffs = byIndex.get(s.index);
    steps.push({
      index: s.index,
      op: s.op,
      ...(s.actor !== undefined && { actor: s.actor }),
      ...(s.line !== undefined && { line: s.line }),
      args: argsOf(s, scenario),
      result: m ? reportOutcome('model', m) : empty('model'),
      kvm: k ? reportOutcome('kvm', k) : empty('kvm'),
      ...(diffs && { differences: diffs }),
      state: st,
    });
  }
  const notes = [...target.failures, ...d.skipped.map((s) => `kvm: ${s}`)];
  for (const x of d.differences) if (x.index < 0) notes.push(x.fields.join('; '));
  const verdict = d.agree
    ? d.compared === 0 && d.skipped.length
      ? `nothing compared: ${d.skipped[0]}`
      : `model and kvm agree on ${d.compared} steps`
    : `${d.differences.length} disagreement${d.differences.length === 1 ? '' : 's'} in ${d.compared} compared steps`;
  return {
    diff: d,
    data: {
      format: REPORT_FORMAT,
      kind: 'diff',
      title: scenario.name,
      ...(scenario.description !== undefined && { description: scenario.description.trim() }),
      file: opts.file ?? '',
      vm: { type: d.model.vm_type, provider: d.model.provider, ...(scenario.vm.profile !== undefined && { profile: scenario.vm.profile }) },
      verdict,
      pass: d.agree,
      steps,
      states: table.states,
      notes,
    },
  };
}

/** how long buildExploreReport searches for a schedule that reaches an observation */
export const OBSERVATION_SEARCH_MS = 30_000;

export interface ExploreReportOptions {
  file?: string;
  /** the exploration's name (a built-in's name) */
  name?: string;
  /** draw this schedule (the --replay form) instead of the counterexample */
  schedule?: string;
}

/**
 * The exploration view: the setup steps as a run, then the schedule of the counterexample
 * (shrunk and as found), or the chosen schedule, or, when the search found no violation, the
 * first schedule that reached an observation; every phase with the state after it.
 */
export function buildExploreReport(scenario: Scenario, options: ExploreOptions, result: ExploreResultJson, opts: ExploreReportOptions = {}): ReportData {
  const table = new StateTable();
  // the setup steps as the run view shows them (the same model, without the concurrent block)
  const { concurrent: _c, ...setupOnly } = scenario;
  void _c;
  const setup = buildRunReportInto(setupOnly as Scenario, table, opts.file);
  const schedules: ReportSchedule[] = [];
  const show1 = (title: string, text: string, note?: string) => schedules.push(replayForReport(scenario, options, text, title, table, note));
  if (opts.schedule !== undefined) show1('chosen schedule', opts.schedule);
  else if (result.violations.length) {
    const v = result.violations[0]!;
    show1(v.original !== undefined ? 'counterexample (shrunk)' : 'counterexample', v.schedule);
    if (v.original !== undefined) show1('counterexample as found', v.original);
  } else {
    // no violation: the first schedule that reached an observation, else the first schedule
    let first: { schedule: number[]; observed: string[] } | null = null;
    const { onProgress: _p, ...plain } = options;
    void _p;
    explore(scenario, {
      ...plain,
      // a second search only to pick a schedule to draw: bounded in time
      timeLimitMs: Math.min(plain.timeLimitMs ?? OBSERVATION_SEARCH_MS, OBSERVATION_SEARCH_MS),
      shrink: false,
      onRun: (r) => {
        if (first === null && r.observations.size > 0) first = { schedule: r.schedule, observed: [...r.observations] };
      },
    });
    const f = first as { schedule: number[]; observed: string[] } | null;
    if (f) show1('first schedule with an observation', formatSchedule(scenario, f.schedule), `reaches ${f.observed.join(', ')}`);
    else show1('a schedule (no violation found)', '');
  }
  const actors = Object.keys(scenario.concurrent?.actors ?? {});
  const s = result.stats;
  const summary = `${result.mode}${result.bound !== undefined ? ` bound ${result.bound}` : ''}: ${result.schedules} schedules, ${s.steps} steps, ${result.result}`;
  return {
    format: REPORT_FORMAT,
    kind: 'explore',
    title: opts.name ?? scenario.name,
    ...(scenario.description !== undefined && { description: scenario.description.trim() }),
    file: opts.file ?? '',
    vm: setup.vm,
    verdict: result.result === 'violation' ? `violation: ${result.violations[0]?.violation ?? ''}` : result.result === 'pass' ? 'no violation in any schedule' : 'incomplete: no violation in the schedules explored',
    pass: result.result === 'pass',
    steps: setup.steps,
    states: table.states,
    explore: {
      actors,
      summary,
      observations: s.observations,
      invariants: (scenario.concurrent?.invariants ?? []).map((x) => (typeof x === 'string' ? x : 'outcome' in x ? `outcome of ${x.outcome.actor}${x.outcome.steps ? ` steps ${x.outcome.steps.join(', ')}` : ''}${x.outcome.after ? ` after ${x.outcome.after.actor} step ${x.outcome.after.step}` : ''}${x.outcome.before ? ` before ${x.outcome.before.actor} step ${x.outcome.before.step}` : ''}: one of ${x.outcome.one_of.map((e) => show(e)).join(' | ')}` : `assert ${show(x.assert)}`)),
      schedules,
    },
    notes: setup.notes,
  };
}

function buildRunReportInto(scenario: Scenario, table: StateTable, file?: string): Pick<ReportData, 'steps' | 'vm' | 'notes'> {
  const target = new SnapshotTarget(createModelTarget(), table);
  const r = runScenario(scenario, target, { trace: true, stats: true, ...(file !== undefined && { file }) });
  let last: number | null = null;
  return {
    vm: { type: r.vm_type, provider: r.provider, ...(scenario.vm.profile !== undefined && { profile: scenario.vm.profile }) },
    steps: r.steps.map((s) => {
      const st = target.stateAfter.get(s.index) ?? last;
      last = st;
      return { index: s.index, op: s.op, ...(s.line !== undefined && { line: s.line }), args: argsOf(s, scenario), result: reportOutcome('model', s), state: st };
    }),
    notes: target.failures,
  };
}

/** replay one schedule with a snapshot after every phase */
function replayForReport(scenario: Scenario, options: ExploreOptions, text: string, title: string, table: StateTable, note?: string): ReportSchedule {
  const schedule = parseSchedule(scenario, text);
  const actors = Object.keys(scenario.concurrent?.actors ?? {});
  const observe = (options.observe ?? []).map((o) => ({ name: o.name, re: new RegExp(o.pattern) }));
  const points: SchedulePoint[] = [];
  let seen = 0;
  let records = 0;
  let endState: number | null = null;
  const onPhase = (p: PhaseReport) => {
    const w = p.world;
    const all = w.tracedEvents;
    const events = reportEvents(all.slice(seen));
    seen = all.length;
    let outcome: string | undefined;
    if (w.records.length > records) {
      outcome = describeOutcome(w.records[w.records.length - 1]!.outcome);
      records = w.records.length;
    }
    const observed = [...new Set(p.messages.flatMap((m) => observe.filter((o) => o.re.test(m)).map((o) => o.name)))];
    const firstViolation = p.violation !== null && !points.some((x) => x.violation);
    let state: number | null = null;
    try {
      state = table.add(snapshotVm(w.vm));
    } catch {
      state = points.length ? points[points.length - 1]!.state : null;
    }
    endState = state;
    points.push({
      actor: actors[p.actor] ?? String(p.actor),
      step: p.step,
      op: p.op,
      phase: p.phase,
      events,
      messages: [...p.messages],
      observed,
      violation: firstViolation,
      state,
      ...(outcome !== undefined && { outcome }),
    });
  };
  const r = runOnce(scenario, schedule, {
    bound: schedule.length,
    trace: true,
    onPhase,
    ...(options.livenessBound !== undefined && { livenessBound: options.livenessBound }),
    ...(options.observe && { observe: options.observe }),
    ...(options.faultInjection && { faultInjection: options.faultInjection }),
    ...(options.tdxBusy && { tdxBusy: options.tdxBusy }),
    ...(options.fullChecks && { fullChecks: true }),
  });
  if (r.violation !== null && !points.some((x) => x.violation)) {
    // found after the last phase: by the final checks (liveness) or the deterministic completion
    points.push({ actor: '', step: -1, op: 'end of run', phase: 'final checks', events: reportEvents(r.events.slice(seen)), messages: [r.violation], observed: [], violation: true, state: endState });
  }
  return { title, schedule: formatSchedule(scenario, r.schedule), violation: r.violation, ...(note !== undefined && { note }), points, endState };
}
