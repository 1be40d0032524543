import { describe, expect, it } from 'vitest';
import { KVM_HC_MAP_GPA_RANGE, KVM_X86_SNP_VM, KvmError, PG_LEVEL_2M, PG_LEVEL_4K } from '@ccmem/core';
import { SnpHost, PFERR_GUEST_RMP_MASK, PFERR_GUEST_SIZEM_MASK, pferrHas, RMPUPDATE_FAIL_PERMISSION, rmpupdateInsn } from './instructions.js';
import type { SnpPageLevel, SnpPscEntry } from './edge.js';
import { createSnpBackend, SNP_PAGE_STATE_PRIVATE, SNP_PAGE_STATE_PSMASH, SNP_PAGE_STATE_SHARED, VMGEXIT_PSC_ERROR_GENERIC, VMGEXIT_PSC_ERROR_INVALID_ENTRY, VMGEXIT_PSC_ERROR_INVALID_HDR, type SnpBackend } from './snp-backend.js';
import { PhysMem } from '@ccmem/core';
import { FakeVm } from './testing/fake-vm.js';

const PFN_BASE = 0x40000; // 2M-aligned, inside the host
const ENC = 1 << 4;
const SZ_2M = 1;

function setup(o: { directmap?: 'split' | 'unmap'; rmpTiming?: 'prepare' | 'set-attributes'; order?: number; npages?: number; nrVcpus?: number } = {}) {
  const phys = new PhysMem();
  const host = new SnpHost({ maxPfn: 1 << 22, phys });
  const b = createSnpBackend({ directmap: o.directmap ?? 'split', rmpTiming: o.rmpTiming ?? 'prepare', phys, host });
  const vm = new FakeVm({ phys, npages: o.npages ?? 4096, pfnBase: PFN_BASE, order: o.order ?? 0, nrVcpus: o.nrVcpus ?? 1 }).attach(b);
  return { phys, host, b, vm };
}

function pvalidate(b: SnpBackend, gpa: number, validate = true, level: SnpPageLevel = PG_LEVEL_4K) {
  return b.guestOp!(0, { op: 'pvalidate', gpa, level, validate });
}

describe('createSnpBackend', () => {
  it('describes an SNP VM and takes an ASID from the host', () => {
    const phys = new PhysMem();
    const host = new SnpHost({ maxSnpAsid: 1 });
    const b = createSnpBackend({ directmap: 'split', rmpTiming: 'prepare', phys, host });
    expect(b).toMatchObject({ vmType: KVM_X86_SNP_VM, hasPrivateMem: true, nrMemslotAsIds: 1, hasReadonlyMem: false, hasMirroredTdp: false, gfnDirectBits: 0, supportsGmemInitShared: false, asid: 1 });
    expect(b.preFaultAllowed()).toBe(false);
    expect(b.faultIsPrivate!(0x1000, true)).toBe(true);
    expect(b.faultIsPrivate!(0x1000, false)).toBe(false);
    expect(() => createSnpBackend({ directmap: 'split', rmpTiming: 'prepare', phys, host })).toThrow(KvmError);
    b.destroy!();
    expect(createSnpBackend({ directmap: 'split', rmpTiming: 'prepare', phys, host }).asid).toBe(1);
  });
});

describe('prepare timing (upstream)', () => {
  it('assigns at the first private fault; the guest must PVALIDATE before using the page', () => {
    const { b, vm, host } = setup();
    vm.setAttributes(0, 16, true);
    expect(host.rmp.assignedPages).toBe(0); // nothing until a fault
    expect(vm.accessPrivate(0x3000)).toMatchObject({ kind: 'guest-exception', vector: '#VC' });
    const pfn = PFN_BASE + 3;
    expect(b.inspect!({ what: 'rmp', pfn })).toMatchObject({ assigned: true, asid: b.asid, gpa: 0x3000, validated: false, level: PG_LEVEL_4K });
    expect(b.inspect!({ what: 'rmp', gpa: 0x3000 })).toMatchObject({ pfn });
    expect(pvalidate(b, 0x3000)).toMatchObject({ ret: 0 });
    expect(pvalidate(b, 0x3000)).toMatchObject({ ret: 255 }); // already validated
    expect(vm.accessPrivate(0x3000)).toEqual({ kind: 'ok' });
    // upstream direct map: split to 4K around the page, never unmapped
    expect(host.directmap.mappingLevel(pfn)).toBe(PG_LEVEL_4K);
    expect(b.checkHostAccess!(pfn, false)).toBeNull();
    expect(b.checkHostAccess!(pfn, true)).toMatch(/RMP #PF/);
    expect(b.checkHostAccess!(pfn + 1, true)).toBeNull();
    expect(b.checkInvariants!()).toEqual([]);
    expect(b.gmemMaxMappingLevel!(pfn, true)).toBe(PG_LEVEL_4K);
    expect(b.gmemMaxMappingLevel!(pfn, false)).toBe(0);
  });

  it('uses a 2M RMP entry for a 2M folio, and PSMASHes + zaps when the NPT maps it at 4K', () => {
    const { b, vm, host } = setup({ order: 9 });
    vm.setAttributes(0, 1024, true);
    expect(vm.accessPrivate(0x5000)).toMatchObject({ vector: '#VC' });
    expect(host.rmp.lookup(PFN_BASE + 5)).toEqual({ assigned: true, level: PG_LEVEL_2M });
    expect(vm.npt.get(5)?.level).toBe(PG_LEVEL_2M);
    expect(pvalidate(b, 0, true, PG_LEVEL_2M)).toMatchObject({ ret: 0 });
    expect(vm.accessPrivate(0x5000)).toEqual({ kind: 'ok' });
    expect(b.checkInvariants!()).toEqual([]);
    // a 4K mapping of a 2M RMP page: #NPF(RMP|SIZEM) → sev_handle_rmp_fault PSMASHes and zaps
    vm.npt.clear();
    const v = b.checkGuestAccess!({ vcpuId: 0, gpa: 0x7000, gfn: 7, pfn: PFN_BASE + 7, level: PG_LEVEL_4K, isPrivate: true, write: false, fetch: false });
    expect(v.kind).toBe('npf');
    if (v.kind === 'npf') expect(pferrHas(v.errorCode, PFERR_GUEST_SIZEM_MASK) && pferrHas(v.errorCode, PFERR_GUEST_RMP_MASK)).toBe(true);
    vm.faultPrivate(7, PG_LEVEL_4K);
    expect(vm.accessPrivate(0x7000)).toEqual({ kind: 'ok' }); // validated bit survived PSMASH
    expect(host.rmp.level(PFN_BASE + 7)).toBe(PG_LEVEL_4K);
    expect(vm.zaps.at(-1)).toEqual([7, 7 + 512]);
    expect(b.inspect!({ what: 'stats' })).toMatchObject({ backend: { rmpFaultPsmash: 1 } });
  });

  it('a 4K PVALIDATE of a 2M RMP page takes the SIZEM #NPF, KVM PSMASHes, the retry succeeds', () => {
    const { b, vm, host } = setup({ order: 9 });
    vm.setAttributes(0, 512, true);
    const r = pvalidate(b, 0x9000);
    expect(r).toMatchObject({ ret: 0, detail: { retries: 1 } });
    expect(host.rmp.level(PFN_BASE)).toBe(PG_LEVEL_4K);
    expect(host.rmp.inspect(PFN_BASE + 9).validated).toBe(true);
    expect(host.rmp.inspect(PFN_BASE + 10).validated).toBe(false);
  });

  it('sev_gmem_invalidate returns pages: whole 2M at once, a partial range after PSMASH', () => {
    const { vm, host } = setup({ order: 9 });
    vm.setAttributes(0, 1024, true);
    vm.faultPrivate(0);
    vm.faultPrivate(512);
    expect(host.rmp.assignedPages).toBe(1024);
    vm.punchHole(0, 512);
    expect(host.rmp.lookup(PFN_BASE)).toEqual({ assigned: false, level: PG_LEVEL_4K });
    vm.punchHole(512, 520);
    expect(host.rmp.isAssigned(PFN_BASE + 512 + 7)).toBe(false);
    expect(host.rmp.isAssigned(PFN_BASE + 512 + 8)).toBe(true);
    expect(host.rmp.level(PFN_BASE + 512 + 8)).toBe(PG_LEVEL_4K);
    expect(host.stats.psmashes).toBe(1);
  });

  it('a shared access to an assigned page is an RMP #NPF that KVM ignores', () => {
    const { b, vm } = setup();
    vm.setAttributes(0, 1, true);
    vm.faultPrivate(0);
    const v = b.checkGuestAccess!({ vcpuId: 0, gpa: 0, gfn: 0, pfn: PFN_BASE, level: PG_LEVEL_4K, isPrivate: false, write: true, fetch: false });
    expect(v).toMatchObject({ kind: 'npf', errorCode: PFERR_GUEST_RMP_MASK });
    vm.private.delete(0);
    b.handleNpfExtra!(0, 0, PFERR_GUEST_RMP_MASK);
    expect(b.inspect!({ what: 'stats' })).toMatchObject({ backend: { rmpFaultShared: 1 } });
  });
});

describe('set-attributes timing (seed update_mem_attr)', () => {
  // the race itself (a fault between the store and the RMPUPDATE) runs on the real VM: snp-e2e.test.ts
  it('leaks a page the post hook cannot return to shared', () => {
    const { b, vm, host } = setup({ rmpTiming: 'set-attributes' });
    vm.setAttributes(0, 1, true);
    host.injectResult('rmpupdate', RMPUPDATE_FAIL_PERMISSION);
    vm.setAttributes(0, 1, false);
    expect(host.leakedPages.has(PFN_BASE)).toBe(true);
    expect(b.inspect!({ what: 'stats' })).toMatchObject({ backend: { attrRmpFailures: 1 } });
  });
});

describe('unmap direct-map policy (seed)', () => {
  it('takes private pages out of the direct map and puts them back after private→shared', () => {
    const { b, vm, host } = setup({ directmap: 'unmap', rmpTiming: 'set-attributes' });
    vm.gmemGetPfn(1); // allocated while shared
    vm.setAttributes(0, 2, true);
    expect(host.directmap.isPresent(PFN_BASE + 1)).toBe(false);
    expect(host.directmap.isPresent(PFN_BASE)).toBe(false);
    expect(b.checkHostAccess!(PFN_BASE, false)).toMatch(/not mapped/);
    expect(b.checkInvariants!()).toEqual([]);
    vm.setAttributes(0, 2, false);
    expect(host.directmap.isPresent(PFN_BASE)).toBe(true);
    expect(b.checkHostAccess!(PFN_BASE, true)).toBeNull();
    expect(host.directmap.stats.restores).toBe(2);
  });

  it('with prepare timing, the page stays unmapped until guest_memfd frees it', () => {
    const { vm, host } = setup({ directmap: 'unmap' });
    vm.setAttributes(0, 1, true);
    vm.faultPrivate(0);
    vm.setAttributes(0, 1, false);
    expect(host.directmap.isPresent(PFN_BASE)).toBe(false);
    vm.punchHole(0, 1);
    expect(host.directmap.isPresent(PFN_BASE)).toBe(true);
  });
});

describe('invariants', () => {
  it('reports a 4K private page under a large direct-map page, and validated without assigned', () => {
    const { b, host } = setup();
    rmpupdateInsn(host.rmp, PFN_BASE + 9, { gpa: 0x9000, assigned: true, pagesize: 0, immutable: false, asid: b.asid });
    host.rmp.updateWord(PFN_BASE + 20, 1 << 4, 0); // validated on an unassigned entry
    const v = b.checkInvariants!();
    expect(v.some((s) => /under a 1G direct-map page/.test(s))).toBe(true);
    expect(v.some((s) => /validated but not assigned/.test(s))).toBe(true);
  });
});

describe('page-state change', () => {
  it('MSR protocol: one 4K page per KVM_HC_MAP_GPA_RANGE exit', () => {
    const { b, vm } = setup();
    const r = b.guestOp!(0, { op: 'psc_msr', gpa: 0x5000, operation: SNP_PAGE_STATE_PRIVATE });
    expect(r.exit).toEqual({ reason: 'KVM_EXIT_HYPERCALL', hypercall: { nr: KVM_HC_MAP_GPA_RANGE, args: [0x5000, 1, ENC], ret: 0, flags: 0 } });
    expect(b.completeHypercall!(0, 0)).toEqual({ ret: 0 });
    expect(b.completeHypercall!(0, 0)).toBeNull();
    b.guestOp!(0, { op: 'psc_msr', gpa: 0x5000, operation: SNP_PAGE_STATE_SHARED });
    expect(b.completeHypercall!(0, 22)).toEqual({ ret: 'GHCB_MSR_PSC_RESP_ERROR' });
    vm.exitHypercalls = 0; // KVM_CAP_EXIT_HYPERCALL without KVM_HC_MAP_GPA_RANGE
    expect(b.guestOp!(0, { op: 'psc_msr', gpa: 0x5000, operation: SNP_PAGE_STATE_PRIVATE })).toMatchObject({ ret: 'GHCB_MSR_PSC_RESP_ERROR' });
  });

  it('GHCB protocol merges adjacent entries into one exit per run and resumes on completion', () => {
    const { b } = setup();
    const entries: SnpPscEntry[] = [
      { gfn: 0, operation: SNP_PAGE_STATE_PRIVATE },
      { gfn: 1, operation: SNP_PAGE_STATE_PRIVATE },
      { gfn: 2, operation: SNP_PAGE_STATE_PRIVATE },
      { gfn: 3, operation: SNP_PAGE_STATE_SHARED },
      { gfn: 512, operation: SNP_PAGE_STATE_PSMASH, pagesize: 1 },
      { gfn: 1024, operation: SNP_PAGE_STATE_PRIVATE, pagesize: 1 },
      { gfn: 1536, operation: SNP_PAGE_STATE_PRIVATE, pagesize: 1 },
    ];
    const exits: number[][] = [];
    let r = b.guestOp!(0, { op: 'psc', entries });
    while (r.exit) {
      if (r.exit.reason === 'KVM_EXIT_HYPERCALL') exits.push(r.exit.hypercall.args);
      r = b.completeHypercall!(0, 0)!;
    }
    expect(exits).toEqual([
      [0, 3, ENC],
      [3 * 4096, 1, 0],
      [1024 * 4096, 1024, ENC | SZ_2M],
    ]);
    expect(r).toMatchObject({ ret: 0, detail: { cur_entry: 7, cur_page: [1, 1, 1, 1, 512, 512, 512] } });
  });

  it('GHCB protocol errors: userspace failure, bad header, bad entry; 253 entries max', () => {
    const { b } = setup();
    b.guestOp!(0, { op: 'psc', entries: [{ gfn: 0, operation: SNP_PAGE_STATE_PRIVATE }] });
    expect(b.completeHypercall!(0, 11)).toMatchObject({ ret: VMGEXIT_PSC_ERROR_GENERIC });
    const many = Array.from({ length: 254 }, (_, i) => ({ gfn: 2 * i, operation: SNP_PAGE_STATE_SHARED }));
    expect(b.guestOp!(0, { op: 'psc', entries: many })).toMatchObject({ ret: VMGEXIT_PSC_ERROR_INVALID_HDR });
    const max = many.slice(0, 253);
    let r = b.guestOp!(0, { op: 'psc', entries: max });
    let n = 0;
    while (r.exit) {
      n++;
      r = b.completeHypercall!(0, 0)!;
    }
    expect(n).toBe(253);
    expect(b.guestOp!(0, { op: 'psc', entries: [{ gfn: 5, operation: SNP_PAGE_STATE_PRIVATE, pagesize: 1 }] })).toMatchObject({ ret: VMGEXIT_PSC_ERROR_INVALID_ENTRY });
  });

  it('the guest conversion order: PSC, then PVALIDATE, then C-bit accesses; the wrong order fails', () => {
    const { b, vm } = setup();
    // shared→private. PVALIDATE before the PSC: the gfn is still shared → implicit conversion exit
    expect(pvalidate(b, 0x8000).exit).toMatchObject({ reason: 'KVM_EXIT_MEMORY_FAULT', memory_fault: { gpa: 0x8000, size: 4096 } });
    const psc = b.guestOp!(0, { op: 'psc_msr', gpa: 0x8000, operation: SNP_PAGE_STATE_PRIVATE });
    expect(psc.exit?.reason).toBe('KVM_EXIT_HYPERCALL');
    vm.setAttributes(8, 9, true); // the VMM's KVM_SET_MEMORY_ATTRIBUTES
    b.completeHypercall!(0, 0);
    expect(vm.accessPrivate(0x8000)).toMatchObject({ vector: '#VC' }); // access before PVALIDATE
    expect(pvalidate(b, 0x8000)).toMatchObject({ ret: 0 });
    expect(vm.accessPrivate(0x8000)).toEqual({ kind: 'ok' });
    // private→shared: rescind validation, PSC, then clear the C-bit
    expect(pvalidate(b, 0x8000, false)).toMatchObject({ ret: 0 });
    b.guestOp!(0, { op: 'psc_msr', gpa: 0x8000, operation: SNP_PAGE_STATE_SHARED });
    vm.setAttributes(8, 9, false);
    b.completeHypercall!(0, 0);
    expect(vm.accessPrivate(0x8000)).toEqual({ kind: 'memory-fault', gpa: 0x8000 });
    expect(pvalidate(b, 0x8000, false).exit?.reason).toBe('KVM_EXIT_MEMORY_FAULT'); // too late to rescind
  });

  it('RMPADJUST sets VMPL permissions on a validated private page', () => {
    const { b, vm } = setup();
    vm.setAttributes(0, 1, true);
    pvalidate(b, 0);
    expect(b.guestOp!(0, { op: 'rmpadjust', gpa: 0, level: PG_LEVEL_4K, vmpl: 1, perms: 3 })).toMatchObject({ ret: 0 });
    expect(b.inspect!({ what: 'rmp', pfn: PFN_BASE })).toMatchObject({ vmpl: [3, 0, 0] });
  });
});
