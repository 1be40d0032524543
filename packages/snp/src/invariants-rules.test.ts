/**
 * The SNP backend's invariant checker, one broken rule at a time: each state is made by hand
 * and must be reported (a private NPT mapping needs an assigned RMP entry of this guest, at its
 * gpa, no smaller than the mapping; under the unmap policy an assigned frame has no direct-map
 * entry; a leaked frame is never allocated again: snp_leak_pages()). Found missing by mutation
 * testing (docs/testing.md).
 */
import { describe, expect, it } from 'vitest';
import { KVM_MEMORY_ATTRIBUTE_PRIVATE, PAGE_SIZE, PG_LEVEL_2M, PG_LEVEL_4K } from '@ccmem/core';
import { rmpupdateInsn } from './instructions.js';
import { GFN0, GPA0, snpVm } from './testing/snp-vm.js';

type T = ReturnType<typeof snpVm>;

/** one private, validated, mapped page at gfn 0 */
function mapped(t: T): number {
  t.vm.setMemoryAttributes({ address: GPA0, size: PAGE_SIZE, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE, flags: 0 });
  t.vcpu.guestOp({ op: 'pvalidate', gpa: GPA0, level: PG_LEVEL_4K, validate: true });
  expect(t.vcpu.guestWrite(GPA0, 8, 1n, true)).toEqual({});
  expect(t.b.checkInvariants!()).toEqual([]);
  return t.vm.gmemPeekPfn(GFN0);
}

describe('SNP invariants', () => {
  it('a private mapping whose RMP entry belongs to another ASID', () => {
    const t = snpVm();
    const pfn = mapped(t);
    expect(rmpupdateInsn(t.host.rmp, pfn, { gpa: GPA0, assigned: true, pagesize: 0, immutable: false, asid: t.b.asid + 1 })).toBe(0);
    expect(t.b.checkInvariants!().some((s) => /private NPT mapping .*RMP asid/.test(s))).toBe(true);
  });

  it('a private mapping whose RMP entry records another gpa', () => {
    const t = snpVm();
    const pfn = mapped(t);
    expect(rmpupdateInsn(t.host.rmp, pfn, { gpa: GPA0 + PAGE_SIZE, assigned: true, pagesize: 0, immutable: false, asid: t.b.asid })).toBe(0);
    expect(t.b.checkInvariants!().some((s) => /private NPT mapping .*RMP gpa/.test(s))).toBe(true);
  });

  it('a private mapping whose page is no longer assigned', () => {
    const t = snpVm();
    const pfn = mapped(t);
    expect(rmpupdateInsn(t.host.rmp, pfn, { gpa: 0, assigned: false, pagesize: 0, immutable: false, asid: 0 })).toBe(0);
    expect(t.b.checkInvariants!().some((s) => /private NPT mapping .*no assigned RMP entry/.test(s))).toBe(true);
  });

  it('a 2M private mapping over a 4K RMP entry', () => {
    const t = snpVm({ huge: true });
    t.vm.setMemoryAttributes({ address: GPA0, size: 512 * PAGE_SIZE, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE, flags: 0 });
    t.vcpu.guestWrite(GPA0, 8, 1n, true);
    expect(t.vm.mmu.leafAt(GFN0, true)?.level).toBe(PG_LEVEL_2M);
    const head = t.vm.gmemPeekPfn(GFN0);
    // PSMASH without the zap that sev_handle_rmp_fault() does after it
    expect(t.host.snpRmptablePsmash(head)).toBe(0);
    expect(t.b.checkInvariants!().some((s) => /RMP page size .* smaller than the mapping/.test(s))).toBe(true);
  });

  it('under the unmap policy, an assigned frame back in the direct map', () => {
    const t = snpVm({ options: { directmap: 'unmap' } });
    const pfn = mapped(t);
    expect(t.host.directmap.isPresent(pfn)).toBe(false);
    t.host.directmap.restore(pfn, 1);
    expect(t.b.checkInvariants!().some((s) => /still in the direct map/.test(s))).toBe(true);
    // another guest's frames are not this VM's business
    const other = snpVm({ options: { directmap: 'unmap' } });
    expect(other.b.checkInvariants!()).toEqual([]);
  });

  it('a leaked frame allocated again', () => {
    const t = snpVm();
    const phys = t.kvm.process.phys;
    const p = phys.allocPage();
    phys.freePage(p);
    t.host.snpLeakPages(p, 1);
    expect(t.b.checkInvariants!()).toEqual([]);
    expect(phys.allocPage()).toBe(p);
    expect(t.b.checkInvariants!().some((s) => /leaked pfn .* allocated again/.test(s))).toBe(true);
  });
});
