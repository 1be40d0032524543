/**
 * `--invariants full|step|off`: the per-step invariant checker is switchable, and the default
 * (`step`) keeps a long scenario linear while still checking every run.
 */
import { describe, expect, it } from 'vitest';
import { parseScenario } from '../../src/parse.js';
import { effectiveVm, resolveStep } from '../../src/runner.js';
import { createModelTarget, INVARIANT_EVERY_STEP_LIMIT, type InvariantMode } from '../../src/model-target.js';
import type { RunContext } from '../../src/target.js';

/** run `n` cheap steps; break an invariant after step `breakAt`; the indexes that reported it */
function reportedAt(mode: InvariantMode, n: number, breakAt: number): number[] {
  const sc = parseScenario(`name: t\nvm: { type: default }\nsteps:\n${'  - check_extension: { cap: KVM_CAP_USER_MEMORY2 }\n'.repeat(n)}`);
  const target = createModelTarget({ invariants: mode });
  const ctx: RunContext = { scenario: sc, vm: effectiveVm(sc), names: new Map(), trace: false };
  target.begin(sc, ctx);
  const out: number[] = [];
  sc.steps.forEach((step, i) => {
    if (i === breakAt) (target.vm!.mmuInvalidate as { warnings: number }).warnings = 1;
    const o = target.execute(resolveStep(step, i, ctx.names), ctx);
    if (o.detail?.invariants) out.push(i);
  });
  target.end();
  return out;
}

describe('invariant checker modes', () => {
  it('full and step report a violation at the step that caused it early in a run; off never', () => {
    expect(reportedAt('full', 20, 5)).toEqual([5]);
    expect(reportedAt('step', 20, 5)).toEqual([5]);
    expect(reportedAt('off', 20, 5)).toEqual([]);
  });

  it('step thins out after the first steps but always checks the last one', () => {
    const n = INVARIANT_EVERY_STEP_LIMIT + 300;
    // broken after the schedule thinned out: seen at the scenario's last step
    expect(reportedAt('step', n, INVARIANT_EVERY_STEP_LIMIT + 10)).toEqual([n - 1]);
    expect(reportedAt('full', n, INVARIANT_EVERY_STEP_LIMIT + 10)).toEqual([INVARIANT_EVERY_STEP_LIMIT + 10]);
  });
});
