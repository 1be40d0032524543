import { describe, expect, it } from 'vitest';
import { KVM_HC_MAP_GPA_RANGE, KVM_X86_SNP_VM, KvmError, PG_LEVEL_2M, PG_LEVEL_4K } from '@ccmem/core';
import { SnpHost, PFERR_GUEST_RMP_MASK, PFERR_GUEST_SIZEM_MASK, pferrHas, RMPUPDATE_FAIL_PERMISSION, rmpupdateInsn } from './instructions.js';
import { LaunchDigest, INITIAL_VMSA_GPA } from './launch-digest.js';
import { createSnpBackend, VMGEXIT_PSC_ERROR_GENERIC, VMGEXIT_PSC_ERROR_INVALID_ENTRY, VMGEXIT_PSC_ERROR_INVALID_HDR, type SnpBackend } from './snp-backend.js';
import { FakePhys } from './testing/fake-phys.js';
import { FakeVm } from './testing/fake-vm.js';

const PFN_BASE = 0x40000; // 2M-aligned, inside the host
const ENC = 1 << 4;
const SZ_2M = 1;

function setup(o: { directmap?: 'split' | 'unmap'; rmpTiming?: 'prepare' | 'set-attributes'; order?: number; npages?: number; nrVcpus?: number } = {}) {
  const phys = new FakePhys();
  const host = new SnpHost({ maxPfn: 1 << 22, phys });
  const b = createSnpBackend({ directmap: o.directmap ?? 'split', rmpTiming: o.rmpTiming ?? 'prepare', phys, host });
  const vm = new FakeVm({ phys, npages: o.npages ?? 4096, pfnBase: PFN_BASE, order: o.order ?? 0, nrVcpus: o.nrVcpus ?? 1 }).attach(b);
  return { phys, host, b, vm };
}

function pvalidate(b: SnpBackend, gpa: number, validate = true, size = '4K') {
  return b.guestOp!(0, { op: 'pvalidate', args: { gpa, size, validate } });
}

describe('createSnpBackend', () => {
  it('describes an SNP VM and takes an ASID from the host', () => {
    const phys = new FakePhys();
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
    expect(b.inspect!('rmp', { pfn })).toMatchObject({ assigned: true, asid: b.asid, gpa: 0x3000, validated: false, level: PG_LEVEL_4K });
    expect(b.inspect!('rmp', { gpa: 0x3000 })).toMatchObject({ pfn });
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
    expect(pvalidate(b, 0, true, '2M')).toMatchObject({ ret: 0 });
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
    expect(b.inspect!('stats', {})).toMatchObject({ backend: { rmpFaultPsmash: 1 } });
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
    expect(b.inspect!('stats', {})).toMatchObject({ backend: { rmpFaultShared: 1 } });
  });
});

describe('set-attributes timing (seed update_mem_attr)', () => {
  it('reproduces the race: a fault between the store and the RMPUPDATE loops on no-op RMP #NPFs', () => {
    const { b, vm, host } = setup({ rmpTiming: 'set-attributes' });
    let during: ReturnType<FakeVm['accessPrivate']> | null = null;
    let invariantsDuring: string[] = [];
    vm.setAttributes(0, 4, true, () => {
      during = vm.accessPrivate(0x2000, { maxRetries: 5 });
      invariantsDuring = b.checkInvariants!();
    });
    expect(during).toMatchObject({ kind: 'loop', retries: 5, last: { kind: 'npf' } });
    expect(b.inspect!('stats', {})).toMatchObject({ backend: { rmpFaultUnassigned: 5, attrRmpUpdates: 4 } });
    expect(invariantsDuring.some((s) => /has no assigned RMP entry/.test(s))).toBe(true);
    // the RMPUPDATE landed: the same access now reaches the validation check
    expect(vm.accessPrivate(0x2000)).toMatchObject({ vector: '#VC' });
    expect(pvalidate(b, 0x2000)).toMatchObject({ ret: 0 });
    expect(vm.accessPrivate(0x2000)).toEqual({ kind: 'ok' });
    expect(b.checkInvariants!()).toEqual([]);
    // private→shared returns the pages from the post hook, not at hole punch
    vm.setAttributes(0, 4, false);
    expect(host.rmp.assignedPages).toBe(0);
  });

  it('leaks a page the post hook cannot return to shared', () => {
    const { b, vm, host } = setup({ rmpTiming: 'set-attributes' });
    vm.setAttributes(0, 1, true);
    host.injectResult('rmpupdate', RMPUPDATE_FAIL_PERMISSION);
    vm.setAttributes(0, 1, false);
    expect(host.leakedPages.has(PFN_BASE)).toBe(true);
    expect(b.inspect!('stats', {})).toMatchObject({ backend: { attrRmpFailures: 1 } });
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
    const r = b.guestOp!(0, { op: 'psc_msr', args: { gpa: 0x5000, op: 'private' } });
    expect(r.exit).toEqual({ reason: 'KVM_EXIT_HYPERCALL', hypercall: { nr: KVM_HC_MAP_GPA_RANGE, args: [0x5000, 1, ENC], ret: 0, flags: 0 } });
    expect(b.completeHypercall!(0, 0)).toEqual({ ret: 0 });
    expect(b.completeHypercall!(0, 0)).toBeNull();
    b.guestOp!(0, { op: 'psc_msr', args: { gpa: 0x5000, op: 'shared' } });
    expect(b.completeHypercall!(0, 22)).toEqual({ ret: 'GHCB_MSR_PSC_RESP_ERROR' });
    vm.exitHypercalls = 0;
    expect(b.guestOp!(0, { op: 'psc_msr', args: { gpa: 0x5000, op: 'private' } })).toMatchObject({ ret: 'GHCB_MSR_PSC_RESP_ERROR' });
  });

  it('GHCB protocol merges adjacent entries into one exit per run and resumes on completion', () => {
    const { b } = setup();
    const entries = [
      { gfn: 0, op: 'private' },
      { gfn: 1, op: 'private' },
      { gfn: 2, op: 'private' },
      { gfn: 3, op: 'shared' },
      { gfn: 512, op: 'psmash', pagesize: '2M' },
      { gfn: 1024, op: 'private', pagesize: '2M' },
      { gfn: 1536, op: 'private', pagesize: '2M' },
    ];
    const exits: number[][] = [];
    let r = b.guestOp!(0, { op: 'psc', args: { entries } });
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
    b.guestOp!(0, { op: 'psc', args: { entries: [{ gfn: 0, op: 'private' }] } });
    expect(b.completeHypercall!(0, 11)).toMatchObject({ ret: VMGEXIT_PSC_ERROR_GENERIC });
    const many = Array.from({ length: 254 }, (_, i) => ({ gfn: 2 * i, op: 'shared' }));
    expect(b.guestOp!(0, { op: 'psc', args: { entries: many } })).toMatchObject({ ret: VMGEXIT_PSC_ERROR_INVALID_HDR });
    const max = many.slice(0, 253);
    let r = b.guestOp!(0, { op: 'psc', args: { entries: max } });
    let n = 0;
    while (r.exit) {
      n++;
      r = b.completeHypercall!(0, 0)!;
    }
    expect(n).toBe(253);
    expect(b.guestOp!(0, { op: 'psc', args: { entries: [{ gfn: 5, op: 'private', pagesize: '2M' }] } })).toMatchObject({ ret: VMGEXIT_PSC_ERROR_INVALID_ENTRY });
  });

  it('the guest conversion order: PSC, then PVALIDATE, then C-bit accesses; the wrong order fails', () => {
    const { b, vm } = setup();
    // shared→private. PVALIDATE before the PSC: the gfn is still shared → implicit conversion exit
    expect(pvalidate(b, 0x8000).exit).toMatchObject({ reason: 'KVM_EXIT_MEMORY_FAULT', memory_fault: { gpa: 0x8000, size: 4096 } });
    const psc = b.guestOp!(0, { op: 'psc_msr', args: { gpa: 0x8000, op: 'private' } });
    expect(psc.exit?.reason).toBe('KVM_EXIT_HYPERCALL');
    vm.setAttributes(8, 9, true); // the VMM's KVM_SET_MEMORY_ATTRIBUTES
    b.completeHypercall!(0, 0);
    expect(vm.accessPrivate(0x8000)).toMatchObject({ vector: '#VC' }); // access before PVALIDATE
    expect(pvalidate(b, 0x8000)).toMatchObject({ ret: 0 });
    expect(vm.accessPrivate(0x8000)).toEqual({ kind: 'ok' });
    // private→shared: rescind validation, PSC, then clear the C-bit
    expect(pvalidate(b, 0x8000, false)).toMatchObject({ ret: 0 });
    b.guestOp!(0, { op: 'psc_msr', args: { gpa: 0x8000, op: 'shared' } });
    vm.setAttributes(8, 9, false);
    b.completeHypercall!(0, 0);
    expect(vm.accessPrivate(0x8000)).toEqual({ kind: 'memory-fault', gpa: 0x8000 });
    expect(pvalidate(b, 0x8000, false).exit?.reason).toBe('KVM_EXIT_MEMORY_FAULT'); // too late to rescind
  });

  it('RMPADJUST sets VMPL permissions on a validated private page', () => {
    const { b, vm } = setup();
    vm.setAttributes(0, 1, true);
    pvalidate(b, 0);
    expect(b.guestOp!(0, { op: 'rmpadjust', args: { gpa: 0, size: '4K', vmpl: 1, perms: 3 } })).toMatchObject({ ret: 0 });
    expect(b.inspect!('rmp', { pfn: PFN_BASE })).toMatchObject({ vmpl: [3, 0, 0] });
  });
});

describe('launch', () => {
  function userPage(fill: number) {
    return new Uint8Array(4096).fill(fill);
  }

  it('LAUNCH_START checks flags and policy', () => {
    const { b } = setup();
    expect(() => b.vmIoctl!('snp_launch_update', { gfn_start: 0, uaddr: 0, len: 4096, type: 1 })).toThrow(/EINVAL/);
    expect(() => b.vmIoctl!('snp_launch_start', { policy: 0 })).toThrow(/EINVAL/);
    expect(() => b.vmIoctl!('snp_launch_start', { policy: 0x30000, flags: 1 })).toThrow(/EINVAL/);
    expect(() => b.vmIoctl!('snp_launch_start', { policy: 0x30000 | (1 << 18) })).toThrow(/EINVAL/);
    expect(b.vmIoctl!('snp_launch_start', { policy: 0x30000 })).toEqual({ ret: 0 });
    expect(() => b.vmIoctl!('snp_launch_start', { policy: 0x30000 })).toThrow(/EINVAL/);
  });

  it('measures pages, leaves them Guest-Valid, reports progress, and finishes with the VMSAs', () => {
    const { b, vm, host } = setup({ nrVcpus: 2 });
    b.vmIoctl!('snp_launch_start', {});
    vm.setAttributes(0, 4, true);
    vm.user.set(0x10000, userPage(0x11));
    vm.user.set(0x11000, userPage(0x22));
    vm.user.set(0x12000, userPage(0x33));
    expect(() => b.vmIoctl!('snp_launch_update', { gfn_start: 0, uaddr: 0x10000, len: 4096, type: 2 })).toThrow(/EINVAL/);
    expect(() => b.vmIoctl!('snp_launch_update', { gfn_start: 0, uaddr: 0x10000, len: 100, type: 1 })).toThrow(/EINVAL/);
    const r1 = b.vmIoctl!('snp_launch_update', { gfn_start: 0, uaddr: 0x10000, len: 2 * 4096, type: 1, flags: 0 });
    expect(r1).toEqual({ ret: 0, out: { gfn_start: 2, uaddr: 0x12000, len: 0, type: 1, flags: 0 } });
    expect(host.rmp.inspect(PFN_BASE + 1)).toMatchObject({ assigned: true, immutable: false, validated: true, gpa: 0x1000 });
    expect(vm.phys.readBytes(PFN_BASE + 1, 0, 1)[0]).toBe(0x22);
    // gfn 4 is not private: the 2 pages before it are done, progress is returned
    const r2 = b.vmIoctl!('snp_launch_update', { gfn_start: 2, uaddr: 0, len: 3 * 4096, type: 3 });
    expect(r2.out).toMatchObject({ gfn_start: 4, len: 4096, uaddr: 0 });
    const before = host.rmp.assignedPages;
    expect(() => b.vmIoctl!('snp_launch_update', { gfn_start: 4, uaddr: 0, len: 4096, type: 3 })).toThrow(/EIO/);
    expect(host.rmp.assignedPages).toBe(before);
    // an already-measured page cannot be measured again
    expect(() => b.vmIoctl!('snp_launch_update', { gfn_start: 0, uaddr: 0x12000, len: 4096, type: 1 })).toThrow(/EIO/);
    const fin = b.vmIoctl!('snp_launch_finish', {});
    const ref = new LaunchDigest();
    ref.update(1, 0, userPage(0x11));
    ref.update(1, 0x1000, userPage(0x22));
    ref.update(3, 0x2000);
    ref.update(3, 0x3000);
    ref.update(2, INITIAL_VMSA_GPA, new Uint8Array(4096));
    ref.update(2, INITIAL_VMSA_GPA, new Uint8Array(4096));
    expect(fin.out).toMatchObject({ launch_digest: ref.hex() });
    expect(b.preFaultAllowed()).toBe(true);
    const vmsa = (fin.out as { vmsa_pfns: number[] }).vmsa_pfns;
    expect(vmsa).toHaveLength(2);
    expect(host.rmp.inspect(vmsa[0]!)).toMatchObject({ assigned: true, vmsa: true, gpa: INITIAL_VMSA_GPA, asid: b.asid });
    expect(() => b.vmIoctl!('snp_launch_update', { gfn_start: 3, uaddr: 0, len: 4096, type: 3 })).toThrow(/EIO/);
    b.destroy!();
    expect(host.rmp.isAssigned(vmsa[0]!)).toBe(false);
  });
});
