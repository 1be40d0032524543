/**
 * The KVM side's rules (arch/x86/kvm/vmx/tdx.c) that tdx-backend.test.ts leaves out: the errno
 * and bug of every failed SEAMCALL in the mirror-root hooks, tdh_do_no_vcpus()'s retry and
 * wait_for_sept_zap, tdx_track() before the TD runs, guest access verdicts, ACCEPT's memory-fault
 * exit, MapGPA's boundaries, the KVM_MEMORY_ENCRYPT_OP checks, teardown and what `inspect` and the
 * invariants report. Found missing by mutation testing (docs/testing.md).
 */
import { describe, expect, it } from 'vitest';
import {
  KVM_MEMORY_ATTRIBUTE_PRIVATE,
  KVM_MEMORY_EXIT_FLAG_PRIVATE,
  KVM_MEM_GUEST_MEMFD,
  KVM_X86_TDX_VM,
  Kvm,
  PG_LEVEL_2M,
  PhysMem,
  UPSTREAM_PROFILE,
  recordTrace,
} from '@ccmem/core';
import { guestMemfdFactory } from '@ccmem/gmem';
import type { TdxVmOptions } from './edge.js';
import { NPAGES, buildTd, privateTdxVm, uninitializedTdxVm } from './testing/private-tdx-vm.js';
import { SEPT_BLOCKED, SEPT_FREE, SEPT_PENDING, SEPT_PRESENT } from './sept.js';
import { TDX_SUCCESS } from './status.js';
import { KVM_TDX_MEASURE_MEMORY_REGION, PFERR_PRIVATE_ACCESS, createTdxBackend, tdxBackendFactory, type TdxBackend } from './tdx-backend.js';
import { TdxModule } from './tdx-module.js';

const P = 4096;

type Td = ReturnType<typeof privateTdxVm>;

const build = (t: Td, gpa = 0) => buildTd(t, { gpa });

function built(opts: TdxVmOptions = {}) {
  const t = privateTdxVm(opts);
  build(t);
  return t;
}

function gmemPfn(t: Td, gfn: number): number {
  const r = t.vm.gmemGetPfn(gfn);
  if (!('pfn' in r)) throw new Error(`gfn ${gfn}: no guest_memfd page`);
  return r.pfn;
}

function code(f: () => unknown): string | undefined {
  try {
    f();
  } catch (e) {
    return (e as { code?: string }).code;
  }
  return undefined;
}

function access(gfn: number, pfn: number, more: { isPrivate?: boolean; write?: boolean; fetch?: boolean; vcpuId?: number } = {}) {
  return { vcpuId: more.vcpuId ?? 0, gpa: gfn * P, gfn, pfn, level: 1, isPrivate: more.isPrivate ?? true, write: more.write ?? false, fetch: more.fetch ?? false };
}

describe('backend construction', () => {
  it('is named tdx; GPAW 48 or 52 only, checked by the constructor and the VM factory', () => {
    const phys = new PhysMem();
    expect(createTdxBackend({ phys }).name).toBe('tdx');
    expect(() => createTdxBackend({ phys, gpaw: 50 as 48 })).toThrow(RangeError);
    const env = { phys } as Parameters<typeof tdxBackendFactory>[1];
    expect(code(() => tdxBackendFactory({ gpaw: 50 as 48 }, env))).toBe('EINVAL');
    expect(code(() => tdxBackendFactory({ hugePages: 1 as unknown as boolean }, env))).toBe('EINVAL');
    expect((tdxBackendFactory({ gpaw: 52, hugePages: true }, env) as TdxBackend).sharedBitGpa).toBe(2 ** 51);
  });

  it('keeps a tracer the module already has; used before attach() it says so', () => {
    const phys = new PhysMem();
    const tracer = { enabled: true, emit: () => undefined };
    const module = new TdxModule({ phys, tracer });
    const t = privateTdxVm();
    const b = createTdxBackend({ phys, module });
    b.attach(t.vm as unknown as Parameters<TdxBackend['attach']>[0]);
    expect(b.module.tracer).toBe(tracer);
    const lone = createTdxBackend({ phys });
    expect(() => lone.guestOp(0, { op: 'map_gpa', gpa: 0, size: P })).toThrow(/before attach/);
  });

  it('the shared bit is the only bit that makes a GPA shared (vt_is_tdx_private_gpa)', () => {
    const { b } = privateTdxVm();
    expect(b.faultIsPrivate(2 ** 48)).toBe(true);
    expect(b.faultIsPrivate(2 ** 48 + 2 ** 47)).toBe(false);
  });
});

describe('KVM_MEMORY_ENCRYPT_OP checks', () => {
  it('INIT_VM: once, supported attributes only, the VM\'s GPAW, a free HKID', () => {
    const t = uninitializedTdxVm();
    const { vm } = t;
    expect(code(() => vm.memoryEncryptOp({ cmd: 'tdx_init_vm', attributes: 1 }))).toBe('EINVAL');
    expect(code(() => vm.memoryEncryptOp({ cmd: 'tdx_init_vm', gpaw: 50 as 48 }))).toBe('EINVAL');
    expect(code(() => vm.memoryEncryptOp({ cmd: 'tdx_init_vm', gpaw: 52 }))).toBe('EINVAL');
    expect(code(() => vm.memoryEncryptOp({ cmd: 'tdx_finalize_vm' }))).toBe('EINVAL');
    expect(vm.deadReason).toBeNull();
    expect(t.b.td.lifecycle).toBe('NONE');
    // tdx_vcpu_create(): no vCPU before the TD is initialized
    expect(code(() => vm.createVcpu(0))).toBe('EIO');
    expect(vm.vcpus).toEqual([]);
    expect(vm.memoryEncryptOp({ cmd: 'tdx_init_vm', gpaw: 48 }).ret).toBe(0);
    expect(code(() => vm.memoryEncryptOp({ cmd: 'tdx_init_vm' }))).toBe('EINVAL');
    expect(code(() => vm.memoryEncryptOp({ cmd: 'tdx_no_such' } as never))).toBe('EINVAL');
    // a 52-bit VM takes GPAW 52
    const t52 = uninitializedTdxVm({ gpaw: 52 });
    expect(t52.vm.memoryEncryptOp({ cmd: 'tdx_init_vm', gpaw: 52 }).out).toMatchObject({ gpaw: 52, gfn_direct_bits: 2 ** 39 });
  });

  it('INIT_VM without a free HKID is ENOSPC and leaves the TD untouched', () => {
    const phys = new PhysMem();
    const module = new TdxModule({ phys, nrHkids: 1 });
    const t = uninitializedTdxVm();
    const b1 = createTdxBackend({ phys, module });
    const b2 = createTdxBackend({ phys, module });
    b1.attach(t.vm as unknown as Parameters<TdxBackend['attach']>[0]);
    b2.attach(t.vm as unknown as Parameters<TdxBackend['attach']>[0]);
    expect(b1.vmIoctl({ cmd: 'tdx_init_vm' }).ret).toBe(0);
    expect(code(() => b2.vmIoctl({ cmd: 'tdx_init_vm' }))).toBe('ENOSPC');
    expect(b2.td.lifecycle).toBe('NONE');
  });

  it('FINALIZE: a busy TDH.MR.FINALIZE is EBUSY and may be retried', () => {
    const t = privateTdxVm();
    const { vm, b } = t;
    b.td.injectOperandBusy(1, 'TDH.MR.FINALIZE');
    expect(code(() => vm.memoryEncryptOp({ cmd: 'tdx_finalize_vm' }))).toBe('EBUSY');
    expect(vm.deadReason).toBeNull();
    expect(b.preFaultAllowed()).toBe(false);
    expect(vm.memoryEncryptOp({ cmd: 'tdx_finalize_vm' }).ret).toBe(0);
  });

  it('INIT_VCPU: after INIT_VM, before FINALIZE, once per vCPU', () => {
    const t = privateTdxVm();
    const { vm, vcpu } = t;
    expect(vcpu.memoryEncryptOp({ cmd: 'tdx_init_vcpu' })).toEqual({ ret: 0 });
    expect(code(() => vcpu.memoryEncryptOp({ cmd: 'tdx_init_vcpu' }))).toBe('EINVAL');
    // the TD's three set-up SEAMCALLs and one vCPU's two; the refused INIT_VCPU issued none
    expect(t.b.td.callStats()).toEqual({
      'TDH.MNG.CREATE': { calls: 1, failures: 0 },
      'TDH.MNG.KEY.CONFIG': { calls: 1, failures: 0 },
      'TDH.MNG.INIT': { calls: 1, failures: 0 },
      'TDH.VP.CREATE': { calls: 1, failures: 0 },
      'TDH.VP.INIT': { calls: 1, failures: 0 },
    });
    expect(code(() => vcpu.memoryEncryptOp({ cmd: 'tdx_no_such' } as never))).toBe('EINVAL');
    vm.memoryEncryptOp({ cmd: 'tdx_finalize_vm' });
    expect(code(() => vm.vcpus[1]!.memoryEncryptOp({ cmd: 'tdx_init_vcpu' }))).toBe('EINVAL');
    expect(t.b.td.vcpuInitialized(1)).toBe(false);
    // tdx_vcpu_create(): no new vCPU once the TD is RUNNABLE, before the duplicate-id check
    expect(code(() => vm.createVcpu(2))).toBe('EIO');
    expect(code(() => vm.createVcpu(1))).toBe('EIO');
    expect(vm.vcpus.map((v) => v.id)).toEqual([0, 1]);
  });

  it('INIT_MEM_REGION: EINVAL for an uninitialized vCPU or after FINALIZE', () => {
    const t = privateTdxVm();
    const { vm, vcpu, src } = t;
    expect(code(() => vcpu.memoryEncryptOp({ cmd: 'tdx_init_mem_region', source_addr: src, gpa: 0, nr_pages: 1 }))).toBe('EINVAL');
    vcpu.memoryEncryptOp({ cmd: 'tdx_init_vcpu' });
    vm.memoryEncryptOp({ cmd: 'tdx_finalize_vm' });
    expect(code(() => vcpu.memoryEncryptOp({ cmd: 'tdx_init_mem_region', source_addr: src, gpa: 0, nr_pages: 1 }))).toBe('EINVAL');
  });

  it('INIT_MEM_REGION: a region may end right below the shared bit, not past it', () => {
    const top = 2 ** 47 - NPAGES * P;
    const t = privateTdxVm({}, top);
    const { vm, vcpu, src } = t;
    vcpu.memoryEncryptOp({ cmd: 'tdx_init_vcpu' });
    const last = 2 ** 47 - P;
    expect(vcpu.memoryEncryptOp({ cmd: 'tdx_init_mem_region', source_addr: src, gpa: last, nr_pages: 1 }).ret).toBe(0);
    expect(t.b.td.leafStateAt(last / P).state).toBe(SEPT_PRESENT);
    expect(code(() => vcpu.memoryEncryptOp({ cmd: 'tdx_init_mem_region', source_addr: src, gpa: last - P, nr_pages: 2 }))).toBeUndefined();
    expect(code(() => vcpu.memoryEncryptOp({ cmd: 'tdx_init_mem_region', source_addr: src, gpa: last, nr_pages: 2 }))).toBe('EINVAL');
  });

  it('INIT_MEM_REGION: nr_pages that no u64 holds (a fraction, past 2^53) is EINVAL and adds nothing', () => {
    const t = privateTdxVm();
    const { vm, vcpu, src } = t;
    vcpu.memoryEncryptOp({ cmd: 'tdx_init_vcpu' });
    for (const nr_pages of [0.5, 1.5, 2 ** 53 + 2]) {
      expect(code(() => vcpu.memoryEncryptOp({ cmd: 'tdx_init_mem_region', source_addr: src, gpa: 0, nr_pages }))).toBe('EINVAL');
    }
    expect(t.b.td.leafStateAt(0).state).not.toBe(SEPT_PRESENT);
    expect(vcpu.memoryEncryptOp({ cmd: 'tdx_init_mem_region', source_addr: src, gpa: 0, nr_pages: 1 }).ret).toBe(0);
    expect(t.b.td.leafStateAt(0).state).toBe(SEPT_PRESENT);
  });

  it('INIT_MEM_REGION: a busy PAGE.ADD is retried by the fault path; a failed MR.EXTEND bugs the VM', () => {
    const t = privateTdxVm();
    const { vm, vcpu, src, b } = t;
    vcpu.memoryEncryptOp({ cmd: 'tdx_init_vcpu' });
    b.td.injectOperandBusy(1, 'TDH.MEM.PAGE.ADD');
    expect(vcpu.memoryEncryptOp({ cmd: 'tdx_init_mem_region', source_addr: src, gpa: 0, nr_pages: 1 }).ret).toBe(0);
    expect(vm.deadReason).toBeNull();
    expect(b.td.callStats()['TDH.MEM.PAGE.ADD']).toEqual({ calls: 2, failures: 1 });
    expect(b.stats.pagesAdded).toBe(1);
    b.td.injectOperandBusy(1, 'TDH.MR.EXTEND');
    expect(code(() => vcpu.memoryEncryptOp({ cmd: 'tdx_init_mem_region', source_addr: src, gpa: P, nr_pages: 1, flags: KVM_TDX_MEASURE_MEMORY_REGION }))).toBe('EIO');
    expect(vm.deadReason).toBe('TDH.MR.EXTEND failed: TDX_OPERAND_BUSY');
    expect(b.stats.bugs).toBe(1);
  });

  it('INIT_MEM_REGION: a PAGE.ADD that fails bugs the VM, and the page is not measured', () => {
    const t = privateTdxVm();
    const { vm, vcpu, src, b } = t;
    vcpu.memoryEncryptOp({ cmd: 'tdx_init_vcpu' });
    expect(vcpu.memoryEncryptOp({ cmd: 'tdx_init_mem_region', source_addr: src, gpa: P, nr_pages: 1 }).ret).toBe(0);
    // the S-EPT already has an entry the mirror root does not know (TDH.MEM.PAGE.AUG during the build)
    expect(b.td.memPageAug(0, 0, t.phys.allocPage())).toBe(TDX_SUCCESS);
    expect(code(() => vcpu.memoryEncryptOp({ cmd: 'tdx_init_mem_region', source_addr: src, gpa: 0, nr_pages: 1, flags: KVM_TDX_MEASURE_MEMORY_REGION }))).toBe('EIO');
    expect(b.bugReasons).toEqual(['TDH.MEM.PAGE.ADD failed: TDX_EPT_ENTRY_STATE_INCORRECT']);
    expect(b.td.callCount('TDH.MR.EXTEND')).toBe(0);
  });
});

describe('INIT_MEM_REGION past the GPAW', () => {
  it('is EINVAL even where the host\'s MAXPHYADDR allows a memslot there', () => {
    const kvm = new Kvm({ profile: { ...UPSTREAM_PROFILE, hostMaxPhyAddr: 52 }, guestMemfd: guestMemfdFactory, backends: { [KVM_X86_TDX_VM]: tdxBackendFactory } });
    const vm = kvm.createVm({ type: KVM_X86_TDX_VM, options: {}, rootLevel: 4 });
    const b = vm.backend as TdxBackend;
    const base = 2 ** 48;
    const size = 16 * P;
    const gmemFd = vm.createGuestMemfd({ size, flags: 0 });
    const hva = kvm.process.mm.mmap({ length: size, prot: { read: true, write: true }, shared: true });
    vm.setUserMemoryRegion2({ slot: 0, flags: KVM_MEM_GUEST_MEMFD, guest_phys_addr: base, memory_size: size, userspace_addr: hva, guest_memfd: gmemFd, guest_memfd_offset: 0 });
    vm.setMemoryAttributes({ address: base, size, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE, flags: 0 });
    vm.memoryEncryptOp({ cmd: 'tdx_init_vm' });
    const vcpu = vm.createVcpu(0);
    const src = kvm.process.mm.mmap({ length: P, prot: { read: true, write: true }, shared: false });
    vcpu.memoryEncryptOp({ cmd: 'tdx_init_vcpu' });
    expect(code(() => vcpu.memoryEncryptOp({ cmd: 'tdx_init_mem_region', source_addr: src, gpa: base, nr_pages: 1 }))).toBe('EINVAL');
    expect(b.td.callCount('TDH.MEM.PAGE.ADD')).toBe(0);
    expect(vm.deadReason).toBeNull();
  });
});

describe('mirror-root hooks: errors', () => {
  it('SEPT.ADD failing other than busy bugs the VM with -EIO', () => {
    const t = built();
    const { b, vm } = t;
    // the level-2 table over gfn 0 is linked already
    expect(b.linkExternalSpt(0, 2, t.phys.allocPage())).toBe(-5);
    expect(vm.deadReason).toBe('TDH.MEM.SEPT.ADD failed: TDX_EPT_ENTRY_STATE_INCORRECT');
    expect(b.stats.septTablesLinked).toBe(3);
    expect(b.inspect({ what: 'stats' })).toMatchObject({ bugs: 1, bugReasons: ['TDH.MEM.SEPT.ADD failed: TDX_EPT_ENTRY_STATE_INCORRECT'] });
  });

  it('a KVM_BUG without a SEAMCALL status names only what went wrong', () => {
    const t = privateTdxVm();
    expect(t.vm.mapPrivatePfn(0, gmemPfn(t, 0))).toBe(-5);
    expect(t.vm.deadReason).toBe('TDH.MEM.PAGE.ADD without a staged source page');
  });

  it('a leaf above 2M is a KVM bug even with huge pages (set, remove)', () => {
    const t = built({ hugePages: true });
    const { b, vm } = t;
    expect(b.setExternalSpte(0x40000, 3, gmemPfn(t, 0x200))).toBe(-5);
    expect(vm.deadReason).toBe('set_external_spte at level 3');
    const t2 = built({ hugePages: true });
    t2.b.removeExternalSpte(0, 3, t2.vm.gmemPeekPfn(0));
    expect(t2.vm.deadReason).toBe('remove_external_spte at level 3');
    expect(t2.b.td.callCount('TDH.MEM.RANGE.BLOCK')).toBe(0);
  });

  it('remove: a failed BLOCK or WBINVD bugs the VM and stops there; a failed TRACK bugs it, kicks, and REMOVE is refused', () => {
    const a = built();
    a.b.removeExternalSpte(5, 1, 1234);
    expect(a.vm.deadReason).toBe('TDH.MEM.RANGE.BLOCK failed: TDX_EPT_ENTRY_STATE_INCORRECT');
    expect(a.b.td.callCount('TDH.MEM.TRACK')).toBe(0);

    // tdx_track() is void: TDX_BUG_ON, the kick, then tdx_sept_remove_private_spte() goes on
    const t = built();
    const rec = recordTrace(t.kvm.tracer);
    t.b.td.injectOperandBusy(2, 'TDH.MEM.TRACK');
    t.vm.zapGfnRange(0, 1);
    rec.stop();
    expect(t.vm.deadReason).toBe('TDH.MEM.TRACK failed: TDX_OPERAND_BUSY');
    expect(rec.events.filter((e) => e.name === 'kvm_make_all_cpus_request').map((e) => e.fields.reason)).toEqual(['TDH.MEM.TRACK busy', 'tdx_track']);
    expect(t.b.td.callCount('TDH.MEM.PAGE.REMOVE')).toBe(1);
    expect(t.b.bugReasons).toEqual(['TDH.MEM.TRACK failed: TDX_OPERAND_BUSY', 'TDH.MEM.PAGE.REMOVE failed: TDX_TLB_TRACKING_NOT_DONE']);
    expect(t.b.stats.bugs).toBe(2);
    expect(t.b.td.leafStateAt(0).state).toBe(SEPT_BLOCKED);

    const w = built();
    w.b.td.injectOperandBusy(1, 'TDH.PHYMEM.PAGE.WBINVD');
    w.vm.zapGfnRange(0, 1);
    expect(w.vm.deadReason).toBe('TDH.PHYMEM.PAGE.WBINVD failed: TDX_OPERAND_BUSY');
    expect(w.b.stats.pagesRemoved).toBe(0);
  });

  it('before FINALIZE there is nothing to track: remove is BLOCK → REMOVE, no TRACK and no kick', () => {
    const u = privateTdxVm();
    u.vcpu.memoryEncryptOp({ cmd: 'tdx_init_vcpu' });
    expect(u.vcpu.memoryEncryptOp({ cmd: 'tdx_init_mem_region', source_addr: u.src, gpa: 0, nr_pages: 1 }).ret).toBe(0);
    const k0 = u.vcpu.kicks;
    u.vm.zapGfnRange(0, 1);
    expect(u.vm.deadReason).toBeNull();
    expect(u.b.td.callCount('TDH.MEM.TRACK')).toBe(0);
    expect(u.vcpu.kicks).toBe(k0);
    expect(u.b.td.leafStateAt(0).state).toBe(SEPT_FREE);
  });

  it('each busy op of tdh_do_no_vcpus kicks with its own name and retries with wait_for_sept_zap set', () => {
    const t = built();
    const { b, vm, kvm } = t;
    const seen: boolean[] = [];
    b.module.tracer = { enabled: true, emit: () => seen.push(b.waitForSeptZap) };
    const rec = recordTrace(kvm.tracer);
    b.td.injectOperandBusy(1, 'TDH.MEM.RANGE.BLOCK');
    vm.zapGfnRange(0, 1);
    b.td.injectOperandBusy(1, 'TDH.MEM.TRACK');
    vm.zapGfnRange(1, 2);
    rec.stop();
    const reasons = rec.events.filter((e) => e.name === 'kvm_make_all_cpus_request').map((e) => e.fields.reason);
    expect(reasons).toEqual(['TDH.MEM.RANGE.BLOCK busy', 'tdx_track', 'TDH.MEM.TRACK busy', 'tdx_track']);
    // BLOCK busy, BLOCK retried, TRACK, REMOVE, WBINVD; BLOCK, TRACK busy, TRACK retried, REMOVE, WBINVD
    expect(seen).toEqual([false, true, false, false, false, false, false, true, false, false]);
    expect(b.waitForSeptZap).toBe(false);
    expect(vm.deadReason).toBeNull();
    const r2 = built();
    const rec2 = recordTrace(r2.kvm.tracer);
    r2.b.td.injectOperandBusy(1, 'TDH.MEM.PAGE.REMOVE');
    r2.vm.zapGfnRange(0, 1);
    rec2.stop();
    expect(rec2.events.filter((e) => e.name === 'kvm_make_all_cpus_request').map((e) => e.fields.reason)).toEqual(['tdx_track', 'TDH.MEM.PAGE.REMOVE busy']);
  });

  it('freeing a table page after the HKID is gone: a page the TD does not own is -EIO and leaked', () => {
    const t = built();
    t.b.destroy();
    expect(t.b.freeExternalSpt(0, 2, t.phys.allocPage())).toBe(-5);
    expect(t.b.stats.septTablesReclaimed).toBe(0);
  });
});

describe('2 MiB leaves (huge-page option)', () => {
  function huge() {
    const t = built({ hugePages: true });
    const base = t.phys.allocContiguous(512);
    const req = { gfn: 512, pfn: base, level: PG_LEVEL_2M, isPrivate: true, writable: true, exec: true, hostWritable: true, prefetch: true, write: false };
    expect(t.vm.mmu.map(req)).toBeGreaterThan(0);
    expect(t.b.guestOp(0, { op: 'accept', gpa: 512 * P, level: PG_LEVEL_2M }).ret).toBe('TDX_SUCCESS');
    return { ...t, base };
  }

  it('removing one writes back and resets every one of its 512 pages', () => {
    const t = huge();
    const { b, vm, phys, base } = t;
    for (const k of [0, 7, 511]) phys.writeBytes(base + k, 0, new Uint8Array([0x5a]));
    const wb: number[] = [];
    b.module.tracer = { enabled: true, emit: (name, f) => name === 'tdh_phymem_page_wbinvd' && wb.push(Number(f.gpa) / P) };
    b.removeExternalSpte(512, PG_LEVEL_2M, base);
    expect(vm.deadReason).toBeNull();
    expect(wb).toEqual(Array.from({ length: 512 }, (_, k) => base + k));
    for (const k of [0, 7, 511]) expect(phys.readBytes(base + k, 0, 1)[0]).toBe(0);
    expect(b.stats.pagesRemoved).toBe(1);
  });

  it('split: only a 2M leaf with the HKID; a failed BLOCK, TRACK or DEMOTE is -EIO', () => {
    const t = huge();
    expect(t.b.splitExternalSpt(512, 3, t.phys.allocPage())).toBe(-5);
    expect(t.vm.deadReason).toBe('split_external_spt at level 3');
    expect(t.b.td.callCount('TDH.MEM.RANGE.BLOCK')).toBe(0);

    const n = built();
    expect(n.b.splitExternalSpt(512, 2, n.phys.allocPage())).toBe(-5);
    expect(n.vm.deadReason).toBe('split_external_spt at level 2');
    expect(n.b.td.callCount('TDH.MEM.RANGE.BLOCK')).toBe(0);

    const f = built({ hugePages: true });
    expect(f.b.splitExternalSpt(1024, 2, f.phys.allocPage())).toBe(-5);
    expect(f.vm.deadReason).toBe('TDH.MEM.RANGE.BLOCK failed: TDX_EPT_ENTRY_STATE_INCORRECT');

    const tr = huge();
    tr.b.td.injectOperandBusy(2, 'TDH.MEM.TRACK');
    expect(tr.b.splitExternalSpt(512, 2, tr.phys.allocPage())).toBe(-5);
    expect(tr.vm.deadReason).toBe('TDH.MEM.TRACK failed: TDX_OPERAND_BUSY');
    expect(tr.b.td.callCount('TDH.MEM.PAGE.DEMOTE')).toBe(1);
    expect(tr.b.bugReasons).toEqual(['TDH.MEM.TRACK failed: TDX_OPERAND_BUSY', 'TDH.MEM.PAGE.DEMOTE failed: TDX_TLB_TRACKING_NOT_DONE']);

    const d = huge();
    const rec = recordTrace(d.kvm.tracer);
    d.b.td.injectOperandBusy(2, 'TDH.MEM.PAGE.DEMOTE');
    expect(d.b.splitExternalSpt(512, 2, d.phys.allocPage())).toBe(-5);
    rec.stop();
    expect(d.vm.deadReason).toBe('TDH.MEM.PAGE.DEMOTE failed: TDX_OPERAND_BUSY');
    expect(rec.events.filter((e) => e.name === 'kvm_make_all_cpus_request').map((e) => e.fields.reason)).toEqual(['tdx_track', 'TDH.MEM.PAGE.DEMOTE busy']);
    expect(d.b.stats.splits).toBe(0);

    const g = huge();
    g.b.destroy();
    expect(g.b.splitExternalSpt(512, 2, g.phys.allocPage())).toBe(-5);
    expect(g.b.td.callCount('TDH.MEM.RANGE.BLOCK')).toBe(0);
  });
});

describe('guest accesses', () => {
  it('before FINALIZE no vCPU enters the TD: the VM is dead', () => {
    const t = privateTdxVm();
    t.vcpu.memoryEncryptOp({ cmd: 'tdx_init_vcpu' });
    expect(t.b.checkGuestAccess(access(0, 1)).kind).toBe('vm-dead');
    expect(t.b.td.callCount('TDH.VP.ENTER')).toBe(0);
  });

  it('while wait_for_sept_zap is set the vCPU does not enter', () => {
    const t = built();
    t.b.waitForSeptZap = true;
    expect(t.b.checkGuestAccess(access(0, t.vm.gmemPeekPfn(0))).kind).toBe('ok');
    expect(t.b.td.vcpuInGuest(0)).toBe(false);
    t.b.waitForSeptZap = false;
    t.b.checkGuestAccess(access(0, t.vm.gmemPeekPfn(0)));
    expect(t.b.td.vcpuInGuest(0)).toBe(true);
  });

  it('verdicts: shared alias of a TD page, a mirror pfn the S-EPT does not map, a blocked pending page', () => {
    const t = built();
    const { b, vm } = t;
    const pfn = vm.gmemPeekPfn(0);
    expect(b.checkGuestAccess(access(2 ** 35, pfn, { isPrivate: false }))).toMatchObject({ kind: 'guest-exception', vector: 'none' });
    expect(b.checkGuestAccess(access(0, pfn + 1))).toMatchObject({ kind: 'npf', errorCode: PFERR_PRIVATE_ACCESS });
    expect(b.checkGuestAccess(access(9, 1, { fetch: true }))).toMatchObject({ kind: 'npf', errorCode: PFERR_PRIVATE_ACCESS + 16 });
    const g = 0x300;
    expect(vm.mapPrivatePfn(g, gmemPfn(t, g))).toBe(0);
    expect(b.td.memRangeBlock(g * P, 0)).toBe(TDX_SUCCESS);
    expect(b.checkGuestAccess(access(g, gmemPfn(t, g), { write: true }))).toMatchObject({ kind: 'npf', errorCode: PFERR_PRIVATE_ACCESS + 2 });
    // the invariant names the blocked pending leaf and its level
    expect(b.checkInvariants().join('\n')).toMatch(/gfn 768 \(level 1\) left PENDING_BLOCKED/);
  });

  it('guest ops: pending_interrupt answers 0, an unknown op EINVAL', () => {
    const { b } = built();
    expect(b.guestOp(1, { op: 'pending_interrupt', pending: false })).toEqual({ ret: 0 });
    // a fresh vCPU state has no MapGPA in flight
    expect(b.completeHypercall(1, 0)).toBeNull();
    expect(b.guestOp(0, { op: 'nope' } as never)).toMatchObject({ errno: 'EINVAL' });
  });
});

describe('TDG.MEM.PAGE.ACCEPT through KVM', () => {
  it('counts accepted pages', () => {
    const { b } = built();
    expect(b.guestOp(0, { op: 'accept', gpa: 0x5000 })).toEqual({ ret: 'TDX_SUCCESS' });
    expect(b.stats.pagesAccepted).toBe(1);
    expect(b.guestOp(0, { op: 'accept', gpa: 0x5000 })).toEqual({ ret: 'TDX_PAGE_ALREADY_ACCEPTED' });
    expect(b.stats.pagesAccepted).toBe(1);
  });

  it('a gfn that is shared in the attributes exits to userspace with KVM_EXIT_MEMORY_FAULT', () => {
    const t = built();
    t.vm.setMemoryAttributes({ address: 0x7000, size: P, attributes: 0, flags: 0 });
    const r = t.b.guestOp(0, { op: 'accept', gpa: 0x7000 });
    expect(r).toMatchObject({
      errno: 'EFAULT',
      exit: { reason: 'KVM_EXIT_MEMORY_FAULT', memory_fault: { flags: KVM_MEMORY_EXIT_FLAG_PRIVATE, gpa: 0x7000, size: P } },
    });
    expect(t.b.td.leafStateAt(7).state).toBe(SEPT_FREE);
  });

  it('a poisoned guest_memfd page is EHWPOISON', () => {
    const t = built();
    const file = t.vm.gfnToMemslot(8)!.gmemFile as unknown as { poison(pgoff: number): boolean };
    gmemPfn(t, 8);
    expect(file.poison(8)).toBe(true);
    const r = t.b.guestOp(0, { op: 'accept', gpa: 0x8000 });
    expect(r).toMatchObject({ errno: 'EHWPOISON', exit: { reason: 'KVM_EXIT_MEMORY_FAULT', memory_fault: { gpa: 0x8000 } } });
  });

  it('a gfn outside every memslot exits with KVM_EXIT_MEMORY_FAULT (no private page)', () => {
    const t = built();
    expect(t.b.guestOp(0, { op: 'accept', gpa: NPAGES * P })).toMatchObject({ errno: 'EFAULT', exit: { memory_fault: { gpa: NPAGES * P } } });
  });

  it('a fault that fails otherwise is an EPT violation with its errno', () => {
    const t = privateTdxVm();
    // a TD vCPU that KVM has no vCPU for: kvm_mmu_page_fault() cannot run (-EINVAL)
    expect(t.b.vcpuIoctl(5, { cmd: 'tdx_init_vcpu' }).ret).toBe(0);
    t.vm.memoryEncryptOp({ cmd: 'tdx_finalize_vm' });
    expect(t.b.guestOp(5, { op: 'accept', gpa: 0x6000 })).toEqual({ ret: 'EPT_VIOLATION', detail: { gpa: 0x6000, fault: -22 } });
    expect(t.b.td.leafStateAt(6).state).toBe(SEPT_FREE);
  });

  it('a blocked page (a zap in flight) stays an EPT violation after the fault: the mirror maps it already', () => {
    const t = built();
    const g = 0x300;
    expect(t.vm.mapPrivatePfn(g, gmemPfn(t, g))).toBe(0);
    expect(t.b.td.memRangeBlock(g * P, 0)).toBe(TDX_SUCCESS);
    expect(t.b.guestOp(0, { op: 'accept', gpa: g * P })).toEqual({ ret: 'EPT_VIOLATION', detail: { gpa: g * P } });
    expect(t.b.stats.pagesAccepted).toBe(0);
  });
});

describe('MapGPA boundaries', () => {
  it('legal GPAs are [0, 2^GPAW); the range may end exactly at a boundary', () => {
    const { b } = built();
    expect(b.guestOp(0, { op: 'map_gpa', gpa: -P, size: P }).ret).toBe('TDVMCALL_STATUS_INVALID_OPERAND');
    expect(b.guestOp(0, { op: 'map_gpa', gpa: 2 ** 48, size: 1 }).ret).toBe('TDVMCALL_STATUS_INVALID_OPERAND');
    expect(b.guestOp(0, { op: 'map_gpa', gpa: 2 ** 48 - 2 * P, size: 2 * P }).exit).toMatchObject({ reason: 'KVM_EXIT_HYPERCALL' });
    b.completeHypercall(0, 0);
    expect(b.guestOp(0, { op: 'map_gpa', gpa: 2 ** 47 - P, size: P }).exit).toMatchObject({ reason: 'KVM_EXIT_HYPERCALL' });
    b.completeHypercall(0, 0);
    expect(b.guestOp(0, { op: 'map_gpa', gpa: 0, size: P + 1 }).ret).toBe('TDVMCALL_STATUS_ALIGN_ERROR');
  });

  it('a range of whole 2 MiB steps completes after its last step; RETRY ends the call', () => {
    const { b } = built();
    b.guestOp(0, { op: 'map_gpa', gpa: 0, size: 0x400000 });
    expect(b.completeHypercall(0, 0)!.exit).toMatchObject({ reason: 'KVM_EXIT_HYPERCALL' });
    expect(b.completeHypercall(0, 0)).toEqual({ ret: 'TDVMCALL_STATUS_SUCCESS' });
    b.guestOp(0, { op: 'map_gpa', gpa: 0, size: 0x400000 });
    b.guestOp(0, { op: 'pending_interrupt', pending: true });
    expect(b.completeHypercall(0, 0)).toMatchObject({ ret: 'TDVMCALL_STATUS_RETRY' });
    expect(b.completeHypercall(0, 0)).toBeNull();
  });
});

describe('teardown', () => {
  it('a TD that never got an HKID has nothing to release', () => {
    const t = uninitializedTdxVm();
    t.b.destroy();
    expect(t.b.bugReasons).toEqual([]);
    expect(t.b.td.callStats()).toEqual({});
    expect(t.b.checkInvariants()).toEqual([]);
    expect(t.b.inspect({ what: 'sept', gpa: 0x1234 })).toEqual({ gpa: 0x1234, level: 0, state: 'FREE', pfn: null });
    expect(t.b.inspect({ what: 'stats' })).toMatchObject({ septTables: 0, leavesByState: {} });
  });

  it('what the teardown must release, before it ran: the HKID, each private page, each TD page in the PAMT', () => {
    const t = built();
    const hkid = t.b.td.hkid;
    const left = t.b.checkAfterDestroy();
    expect(left[0]).toBe(`HKID ${hkid} still assigned (tdx_mmu_release_hkid() did not free it)`);
    expect(left).toContain('private page gfn 0 (level 1) still in the S-EPT');
    const owned = [...t.b.td.pamt.keys()].sort((a, b) => a - b);
    expect(owned.length).toBeGreaterThan(1);
    expect(left.at(-1)).toMatch(new RegExp(`^${owned.length} pages still owned by the TD in the PAMT \\(never reclaimed\\): pfns ${owned[0]}[-,]`));
    const listed = left.at(-1)!.split(': pfns ')[1]!.split(', ').flatMap((r) => {
      const [a, b] = r.split('-').map(Number);
      return Array.from({ length: (b ?? a!) - a! + 1 }, (_, k) => a! + k);
    });
    expect(listed).toEqual(owned);
  });

  it('flushes only initialized vCPUs, and a second destroy does nothing', () => {
    const t = privateTdxVm();
    t.vm.vcpus[1]!.memoryEncryptOp({ cmd: 'tdx_init_vcpu' });
    t.b.destroy();
    expect(t.b.td.callStats()['TDH.VP.FLUSH']).toEqual({ calls: 1, failures: 0 });
    t.b.destroy();
    expect(t.b.td.callStats()['TDH.MNG.VPFLUSHDONE']).toEqual({ calls: 1, failures: 0 });
    expect(t.b.bugReasons).toEqual([]);
    expect(t.b.inspect({ what: 'td' })).toMatchObject({ lifecycle: 'TEARDOWN', hkid: -1, hkidReleased: true });
  });

  it('a failed VPFLUSHDONE stops the release, a failed CACHE.WB makes KEY.FREEID fail: the HKID is leaked', () => {
    const a = built();
    const bugs = a.b.stats.bugs;
    a.b.td.injectOperandBusy(1, 'TDH.MNG.VPFLUSHDONE');
    a.b.destroy();
    // a VPFLUSHDONE failure other than TDX_FLUSHVP_NOT_DONE is a TDX_BUG_ON, as is KEY.FREEID's
    expect(a.b.stats.bugs).toBe(bugs + 1);
    expect(a.b.bugReasons).toEqual(['tdx_mmu_release_hkid: TDX_OPERAND_BUSY; HKID leaked']);
    expect(a.b.td.callCount('TDH.PHYMEM.CACHE.WB')).toBe(0);
    expect(a.b.td.hkidAssigned).toBe(true);
    // the kernel leaks the HKID on purpose here: not something the teardown forgot
    expect(a.b.checkAfterDestroy().filter((s) => s.startsWith('HKID'))).toEqual([]);
    const c = built();
    c.b.td.injectOperandBusy(1, 'TDH.PHYMEM.CACHE.WB');
    c.b.destroy();
    // tdx_mmu_release_hkid() goes on to TDH.MNG.KEY.FREEID, which the module refuses without the write-back
    expect(c.b.bugReasons).toEqual(['TDH.PHYMEM.CACHE.WB failed: TDX_OPERAND_BUSY', 'tdx_mmu_release_hkid: TDX_LIFECYCLE_STATE_INCORRECT; HKID leaked']);
    expect(c.b.td.callStats()['TDH.MNG.KEY.FREEID']).toEqual({ calls: 1, failures: 1 });
    expect(c.b.stats.bugs).toBe(bugs + 1);
    expect(c.b.td.hkidAssigned).toBe(true);
    expect(c.b.inspect({ what: 'td' })).toMatchObject({ lifecycle: 'BLOCKED', hkidReleased: false });
  });

  it('a failed TDH.VP.FLUSH is a TDX_BUG_ON (tdx_flush_vp_on_cpu())', () => {
    const a = built();
    const bugs = a.b.stats.bugs;
    a.b.td.injectOperandBusy(1, 'TDH.VP.FLUSH');
    a.b.destroy();
    expect(a.b.stats.bugs).toBe(bugs + 1);
    expect(a.b.bugReasons[0]).toBe('TDH.VP.FLUSH failed: TDX_OPERAND_BUSY');
    // a flush that succeeds is no bug
    const c = built();
    c.b.destroy();
    expect(c.b.stats.bugs).toBe(bugs);
    expect(c.b.bugReasons).toEqual([]);
  });
});

describe('invariants', () => {
  it('a mirror leaf with another pfn than the S-EPT\'s; an S-EPT leaf without a mirror leaf, by gfn and level', () => {
    const { b, vm } = built();
    const real = vm.forEachMirrorLeaf.bind(vm);
    vm.forEachMirrorLeaf = (cb) => real((gfn, level, pfn) => (gfn === 0 ? cb(gfn, level, pfn + 1000) : undefined));
    const v = b.checkInvariants();
    const pfn0 = vm.gmemPeekPfn(0);
    expect(v).toContain(`mirror leaf gfn 0 maps pfn ${pfn0 + 1000}, S-EPT maps pfn ${pfn0}`);
    expect(v).toContain('S-EPT leaf gfn 1 (level 1) has no mirror leaf');
  });

  it('after a TDX_BUG_ON the zapped leaf the module kept is no violation; before it, it is', () => {
    const { b, vm } = built();
    b.td.injectOperandBusy(1, 'TDH.MEM.PAGE.REMOVE');
    vm.zapGfnRange(0, 1);
    expect(vm.deadReason).toBeNull();
    // BLOCK succeeded, REMOVE busy twice: the mirror leaf is gone, the S-EPT leaf stays BLOCKED
    b.td.injectOperandBusy(2, 'TDH.MEM.PAGE.REMOVE');
    vm.zapGfnRange(1, 2);
    expect(b.stats.bugs).toBe(1);
    expect(vm.deadReason).toMatch(/TDH.MEM.PAGE.REMOVE failed: TDX_OPERAND_BUSY/);
    expect(b.td.leafStateAt(1).state).toBe(SEPT_BLOCKED);
    expect(b.checkInvariants()).toEqual([]);
    // the same tables on a VM that was not bugged are two violations
    b.stats.bugs = 0;
    expect(b.checkInvariants()).toEqual(['S-EPT entry for gfn 1 (level 1) left BLOCKED outside a removal', 'S-EPT leaf gfn 1 (level 1) has no mirror leaf']);
    b.stats.bugs = 1;
    // the table-page check still runs on a bugged VM
    b.td.sept!.dropTable(b.td.sept!.table(0, 0)!);
    expect(b.checkInvariants().join('\n')).toMatch(/table pages but \d+ were linked/);
  });

  it('an S-EPT table page gone while the HKID is assigned', () => {
    const { b } = built();
    const t = b.td.sept!.table(0, 0)!;
    b.td.sept!.dropTable(t);
    expect(b.checkInvariants().join('\n')).toMatch(/S-EPT has 2 table pages but 3 were linked/);
  });

  it('a 2M shared alias reaching TD pages names each page it reaches', () => {
    const { b, vm } = built();
    const pfn0 = vm.gmemPeekPfn(0);
    const reached = (base: number) => {
      vm.forEachDirectLeaf = (cb) => cb(2 ** 35 + 512, 2, base);
      const want: string[] = [];
      for (let k = 0; k < 512; k++) if (b.td.pamt.has(base + k)) want.push(`TD private page pfn ${base + k} reachable through shared alias gfn ${2 ** 35 + 512 + k}`);
      expect(b.checkInvariants()).toEqual(want);
      return want.length;
    };
    expect(reached(pfn0 - 3)).toBeGreaterThan(0);
    // the TD's highest frame just past the 2M alias: not reached
    const top = Math.max(...b.td.pamt.keys());
    expect(reached(top - 512)).toBe([...b.td.pamt.keys()].filter((p) => p >= top - 512 && p < top).length);
  });
});

describe('inspect', () => {
  it('sept: the gpa without the shared bit, offset kept', () => {
    const { b } = built();
    expect(b.inspect({ what: 'sept', gpa: 2 ** 47 + 0x1234 })).toMatchObject({ gpa: 0x1234, level: 1, state: 'PRESENT' });
    expect(b.inspect({ what: 'nothing' } as never)).toBeUndefined();
  });

  it('td: refcounts and vCPUs as the module has them', () => {
    const t = built();
    const { b } = t;
    b.checkGuestAccess(access(0, t.vm.gmemPeekPfn(0), { vcpuId: 1 }));
    const e = b.td.epoch;
    const td = b.inspect({ what: 'td' }) as { refcount: number[]; vcpus: unknown[]; hkid: number };
    expect(td.refcount).toEqual(e & 1 ? [0, 1] : [1, 0]);
    expect(td.vcpus).toEqual([
      { id: 0, initialized: true, inGuest: false, epoch: 0 },
      { id: 1, initialized: true, inGuest: true, epoch: e },
    ]);
    expect(td.hkid).toBe(1);
    expect(uninitializedTdxVm().b.inspect({ what: 'td' })).toMatchObject({ hkid: -1, vcpus: [], refcount: [0, 0] });
  });

  it('stats: leaves by state, SEAMCALL counts by trace name, the backend counters', () => {
    const t = built();
    const { b, vm } = t;
    expect(vm.mapPrivatePfn(0x300, gmemPfn(t, 0x300))).toBe(0);
    const s = b.inspect({ what: 'stats' }) as Record<string, unknown>;
    expect(s.leavesByState).toEqual({ PRESENT: 2, PENDING: 1 });
    expect(s).toMatchObject({ tdh_mem_page_add: 2, tdh_mem_page_aug: 1, tdh_mr_extend: 32, tdh_mem_track: 0, pagesAdded: 2, pagesAugmented: 1, bugs: 0, bugReasons: [] });
    expect(b.td.leafStateAt(0x300).state).toBe(SEPT_PENDING);
  });
});
