/**
 * The SNP backend's RMP hooks one branch at a time (arch/x86/kvm/svm/sev.c): sev_gmem_prepare()
 * and is_large_rmp_possible(), sev_gmem_invalidate(), sev_gmem_max_mapping_level(), the RMP
 * check of a guest access (APM vol. 2 "RMP and VMPL access checks": assigned, ASID, gpa, page
 * size, validated) and sev_handle_rmp_fault(). Found missing by mutation testing
 * (docs/testing.md).
 */
import { describe, expect, it } from 'vitest';
import { ERRNO, KVM_MEMORY_ATTRIBUTE_PRIVATE, PAGE_SIZE, PG_LEVEL_2M, PG_LEVEL_4K } from '@ccmem/core';
import { PFERR_GUEST_ENC_MASK, PFERR_GUEST_RMP_MASK, PFERR_GUEST_SIZEM_MASK, PSMASH_FAIL_PERMISSION } from './instructions.js';
import { GFN0, GPA0, snpVm } from './testing/snp-vm.js';

type T = ReturnType<typeof snpVm>;
const RMP = PFERR_GUEST_RMP_MASK;
const ENC = PFERR_GUEST_RMP_MASK + PFERR_GUEST_ENC_MASK;

function setPrivate(t: T, gfn: number, n: number) {
  t.vm.setMemoryAttributes({ address: GPA0 + gfn * PAGE_SIZE, size: n * PAGE_SIZE, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE, flags: 0 });
}
const backendStats = (t: T) => (t.b.inspect!({ what: 'stats' }) as { backend: Record<string, number> }).backend;
/** a 2M-aligned run of free host frames: the next 2M block above what the allocator handed out */
function alignedFrames(t: T): number {
  const phys = t.kvm.process.phys;
  const p = phys.allocPage();
  phys.freePage(p);
  return (Math.floor(p / 512) + 4) * 512;
}

describe('sev_gmem_prepare()', () => {
  it('a frame the RMP does not cover is -ENOENT; an assigned one is left alone', () => {
    const t = snpVm();
    expect(t.b.gmemPrepare!(2 ** 40, GFN0, 0)).toBe(-ERRNO.ENOENT);
    const head = alignedFrames(t);
    expect(t.b.gmemPrepare!(head, GFN0, 0)).toBe(0);
    expect(t.host.rmp.inspect(head)).toMatchObject({ assigned: true, gpa: GPA0, level: PG_LEVEL_4K });
    const updates = t.host.stats.rmpupdates;
    expect(t.b.gmemPrepare!(head, GFN0 + 1, 0)).toBe(0);
    expect(t.host.stats.rmpupdates).toBe(updates);
    expect(t.host.rmp.inspect(head).gpa).toBe(GPA0);
  });

  it('is_large_rmp_possible(): a 2M folio gets a 2M entry only when none of its 512 frames is assigned', () => {
    const t = snpVm();
    const head = alignedFrames(t);
    expect(t.b.gmemPrepare!(head + 3, GFN0 + 3, 0)).toBe(0); // one 4K frame of the block
    expect(t.b.gmemPrepare!(head + 5, GFN0 + 5, 9)).toBe(0);
    expect(t.host.rmp.lookup(head + 5)).toEqual({ assigned: true, level: PG_LEVEL_4K });
    expect(t.host.rmp.isAssigned(head + 6)).toBe(false);
    const next = head + 512;
    expect(t.b.gmemPrepare!(next + 7, GFN0 + 512 + 7, 9)).toBe(0);
    expect(t.host.rmp.lookup(next)).toEqual({ assigned: true, level: PG_LEVEL_2M });
    expect(t.host.rmp.inspect(next)).toMatchObject({ gpa: GPA0 + 512 * PAGE_SIZE });
  });

  it('a page guest_memfd hands out after it was leaked is reported', () => {
    const t = snpVm();
    const head = alignedFrames(t);
    t.host.snpLeakPages(head, 1);
    t.b.gmemPrepare!(head, GFN0, 0);
    expect(t.b.checkInvariants!().some((s) => /leaked pfn/.test(s))).toBe(true);
  });
});

describe('sev_gmem_invalidate() and sev_gmem_max_mapping_level()', () => {
  it('4K entries at a 2M-aligned frame go back one by one, without PSMASH', () => {
    const t = snpVm();
    const head = alignedFrames(t);
    for (const i of [0, 1, 511]) t.b.gmemPrepare!(head + i, GFN0 + i, 0);
    t.b.gmemInvalidate!(head, head + 512);
    for (const i of [0, 1, 511]) expect(t.host.rmp.isAssigned(head + i)).toBe(false);
    expect(t.host.stats.psmashes).toBe(0);
  });

  it('a 2M entry cut short at its end is PSMASHed first', () => {
    const t = snpVm();
    const head = alignedFrames(t);
    t.b.gmemPrepare!(head, GFN0, 9);
    t.b.gmemInvalidate!(head, head + 511);
    expect(t.host.stats.psmashes).toBe(1);
    expect(t.host.rmp.isAssigned(head + 510)).toBe(false);
    expect(t.host.rmp.lookup(head + 511)).toEqual({ assigned: true, level: PG_LEVEL_4K });
  });

  it('NPT maps a private page no larger than its RMP entry; a frame without one at 4K', () => {
    const t = snpVm();
    const head = alignedFrames(t);
    t.b.gmemPrepare!(head, GFN0, 9);
    expect(t.b.gmemMaxMappingLevel!(head + 3, true)).toBe(PG_LEVEL_2M);
    expect(t.b.gmemMaxMappingLevel!(head + 512, true)).toBe(PG_LEVEL_4K);
    expect(t.b.gmemMaxMappingLevel!(2 ** 40, true)).toBe(PG_LEVEL_4K);
  });
});

describe('the RMP check of a private guest access', () => {
  const access = (t: T, pfn: number, gfn: number, level = PG_LEVEL_4K) =>
    t.b.checkGuestAccess!({ vcpuId: 0, gpa: gfn * PAGE_SIZE, gfn, pfn, level, isPrivate: true, write: true, fetch: false });

  it('unassigned, another ASID, another gpa, another page size: each an RMP #NPF; unvalidated: #VC', () => {
    const t = snpVm();
    const head = alignedFrames(t);
    expect(access(t, head, GFN0)).toMatchObject({ kind: 'npf', errorCode: ENC });
    t.b.gmemPrepare!(head, GFN0, 0);
    expect(access(t, head, GFN0 + 1)).toMatchObject({ kind: 'npf', errorCode: ENC });
    expect(access(t, head, GFN0, PG_LEVEL_2M)).toMatchObject({ kind: 'npf', errorCode: ENC + PFERR_GUEST_SIZEM_MASK });
    const before = backendStats(t).vcNotValidated!;
    expect(access(t, head, GFN0)).toMatchObject({ kind: 'guest-exception', vector: '#VC' });
    expect(backendStats(t).vcNotValidated).toBe(before + 1);
    // a frame of another guest
    const other = snpVm();
    other.host.rmpMakePrivate(head + 1, GPA0, PG_LEVEL_4K, t.b.asid + 1, false, 'split');
    expect(access(t, head + 1, GFN0)).toMatchObject({ kind: 'npf', errorCode: ENC });
  });

  it('a shared access to an unassigned frame is fine', () => {
    const t = snpVm();
    const head = alignedFrames(t);
    expect(t.b.checkGuestAccess!({ vcpuId: 0, gpa: GPA0, gfn: GFN0, pfn: head, level: PG_LEVEL_4K, isPrivate: false, write: true, fetch: false })).toEqual({ kind: 'ok' });
  });
});

describe('sev_handle_rmp_fault()', () => {
  it('ignores a fault without the RMP bit', () => {
    const t = snpVm();
    t.b.handleNpfExtra!(0, GPA0, PFERR_GUEST_ENC_MASK);
    expect(backendStats(t).rmpFaults).toBe(0);
  });

  it('a private gfn whose page is not assigned yet: nothing done; an assigned 4K page: spurious', () => {
    const t = snpVm({ options: { rmpTiming: 'set-attributes' } });
    setPrivate(t, 0, 1);
    // set-attributes timing assigned the page from the post hook; make another gfn private with
    // its page unassigned by failing that RMPUPDATE
    t.host.injectResult('rmpupdate', 6);
    setPrivate(t, 1, 1);
    t.b.handleNpfExtra!(0, GPA0 + PAGE_SIZE, RMP);
    expect(backendStats(t)).toMatchObject({ rmpFaults: 1, rmpFaultUnassigned: 1, rmpFaultSpurious: 0 });
    t.b.handleNpfExtra!(0, GPA0, RMP);
    expect(backendStats(t)).toMatchObject({ rmpFaults: 2, rmpFaultUnassigned: 1, rmpFaultSpurious: 1, rmpFaultPsmash: 0 });
  });

  it('a private gfn outside the guest_memfd memslot: nothing done', () => {
    const t = snpVm();
    t.vm.setMemoryAttributes({ address: 0, size: PAGE_SIZE, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE, flags: 0 });
    t.b.handleNpfExtra!(0, 0, RMP);
    expect(backendStats(t)).toMatchObject({ rmpFaults: 1, rmpFaultUnassigned: 0, rmpFaultSpurious: 0, rmpFaultPsmash: 0 });
  });

  it('a failed PSMASH that left the entry 2M: warn and zap anyway', () => {
    const t = snpVm({ huge: true });
    setPrivate(t, 0, 512);
    t.vcpu.guestWrite(GPA0, 8, 1n, true);
    const head = t.vm.gmemPeekPfn(GFN0);
    expect(t.host.rmp.level(head)).toBe(PG_LEVEL_2M);
    expect(t.vm.mmu.leafAt(GFN0 + 3, true)).toBeTruthy();
    t.host.injectResult('psmash', PSMASH_FAIL_PERMISSION);
    t.b.handleNpfExtra!(0, GPA0 + 3 * PAGE_SIZE, RMP + PFERR_GUEST_SIZEM_MASK);
    expect(t.host.rmp.level(head)).toBe(PG_LEVEL_2M);
    expect(backendStats(t)).toMatchObject({ rmpFaultPsmash: 1 });
    expect(t.vm.mmu.leafAt(GFN0 + 3, true)).toBeFalsy();
  });
});
