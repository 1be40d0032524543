/**
 * Differential tests: the model (under the host profile) against the machine's real KVM.
 * Every built-in scenario the host can run, plus random memslot / guest_memfd / dirty-log /
 * guest-access sequences from fast-check, compared step by step; a failing random sequence
 * shrinks and is printed as a scenario file.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { builtinScenarios } from './builtin/index.js';
import { diffScenario, type ScenarioDiff } from './differential.js';
import { createKvmTarget, guestPlacements } from './kvm-target.js';
import { createModelTarget, type ModelTarget } from './model-target.js';
import { describeOutcome } from './runner.js';
import { hostFuzzFeatures, runFuzzCampaign } from './fuzz/index.js';
import type { Scenario, Step } from './schema.js';
import { describeWithKvm } from '../../kvm/src/testing/kvm-gate.js';


function report(d: ScenarioDiff): string {
  return d.differences
    .map((x) => `  step ${x.index} ${x.op}: ${x.fields.join('; ')}\n    model: ${describeOutcome(x.model)}\n    kvm:   ${describeOutcome(x.kvm)}`)
    .join('\n');
}

describe('guest placement', () => {
  it('avoids the slot ids and gpa ranges a scenario uses', () => {
    const scenario: Scenario = {
      name: 'uses 32763 and the top of the guest range',
      vm: { type: 'default' },
      steps: [
        { op: 'set_user_memory_region2', args: { slot: 32763, guest_phys_addr: 0x7f_ffc0_0000, memory_size: 0x1000, userspace_addr: 0 }, expect: {} } as Step,
        { op: 'create_vcpu', args: { id: 0 }, expect: {} } as Step,
      ],
    };
    const [p0, p1] = guestPlacements(scenario, 2);
    expect(p0).toEqual({ slot: 32762, base: 0x7f_ff80_0000 });
    expect(p1).toEqual({ slot: 32761, base: 0x7f_ff40_0000 });
  });
});

describeWithKvm('model vs real KVM (needs /dev/kvm)', () => {
  const kvm = createKvmTarget();
  // the model under this host's detected profile (as `ccmem diff` runs it)
  let model: ModelTarget;
  beforeAll(() => {
    model = createModelTarget({ hostProfile: kvm.profile });
  });

  it("the model's `host` profile is this host's detected profile", () => {
    const sc: Scenario = { name: 'host profile', vm: { type: 'default', profile: 'host' }, steps: [] };
    model.begin(sc, { scenario: sc, vm: sc.vm, names: new Map(), trace: false });
    expect(model.kvm!.profile).toBe(kvm.profile);
    model.end();
  });

  it('every built-in scenario the host can run agrees step by step', () => {
    let compared = 0;
    const failures: string[] = [];
    for (const { file, scenario } of builtinScenarios()) {
      const d = diffScenario(scenario, model, kvm, { file });
      compared += d.compared;
      if (!d.agree) failures.push(`${file}: ${scenario.name}\n${report(d)}`);
    }
    expect(failures, failures.join('\n')).toEqual([]);
    // the suite really ran on the kernel: dozens of steps were compared
    expect(compared).toBeGreaterThan(100);
  });

  it('the real-KVM target reports real outcomes (errno, dirty pages, exits)', () => {
    const scenario: Scenario = {
      name: 'kvm target outcomes',
      vm: { type: 'default' },
      steps: [
        { op: 'mmap', args: { size: 0x4000 }, as: 'ram', expect: {} },
        { op: 'set_user_memory_region', args: { slot: 0, flags: 1, guest_phys_addr: 0x10_0000, memory_size: 0x4000, userspace_addr: { ref: 'ram', offset: 0 } }, expect: {} },
        { op: 'set_user_memory_region', args: { slot: 1, flags: 0, guest_phys_addr: 0x10_0000, memory_size: 0x1000, userspace_addr: { ref: 'ram', offset: 0 } }, expect: {} },
        { op: 'create_vcpu', args: { id: 0 }, expect: {} },
        { op: 'guest_write', args: { vcpu: 0, gpa: 0x10_2000, size: 4, value: 7n }, expect: {} },
        { op: 'get_dirty_log', args: { slot: 0 }, expect: {} },
        { op: 'guest_read', args: { vcpu: 0, gpa: 0x20_0000, size: 4 }, expect: {} },
        { op: 'set_memory_attributes', args: { address: 0x10_0000, size: 0x1000, attributes: 8 }, expect: {} },
      ] as unknown as Step[],
    };
    const d = diffScenario(scenario, model, kvm);
    const steps = d.kvm.steps;
    expect(steps[2]!.outcome).toMatchObject({ errno: 'EEXIST', detail: { check: 'KVM_SET_USER_MEMORY_REGION' } });
    expect(steps[5]!.outcome.dirty_pages).toEqual([2]);
    expect(steps[6]!.outcome.exit).toMatchObject({ reason: 'KVM_EXIT_MMIO', mmio: { phys_addr: 0x20_0000, len: 4, is_write: false } });
    // KVM_SET_MEMORY_ATTRIBUTES: skipped where the host lacks the capability, otherwise the
    // default VM supports no attribute and both sides say EINVAL
    if (!kvm.capabilities.KVM_CAP_MEMORY_ATTRIBUTES) {
      expect(d.skipped).toEqual(['step 7 (set_memory_attributes): missing KVM_CAP_MEMORY_ATTRIBUTES']);
    } else {
      expect(d.skipped).toEqual([]);
      expect(steps[7]!.outcome.errno).toBe('EINVAL');
    }
    expect(d.differences).toEqual([]);
  });

  /* ---------------------------------------------------------------------------------------- */
  /* Random sequences: a bounded campaign on every run (ccmem fuzz --target diff)             */
  /* ---------------------------------------------------------------------------------------- */

  it('a bounded random campaign agrees step by step (failures shrink to a scenario file)', () => {
    const s = runFuzzCampaign({
      mode: 'diff',
      model,
      kvm,
      features: hostFuzzFeatures(kvm.capabilities),
      steps: 3000,
      seed: Number(process.env.CCMEM_DIFF_SEED ?? 0x5eed),
    });
    expect(s.found.map((f) => `${f.details.join('\n')}\n--- scenario (ccmem diff it) ---\n${f.yaml}`)).toEqual([]);
    expect(s.steps).toBeGreaterThanOrEqual(3000);
  });
});
