import { describe, expect, it } from 'vitest';
import { LINUX_6_18_PVM_PROFILE, UPSTREAM_PROFILE } from '@ccmem/core';
import { comparedStats, diffScenario } from './differential.js';
import { createModelTarget } from './model-target.js';
import { parseScenario } from './parse.js';
import type { Outcome, Target } from './target.js';

const SCENARIO = parseScenario(`name: two faults
vm: { type: default, profile: upstream }
steps:
  - mmap: { size: 2MiB }
    as: ram
  - set_user_memory_region: { slot: 0, guest_phys_addr: 0x100000, memory_size: 2MiB, userspace_addr: ram }
  - create_vcpu: { id: 0 }
  - guest_write: { vcpu: 0, gpa: 0x100000, size: 8, value: 1 }
  - guest_write: { vcpu: 0, gpa: 0x101000, size: 8, value: 2 }
`);

/** the model standing in for a kernel that keeps page stats (diff runs it under `profile: host`) */
const upstreamModel = () => createModelTarget({ hostProfile: UPSTREAM_PROFILE });

/** a "kernel" that is the model, but maps one extra 4K leaf on every guest write */
function skewedKernel(): Target {
  const m = upstreamModel();
  let extra = 0;
  return {
    name: 'kvm',
    begin: (sc, ctx) => {
      extra = 0;
      m.begin(sc, ctx);
    },
    end: () => m.end(),
    execute: (step, ctx): Outcome => {
      if (step.op === 'guest_write') extra++;
      return m.execute(step, ctx);
    },
    stats: () => {
      const s = m.stats();
      return { ...s, pages_4k: s.pages_4k! + extra };
    },
  };
}

describe('ccmem diff --stats', () => {
  it('compares the stat changes each step causes, and names the ones that differ', () => {
    const d = diffScenario(SCENARIO, upstreamModel(), skewedKernel(), { stats: comparedStats(UPSTREAM_PROFILE) });
    expect(d.statsCompared).toBeGreaterThan(0);
    const fields = d.differences.flatMap((x) => x.fields);
    expect(fields).toContain('stats.pages_4k change: 1 vs 2');
    // without --stats the same runs agree
    expect(diffScenario(SCENARIO, upstreamModel(), skewedKernel()).agree).toBe(true);
    // the model against itself agrees on every stat
    const same = diffScenario(SCENARIO, upstreamModel(), { ...upstreamModel(), name: 'kvm' } as Target, { stats: comparedStats(UPSTREAM_PROFILE) });
    expect(same.agree).toBe(true);
  });

  it('a shadow-paging host compares the shadow MMU counters too', () => {
    expect(comparedStats({ tdpEnabled: false })).toEqual(expect.arrayContaining(['pages_4k', 'mmu_pte_write', 'mmu_unsync']));
    expect(comparedStats({})).toEqual(['pages_4k', 'pages_2m', 'pages_1g']);
    // where the guest runs in the emulator, mmu_pte_write says how the harness's guest is built
    expect(comparedStats({ tdpEnabled: false, emulatedGuestAccesses: true })).not.toContain('mmu_pte_write');
    expect(comparedStats({ tdpEnabled: false, emulatedGuestAccesses: true })).toContain('mmu_shadow_zapped');
  });

  it('expect: { stats } checks the stats after a step', () => {
    const sc = parseScenario(`name: stats
vm: { type: default }
steps:
  - mmap: { size: 2MiB }
    as: ram
  - set_user_memory_region: { slot: 0, guest_phys_addr: 0x100000, memory_size: 2MiB, userspace_addr: ram }
  - create_vcpu: { id: 0 }
  - guest_write: { vcpu: 0, gpa: 0x100000, size: 8, value: 1 }
    expect: { stats: { pages_4k: 1, pages_2m: 0 } }
  - guest_write: { vcpu: 0, gpa: 0x101000, size: 8, value: 2 }
    expect: { stats: { pages_4k: 5 } }
`);
    const d = diffScenario(sc, upstreamModel(), upstreamModel());
    const r = d.model;
    expect(r.steps[3]!.pass).toBe(true);
    expect(r.steps[4]!.pass).toBe(false);
    expect(r.steps[4]!.mismatches.join()).toMatch(/expected stats.pages_4k 5, happened 2/);
    // v6.18 + PVM runs the guest in the instruction emulator (emulatedGuestAccesses): no leaves
    const pvm = diffScenario(sc, createModelTarget({ hostProfile: LINUX_6_18_PVM_PROFILE }), createModelTarget({ hostProfile: LINUX_6_18_PVM_PROFILE })).model;
    expect(pvm.steps[3]!.mismatches.join()).toMatch(/expected stats.pages_4k 1, happened 0/);
  });
});
