/**
 * Runs a scenario on a Target and compares every step's outcome with its expectation.
 *
 * Comparison rules (docs/scenarios.md, "Outcomes"):
 *  - an omitted `expect` or `expect: ok` means success: no errno, no exit, no signal;
 *  - only the fields an expectation names are compared, except that an errno, an exit or a
 *    signal nobody expected fails the step (a memory-fault exit may carry KVM_RUN's errno,
 *    and a failed call may leave an exit behind, so each excuses the other);
 *  - exits compare the reason and the listed exit fields; `dirty_pages` compare as sorted lists,
 *    `dirty_gfns` in order;
 *  - `assert` steps compare every non-locator field against the state the target reports;
 *  - `ret` matches the outcome's `ret` or its other spelling in `detail.ret_alias`;
 *  - a step whose outcome lists `detail.invariants` (rules the target found broken after the
 *    step) fails with those sentences.
 * A failing step does not stop the run unless `stopOnFailure` is set.
 */
import { isKvmError, type KvmRunExit, type TraceEvent } from '@ccmem/core';
import { formatAddrExpr, formatHex, isAddrRef, resolveAddr } from './numbers.js';
import { opSpec } from './ops/index.js';
import {
  ASSERT_LOCATORS,
  EXIT_FIELD_REASON,
  EXPLORE_ONLY_INVARIANT_NAMES,
  type Expectation,
  type Invariant,
  type OutcomeInvariant,
  type Provider,
  type Scenario,
  type Step,
  type TargetName,
  type VmConfig,
  type VmType,
} from './schema.js';
import { SkipScenario, type Outcome, type ResolvedStep, type RunContext, type Target } from './target.js';

export interface RunOptions {
  /** file the scenario came from, for reports */
  file?: string;
  /** collect kernel events (Outcome.events) */
  trace?: boolean;
  /** attach the VM's MMU statistics to every step's outcome (Outcome.stats) */
  stats?: boolean;
  /** stop at the first failing step (default: continue and mark) */
  stopOnFailure?: boolean;
  /** run as this VM type / provider instead of the scenario's own (the matrix does) */
  vmType?: VmType;
  provider?: Provider;
}

export interface StepResult {
  index: number;
  /** the op as written (punch_hole stays punch_hole) */
  op: string;
  actor?: string;
  line?: number;
  pass: boolean;
  outcome: Outcome;
  expected: Expectation | Record<string, unknown>;
  /** what differed, one line each (empty when the step passed) */
  mismatches: string[];
  /** the kernel rule behind the outcome (KvmError.check) */
  rule?: string;
  skipped?: string;
}

export interface ScenarioResult {
  file: string;
  name: string;
  target: TargetName;
  vm_type: VmType;
  provider: Provider;
  /** every step passed (a skipped scenario has pass true and `skipped` set) */
  pass: boolean;
  skipped?: string;
  /** the run could not proceed (target error); implies pass false */
  error?: string;
  steps: StepResult[];
}

/** The VM a run uses: the scenario's VM, with the matrix's type/provider override. */
export function effectiveVm(scenario: Scenario, opts: Pick<RunOptions, 'vmType' | 'provider'> = {}): VmConfig {
  const vm: VmConfig = { ...scenario.vm };
  if (opts.vmType !== undefined && opts.vmType !== vm.type) {
    vm.type = opts.vmType;
    if (vm.type !== 'snp') delete vm.directmap, delete vm.rmp_timing;
    if (vm.type !== 'tdx') delete vm.huge_pages, delete vm.gpaw;
    if (vm.type !== 'sev' && vm.type !== 'sev-es') delete vm.memlock_limit, delete vm.min_sev_asid, delete vm.max_sev_asid;
  }
  if (opts.provider !== undefined) vm.provider = opts.provider;
  return vm;
}

export function runScenario(scenario: Scenario, target: Target, opts: RunOptions = {}): ScenarioResult {
  const vm = effectiveVm(scenario, opts);
  const names = new Map<string, number>();
  const ctx: RunContext = { scenario, vm, names, trace: opts.trace ?? false, stats: opts.stats ?? false };
  const result: ScenarioResult = {
    file: opts.file ?? '',
    name: scenario.name,
    target: target.name,
    vm_type: vm.type,
    provider: vm.provider ?? 'guest_memfd',
    pass: true,
    steps: [],
  };

  try {
    target.begin(scenario, ctx);
  } catch (e) {
    if (e instanceof SkipScenario) result.skipped = e.message;
    else {
      result.pass = false;
      result.error = `cannot start the VM: ${errorText(e)}`;
    }
    return result;
  }

  try {
    let index = 0;
    const runOne = (step: Step, actor?: string): 'go' | 'stop' => {
      const r = runStep(step, index++, target, ctx, names, actor);
      result.steps.push(r);
      if (r.skipped !== undefined) {
        result.skipped = `step ${r.index} (${r.op}): ${r.skipped}`;
        return 'stop';
      }
      if (!r.pass) {
        result.pass = false;
        if (opts.stopOnFailure) return 'stop';
      }
      return 'go';
    };

    let stopped = false;
    for (const step of scenario.steps) {
      if (runOne(step) === 'stop') {
        stopped = true;
        break;
      }
    }

    if (!stopped && scenario.concurrent) {
      // One interleaving: the actors take turns, one step each (round robin).
      const queues = Object.entries(scenario.concurrent.actors).map(([actor, steps]) => ({ actor, steps, next: 0 }));
      const done: ActorStepOutcome[] = [];
      let progressed = true;
      while (progressed && !stopped) {
        progressed = false;
        for (const q of queues) {
          if (q.next >= q.steps.length) continue;
          progressed = true;
          const step = q.steps[q.next]!;
          const at = index;
          const verdict = runOne(step, q.actor);
          const r = result.steps[result.steps.length - 1]!;
          done.push({ actor: q.actor, step: q.next++, op: step.op, outcome: r.outcome, start: at, end: at });
          if (verdict === 'stop') {
            stopped = true;
            break;
          }
        }
      }
      if (!stopped) {
        for (const inv of scenario.concurrent.invariants ?? []) {
          const r = checkInvariant(inv, index++, target, ctx, names, done);
          result.steps.push(r);
          if (r.skipped === undefined && !r.pass) result.pass = false;
        }
      }
    }
    if (!stopped && target.exit) {
      // the VMM exits: its VMs are destroyed, and nothing may be left behind
      let leaks: string[];
      try {
        leaks = target.exit(ctx);
      } catch (e) {
        leaks = [`the teardown failed: ${errorText(e)}`];
      }
      const expected = scenario.exit?.left_behind ?? [];
      const mismatches = compareLeftBehind(leaks, expected);
      const r: StepResult = { index: index++, op: 'exit', pass: mismatches.length === 0, outcome: { detail: { leaks } }, expected: { left_behind: expected }, mismatches };
      result.steps.push(r);
      if (!r.pass) result.pass = false;
    }
  } finally {
    try {
      target.end();
    } catch (e) {
      result.pass = false;
      result.error = `tearing the VM down failed: ${errorText(e)}`;
    }
  }
  return result;
}

function runStep(
  step: Step,
  index: number,
  target: Target,
  ctx: RunContext,
  names: Map<string, number>,
  actor?: string,
): StepResult {
  const expected: Expectation | Record<string, unknown> = step.op === 'assert' ? assertExpectation(step.args) : step.expect;
  const base = { index, op: step.op, ...(actor !== undefined && { actor }), ...(step.line !== undefined && { line: step.line }) };

  let resolved: ResolvedStep;
  try {
    resolved = resolveStep(step, index, names, actor);
  } catch (e) {
    return { ...base, pass: false, outcome: {}, expected, mismatches: [errorText(e)] };
  }

  const support = target.supports?.(resolved.op, ctx);
  if (support && !support.ok) {
    return { ...base, pass: true, outcome: { skipped: support.reason }, expected, mismatches: [], skipped: support.reason };
  }

  const { outcome, thrown } = execute(target, resolved, ctx);
  if (thrown !== undefined) return { ...base, pass: false, outcome, expected, mismatches: [thrown] };
  if ((ctx.stats || (step.op !== 'assert' && step.expect.stats !== undefined)) && target.stats && outcome.skipped === undefined) {
    outcome.stats = target.stats();
  }
  if (outcome.skipped !== undefined) {
    return { ...base, pass: true, outcome, expected, mismatches: [], skipped: outcome.skipped };
  }
  let mismatches: string[];
  try {
    mismatches = step.op === 'assert' ? compareAssert(expected as Record<string, unknown>, outcome) : compareOutcome(resolveExpect(step.expect, names), outcome);
  } catch (e) {
    mismatches = [errorText(e)];
  }
  mismatches.push(...invariantViolations(outcome));
  if (step.as !== undefined) {
    if (outcome.result !== undefined) names.set(step.as, outcome.result);
    else if (mismatches.length === 0) mismatches.push(`the step is named "${step.as}" but produced no result`);
  }
  const rule = typeof outcome.detail?.check === 'string' ? outcome.detail.check : undefined;
  return { ...base, pass: mismatches.length === 0, outcome, expected, mismatches, ...(rule !== undefined && { rule }) };
}

/** an expectation with the names in `params` (addresses of earlier steps' results) resolved */
function resolveExpect(e: Expectation, names: ReadonlyMap<string, number>): Expectation {
  if (e.params === undefined) return e;
  return { ...e, params: resolveValue(e.params, names) as Record<string, number> };
}

function execute(target: Target, step: ResolvedStep, ctx: RunContext): { outcome: Outcome; thrown?: string } {
  try {
    return { outcome: target.execute(step, ctx) };
  } catch (e) {
    // A target should report errno in the outcome; a thrown KvmError is taken as one.
    if (isKvmError(e)) return { outcome: { errno: e.code, detail: { check: e.check } } };
    const thrown = `target error: ${errorText(e)}`;
    return { outcome: { detail: { error: thrown } }, thrown };
  }
}

function checkInvariant(
  inv: Invariant,
  index: number,
  target: Target,
  ctx: RunContext,
  names: Map<string, number>,
  done: readonly ActorStepOutcome[],
): StepResult {
  if (typeof inv !== 'string' && 'outcome' in inv) {
    const o = inv.outcome;
    const base = { index, op: `invariant outcome of ${o.actor}`, expected: { one_of: o.one_of } };
    const msg = checkOutcomeInvariant(o, done);
    return { ...base, pass: msg === null, outcome: {}, mismatches: msg === null ? [] : [msg] };
  }
  if (typeof inv === 'string') {
    const base = { index, op: `invariant ${inv}`, expected: { holds: true } };
    if (EXPLORE_ONLY_INVARIANT_NAMES.includes(inv)) {
      const reason = `only ccmem explore checks invariant "${inv}" (it speaks about every interleaving)`;
      return { ...base, pass: true, outcome: { skipped: reason }, mismatches: [], skipped: reason };
    }
    if (!target.checkInvariant) {
      const reason = `target ${target.name} cannot check invariant "${inv}"`;
      return { ...base, pass: true, outcome: { skipped: reason }, mismatches: [], skipped: reason };
    }
    const violations = target.checkInvariant(inv, ctx);
    return { ...base, pass: violations.length === 0, outcome: { detail: { violations } }, mismatches: violations };
  }
  const step: Step = { op: 'assert', args: inv.assert, expect: {} };
  return runStep(step, index, target, ctx, names);
}

/**
 * The VMM exit's leftovers against the scenario's `exit.left_behind`, as multisets of sentences:
 * each one nobody expected fails the step, and so does each expected one the exit released.
 */
export function compareLeftBehind(leaks: readonly string[], expected: readonly string[]): string[] {
  const want = new Map<string, number>();
  for (const e of expected) want.set(e, (want.get(e) ?? 0) + 1);
  const out: string[] = [];
  for (const l of leaks) {
    const n = want.get(l) ?? 0;
    if (n > 0) want.set(l, n - 1);
    else out.push(expected.length === 0 ? l : `left behind, not expected: ${l}`);
  }
  for (const [e, n] of want) for (let i = 0; i < n; i++) out.push(`expected to be left behind, but released: ${e}`);
  return out;
}

/* ------------------------------------------------------------------------------------------ */
/* Resolution                                                                                 */
/* ------------------------------------------------------------------------------------------ */

/**
 * Replace every `name±offset` with its number, then apply the op's normalisation from the
 * registry (the uAPI slot encoding of `as_id`; `punch_hole` becomes `fallocate`).
 */
export function resolveStep(step: Step, index: number, names: ReadonlyMap<string, number>, actor?: string): ResolvedStep {
  const spec = opSpec(step.op);
  const resolved = resolveValue(step.args, names) as Record<string, unknown>;
  const args = spec.normalize ? (spec.normalize as (a: Record<string, unknown>) => Record<string, unknown>)(resolved) : resolved;
  return { index, op: spec.becomes ?? step.op, args, ...(actor !== undefined && { actor }) } as ResolvedStep;
}

function resolveValue(v: unknown, names: ReadonlyMap<string, number>): unknown {
  if (isAddrRef(v)) return resolveAddr(v, names);
  if (Array.isArray(v)) return v.map((x) => resolveValue(x, names));
  if (typeof v === 'object' && v !== null) {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) if (x !== undefined) out[k] = resolveValue(x, names);
    return out;
  }
  return v;
}

/* ------------------------------------------------------------------------------------------ */
/* Comparison                                                                                 */
/* ------------------------------------------------------------------------------------------ */

const EXIT_FIELDS = ['mmio', 'memory_fault', 'hypercall', 'internal', 'system_event'] as const;

/** A vendor return code that means success: 0, or a name ending in SUCCESS (TDX_SUCCESS, ...). */
function isSuccessRet(ret: unknown, alias: unknown): boolean {
  const ok = (v: unknown) => v === 0 || v === 0n || (typeof v === 'string' && /(^|_)SUCCESS$/.test(v));
  return ok(ret) || ok(alias);
}

/** Differences between what a step was expected to do and what it did; [] when it matches. */
export function compareOutcome(expectation: Expectation, outcome: Outcome): string[] {
  // `mmio`, `memory_fault`, ... imply their exit reason (as a parsed file already has it)
  const expected = withImpliedExit(expectation);
  const out: string[] = [];
  const happened = describeOutcome(outcome);
  const mismatch = (what: string) => out.push(`${what} (happened: ${happened})`);

  // errno
  if (expected.errno !== undefined) {
    if (outcome.errno !== expected.errno) mismatch(`expected errno ${expected.errno}`);
  } else if (outcome.errno !== undefined) {
    // a KVM_EXIT_MEMORY_FAULT comes with KVM_RUN's errno: EFAULT, or EHWPOISON for poison
    const memoryFaultExpected = expected.exit === 'KVM_EXIT_MEMORY_FAULT' || expected.memory_fault !== undefined;
    if (!memoryFaultExpected || (outcome.errno !== 'EFAULT' && outcome.errno !== 'EHWPOISON')) {
      mismatch(expected.exit !== undefined || hasValueFields(expected) ? `expected no errno` : 'expected success');
    }
  }

  // signal
  if (expected.signal !== undefined) {
    if (outcome.signal !== expected.signal) mismatch(`expected signal ${expected.signal}`);
  } else if (outcome.signal !== undefined) {
    mismatch(`expected no signal`);
  }
  // guest exception (#VC, #VE)
  if (expected.exception !== undefined) {
    if (outcome.exception !== expected.exception) mismatch(`expected guest exception ${expected.exception}`);
  } else if (outcome.exception !== undefined) {
    mismatch(`expected no guest exception`);
  }

  // exit
  if (expected.exit !== undefined) {
    if (outcome.exit?.reason !== expected.exit) mismatch(`expected exit ${expected.exit}`);
    else {
      for (const f of EXIT_FIELDS) {
        const want = expected[f] as Record<string, unknown> | undefined;
        if (want === undefined) continue;
        const got = (outcome.exit as unknown as Record<string, Record<string, unknown> | undefined>)[f] ?? {};
        for (const [k, v] of Object.entries(want)) {
          if (v === undefined) continue;
          if (!sameValue(v, got[k])) out.push(`expected ${f}.${k} ${show(v)}, happened ${show(got[k])}`);
        }
      }
    }
  } else if (outcome.exit !== undefined && expected.errno === undefined) {
    mismatch(`expected no exit`);
  }

  if (expected.value !== undefined && !sameValue(expected.value, outcome.value)) {
    out.push(`expected value ${show(expected.value)}, happened ${outcome.value === undefined ? happened : show(outcome.value)}`);
  }
  if (expected.dirty_pages !== undefined) {
    const want = [...expected.dirty_pages].sort((a, b) => a - b);
    const got = outcome.dirty_pages ? [...outcome.dirty_pages].sort((a, b) => a - b) : undefined;
    if (!got || want.length !== got.length || want.some((p, i) => p !== got[i])) {
      out.push(`expected dirty_pages [${want.join(', ')}], happened ${got ? `[${got.join(', ')}]` : happened}`);
    }
  }
  if (expected.status !== undefined && !sameValue(expected.status, outcome.status)) {
    out.push(`expected status [${expected.status.join(', ')}], happened ${outcome.status ? `[${outcome.status.join(', ')}]` : happened}`);
  }
  if (expected.stat !== undefined) {
    for (const [k, v] of Object.entries(expected.stat)) {
      if (v === undefined) continue;
      const got = outcome.stat?.[k as keyof NonNullable<Outcome['stat']>];
      if (!sameValue(v, got)) out.push(`expected stat.${k} ${show(v)}, happened ${got === undefined ? happened : show(got)}`);
    }
  }
  if (expected.dirty_gfns !== undefined) {
    const want = expected.dirty_gfns.map(gfnText);
    const got = outcome.dirty_gfns?.map(gfnText);
    if (!got || want.length !== got.length || want.some((g, i) => g !== got[i])) {
      out.push(`expected dirty_gfns [${want.join(', ')}], happened ${got ? `[${got.join(', ')}]` : happened}`);
    }
  }
  if (expected.stats !== undefined) {
    for (const [k, v] of Object.entries(expected.stats)) {
      const got = outcome.stats?.[k];
      if (got !== v) out.push(`expected stats.${k} ${show(v)}, happened ${got === undefined ? (outcome.stats ? 'no such stat' : 'no stats from this target') : show(got)}`);
    }
  }
  for (const f of ['gpa', 'size', 'nr_pages', 'r11'] as const) {
    const want = expected[f];
    if (want !== undefined && !sameValue(want, outcome[f])) out.push(`expected ${f} ${show(want)}, happened ${show(outcome[f])}`);
  }
  if (expected.params !== undefined) {
    for (const [k, v] of Object.entries(expected.params)) {
      // names are resolved by runStep(); an invariant's `one_of` has no names to resolve them with
      if (isAddrRef(v)) {
        out.push(`expected params.${k} ${formatAddrExpr(v)}: a name cannot be resolved here`);
        continue;
      }
      const got = outcome.params?.[k];
      if (!sameValue(v, got)) out.push(`expected params.${k} ${show(v)}, happened ${got === undefined ? (outcome.params ? 'no such field' : happened) : show(got)}`);
    }
  }
  // a vendor return code matches by number or by name: the target may give the other
  // spelling in detail.ret_alias (e.g. ret 6 with alias FAIL_SIZEMISMATCH)
  if (expected.ret !== undefined) {
    if (!sameValue(expected.ret, outcome.ret) && !sameValue(expected.ret, outcome.detail?.ret_alias)) {
      out.push(`expected ret ${show(expected.ret)}, happened ${show(outcome.ret)}`);
    }
  } else if (outcome.ret !== undefined && !isSuccessRet(outcome.ret, outcome.detail?.ret_alias)) {
    // an instruction or TDCALL that failed fails a step that did not say it would
    mismatch('expected a successful return code');
  }
  return out;
}

function withImpliedExit(e: Expectation): Expectation {
  if (e.exit !== undefined) return e;
  for (const f of EXIT_FIELDS) if (e[f] !== undefined) return { ...e, exit: EXIT_FIELD_REASON[f] };
  return e;
}

/**
 * A target may check its own invariants after a step and list the rules the step broke in
 * `detail.invariants` (sentences); such a step fails with them, whatever was expected.
 */
export function invariantViolations(outcome: Outcome): string[] {
  const inv = outcome.detail?.invariants;
  if (!Array.isArray(inv)) return [];
  return inv.map((v) => `invariant violated: ${String(v)}`);
}

function hasValueFields(e: Expectation): boolean {
  return e.value !== undefined || e.stat !== undefined || e.status !== undefined || e.dirty_pages !== undefined || e.dirty_gfns !== undefined || e.gpa !== undefined || e.size !== undefined || e.nr_pages !== undefined || e.r11 !== undefined || e.params !== undefined || e.ret !== undefined || e.stats !== undefined;
}

/** the expected state an `assert` step names: every field that is not a locator */
function assertExpectation(args: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(args)) {
    if (!(ASSERT_LOCATORS as readonly string[]).includes(k) && v !== undefined) out[k] = v;
  }
  return out;
}

function compareAssert(expected: Record<string, unknown>, outcome: Outcome): string[] {
  if (outcome.errno !== undefined) return [`the state could not be inspected (happened: ${describeOutcome(outcome)})`];
  const out: string[] = [];
  compareFields(expected, outcome.detail ?? {}, '', out);
  return out;
}

/** a mapping of expected values compares only the sub-fields it names, at any depth */
function compareFields(expected: Record<string, unknown>, state: Record<string, unknown>, prefix: string, out: string[]): void {
  for (const [k, want] of Object.entries(expected)) {
    const name = prefix + k;
    if (!(k in state)) out.push(`expected ${name} ${show(want)}, the target reported no ${name}`);
    else if (isFieldMap(want)) {
      const got = state[k];
      if (isFieldMap(got)) compareFields(want, got, `${name}.`, out);
      else out.push(`expected ${name} to hold ${Object.keys(want).join(', ')}, happened ${show(got)}`);
    } else if (!sameValue(want, state[k])) out.push(`expected ${name} ${show(want)}, happened ${show(state[k])}`);
  }
}

function isFieldMap(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * numbers, bigints and numeric strings compare by value; lists element-wise; mappings field by
 * field (the same fields, each the same value: `[{ slot: 1 }]` is not `[{ slot: 2 }]`, which
 * as text would both be "[object Object]"); the rest as text
 */
export function sameValue(a: unknown, b: unknown): boolean {
  if (Array.isArray(a) || Array.isArray(b)) {
    return Array.isArray(a) && Array.isArray(b) && a.length === b.length && a.every((x, i) => sameValue(x, b[i]));
  }
  if (isPlainMap(a) || isPlainMap(b)) {
    if (!isPlainMap(a) || !isPlainMap(b)) return false;
    const keys = (m: Record<string, unknown>) => Object.keys(m).filter((k) => m[k] !== undefined);
    const ka = keys(a);
    return ka.length === keys(b).length && ka.every((k) => sameValue(a[k], b[k]));
  }
  const na = asBigInt(a);
  const nb = asBigInt(b);
  if (na !== undefined && nb !== undefined) return na === nb;
  if (a === undefined || b === undefined) return a === b;
  if (a === null || b === null) return a === b;
  return String(a) === String(b);
}

/** a mapping as a scenario file or a target's report writes it (not a class instance) */
function isPlainMap(v: unknown): v is Record<string, unknown> {
  if (!isFieldMap(v)) return false;
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

function asBigInt(v: unknown): bigint | undefined {
  if (typeof v === 'bigint') return v;
  if (typeof v === 'number' && Number.isInteger(v)) return BigInt(v);
  // a number in the scenario syntax, `_` separating digit groups (`0x1_0000_4000`)
  if (typeof v === 'string' && /^(0x[0-9a-fA-F]+(_[0-9a-fA-F]+)*|[0-9]+(_[0-9]+)*)$/.test(v)) return BigInt(v.replaceAll('_', ''));
  return undefined;
}

/* ------------------------------------------------------------------------------------------ */
/* Describing outcomes                                                                        */
/* ------------------------------------------------------------------------------------------ */

export function show(v: unknown): string {
  if (typeof v === 'bigint') return v >= -4096n && v < 4096n ? v.toString() : formatHex(v);
  if (typeof v === 'number') return Number.isInteger(v) && Math.abs(v) >= 4096 ? formatHex(v) : String(v);
  if (Array.isArray(v)) return `[${v.map(show).join(', ')}]`;
  if (v === undefined) return 'nothing';
  // an address written as `name+offset`, shown the way the file wrote it
  if (isAddrRef(v)) return formatAddrExpr(v);
  if (typeof v === 'object' && v !== null) {
    return `{ ${Object.entries(v)
      .map(([k, x]) => `${k}: ${show(x)}`)
      .join(', ')} }`;
  }
  return String(v);
}

export function describeExit(exit: KvmRunExit): string {
  const { reason, ...fields } = exit as { reason: string } & Record<string, unknown>;
  const parts = Object.values(fields).map(show);
  return parts.length ? `exit ${reason} ${parts.join(' ')}` : `exit ${reason}`;
}

/** One line: what a step did. */
export function describeOutcome(o: Outcome): string {
  if (o.skipped !== undefined) return `skipped (${o.skipped})`;
  const parts: string[] = [];
  if (o.errno !== undefined) parts.push(`errno ${o.errno}`);
  if (o.signal !== undefined) parts.push(`signal ${o.signal}`);
  if (o.exception !== undefined) parts.push(`guest exception ${o.exception}`);
  if (o.exit !== undefined) parts.push(describeExit(o.exit));
  if (o.value !== undefined) parts.push(`value ${show(o.value)}`);
  if (o.dirty_pages !== undefined) parts.push(`dirty_pages [${o.dirty_pages.join(', ')}]`);
  if (o.stat !== undefined) parts.push(`stat ${JSON.stringify(o.stat)}`);
  if (o.status !== undefined) parts.push(`status [${o.status.join(', ')}]`);
  if (o.dirty_gfns !== undefined) parts.push(`dirty_gfns [${o.dirty_gfns.map(gfnText).join(', ')}]`);
  if (o.gpa !== undefined) parts.push(`gpa ${show(o.gpa)}`);
  if (o.size !== undefined) parts.push(`size ${show(o.size)}`);
  if (o.nr_pages !== undefined) parts.push(`nr_pages ${show(o.nr_pages)}`);
  if (o.r11 !== undefined) parts.push(`r11 ${show(o.r11)}`);
  if (o.ret !== undefined) parts.push(`ret ${show(o.ret)}`);
  if (typeof o.detail?.error === 'string') parts.push(o.detail.error);
  if (parts.length === 0) parts.push(o.result !== undefined ? `ok (${show(o.result)})` : 'ok');
  return parts.join(', ');
}

/** One line: what a step was expected to do. */
export function describeExpectation(e: Expectation | Record<string, unknown>): string {
  const entries = Object.entries(e).filter(([, v]) => v !== undefined);
  if (entries.length === 0) return 'ok';
  return entries.map(([k, v]) => `${k} ${show(v)}`).join(', ');
}

/** One finished actor step, as the `outcome` invariant judges it. */
export interface ActorStepOutcome {
  actor: string;
  /** index in the actor's step list */
  step: number;
  op: string;
  outcome: Outcome;
  /** when it began and finished (the explorer's clock; the round-robin run's step index) */
  start: number;
  end: number;
}

/**
 * The `outcome` invariant of a `concurrent:` block: every held step of `inv.actor` ended in one
 * of `inv.one_of`. Held: the listed `steps` (all when omitted); with `after`, only those that
 * began after that step finished (none while it has not); with `before`, only those that
 * finished before that step began (all while it has not). Returns the first offence, or null.
 */
export function checkOutcomeInvariant(inv: OutcomeInvariant, done: readonly ActorStepOutcome[]): string | null {
  let since = -Infinity;
  if (inv.after) {
    const ref = inv.after;
    const a = done.find((d) => d.actor === ref.actor && d.step === ref.step);
    if (!a) return null;
    since = a.end;
  }
  let until = Infinity;
  if (inv.before) {
    const ref = inv.before;
    const b = done.find((d) => d.actor === ref.actor && d.step === ref.step);
    if (b) until = b.start;
  }
  for (const d of done) {
    if (d.actor !== inv.actor || d.start <= since || d.end >= until) continue;
    if (inv.steps && !inv.steps.includes(d.step)) continue;
    if (inv.one_of.some((e) => compareOutcome(e, d.outcome).length === 0)) continue;
    const when = [
      inv.after ? `begun after ${inv.after.actor} step ${inv.after.step} finished` : '',
      inv.before ? `done before ${inv.before.actor} step ${inv.before.step} began` : '',
    ]
      .filter(Boolean)
      .map((w, i) => (i === 0 ? `, ${w}` : ` and ${w}`))
      .join('');
    return `${d.actor} step ${d.step} (${d.op}${when}): ${describeOutcome(d.outcome)}, which is none of: ${inv.one_of.map((e) => describeExpectation(e)).join(' | ')}`;
  }
  return null;
}

/* ------------------------------------------------------------------------------------------ */
/* Diffing two targets                                                                        */
/* ------------------------------------------------------------------------------------------ */

/**
 * Differences between two outcomes of the same step on two targets (for `ccmem diff`):
 * errno, signal, value, exit reason and fields, dirty pages (as sets), gpa/size/ret.
 * Expectations, named results (hvas, fds), events and details are ignored.
 */
export function diffOutcomes(a: Outcome, b: Outcome): string[] {
  const out: string[] = [];
  const cmp = (what: string, x: unknown, y: unknown) => {
    if (!sameValue(x, y)) out.push(`${what}: ${show(x)} vs ${show(y)}`);
  };
  if (a.skipped !== undefined || b.skipped !== undefined) {
    if ((a.skipped === undefined) !== (b.skipped === undefined)) out.push(`skipped: ${show(a.skipped)} vs ${show(b.skipped)}`);
    return out;
  }
  cmp('errno', a.errno, b.errno);
  cmp('signal', a.signal, b.signal);
  cmp('exception', a.exception, b.exception);
  cmp('value', a.value, b.value);
  cmp('exit', a.exit?.reason, b.exit?.reason);
  if (a.exit && b.exit && a.exit.reason === b.exit.reason) {
    for (const f of EXIT_FIELDS) {
      const x = (a.exit as unknown as Record<string, Record<string, unknown> | undefined>)[f];
      const y = (b.exit as unknown as Record<string, Record<string, unknown> | undefined>)[f];
      if (!x && !y) continue;
      for (const k of new Set([...Object.keys(x ?? {}), ...Object.keys(y ?? {})])) cmp(`${f}.${k}`, x?.[k], y?.[k]);
    }
  }
  const sortPages = (p?: number[]) => (p ? [...p].sort((m, n) => m - n) : undefined);
  cmp('dirty_pages', sortPages(a.dirty_pages), sortPages(b.dirty_pages));
  cmp('status', a.status, b.status);
  cmp('stat.st_size', a.stat?.st_size, b.stat?.st_size);
  cmp('stat.st_blksize', a.stat?.st_blksize, b.stat?.st_blksize);
  cmp('stat.distinct_inode', a.stat?.distinct_inode, b.stat?.distinct_inode);
  cmp('dirty_gfns', a.dirty_gfns?.map(gfnText).join(' '), b.dirty_gfns?.map(gfnText).join(' '));
  cmp('gpa', a.gpa, b.gpa);
  cmp('size', a.size, b.size);
  cmp('nr_pages', a.nr_pages, b.nr_pages);
  cmp('r11', a.r11, b.r11);
  for (const k of new Set([...Object.keys(a.params ?? {}), ...Object.keys(b.params ?? {})])) cmp(`params.${k}`, a.params?.[k], b.params?.[k]);
  cmp('ret', a.ret, b.ret);
  return out;
}

export interface StepDiff {
  index: number;
  op: string;
  differences: string[];
}

/** Step-by-step differences between two runs of one scenario. */
export function diffResults(a: ScenarioResult, b: ScenarioResult): StepDiff[] {
  const out: StepDiff[] = [];
  const n = Math.max(a.steps.length, b.steps.length);
  for (let i = 0; i < n; i++) {
    const x = a.steps[i];
    const y = b.steps[i];
    if (!x || !y) {
      // the model's VMM exit has no counterpart on real KVM, whose process lives on
      if ((x ?? y)!.op === 'exit') continue;
      out.push({ index: i, op: (x ?? y)!.op, differences: [`step ran only on ${x ? a.target : b.target}`] });
      continue;
    }
    const d = diffOutcomes(x.outcome, y.outcome);
    if (d.length) out.push({ index: i, op: x.op, differences: d });
  }
  return out;
}

/* ------------------------------------------------------------------------------------------ */

/** JSON.stringify replacer: bigint as "0x..." hex strings. */
export function jsonReplacer(_key: string, value: unknown): unknown {
  return typeof value === 'bigint' ? formatHex(value) : value;
}

/** every kernel event of a run, per step (for --trace files) */
export function collectEvents(result: ScenarioResult): { index: number; op: string; events: TraceEvent[] }[] {
  return result.steps.map((s) => ({ index: s.index, op: s.op, events: s.outcome.events ?? [] }));
}

/** a dirty ring entry as `slot:offset` (hex slot when it carries an address space) */
function gfnText(g: { slot: number; offset: number }): string {
  return `${g.slot > 0xffff ? '0x' + g.slot.toString(16) : g.slot}:${g.offset}`;
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
