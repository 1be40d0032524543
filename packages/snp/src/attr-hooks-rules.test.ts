/**
 * The attribute hooks of the seed design (`rmpTiming: 'set-attributes'`, `directmap: 'unmap'`),
 * one rule at a time: update_mem_attr RMPUPDATEs each private page that is not assigned yet and
 * gives back each assigned page that goes shared; the unmap policy takes a page out of the
 * direct map before it can become private (kvm_pre_mem_attrs_changed), before the RMPUPDATE.
 * Found missing by mutation testing (docs/testing.md).
 */
import { describe, expect, it } from 'vitest';
import { KVM_MEMORY_ATTRIBUTE_PRIVATE, PAGE_SIZE } from '@ccmem/core';
import { RMPUPDATE_FAIL_PERMISSION } from './instructions.js';
import { GFN0, GPA0, snpVm } from './testing/snp-vm.js';

type T = ReturnType<typeof snpVm>;
function setPrivate(t: T, gfn: number, n: number, priv = true) {
  t.vm.setMemoryAttributes({ address: GPA0 + gfn * PAGE_SIZE, size: n * PAGE_SIZE, attributes: priv ? KVM_MEMORY_ATTRIBUTE_PRIVATE : 0, flags: 0 });
}
const backendStats = (t: T) => (t.b.inspect!({ what: 'stats' }) as { backend: Record<string, number> }).backend;

describe('update_mem_attr (set-attributes timing)', () => {
  it('assigns each private page once and gives each back when it goes shared', () => {
    const t = snpVm({ options: { rmpTiming: 'set-attributes' } });
    setPrivate(t, 0, 1);
    expect(backendStats(t).attrRmpUpdates).toBe(1);
    setPrivate(t, 0, 2); // gfn 0 is assigned already
    expect(backendStats(t).attrRmpUpdates).toBe(2);
    const pfns = [t.vm.gmemPeekPfn(GFN0), t.vm.gmemPeekPfn(GFN0 + 1)];
    for (const p of pfns) expect(t.host.rmp.isAssigned(p)).toBe(true);
    setPrivate(t, 0, 2, false);
    for (const p of pfns) expect(t.host.rmp.isAssigned(p)).toBe(false);
    expect(backendStats(t)).toMatchObject({ attrRmpUpdates: 4, attrRmpFailures: 0 });
  });

  it('a page whose RMPUPDATE failed is not given back when it goes shared', () => {
    const t = snpVm({ options: { rmpTiming: 'set-attributes' } });
    t.host.injectResult('rmpupdate', RMPUPDATE_FAIL_PERMISSION);
    setPrivate(t, 0, 1);
    expect(backendStats(t)).toMatchObject({ attrRmpUpdates: 0, attrRmpFailures: 1 });
    const pfn = t.vm.gmemPeekPfn(GFN0);
    expect(t.host.rmp.isAssigned(pfn)).toBe(false);
    const updates = t.host.stats.rmpupdates;
    setPrivate(t, 0, 1, false);
    expect(t.host.stats.rmpupdates).toBe(updates);
    expect(backendStats(t)).toMatchObject({ attrRmpUpdates: 0, attrRmpFailures: 1 });
  });

  it('before KVM_SEV_INIT2 the hooks change no RMP entry (not an SNP guest yet)', () => {
    const t = snpVm({ options: { rmpTiming: 'set-attributes' }, noInit2: true });
    setPrivate(t, 0, 1);
    expect(t.host.rmp.assignedPages).toBe(0);
    expect(backendStats(t).attrRmpUpdates).toBe(0);
  });
});

describe('the unmap policy before the RMPUPDATE', () => {
  it('the page leaves the direct map when the attribute changes, even if the RMPUPDATE then fails', () => {
    const t = snpVm({ options: { directmap: 'unmap', rmpTiming: 'set-attributes' } });
    expect(t.vm.gmemGetPfn(GFN0)).toMatchObject({ maxOrder: 0 }); // allocated while shared
    const pfn = t.vm.gmemPeekPfn(GFN0);
    expect(t.host.directmap.isPresent(pfn)).toBe(true);
    t.host.injectResult('rmpupdate', RMPUPDATE_FAIL_PERMISSION);
    setPrivate(t, 0, 1);
    expect(t.host.rmp.isAssigned(pfn)).toBe(false);
    expect(t.host.directmap.isPresent(pfn)).toBe(false);
    // and comes back when the gfn is shared again: the RMP never took it
    setPrivate(t, 0, 1, false);
    expect(t.host.directmap.isPresent(pfn)).toBe(true);
  });
});
