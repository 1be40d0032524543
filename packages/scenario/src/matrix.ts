/**
 * The vendor test matrix: every scenario on every VM type × memory provider it applies to,
 * on the model, plus a real-KVM column when a kvm target is supplied.
 */
import { runScenario, type ScenarioResult } from './runner.js';
import type { Provider, Scenario, TargetName, VmType } from './schema.js';
import type { Target } from './target.js';

export type MatrixStatus = 'pass' | 'fail' | 'skip';

export interface MatrixCell {
  scenario: string;
  file: string;
  vm_type: VmType;
  provider: Provider;
  target: TargetName;
}

export interface MatrixRow extends MatrixCell {
  status: MatrixStatus;
  /** why the row was skipped, or the first failing step */
  reason?: string;
  result?: ScenarioResult;
}

export interface MatrixColumns {
  /** the model target (required) */
  model: () => Target;
  /** the machine's real KVM, when available */
  kvm?: () => Target;
}

export interface MatrixOptions {
  /** keep only cells whose scenario name, file, VM type, provider or target contain this text */
  filter?: string;
  /** keep only cells this predicate accepts (with `filter`: both must accept) */
  select?: (cell: MatrixCell) => boolean;
  /** called after every row (live progress) */
  onRow?: (row: MatrixRow, done: number, total: number) => void;
  trace?: boolean;
}

export interface ScenarioEntry {
  file: string;
  scenario: Scenario;
}

/** The VM types a scenario runs as: applies_to.vm_types, else its own vm.type. */
export function vmTypesOf(s: Scenario): VmType[] {
  return s.applies_to?.vm_types ?? [s.vm.type];
}

/** The providers a scenario runs with: applies_to.providers, else vm.provider, else guest_memfd. */
export function providersOf(s: Scenario): Provider[] {
  return s.applies_to?.providers ?? [s.vm.provider ?? 'guest_memfd'];
}

/**
 * Whether a scenario runs on a target at all: `applies_to.targets`, and the PCI-hole RFC, which
 * only the model offers. A scenario pinned to a named kernel profile reaches the real-KVM
 * target, which runs it only when this host's kernel is that profile (`profileMismatch()`) and
 * skips it with the difference otherwise.
 */
export function appliesToTarget(s: Scenario, target: TargetName): boolean {
  if (s.applies_to?.targets && !s.applies_to.targets.includes(target)) return false;
  if (target === 'kvm' && s.vm.pci_hole === true) return false;
  return true;
}

/** Every cell of the matrix, in order: scenario, VM type, provider, target. */
export function matrixCells(scenarios: readonly ScenarioEntry[], targets: readonly TargetName[]): MatrixCell[] {
  const cells: MatrixCell[] = [];
  for (const { file, scenario } of scenarios) {
    for (const vm_type of vmTypesOf(scenario)) {
      for (const provider of providersOf(scenario)) {
        for (const target of targets) {
          cells.push({ scenario: scenario.name, file, vm_type, provider, target });
        }
      }
    }
  }
  return cells;
}

export function cellMatches(cell: MatrixCell, filter: string | undefined): boolean {
  if (!filter) return true;
  const f = filter.toLowerCase();
  return [cell.scenario, cell.file, cell.vm_type, cell.provider, cell.target].some((x) => x.toLowerCase().includes(f));
}

/** Run the matrix. Rows whose target does not apply are `skip` with a reason. */
export function buildMatrix(scenarios: readonly ScenarioEntry[], columns: MatrixColumns, opts: MatrixOptions = {}): MatrixRow[] {
  const targetNames: TargetName[] = columns.kvm ? ['model', 'kvm'] : ['model'];
  const byName = new Map<string, Scenario>();
  for (const e of scenarios) byName.set(`${e.file}\0${e.scenario.name}`, e.scenario);
  const cells = matrixCells(scenarios, targetNames).filter((c) => cellMatches(c, opts.filter) && (opts.select?.(c) ?? true));

  const instances = new Map<TargetName, Target>();
  const targetFor = (name: TargetName): Target => {
    let t = instances.get(name);
    if (!t) instances.set(name, (t = name === 'kvm' ? columns.kvm!() : columns.model()));
    return t;
  };

  const rows: MatrixRow[] = [];
  for (const cell of cells) {
    const scenario = byName.get(`${cell.file}\0${cell.scenario}`)!;
    let row: MatrixRow;
    if (!appliesToTarget(scenario, cell.target)) {
      row = { ...cell, status: 'skip', reason: scenario.vm.pci_hole === true && cell.target === 'kvm' ? 'KVM_MEM_PCI_HOLE is an unmerged RFC that only the model offers' : `applies_to.targets excludes ${cell.target}` };
    } else {
      let target: Target | undefined;
      try {
        target = targetFor(cell.target);
      } catch (e) {
        row = { ...cell, status: 'skip', reason: `${cell.target} target unavailable: ${(e as Error).message}` };
      }
      if (target) {
        const result = runScenario(scenario, target, {
          file: cell.file,
          vmType: cell.vm_type,
          provider: cell.provider,
          trace: opts.trace ?? false,
        });
        row = { ...cell, status: statusOf(result), result };
        const reason = reasonOf(result);
        if (reason) row.reason = reason;
      }
    }
    rows.push(row!);
    opts.onRow?.(row!, rows.length, cells.length);
  }
  return rows;
}

export function statusOf(r: ScenarioResult): MatrixStatus {
  if (!r.pass) return 'fail';
  return r.skipped !== undefined ? 'skip' : 'pass';
}

function reasonOf(r: ScenarioResult): string | undefined {
  if (r.error) return r.error;
  const failed = r.steps.find((s) => !s.pass);
  if (failed) return `step ${failed.index} (${failed.op}): ${failed.mismatches[0] ?? 'failed'}`;
  return r.skipped;
}

export function summarizeMatrix(rows: readonly MatrixRow[]): { passed: number; failed: number; skipped: number } {
  let passed = 0;
  let failed = 0;
  let skipped = 0;
  for (const r of rows) {
    if (r.status === 'pass') passed++;
    else if (r.status === 'fail') failed++;
    else skipped++;
  }
  return { passed, failed, skipped };
}
