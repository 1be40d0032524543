/**
 * Differential runs: one scenario on the model (under the host's kernel profile) and on the
 * machine's real KVM, compared step by step with diffOutcomes (errno, signal, value, exit and
 * its fields, dirty pages, gpa/size/ret). Expectations are ignored: the two targets are
 * compared with each other, not with the file. Steps the real-KVM target cannot run end the
 * comparison and are listed as skipped. Used by `ccmem diff` and the differential tests.
 */
import { diffOutcomes, runScenario, type ScenarioResult } from './runner.js';
import type { KernelProfile } from '@ccmem/core';
import type { Scenario } from './schema.js';
import type { Outcome, Target } from './target.js';

export interface OutcomeDifference {
  index: number;
  op: string;
  /** what the model did (named results and kernel events left out: they differ by nature) */
  model: Outcome;
  /** what the real kernel did */
  kvm: Outcome;
  /** one line per differing field: `errno: EINVAL vs EEXIST` (model vs kvm) */
  fields: string[];
}

export interface ScenarioDiff {
  file: string;
  name: string;
  /** every step both targets ran had the same outcome */
  agree: boolean;
  differences: OutcomeDifference[];
  /** what the real-KVM target could not run: `step 3 (set_memory_attributes): missing KVM_CAP_MEMORY_ATTRIBUTES` */
  skipped: string[];
  /** steps compared */
  compared: number;
  /** stat changes compared (with `stats`) */
  statsCompared: number;
  model: ScenarioResult;
  kvm: ScenarioResult;
}

/**
 * The scenario as the model runs it for a comparison with this host: a scenario without a
 * profile states behaviour every kernel shares, so the model follows the host profile.
 */
export function asHostScenario(scenario: Scenario): Scenario {
  if (scenario.vm.profile !== undefined) return scenario;
  return { ...scenario, vm: { ...scenario.vm, profile: 'host' } };
}

/** an outcome without what legitimately differs between targets (hvas, fds, events) */
export function comparableOutcome(o: Outcome): Outcome {
  const { result: _result, events: _events, stats: _stats, ...rest } = o;
  return rest;
}

/**
 * The MMU statistics a stats comparison (`ccmem diff --stats`) holds the model to for a host
 * of this kind: the leaf counts of whichever MMU builds the tables, and under the shadow MMU
 * its own counters too. Compared as the change each step causes, never as absolute values
 * (the real-KVM target's tiny guest maps its own pages as well).
 */
export function comparedStats(host: Pick<KernelProfile, 'tdpEnabled' | 'emulatedGuestAccesses'>): readonly string[] {
  const leaves = ['pages_4k', 'pages_2m', 'pages_1g'];
  if (host.tdpEnabled !== false) return leaves;
  // Where every guest access is emulated, each emulated store to RAM reaches
  // kvm_mmu_track_write(), which counts mmu_pte_write only while the VM has indirect shadow
  // pages: always for the tiny guest (it runs with paging on), never for a scenario vCPU with
  // paging off. The count says how the harness's guest is built, not what the scenario did.
  const shadow = host.emulatedGuestAccesses === true ? ['mmu_shadow_zapped', 'mmu_unsync', 'mmu_flooded'] : ['mmu_shadow_zapped', 'mmu_pte_write', 'mmu_unsync', 'mmu_flooded'];
  return [...leaves, ...shadow];
}

/** per-step changes of `keys` in a run's Outcome.stats (the first step: no change known) */
function statDeltas(r: ScenarioResult, keys: readonly string[]): Map<number, Record<string, number>> {
  const out = new Map<number, Record<string, number>>();
  let prev: Record<string, number> | undefined;
  for (const s of r.steps) {
    const cur = s.outcome.stats;
    if (!cur) continue;
    if (prev) {
      const d: Record<string, number> = {};
      for (const k of keys) if (k in cur && k in prev) d[k] = cur[k]! - prev[k]!;
      out.set(s.index, d);
    }
    prev = cur;
  }
  return out;
}

export interface DiffOptions {
  file?: string;
  /** also compare these MMU statistics, as the change each step causes (comparedStats()) */
  stats?: readonly string[];
  /** collect the kernel events of both runs (Outcome.events; `ccmem diff --report` shows them) */
  trace?: boolean;
}

/** Run `scenario` on both targets and compare the outcomes step by step. */
export function diffScenario(scenario: Scenario, model: Target, kvm: Target, opts: DiffOptions = {}): ScenarioDiff {
  const file = opts.file ?? '';
  const withStats = opts.stats !== undefined && opts.stats.length > 0;
  const trace = opts.trace === true;
  const k = runScenario(scenario, kvm, { file, stats: withStats, trace });
  const base = { file, name: scenario.name, differences: [] as OutcomeDifference[], skipped: [] as string[], compared: 0, statsCompared: 0 };

  if (k.steps.length === 0 && (k.skipped !== undefined || k.error !== undefined)) {
    // nothing ran on the real kernel: the model has nothing to be compared with
    const m = { ...k, target: model.name, steps: [] } as ScenarioResult;
    return { ...base, agree: true, skipped: [k.skipped ?? `kvm: ${k.error}`], model: m, kvm: k };
  }

  const m = runScenario(asHostScenario(scenario), model, { file, stats: withStats, trace });
  const mDeltas = withStats ? statDeltas(m, opts.stats!) : null;
  const kDeltas = withStats ? statDeltas(k, opts.stats!) : null;
  const out: ScenarioDiff = { ...base, agree: true, model: m, kvm: k };
  if (m.error !== undefined || (m.steps.length === 0 && m.skipped !== undefined)) {
    out.differences.push({
      index: -1,
      op: 'begin',
      model: { detail: { error: m.error ?? `skipped: ${m.skipped}` } },
      kvm: {},
      fields: [`the model could not run the scenario: ${m.error ?? m.skipped}`],
    });
  }
  for (const ks of k.steps) {
    if (ks.skipped !== undefined) {
      out.skipped.push(`step ${ks.index} (${ks.op}): ${ks.skipped}`);
      break;
    }
    const ms = m.steps[ks.index];
    if (!ms) {
      if (out.differences.length === 0 || out.differences[0]!.index !== -1) {
        out.differences.push({ index: ks.index, op: ks.op, model: {}, kvm: comparableOutcome(ks.outcome), fields: ['the step ran on kvm only'] });
      }
      continue;
    }
    out.compared++;
    const fields = diffOutcomes(ms.outcome, ks.outcome);
    if (mDeltas && kDeltas) {
      const a = mDeltas.get(ks.index);
      const b = kDeltas.get(ks.index);
      if (a && b) {
        out.statsCompared += Object.keys(a).filter((x) => x in b).length;
        for (const key of Object.keys(a)) if (key in b && a[key] !== b[key]) fields.push(`stats.${key} change: ${a[key]} vs ${b[key]}`);
      }
    }
    if (fields.length) {
      out.differences.push({ index: ks.index, op: ks.op, model: comparableOutcome(ms.outcome), kvm: comparableOutcome(ks.outcome), fields });
    }
  }
  if (k.error !== undefined) out.differences.push({ index: -1, op: 'end', model: {}, kvm: { detail: { error: k.error } }, fields: [`kvm: ${k.error}`] });
  out.agree = out.differences.length === 0;
  return out;
}
