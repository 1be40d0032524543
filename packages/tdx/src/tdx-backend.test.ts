import { specMrtd } from './testing/spec-mrtd.js';
/** The TDX backend's hooks, driven through the core VM with guest_memfd (and directly where a hook is the subject). */
import { describe, expect, it } from 'vitest';
import {
  KVM_EXIT_HYPERCALL_LONG_MODE,
  KVM_HC_MAP_GPA_RANGE,
  KVM_MAP_GPA_RANGE_DECRYPTED,
  KVM_MAP_GPA_RANGE_ENCRYPTED,
  KVM_X86_TDX_VM,
  KvmError,
  PG_LEVEL_2M,
  recordTrace,
} from '@ccmem/core';
import type { TdxVmOptions } from './edge.js';
import { NPAGES, buildTd, privateTdxVm, uninitializedTdxVm } from './testing/private-tdx-vm.js';
import { SEPT_BLOCKED, SEPT_FREE, SEPT_PENDING, SEPT_PRESENT } from './sept.js';
import { PFERR_PRIVATE_ACCESS } from './tdx-backend.js';

const P = 4096;

type Td = ReturnType<typeof privateTdxVm>;

/** INIT_VM → INIT_VCPU(0,1) → INIT_MEM_REGION(2 pages of 0xaa, measured) → FINALIZE */
const build = (t: Td) => buildTd(t, { fill: 0xaa });

/** privateTdxVm() then build() */
function built(opts: TdxVmOptions = {}) {
  const t = privateTdxVm(opts);
  build(t);
  return t;
}

/** kvm_make_all_cpus_request() kicks every vCPU once: vCPU 0's count is the number of requests */
function kicks(t: Td): number {
  return t.vm.vcpus[0]!.kicks;
}

function seq(t: Td) {
  return { kicks: kicks(t), calls: { ...(t.b.inspect({ what: 'stats' }) as { seamcalls: Record<string, { calls: number }> }).seamcalls } };
}

/** the guest_memfd page of private `gfn` (allocated on first use) */
function gmemPfn(t: Td, gfn: number): number {
  const r = t.vm.gmemGetPfn(gfn);
  if (!('pfn' in r)) throw new Error(`gfn ${gfn}: no guest_memfd page`);
  return r.pfn;
}

describe('TDX backend: properties', () => {
  it('describes a TDX VM with the shared bit at gpa 47 (or 51)', () => {
    const { b } = privateTdxVm();
    expect(b.vmType).toBe(KVM_X86_TDX_VM);
    expect([b.hasPrivateMem, b.hasReadonlyMem, b.hasMirroredTdp, b.supportsGmemInitShared, b.nrMemslotAsIds]).toEqual([true, false, true, false, 1]);
    expect(b.gfnDirectBits).toBe(2 ** 35);
    expect(b.faultIsPrivate(0x1000)).toBe(true);
    expect(b.faultIsPrivate(2 ** 47 + 0x1000)).toBe(false);
    expect(b.gmemMaxMappingLevel(1, true)).toBe(1);
    expect(b.gmemMaxMappingLevel(1, false)).toBe(0);
    expect(privateTdxVm({ hugePages: true }).b.gmemMaxMappingLevel(1, true)).toBe(2);
    const b52 = privateTdxVm({ gpaw: 52 }).b;
    expect(b52.gfnDirectBits).toBe(2 ** 39);
    expect(b52.faultIsPrivate(2 ** 47)).toBe(true);
  });
});

describe('TDX backend: build flow', () => {
  it('INIT_VM → INIT_VCPU → INIT_MEM_REGION (PAGE.ADD + MR.EXTEND ×16) → FINALIZE', () => {
    // no vCPU before INIT_VM (tdx_vcpu_create(): -EIO)
    expect(() => uninitializedTdxVm().vm.createVcpu(0)).toThrow(/EIO/);
    const t = privateTdxVm();
    const { b, vm, phys } = t;
    expect(b.preFaultAllowed()).toBe(false);
    const out = build(t);
    expect(b.preFaultAllowed()).toBe(true);
    const td = b.inspect({ what: 'td' }) as { state: string; mrtd: string };
    expect(td.state).toBe('RUNNABLE');
    expect(out.out?.mrtd).toBe(td.mrtd);
    expect(b.td.callCount('TDH.MEM.PAGE.ADD')).toBe(2);
    expect(b.td.callCount('TDH.MR.EXTEND')).toBe(32);
    expect(b.td.callCount('TDH.MEM.SEPT.ADD')).toBe(3);
    // the PAMT owns the S-EPT root, the three tables SEPT.ADD linked and the two pages added
    expect((b.inspect({ what: 'td' }) as { pamtPages: number }).pamtPages).toBe(6);
    const s = b.inspect({ what: 'sept', gpa: 2 ** 47 }) as { state: string; pfn: number; level: number };
    expect(s.state).toBe('PRESENT');
    expect(phys.readBytes(s.pfn, 0, 4)).toEqual(new Uint8Array([0xaa, 0xaa, 0xaa, 0xaa]));
    expect(b.checkInvariants()).toEqual([]);
    expect(() => vm.memoryEncryptOp({ cmd: 'tdx_init_vm' })).toThrow(/already initialized/);
    expect(() => vm.memoryEncryptOp({ cmd: 'tdx_finalize_vm' })).toThrow(KvmError);
    expect(() => vm.vcpus[0]!.memoryEncryptOp({ cmd: 'tdx_init_mem_region', source_addr: t.src, gpa: 0x4000, nr_pages: 1 })).toThrow(KvmError);
  });
  it('MRTD differs with and without measurement, and is reproducible', () => {
    const runOnce = (flags: number) => {
      const { vm, vcpu, src } = privateTdxVm();
      vcpu.memoryEncryptOp({ cmd: 'tdx_init_vcpu' });
      vcpu.memoryEncryptOp({ cmd: 'tdx_init_mem_region', source_addr: src, gpa: 0, nr_pages: 1, flags });
      return vm.memoryEncryptOp({ cmd: 'tdx_finalize_vm' }).out!.mrtd;
    };
    const zero = new Uint8Array(P);
    expect(runOnce(1)).toBe(specMrtd([{ gpa: 0, data: zero }], true));
    expect(runOnce(0)).toBe(specMrtd([{ gpa: 0, data: zero }], false));
    expect(runOnce(0)).not.toBe(runOnce(1));
  });
  it('rejects bad INIT_MEM_REGION arguments before touching anything', () => {
    const { b, vm, vcpu, src } = privateTdxVm();
    expect(() => vcpu.memoryEncryptOp({ cmd: 'tdx_init_mem_region', source_addr: src, gpa: 0, nr_pages: 1 })).toThrow(/vCPU not initialized/);
    vcpu.memoryEncryptOp({ cmd: 'tdx_init_vcpu' });
    for (const a of [
      { source_addr: src + 1, gpa: 0, nr_pages: 1 },
      { source_addr: src, gpa: 0x800, nr_pages: 1 },
      { source_addr: src, gpa: 0, nr_pages: 0 },
      { source_addr: src, gpa: 2 ** 47, nr_pages: 1 },
      { source_addr: src, gpa: 0, nr_pages: 1, flags: 2 },
    ]) {
      expect(() => vcpu.memoryEncryptOp({ cmd: 'tdx_init_mem_region', ...a })).toThrow(expect.objectContaining({ code: 'EINVAL' }));
    }
    expect(b.td.callCount('TDH.MEM.PAGE.ADD')).toBe(0);
  });
  it('writes progress back when a later page fails', () => {
    const { vm, vcpu, src } = privateTdxVm();
    vcpu.memoryEncryptOp({ cmd: 'tdx_init_vcpu' });
    const last = (NPAGES - 1) * P; // the next page has no memslot
    const r = vcpu.memoryEncryptOp({ cmd: 'tdx_init_mem_region', source_addr: src, gpa: last, nr_pages: 2 });
    expect(r.ret).toBe(-22);
    expect(r.out).toEqual({ source_addr: src + P, gpa: last + P, nr_pages: 1 });
  });
  it('PAGE.ADD without a staged source page bugs the VM', () => {
    const t = privateTdxVm();
    expect(t.vm.mapPrivatePfn(0, gmemPfn(t, 0))).toBe(-5);
    expect(t.vm.deadReason).toMatch(/without a staged source/);
  });
});

describe('TDX backend: runtime AUG / ACCEPT and the pending rule', () => {
  it('AUG leaves the page PENDING until the guest accepts it; touching it first kills the TD', () => {
    const t = built();
    const { b, vm } = t;
    const gfn = 0x300;
    const pfn = gmemPfn(t, gfn);
    expect(vm.mapPrivatePfn(gfn, pfn)).toBe(0);
    expect(b.td.leafStateAt(gfn).state).toBe(SEPT_PENDING);
    const access = { vcpuId: 0, gpa: gfn * P, gfn, pfn, level: 1, isPrivate: true, write: false, fetch: false };
    expect(b.checkGuestAccess(access).kind).toBe('vm-dead');
    expect(b.guestOp(0, { op: 'accept', gpa: gfn * P }).ret).toBe('TDX_SUCCESS');
    expect(b.checkGuestAccess(access)).toEqual({ kind: 'ok' });
    expect(b.guestOp(0, { op: 'accept', gpa: gfn * P }).ret).toBe('TDX_PAGE_ALREADY_ACCEPTED');
    expect(b.checkInvariants()).toEqual([]);
  });
  it('without SEPT_VE_DISABLE the guest gets #VE instead', () => {
    const t = privateTdxVm({}, 0, { attributes: 0 });
    const { b, vm, vcpu } = t;
    vcpu.memoryEncryptOp({ cmd: 'tdx_init_vcpu' });
    vm.memoryEncryptOp({ cmd: 'tdx_finalize_vm' });
    const pfn = gmemPfn(t, 7);
    expect(vm.mapPrivatePfn(7, pfn)).toBe(0);
    const v = b.checkGuestAccess({ vcpuId: 0, gpa: 7 * P, gfn: 7, pfn, level: 1, isPrivate: true, write: true, fetch: false });
    expect(v).toMatchObject({ kind: 'guest-exception', vector: '#VE' });
  });
  it('ACCEPT on an unmapped page exits with an EPT violation that KVM maps (AUG) before the retry', () => {
    const { b } = built();
    expect(b.guestOp(1, { op: 'accept', gpa: 0x5000 }).ret).toBe('TDX_SUCCESS');
    expect(b.td.leafStateAt(5).state).toBe(SEPT_PRESENT);
    expect(b.td.callCount('TDH.MEM.PAGE.AUG')).toBe(1);
    expect(b.guestOp(0, { op: 'accept', gpa: 2 ** 47 }).ret).toBe('TDX_OPERAND_INVALID');
  });
  it('a shared access to a TD private page never reaches it; the invariant reports the alias', () => {
    const { b, vm } = built();
    const pfn = vm.gmemPeekPfn(0);
    const v = b.checkGuestAccess({ vcpuId: 0, gpa: 2 ** 47, gfn: 2 ** 35, pfn, level: 1, isPrivate: false, write: false, fetch: false });
    expect(v.kind).toBe('guest-exception');
    // a direct-root view that maps the shared alias to the private page (what the invariant looks for)
    vm.forEachDirectLeaf = (cb) => cb(2 ** 35, 1, pfn);
    expect(b.checkInvariants().join()).toMatch(/reachable through shared alias/);
  });
  it('a private access with no S-EPT mapping is an EPT violation with PFERR_PRIVATE_ACCESS', () => {
    const { b } = built();
    const v = b.checkGuestAccess({ vcpuId: 0, gpa: 0x9000, gfn: 9, pfn: 1, level: 1, isPrivate: true, write: true, fetch: false });
    expect(v).toMatchObject({ kind: 'npf', errorCode: PFERR_PRIVATE_ACCESS + 2 });
  });
});

describe('TDX backend: REMOVE order and busy handling', () => {
  it('removes in the order BLOCK → TRACK → kick → REMOVE → WBINVD and resets the page', () => {
    const t = built();
    const { b, vm, phys, kvm } = t;
    const events: string[] = [];
    b.module.tracer = { enabled: true, emit: (name, f) => events.push(`${name}:${f.status}`) };
    const pfn = vm.gmemPeekPfn(1);
    b.checkGuestAccess({ vcpuId: 0, gpa: P, gfn: 1, pfn, level: 1, isPrivate: true, write: false, fetch: false });
    expect(b.td.vcpuInGuest(0)).toBe(true);
    const k0 = kicks(t);
    const rec = recordTrace(kvm.tracer);
    vm.zapGfnRange(1, 2);
    rec.stop();
    expect(events).toEqual([
      'tdh_mem_range_block:TDX_SUCCESS',
      'tdh_mem_track:TDX_SUCCESS',
      'tdh_mem_page_remove:TDX_SUCCESS',
      'tdh_phymem_page_wbinvd:TDX_SUCCESS',
    ]);
    expect(kicks(t)).toBe(k0 + 1);
    expect(rec.events.filter((e) => e.name === 'kvm_make_all_cpus_request').map((e) => e.fields.reason)).toEqual(['tdx_track']);
    expect(b.td.vcpuInGuest(0)).toBe(false);
    expect(b.td.leafStateAt(1).state).toBe(SEPT_FREE);
    expect(phys.readBytes(pfn, 0, 1)[0]).toBe(0);
    expect(vm.deadReason).toBeNull();
    expect(b.checkInvariants()).toEqual([]);
  });
  it('BUSY on BLOCK kicks every vCPU and retries once', () => {
    const t = built();
    const { b, vm } = t;
    b.td.injectOperandBusy(1, 'TDH.MEM.RANGE.BLOCK');
    const before = seq(t);
    vm.zapGfnRange(0, 1);
    expect(vm.deadReason).toBeNull();
    expect(kicks(t) - before.kicks).toBe(2); // the busy kick, then tdx_track's kick
    expect(b.td.callCount('TDH.MEM.RANGE.BLOCK') - (before.calls['TDH.MEM.RANGE.BLOCK']?.calls ?? 0)).toBe(2);
    expect(b.stats.busyRetries).toBe(1);
    expect(b.waitForSeptZap).toBe(false);
    expect(b.td.leafStateAt(0).state).toBe(SEPT_FREE);
  });
  it('a second BUSY marks the VM bugged and leaves the entry blocked', () => {
    const { b, vm } = built();
    b.td.injectOperandBusy(2, 'TDH.MEM.PAGE.REMOVE');
    vm.zapGfnRange(0, 1);
    expect(vm.deadReason).toMatch(/TDH.MEM.PAGE.REMOVE failed: TDX_OPERAND_BUSY/);
    expect(b.td.leafStateAt(0).state).toBe(SEPT_BLOCKED);
    // the VM is dead: the entry the failed REMOVE left blocked is the kernel's state, no violation
    expect(b.checkInvariants()).toEqual([]);
  });
  it('BUSY in the fault path is -EBUSY (the fault retries), nothing changes', () => {
    const t = built();
    const { b, vm } = t;
    const pfn = gmemPfn(t, 0x10);
    b.td.injectOperandBusy(1, 'TDH.MEM.PAGE.AUG');
    expect(b.setExternalSpte(0x10, 1, pfn)).toBe(-16);
    expect(b.td.leafStateAt(0x10).state).toBe(SEPT_FREE);
    expect(b.setExternalSpte(0x10, 1, pfn)).toBe(0);
    b.td.injectOperandBusy(1, 'TDH.MEM.SEPT.ADD');
    expect(b.linkExternalSpt(0x40000, 2, t.phys.allocPage())).toBe(-16);
    expect(vm.deadReason).toBeNull();
  });
  it('any other error marks the VM bugged', () => {
    const { b, vm } = built();
    expect(b.setExternalSpte(0, 1, vm.gmemPeekPfn(0))).toBe(-5); // already PRESENT
    expect(vm.deadReason).toMatch(/TDH.MEM.PAGE.AUG failed: TDX_EPT_ENTRY_STATE_INCORRECT/);
  });
  it('a 2 MiB leaf without the huge-page option is a KVM bug', () => {
    const t = built();
    const { b, vm } = t;
    expect(b.setExternalSpte(0x200, 2, gmemPfn(t, 0x200))).toBe(-5);
    expect(vm.deadReason).toMatch(/level 2/);
  });
});

describe('TDX backend: teardown order', () => {
  it('zap leaves with the HKID → release HKID → reclaim S-EPT tables → reclaim the control pages', () => {
    const t = built();
    const { b, vm, kvm } = t;
    const rec = recordTrace(kvm.tracer);
    kvm.process.close(t.gmemFd); // kvm_gmem_release(): every private leaf zapped, HKID still assigned
    expect(b.td.sept!.tableCount).toBe(4);
    const root = b.td.sept!.table(b.td.sept!.rootLevel, 0)!.hpa;
    const pagesBefore = t.phys.allocatedPages;
    kvm.process.close(vm.fd); // kvm_vm_release(): the vCPU fds still hold the VM
    expect(vm.alive).toBe(true);
    expect(rec.events.some((e) => e.name === 'tdh_mng_key_freeid')).toBe(false);
    // the last vCPU fd's kvm_vcpu_release() drops the last reference: kvm_destroy_vm() releases
    // the HKID, then frees the mirror root's tables
    for (const v of vm.vcpus) kvm.process.close(v.fd);
    expect(vm.alive).toBe(false);
    rec.stop();
    const order = rec.events.map((e) => e.name).filter((n) => /^tdh_(mem_page_remove|mng_key_freeid|phymem_page_reclaim)/.test(n));
    // the three table pages (tdx_sept_free_private_spt()), then the root with the TDCS (tdx_vm_destroy())
    expect(order).toEqual(['tdh_mem_page_remove', 'tdh_mem_page_remove', 'tdh_mng_key_freeid', 'tdh_phymem_page_reclaim', 'tdh_phymem_page_reclaim', 'tdh_phymem_page_reclaim', 'tdh_phymem_page_reclaim']);
    expect(rec.events.filter((e) => e.name.startsWith('tdh_phymem_page_reclaim')).at(-1)!.fields).toMatchObject({ gpa: root * 4096 });
    const td = b.inspect({ what: 'td' }) as { lifecycle: string; hkidReleased: boolean };
    expect(td).toMatchObject({ lifecycle: 'TEARDOWN', hkidReleased: true });
    expect(b.stats.septTablesReclaimed).toBe(3);
    expect(b.td.sept!.tableCount).toBe(0);
    expect(t.phys.isAllocated(root)).toBe(false);
    expect(t.phys.allocatedPages).toBeLessThan(pagesBefore);
    expect(vm.deadReason).toBeNull();
    expect(b.checkInvariants()).toEqual([]);
    expect(b.checkAfterDestroy()).toEqual([]);
  });
  it('freeing a table page while the HKID is assigned bugs the VM and keeps the page', () => {
    const t = built();
    const { b, vm } = t;
    expect(b.freeExternalSpt(0, 2, t.phys.allocPage())).toBe(-5);
    expect(vm.deadReason).toMatch(/free_external_spt while the HKID is assigned/);
    expect(b.td.sept!.tableCount).toBe(4);
  });
  it('removing a private leaf after the HKID was released is a KVM bug', () => {
    const { b, vm } = built();
    b.destroy();
    expect(b.checkInvariants().join()).toMatch(/still in the S-EPT after the HKID was released/);
    vm.zapGfnRange(0, 1);
    expect(vm.deadReason).toMatch(/after the HKID was released/);
  });
});

describe('TDX backend: split hook (not upstream)', () => {
  it('splits a 2 MiB private leaf with BLOCK → TRACK → kick → DEMOTE', () => {
    const t = built({ hugePages: true });
    const { b, vm, phys } = t;
    // a 2 MiB private mapping of 512 contiguous frames, made by the TDP MMU (guest_memfd folios are 4K)
    const base = phys.allocContiguous(512);
    const req = { gfn: 512, pfn: base, level: PG_LEVEL_2M, isPrivate: true, writable: true, exec: true, hostWritable: true, prefetch: true, write: false };
    expect(vm.mmu.map(req)).toBeGreaterThan(0);
    expect(b.guestOp(0, { op: 'accept', gpa: 512 * P, level: PG_LEVEL_2M }).ret).toBe('TDX_SUCCESS');
    const events: string[] = [];
    b.module.tracer = { enabled: true, emit: (name) => events.push(name) };
    const k0 = kicks(t);
    expect(b.splitExternalSpt(512, 2, phys.allocPage())).toBe(0);
    expect(events).toEqual(['tdh_mem_range_block', 'tdh_mem_track', 'tdh_mem_page_demote']);
    expect(kicks(t)).toBe(k0 + 1);
    expect(b.td.leafStateAt(512 + 7)).toEqual({ state: SEPT_PRESENT, pfn: base + 7, level: 0 });
    expect(vm.deadReason).toBeNull();
  });
  it('is refused without the huge-page option', () => {
    const t = built();
    expect(t.b.splitExternalSpt(512, 2, t.phys.allocPage())).toBe(-5);
  });
});

describe('TDX backend: MapGPA', () => {
  it('forwards 2 MiB steps as KVM_HC_MAP_GPA_RANGE and completes', () => {
    const { b } = built();
    const shared = 2 ** 47;
    const r = b.guestOp(0, { op: 'map_gpa', gpa: shared + 0x100000, size: 0x300000 });
    expect(r.exit).toEqual({
      reason: 'KVM_EXIT_HYPERCALL',
      hypercall: { nr: KVM_HC_MAP_GPA_RANGE, args: [0x100000, 512, KVM_MAP_GPA_RANGE_DECRYPTED], ret: 0, flags: KVM_EXIT_HYPERCALL_LONG_MODE },
    });
    const r2 = b.completeHypercall(0, 0)!;
    expect(r2.exit && r2.exit.reason === 'KVM_EXIT_HYPERCALL' && r2.exit.hypercall.args).toEqual([0x300000, 256, KVM_MAP_GPA_RANGE_DECRYPTED]);
    expect(b.completeHypercall(0, 0)).toEqual({ ret: 'TDVMCALL_STATUS_SUCCESS' });
    expect(b.completeHypercall(0, 0)).toBeNull();
    const p = b.guestOp(0, { op: 'map_gpa', gpa: 0, size: P });
    expect(p.exit && p.exit.reason === 'KVM_EXIT_HYPERCALL' && p.exit.hypercall.args[2]).toBe(KVM_MAP_GPA_RANGE_ENCRYPTED);
    expect(b.completeHypercall(0, 22)).toEqual({ ret: 'TDVMCALL_STATUS_INVALID_OPERAND', detail: { r11: 0 } });
  });
  it('returns RETRY with the next gpa when an interrupt is pending between steps', () => {
    const { b } = built();
    b.guestOp(0, { op: 'map_gpa', gpa: 0, size: 0x400000 });
    b.guestOp(0, { op: 'pending_interrupt', pending: true });
    expect(b.completeHypercall(0, 0)).toEqual({ ret: 'TDVMCALL_STATUS_RETRY', detail: { r11: 0x200000 } });
  });
  it('checks in order: hypercall exit enabled, operands, alignment', () => {
    const { b, vm } = built();
    vm.exitHypercalls = 0; // KVM_CAP_EXIT_HYPERCALL without KVM_HC_MAP_GPA_RANGE
    expect(b.guestOp(0, { op: 'map_gpa', gpa: 0x1001, size: 1 }).ret).toBe('TDVMCALL_STATUS_SUBFUNC_UNSUPPORTED');
    vm.exitHypercalls = 1 << KVM_HC_MAP_GPA_RANGE;
    expect(b.guestOp(0, { op: 'map_gpa', gpa: 2 ** 47 - P, size: 2 * P })).toEqual({ ret: 'TDVMCALL_STATUS_INVALID_OPERAND', detail: { r11: 2 ** 47 - P } });
    expect(b.guestOp(0, { op: 'map_gpa', gpa: 2 ** 48 - P, size: 2 * P }).ret).toBe('TDVMCALL_STATUS_INVALID_OPERAND');
    expect(b.guestOp(0, { op: 'map_gpa', gpa: 0x1001, size: P }).ret).toBe('TDVMCALL_STATUS_ALIGN_ERROR');
    expect(b.guestOp(0, { op: 'map_gpa', gpa: 0x1000, size: 0 }).ret).toBe('TDVMCALL_STATUS_INVALID_OPERAND');
  });
});

describe('TDX backend: invariants against the mirror root', () => {
  it('reports a mirror leaf without an S-EPT entry and the reverse', () => {
    const { b, vm } = built();
    expect(b.checkInvariants()).toEqual([]);
    // a mirror-root view where gfn 0's leaf is missing and gfn 0x777 has one the S-EPT lacks
    const real = vm.forEachMirrorLeaf.bind(vm);
    vm.forEachMirrorLeaf = (cb) => {
      real((gfn, level, pfn) => gfn !== 0 && cb(gfn, level, pfn));
      cb(0x777, 1, 1);
    };
    const v = b.checkInvariants().join('\n');
    expect(v).toMatch(/mirror leaf gfn 1911 \(level 1\) has no S-EPT entry/);
    expect(v).toMatch(/S-EPT leaf gfn 0 \(level 1\) has no mirror leaf/);
  });
});
