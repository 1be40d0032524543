/** The SNP backend's rules, on the core VM with a real guest_memfd (src/testing/snp-vm.ts). */
import { describe, expect, it } from 'vitest';
import { KVM_CAP_EXIT_HYPERCALL, KVM_HC_MAP_GPA_RANGE, KVM_MEMORY_ATTRIBUTE_PRIVATE, KVM_X86_SNP_VM, PAGE_SIZE, PG_LEVEL_2M, PG_LEVEL_4K } from '@ccmem/core';
import { PFERR_GUEST_RMP_MASK, PFERR_GUEST_SIZEM_MASK, pferrHas, RMPUPDATE_FAIL_PERMISSION, rmpupdateInsn } from './instructions.js';
import type { SnpPageLevel, SnpPscEntry } from './edge.js';
import { SNP_PAGE_STATE_PRIVATE, SNP_PAGE_STATE_PSMASH, SNP_PAGE_STATE_SHARED, VMGEXIT_PSC_ERROR_GENERIC, VMGEXIT_PSC_ERROR_INVALID_ENTRY, VMGEXIT_PSC_ERROR_INVALID_HDR, type SnpBackend } from './snp-backend.js';
import { GFN0, GPA0, MiB, snpKvm, snpVm } from './testing/snp-vm.js';

const ENC = 1 << 4;
const SZ_2M = 1;

type SnpVm = ReturnType<typeof snpVm>;

function pvalidate(vcpu: SnpVm['vcpu'], gpa: number, validate = true, level: SnpPageLevel = PG_LEVEL_4K) {
  return vcpu.guestOp({ op: 'pvalidate', gpa, level, validate });
}

/** KVM_SET_MEMORY_ATTRIBUTES over [gfn, gfn + n) of the memslot */
function setPrivate(t: SnpVm, gfn: number, n: number, priv = true) {
  t.vm.setMemoryAttributes({ address: GPA0 + gfn * PAGE_SIZE, size: n * PAGE_SIZE, attributes: priv ? KVM_MEMORY_ATTRIBUTE_PRIVATE : 0, flags: 0 });
}

/** a private 8-byte guest write at gpa: KVM_RUN until it completes or exits */
function privateWrite(t: SnpVm, gpa: number) {
  return t.vcpu.guestWrite(gpa, 8, 1n, true);
}

/** the pfn guest_memfd holds for the gfn (memslot-relative) */
function pfnOf(t: SnpVm, gfn: number): number {
  const pfn = t.vm.gmemPeekPfn(GFN0 + gfn);
  expect(pfn).toBeGreaterThanOrEqual(0);
  return pfn;
}

function stats(t: SnpVm) {
  return t.b.inspect!({ what: 'stats' }) as { backend: Record<string, number> };
}

describe('an SNP VM', () => {
  it('describes an SNP VM; KVM_SEV_INIT2 takes its ASID from the host (EBUSY when taken, back after destroy)', () => {
    const kvm = snpKvm();
    const vm = kvm.createVm({ type: KVM_X86_SNP_VM, options: { asid: 1 } });
    const b = vm.backend as SnpBackend;
    expect(b).toMatchObject({ vmType: KVM_X86_SNP_VM, hasPrivateMem: true, nrMemslotAsIds: 1, hasReadonlyMem: false, hasMirroredTdp: false, gfnDirectBits: 0, supportsGmemInitShared: false });
    expect(b.preFaultAllowed()).toBe(false);
    expect(b.faultIsPrivate!(0x1000, true)).toBe(true);
    expect(b.faultIsPrivate!(0x1000, false)).toBe(false);
    // __sev_guest_init(): the ASID comes with KVM_SEV_INIT2, not KVM_CREATE_VM
    expect(b.asid).toBe(0);
    const other = kvm.createVm({ type: KVM_X86_SNP_VM, options: { asid: 1 } });
    vm.memoryEncryptOp({ cmd: 'sev_init2' });
    expect(b.asid).toBe(1);
    expect(() => other.memoryEncryptOp({ cmd: 'sev_init2' })).toThrow(expect.objectContaining({ code: 'EBUSY' }));
    expect(other.backend).toMatchObject({ asid: 0, sevInfo: { active: false, needInit: true } });
    kvm.process.close(vm.fd); // sev_vm_destroy(): the ASID is reclaimable
    expect(other.memoryEncryptOp({ cmd: 'sev_init2' })).toEqual({ ret: 0 });
    expect(other.backend).toMatchObject({ asid: 1 });
  });

  it('before KVM_SEV_INIT2: KVM_RUN is EINVAL, the SNP launch is refused, guest_memfd prepares nothing', () => {
    const t = snpVm({ noInit2: true });
    setPrivate(t, 0, 1);
    expect(privateWrite(t, GPA0)).toMatchObject({ errno: 'EINVAL' });
    expect(pvalidate(t.vcpu, GPA0)).toMatchObject({ errno: 'EINVAL' });
    expect(() => t.vm.memoryEncryptOp({ cmd: 'snp_launch_start' })).toThrow(expect.objectContaining({ code: 'ENOTTY' }));
    expect(() => t.vm.memoryEncryptOp({ cmd: 'snp_launch_update', gfn_start: GFN0, uaddr: t.hva, len: PAGE_SIZE, type: 1 })).toThrow(expect.objectContaining({ code: 'EINVAL' }));
    expect(() => t.vm.memoryEncryptOp({ cmd: 'snp_launch_finish' })).toThrow(expect.objectContaining({ code: 'ENOTTY' }));
    // sev_gmem_prepare() of a VM that is not an SNP guest: no RMP change
    expect(t.vm.gmemGetPfn(GFN0)).toMatchObject({ maxOrder: 0 });
    expect(t.host.rmp.assignedPages).toBe(0);
    // a vCPU exists: KVM_SEV_INIT2 is too late (kvm->created_vcpus) and the VM stays unusable
    expect(() => t.vm.memoryEncryptOp({ cmd: 'sev_init2' })).toThrow(expect.objectContaining({ code: 'EINVAL' }));
    expect(t.b.asid).toBe(0);
    expect(privateWrite(t, GPA0)).toMatchObject({ errno: 'EINVAL' });
  });
});

describe('prepare timing (upstream)', () => {
  it('assigns at the first private fault; the guest must PVALIDATE before using the page', () => {
    const t = snpVm();
    const { b, host, vcpu } = t;
    setPrivate(t, 0, 16);
    expect(host.rmp.assignedPages).toBe(0); // nothing until a fault
    expect(privateWrite(t, GPA0 + 0x3000).exception?.vector).toBe('#VC');
    const pfn = pfnOf(t, 3);
    expect(host.rmp.assignedPages).toBe(1);
    expect(b.inspect!({ what: 'rmp', pfn })).toMatchObject({ assigned: true, asid: b.asid, gpa: GPA0 + 0x3000, validated: false, level: PG_LEVEL_4K });
    expect(b.inspect!({ what: 'rmp', gpa: GPA0 + 0x3000 })).toMatchObject({ pfn });
    expect(pvalidate(vcpu, GPA0 + 0x3000)).toMatchObject({ ret: 0 });
    expect(pvalidate(vcpu, GPA0 + 0x3000)).toMatchObject({ ret: 255 }); // already validated
    expect(vcpu.guestWrite(GPA0 + 0x3000, 8, 0x1234n, true)).toEqual({});
    expect(vcpu.guestRead(GPA0 + 0x3000, 8, true).value).toBe(0x1234n);
    expect(b.inspect!({ what: 'rmp', gpa: GPA0 + 0x3000 })).toMatchObject({ assigned: true, validated: true, asid: b.asid });
    // upstream direct map: split to 4K around the page, never unmapped
    expect(host.directmap.mappingLevel(pfn)).toBe(PG_LEVEL_4K);
    expect(b.checkHostAccess!(pfn, false)).toBeNull();
    expect(b.checkHostAccess!(pfn, true)).toMatch(/RMP #PF/);
    expect(b.checkHostAccess!(pfn + 1, true)).toBeNull(); // the only assigned page is pfn
    expect(b.checkInvariants!()).toEqual([]);
    expect(b.gmemMaxMappingLevel!(pfn, true)).toBe(PG_LEVEL_4K);
    expect(b.gmemMaxMappingLevel!(pfn, false)).toBe(0);
  });

  it('uses a 2M RMP entry for a 2M folio, and PSMASHes + zaps when the NPT maps it at 4K', () => {
    const t = snpVm({ huge: true });
    const { b, host, vm, vcpu } = t;
    setPrivate(t, 0, 1024);
    expect(privateWrite(t, GPA0 + 0x5000).exception?.vector).toBe('#VC');
    const head = pfnOf(t, 0);
    expect(head % 512).toBe(0);
    expect(pfnOf(t, 5)).toBe(head + 5);
    expect(host.rmp.lookup(head + 5)).toEqual({ assigned: true, level: PG_LEVEL_2M });
    expect(vm.mmu.leafAt(GFN0 + 5, true)?.level).toBe(PG_LEVEL_2M);
    expect(pvalidate(vcpu, GPA0, true, PG_LEVEL_2M)).toMatchObject({ ret: 0 });
    expect(vcpu.guestWrite(GPA0 + 0x5000, 8, 9n, true)).toEqual({});
    expect(b.checkInvariants!()).toEqual([]);
    // a 4K mapping of a 2M RMP page: #NPF(RMP|SIZEM) → sev_handle_rmp_fault PSMASHes and zaps
    const v = b.checkGuestAccess!({ vcpuId: 0, gpa: GPA0 + 0x7000, gfn: GFN0 + 7, pfn: head + 7, level: PG_LEVEL_4K, isPrivate: true, write: false, fetch: false });
    expect(v.kind).toBe('npf');
    if (v.kind !== 'npf') return;
    expect(pferrHas(v.errorCode, PFERR_GUEST_SIZEM_MASK) && pferrHas(v.errorCode, PFERR_GUEST_RMP_MASK)).toBe(true);
    b.handleNpfExtra!(0, GPA0 + 0x7000, v.errorCode);
    expect(host.rmp.level(head + 7)).toBe(PG_LEVEL_4K);
    // the zap [gfn, gfn + 512) took the 2M leaf that covered gfn 7
    expect(vm.mmu.leafAt(GFN0 + 7, true)).toBeFalsy();
    expect(stats(t)).toMatchObject({ backend: { rmpFaultPsmash: 1 } });
    // the next fault maps at the RMP's 4K; the validated bit survived PSMASH
    expect(vcpu.guestWrite(GPA0 + 0x7000, 8, 1n, true)).toEqual({});
    expect(vm.mmu.leafAt(GFN0 + 7, true)?.level).toBe(PG_LEVEL_4K);
    expect(b.checkInvariants!()).toEqual([]);
  });

  it('a 4K PVALIDATE of a 2M RMP page takes the SIZEM #NPF, KVM PSMASHes, the retry succeeds', () => {
    const t = snpVm({ huge: true, size: 2 * MiB });
    setPrivate(t, 0, 512);
    expect(pvalidate(t.vcpu, GPA0 + 0x9000)).toMatchObject({ ret: 0, detail: { retries: 1 } });
    const head = pfnOf(t, 0);
    expect(t.host.rmp.level(head)).toBe(PG_LEVEL_4K);
    expect(t.host.rmp.inspect(head + 9).validated).toBe(true);
    expect(t.host.rmp.inspect(head + 10).validated).toBe(false);
    expect(stats(t)).toMatchObject({ backend: { rmpFaultPsmash: 1 } });
  });

  it('sev_gmem_invalidate returns pages: whole 2M at once, a partial range after PSMASH', () => {
    const t = snpVm({ huge: true });
    const { b, host } = t;
    setPrivate(t, 0, 1024);
    privateWrite(t, GPA0);
    privateWrite(t, GPA0 + 2 * MiB);
    expect(host.rmp.assignedPages).toBe(1024);
    const head0 = pfnOf(t, 0);
    const head1 = pfnOf(t, 512);
    t.punchHole(0, 2 * MiB);
    expect(host.rmp.lookup(head0)).toEqual({ assigned: false, level: PG_LEVEL_4K });
    expect(host.rmp.assignedPages).toBe(512);
    expect(host.stats.psmashes).toBe(0);
    // guest_memfd punches a 2M folio whole; the kernel function also takes a part of one
    b.gmemInvalidate!(head1, head1 + 8);
    expect(host.rmp.isAssigned(head1 + 7)).toBe(false);
    expect(host.rmp.isAssigned(head1 + 8)).toBe(true);
    expect(host.rmp.level(head1 + 8)).toBe(PG_LEVEL_4K);
    expect(host.stats.psmashes).toBe(1);
  });

  it('a shared access to an assigned page is an RMP #NPF that KVM ignores', () => {
    const t = snpVm();
    const { b } = t;
    setPrivate(t, 0, 1);
    privateWrite(t, GPA0);
    const pfn = pfnOf(t, 0);
    const v = b.checkGuestAccess!({ vcpuId: 0, gpa: GPA0, gfn: GFN0, pfn, level: PG_LEVEL_4K, isPrivate: false, write: true, fetch: false });
    expect(v).toMatchObject({ kind: 'npf', errorCode: PFERR_GUEST_RMP_MASK });
    // the gfn is shared again, the page still assigned until guest_memfd frees it
    setPrivate(t, 0, 1, false);
    expect(t.host.rmp.isAssigned(pfn)).toBe(true);
    b.handleNpfExtra!(0, GPA0, PFERR_GUEST_RMP_MASK);
    expect(stats(t)).toMatchObject({ backend: { rmpFaultShared: 1, rmpFaultPsmash: 0 } });
  });
});

describe('set-attributes timing (seed update_mem_attr)', () => {
  // the race itself (a fault between the store and the RMPUPDATE) runs in snp-e2e.test.ts
  it('leaks a page the post hook cannot return to shared', () => {
    const t = snpVm({ options: { rmpTiming: 'set-attributes' } });
    setPrivate(t, 0, 1);
    const pfn = pfnOf(t, 0);
    expect(t.host.rmp.isAssigned(pfn)).toBe(true); // assigned by the post hook, before any fault
    t.host.injectResult('rmpupdate', RMPUPDATE_FAIL_PERMISSION);
    setPrivate(t, 0, 1, false);
    expect(t.host.leakedPages.has(pfn)).toBe(true);
    expect(stats(t)).toMatchObject({ backend: { attrRmpFailures: 1 } });
  });
});

describe('unmap direct-map policy (seed)', () => {
  it('takes private pages out of the direct map and puts them back after private→shared', () => {
    const t = snpVm({ options: { directmap: 'unmap', rmpTiming: 'set-attributes' } });
    const { b, host } = t;
    expect(t.vm.gmemGetPfn(GFN0 + 1)).toMatchObject({ maxOrder: 0 }); // allocated while shared
    const pfn1 = pfnOf(t, 1);
    expect(host.directmap.isPresent(pfn1)).toBe(true);
    setPrivate(t, 0, 2);
    const pfn0 = pfnOf(t, 0);
    expect(host.directmap.isPresent(pfn1)).toBe(false);
    expect(host.directmap.isPresent(pfn0)).toBe(false);
    expect(b.checkHostAccess!(pfn0, false)).toMatch(/not mapped/);
    expect(b.checkInvariants!()).toEqual([]);
    setPrivate(t, 0, 2, false);
    expect(host.directmap.isPresent(pfn0)).toBe(true);
    expect(host.directmap.isPresent(pfn1)).toBe(true);
    expect(b.checkHostAccess!(pfn0, true)).toBeNull();
    expect(host.directmap.stats.restores).toBe(2);
  });

  it('with prepare timing, the page stays unmapped until guest_memfd frees it', () => {
    const t = snpVm({ options: { directmap: 'unmap' } });
    setPrivate(t, 0, 1);
    privateWrite(t, GPA0);
    const pfn = pfnOf(t, 0);
    setPrivate(t, 0, 1, false);
    expect(t.host.directmap.isPresent(pfn)).toBe(false);
    t.punchHole(0, PAGE_SIZE);
    expect(t.host.directmap.isPresent(pfn)).toBe(true);
  });
});

describe('invariants', () => {
  it('reports a 4K private page under a large direct-map page, and validated without assigned', () => {
    const t = snpVm();
    const { b, host } = t;
    // two host frames (nothing has split the direct map yet); their RMP entries written by hand
    const pfn = t.kvm.process.phys.allocPage();
    const other = t.kvm.process.phys.allocPage();
    rmpupdateInsn(host.rmp, pfn, { gpa: GPA0 + 0x9000, assigned: true, pagesize: 0, immutable: false, asid: b.asid });
    host.rmp.updateWord(other, 1 << 4, 0); // validated on an unassigned entry
    const v = b.checkInvariants!();
    expect(v.some((s) => /under a 1G direct-map page/.test(s))).toBe(true);
    expect(v.some((s) => /validated but not assigned/.test(s))).toBe(true);
  });
});

describe('page-state change', () => {
  it('MSR protocol: one 4K page per KVM_HC_MAP_GPA_RANGE exit', () => {
    const { vm, vcpu } = snpVm();
    // without KVM_CAP_EXIT_HYPERCALL for KVM_HC_MAP_GPA_RANGE the guest gets the error response
    expect(vcpu.guestOp({ op: 'psc_msr', gpa: GPA0 + 0x5000, operation: SNP_PAGE_STATE_PRIVATE })).toMatchObject({ ret: 'GHCB_MSR_PSC_RESP_ERROR' });
    vm.enableCap({ cap: KVM_CAP_EXIT_HYPERCALL, args: [1 << KVM_HC_MAP_GPA_RANGE] });
    const r = vcpu.guestOp({ op: 'psc_msr', gpa: GPA0 + 0x5000, operation: SNP_PAGE_STATE_PRIVATE });
    expect(r.exit).toEqual({ reason: 'KVM_EXIT_HYPERCALL', hypercall: { nr: KVM_HC_MAP_GPA_RANGE, args: [GPA0 + 0x5000, 1, ENC], ret: 0, flags: 0 } });
    expect(vcpu.completeHypercall(0)).toEqual({ ret: 0 });
    expect(vcpu.completeHypercall(0)).toBeNull();
    vcpu.guestOp({ op: 'psc_msr', gpa: GPA0 + 0x5000, operation: SNP_PAGE_STATE_SHARED });
    expect(vcpu.completeHypercall(22)).toEqual({ ret: 'GHCB_MSR_PSC_RESP_ERROR' });
  });

  it('GHCB protocol merges adjacent entries into one exit per run and resumes on completion', () => {
    const { vm, vcpu } = snpVm();
    vm.enableCap({ cap: KVM_CAP_EXIT_HYPERCALL, args: [1 << KVM_HC_MAP_GPA_RANGE] });
    const entries: SnpPscEntry[] = [
      { gfn: GFN0, operation: SNP_PAGE_STATE_PRIVATE },
      { gfn: GFN0 + 1, operation: SNP_PAGE_STATE_PRIVATE },
      { gfn: GFN0 + 2, operation: SNP_PAGE_STATE_PRIVATE },
      { gfn: GFN0 + 3, operation: SNP_PAGE_STATE_SHARED },
      { gfn: GFN0 + 512, operation: SNP_PAGE_STATE_PSMASH, pagesize: 1 },
      { gfn: GFN0 + 1024, operation: SNP_PAGE_STATE_PRIVATE, pagesize: 1 },
      { gfn: GFN0 + 1536, operation: SNP_PAGE_STATE_PRIVATE, pagesize: 1 },
    ];
    const exits: number[][] = [];
    let r = vcpu.guestOp({ op: 'psc', entries });
    while (r.exit) {
      if (r.exit.reason === 'KVM_EXIT_HYPERCALL') exits.push(r.exit.hypercall.args);
      r = vcpu.completeHypercall(0)!;
    }
    expect(exits).toEqual([
      [GPA0, 3, ENC],
      [GPA0 + 3 * PAGE_SIZE, 1, 0],
      [GPA0 + 1024 * PAGE_SIZE, 1024, ENC | SZ_2M],
    ]);
    expect(r).toMatchObject({ ret: 0, detail: { cur_entry: 7, cur_page: [1, 1, 1, 1, 512, 512, 512] } });
  });

  it('GHCB protocol errors: userspace failure, bad header, bad entry; 253 entries max', () => {
    const { vm, vcpu } = snpVm();
    vm.enableCap({ cap: KVM_CAP_EXIT_HYPERCALL, args: [1 << KVM_HC_MAP_GPA_RANGE] });
    vcpu.guestOp({ op: 'psc', entries: [{ gfn: GFN0, operation: SNP_PAGE_STATE_PRIVATE }] });
    expect(vcpu.completeHypercall(11)).toMatchObject({ ret: VMGEXIT_PSC_ERROR_GENERIC });
    const many = Array.from({ length: 254 }, (_, i) => ({ gfn: GFN0 + 2 * i, operation: SNP_PAGE_STATE_SHARED }));
    expect(vcpu.guestOp({ op: 'psc', entries: many })).toMatchObject({ ret: VMGEXIT_PSC_ERROR_INVALID_HDR });
    let r = vcpu.guestOp({ op: 'psc', entries: many.slice(0, 253) });
    let n = 0;
    while (r.exit) {
      n++;
      r = vcpu.completeHypercall(0)!;
    }
    expect(n).toBe(253);
    expect(vcpu.guestOp({ op: 'psc', entries: [{ gfn: GFN0 + 5, operation: SNP_PAGE_STATE_PRIVATE, pagesize: 1 }] })).toMatchObject({ ret: VMGEXIT_PSC_ERROR_INVALID_ENTRY });
  });

  it('the guest conversion order: PSC, then PVALIDATE, then C-bit accesses; the wrong order fails', () => {
    const t = snpVm();
    const { vm, vcpu } = t;
    vm.enableCap({ cap: KVM_CAP_EXIT_HYPERCALL, args: [1 << KVM_HC_MAP_GPA_RANGE] });
    const gpa = GPA0 + 0x8000;
    // shared→private. PVALIDATE before the PSC: the gfn is still shared → implicit conversion exit
    expect(pvalidate(vcpu, gpa).exit).toMatchObject({ reason: 'KVM_EXIT_MEMORY_FAULT', memory_fault: { gpa, size: PAGE_SIZE } });
    expect(vcpu.guestOp({ op: 'psc_msr', gpa, operation: SNP_PAGE_STATE_PRIVATE }).exit?.reason).toBe('KVM_EXIT_HYPERCALL');
    setPrivate(t, 8, 1); // the VMM's KVM_SET_MEMORY_ATTRIBUTES
    vcpu.completeHypercall(0);
    expect(privateWrite(t, gpa).exception?.vector).toBe('#VC'); // access before PVALIDATE
    expect(pvalidate(vcpu, gpa)).toMatchObject({ ret: 0 });
    expect(privateWrite(t, gpa)).toEqual({});
    // private→shared: rescind validation, PSC, then clear the C-bit
    expect(pvalidate(vcpu, gpa, false)).toMatchObject({ ret: 0 });
    vcpu.guestOp({ op: 'psc_msr', gpa, operation: SNP_PAGE_STATE_SHARED });
    setPrivate(t, 8, 1, false);
    vcpu.completeHypercall(0);
    expect(privateWrite(t, gpa).exit).toMatchObject({ reason: 'KVM_EXIT_MEMORY_FAULT', memory_fault: { gpa } });
    expect(pvalidate(vcpu, gpa, false).exit?.reason).toBe('KVM_EXIT_MEMORY_FAULT'); // too late to rescind
  });

  it('RMPADJUST sets VMPL permissions on a validated private page', () => {
    const t = snpVm();
    setPrivate(t, 0, 1);
    pvalidate(t.vcpu, GPA0);
    expect(t.vcpu.guestOp({ op: 'rmpadjust', gpa: GPA0, level: PG_LEVEL_4K, vmpl: 1, perms: 3 })).toMatchObject({ ret: 0 });
    expect(t.b.inspect!({ what: 'rmp', pfn: pfnOf(t, 0) })).toMatchObject({ vmpl: [3, 0, 0] });
  });
});
