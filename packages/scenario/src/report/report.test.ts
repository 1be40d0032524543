import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { profileByName } from '@ccmem/core';
import {
  buildDiffReport,
  buildExploreReport,
  buildRunReport,
  createModelTarget,
  explore,
  loadBuiltinExploration,
  loadScenarioFile,
  parseScenario,
  reportToJson,
  type ReportData,
  type Run,
  type SnapshotSlot,
} from '../index.js';

const ROOT = new URL('../../../../', import.meta.url).pathname;
const scenario = (rel: string) => loadScenarioFile(`${ROOT}${rel}`);

function runAt(runs: Run[] | undefined, gfn: number): Run | undefined {
  return runs?.find((r) => r[0] <= gfn && gfn < r[1]);
}
function slotAfter(d: ReportData, stepIndex: number, slot = 0): SnapshotSlot {
  const s = d.steps.find((x) => x.index === stepIndex)!;
  return d.states[s.state!]!.slots.find((x) => x.id === slot)!;
}

describe('report data: the model state after each step', () => {
  const psc = buildRunReport(scenario('packages/scenario/scenarios/snp/psc-shared-to-private.yaml'));
  const gfn = 0x1_0001_0000 / 4096;

  it('follows an SNP conversion: attributes, RMP and mapping of the converted page', () => {
    expect(psc.pass).toBe(true);
    // before KVM_SET_MEMORY_ATTRIBUTES (step 8): shared, no RMP entry, no mapping
    const before = slotAfter(psc, 7);
    expect(runAt(before.layers.attributes, gfn)?.[2]).toBe('shared');
    expect(runAt(before.layers.rmp, gfn)).toBeUndefined();
    // after the attribute change: private, still nothing assigned
    expect(runAt(slotAfter(psc, 8).layers.attributes, gfn)?.[2]).toBe('private');
    // after PVALIDATE (the fault ran sev_gmem_prepare): assigned to ASID 1 and validated, the
    // same frame the guest_memfd holds and the NPT maps
    const after = slotAfter(psc, 10);
    expect(runAt(after.layers.rmp, gfn)?.[2]).toBe('assigned asid 1 4K validated');
    // after the guest's write through the C-bit: the NPT maps the frame the guest_memfd holds
    const written = slotAfter(psc, 12);
    const gm = runAt(written.layers.gmem, gfn)!;
    const map = runAt(written.layers.mapping, gfn)!;
    expect(map[2]).toBe('4K');
    expect(map[3]! + (gfn - map[0])).toBe(gm[3]! + (gfn - gm[0]));
    // the rest of the 4 MiB slot stays one shared run on each side
    expect(after.layers.attributes).toEqual([
      [gfn - 16, gfn, 'shared'],
      [gfn, gfn + 1, 'private'],
      [gfn + 1, gfn - 16 + 1024, 'shared'],
    ]);
  });

  it('stores each distinct state once', () => {
    expect(psc.states.length).toBeLessThan(psc.steps.length);
    expect(new Set(psc.states.map((s) => JSON.stringify(s))).size).toBe(psc.states.length);
    // the assert step changes nothing: it shares the state of the step before
    const i = psc.steps.findIndex((s) => s.op === 'assert');
    expect(psc.steps[i]!.state).toBe(psc.steps[i - 1]!.state);
  });

  it('carries the kernel events, the outcome and the MMU statistics of each step', () => {
    const write = psc.steps.find((s) => s.op === 'guest_write')!;
    expect(write.result.events.map((e) => e.name)).toContain('kvm_mmu_spte_requested');
    expect(write.result.stats?.pages_4k).toBeGreaterThan(0);
    expect(write.args).toContain('private: true');
  });

  it('draws a 4 TiB guest as a handful of runs', () => {
    const d = buildRunReport(scenario('apps/cli/test-support/guest-4tib.yaml'));
    expect(d.pass).toBe(true);
    const last = d.states[d.steps[d.steps.length - 1]!.state!]!;
    const slot = last.slots[0]!;
    expect(slot.npages).toBe(2 ** 30);
    for (const [layer, runs] of Object.entries(slot.layers)) expect(runs!.length, layer).toBeLessThan(16);
    // the converted-back 2 MiB hole in the private half
    const hole = 0x140_0000_0000 / 4096;
    expect(runAt(slot.layers.attributes, hole)).toEqual([hole, hole + 512, 'shared']);
    expect(runAt(slot.layers.rmp, 0x180_0000_0000 / 4096)?.[2]).toBe('assigned asid 1 4K validated');
    expect(JSON.stringify(d).length).toBeLessThan(200_000);
  });

  it('dirty bits: the pages the guest wrote, until KVM_GET_DIRTY_LOG clears them', () => {
    const d = buildRunReport(scenario('packages/scenario/scenarios/dirty-log/guest-writes-are-logged.yaml'));
    const base = 0x100000 / 4096;
    expect(slotAfter(d, 7, 1).layers.dirty).toEqual([
      [base, base + 1, 'dirty'],
      [base + 3, base + 4, 'dirty'],
      [base + 511, base + 512, 'dirty'],
    ]);
    expect(slotAfter(d, 8, 1).layers.dirty).toEqual([]);
    expect(slotAfter(d, 8, 1).layers.memslot).toEqual([[base, base + 512, 'KVM_MEM_LOG_DIRTY_PAGES']]);
  });

  it('a shadow-paging profile: the shadow MMU\'s leaves, the TDP rows left out', () => {
    // the file pins linux-6.18-pvm, whose guest accesses are emulated (no SPTE): the same steps
    // under upstream-shadow fault through the shadow MMU
    const file = scenario('packages/scenario/scenarios/memslots/max-gfn-shadow-guest-access.yaml');
    const d = buildRunReport({ ...file, vm: { ...file.vm, profile: 'upstream-shadow' } });
    const slot = d.states[d.steps[d.steps.length - 1]!.state!]!.slots[0]!;
    expect(slot.layers.mapping).toBeUndefined();
    const top = 0xf_ffff_ffff_f000 / 4096;
    expect(runAt(slot.layers.shadow, top)?.[2]).toBe('4K');
    expect(runAt(slot.layers.shadow, 0xf_ffff_ffff_0000 / 4096)?.[2]).toBe('4K');
  });

  it('TDX: the mirror root and the S-EPT state of accepted pages', () => {
    const d = buildRunReport(scenario('packages/scenario/scenarios/tdx/accept-then-access.yaml'));
    const states = d.steps.map((s) => (s.state === null ? null : d.states[s.state]!));
    const withSept = states.flatMap((s) => s?.slots ?? []).flatMap((s) => s.layers.sept ?? []);
    expect(withSept.some((r) => r[2].startsWith('PRESENT'))).toBe(true);
    const mirror = states.flatMap((s) => s?.slots ?? []).flatMap((s) => s.layers.mirror ?? []);
    expect(mirror.length).toBeGreaterThan(0);
  });
});

describe('report data: a comparison', () => {
  it('marks the steps where two targets disagree, with both outcomes', () => {
    // the same scenario under two kernel profiles (the model follows the host's, here v6.18, the
    // other target runs upstream): v6.18 accepts any PSC return code, upstream refuses some
    const text = readFileSync(`${ROOT}packages/scenario/scenarios/snp/psc-user-errors-upstream.yaml`, 'utf8').replace(', profile: upstream', '');
    const sc = parseScenario(text, 'psc.yaml');
    const { data, diff } = buildDiffReport(sc, createModelTarget({ hostProfile: profileByName('linux-6.18')! }), createModelTarget());
    expect(diff.agree).toBe(false);
    expect(data.kind).toBe('diff');
    const marked = data.steps.filter((s) => s.differences);
    expect(marked.map((s) => s.index)).toEqual(diff.differences.filter((x) => x.index >= 0).map((x) => x.index));
    expect(marked[0]!.kvm?.outcome).toContain('errno EINVAL');
    expect(data.steps.every((s) => s.state !== null || s.index === 0)).toBe(true);
  });
});

describe('report data: an exploration', () => {
  it('snp-rmp-timing: the schedule that reaches the RMP window, the state at that phase', () => {
    const x = loadBuiltinExploration('snp-rmp-timing');
    if (!x.ok) throw new Error('snp-rmp-timing did not load');
    const { scenario: sc, options } = x.exploration;
    const d = buildExploreReport(sc, options, reportToJson(explore(sc, options)), { name: 'snp-rmp-timing' });
    const s = d.explore!.schedules[0]!;
    expect(s.note).toContain('rmp-window');
    const i = s.points.findIndex((p) => p.observed.includes('rmp-window'));
    expect(i).toBeGreaterThan(0);
    const p = s.points[i]!;
    expect(p.messages.join(' ')).toMatch(/has no assigned RMP entry/);
    // the window itself: the private gfn is mapped, its frame is not assigned in the RMP yet
    const slot = d.states[p.state!]!.slots[0]!;
    const gfn = 0x1_0000_0000 / 4096;
    expect(runAt(slot.layers.mapping, gfn)?.[2]).toBe('4K');
    expect(runAt(slot.layers.rmp, gfn)?.[2]).toBe('hypervisor');
    // setup steps are the run part of the report
    expect(d.steps.map((x) => x.op)).toEqual(['mmap', 'create_guest_memfd', 'set_user_memory_region2', 'create_vcpu']);
  });

  it('a counterexample: the violating phase is marked, shrunk and original schedules both drawn', () => {
    const x = loadBuiltinExploration('fault-vs-conversion');
    if (!x.ok) throw new Error('fault-vs-conversion did not load');
    const { scenario: sc } = x.exploration;
    const options = { ...x.exploration.options, faultInjection: { skipRetryCheck: true } };
    const result = reportToJson(explore(sc, options));
    expect(result.result).toBe('violation');
    const d = buildExploreReport(sc, options, result);
    const first = d.explore!.schedules[0]!;
    expect(first.schedule).toBe(result.violations[0]!.schedule);
    expect(first.violation).toBe(result.violations[0]!.violation);
    expect(first.points.filter((p) => p.violation)).toHaveLength(1);
    if (result.violations[0]!.original !== undefined) expect(d.explore!.schedules.map((s) => s.title)).toContain('counterexample as found');
  });
});
