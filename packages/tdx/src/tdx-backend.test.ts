import { describe, expect, it } from 'vitest';
import { KVM_EXIT_HYPERCALL_LONG_MODE, KVM_HC_MAP_GPA_RANGE, KVM_MAP_GPA_RANGE_DECRYPTED, KVM_MAP_GPA_RANGE_ENCRYPTED, KVM_X86_TDX_VM, KvmError, PhysMem } from '@ccmem/core';
import { SEPT_BLOCKED, SEPT_FREE, SEPT_PENDING, SEPT_PRESENT } from './sept.js';
import { KVM_TDX_MEASURE_MEMORY_REGION, PFERR_PRIVATE_ACCESS, createTdxBackend, type TdxBackend } from './tdx-backend.js';
import { FakeTdxVm } from './testing.js';

const P = 4096;

function make(opts: { hugePages?: boolean; gpaw?: 48 | 52 } = {}) {
  const phys = new PhysMem();
  const b = createTdxBackend({ phys, ...opts });
  const vm = new FakeTdxVm(phys);
  vm.bind(b);
  return { phys, b, vm };
}

/** INIT_VM → INIT_VCPU(0,1) → INIT_MEM_REGION(2 pages, measured) → FINALIZE */
function build(b: TdxBackend, vm: FakeTdxVm) {
  b.vmIoctl('tdx_init_vm', {});
  b.vcpuIoctl(0, 'tdx_init_vcpu', {});
  b.vcpuIoctl(1, 'tdx_init_vcpu', {});
  vm.userMemory.set(0x10000, new Uint8Array(P).fill(0xaa));
  const r = b.vcpuIoctl(0, 'tdx_init_mem_region', { source_addr: 0x10000, gpa: 0, nr_pages: 2, flags: KVM_TDX_MEASURE_MEMORY_REGION });
  expect(r.ret).toBe(0);
  return b.vmIoctl('tdx_finalize_vm', {});
}

function seq(vm: FakeTdxVm, b: TdxBackend) {
  return { kicks: vm.kicks, calls: { ...(b.inspect('stats', {}) as { seamcalls: Record<string, { calls: number }> }).seamcalls } };
}

describe('TDX backend: properties', () => {
  it('describes a TDX VM with the shared bit at gpa 47 (or 51)', () => {
    const { b } = make();
    expect(b.vmType).toBe(KVM_X86_TDX_VM);
    expect([b.hasPrivateMem, b.hasReadonlyMem, b.hasMirroredTdp, b.supportsGmemInitShared, b.nrMemslotAsIds]).toEqual([true, false, true, false, 1]);
    expect(b.gfnDirectBits).toBe(2 ** 35);
    expect(b.faultIsPrivate(0x1000)).toBe(true);
    expect(b.faultIsPrivate(2 ** 47 + 0x1000)).toBe(false);
    expect(b.gmemMaxMappingLevel(1, true)).toBe(1);
    expect(b.gmemMaxMappingLevel(1, false)).toBe(0);
    expect(make({ hugePages: true }).b.gmemMaxMappingLevel(1, true)).toBe(2);
    const b52 = make({ gpaw: 52 }).b;
    expect(b52.gfnDirectBits).toBe(2 ** 39);
    expect(b52.faultIsPrivate(2 ** 47)).toBe(true);
  });
});

describe('TDX backend: build flow', () => {
  it('INIT_VM → INIT_VCPU → INIT_MEM_REGION (PAGE.ADD + MR.EXTEND ×16) → FINALIZE', () => {
    const { b, vm, phys } = make();
    expect(b.preFaultAllowed()).toBe(false);
    expect(() => b.vcpuIoctl(0, 'tdx_init_vcpu', {})).toThrow(KvmError);
    const out = build(b, vm);
    expect(b.preFaultAllowed()).toBe(true);
    const td = b.inspect('td', {}) as { state: string; mrtd: string };
    expect(td.state).toBe('RUNNABLE');
    expect(out.out?.mrtd).toBe(td.mrtd);
    expect(b.td.callCount('TDH.MEM.PAGE.ADD')).toBe(2);
    expect(b.td.callCount('TDH.MR.EXTEND')).toBe(32);
    expect(b.td.callCount('TDH.MEM.SEPT.ADD')).toBe(3);
    const s = b.inspect('sept', { gpa: 2 ** 47 }) as { state: string; pfn: number; level: number };
    expect(s.state).toBe('PRESENT');
    expect(phys.readBytes(s.pfn, 0, 4)).toEqual(new Uint8Array([0xaa, 0xaa, 0xaa, 0xaa]));
    expect(b.checkInvariants()).toEqual([]);
    expect(() => b.vmIoctl('tdx_init_vm', {})).toThrow(/already initialized/);
    expect(() => b.vmIoctl('tdx_finalize_vm', {})).toThrow(KvmError);
    expect(() => b.vcpuIoctl(0, 'tdx_init_mem_region', { source_addr: 0x10000, gpa: 0x4000, nr_pages: 1 })).toThrow(KvmError);
  });
  it('MRTD differs with and without measurement, and is reproducible', () => {
    const runOnce = (flags: number) => {
      const { b, vm } = make();
      b.vmIoctl('tdx_init_vm', {});
      b.vcpuIoctl(0, 'tdx_init_vcpu', {});
      b.vcpuIoctl(0, 'tdx_init_mem_region', { source_addr: 0x10000, gpa: 0, nr_pages: 1, flags });
      void vm;
      return b.vmIoctl('tdx_finalize_vm', {}).out!.mrtd;
    };
    expect(runOnce(1)).toBe(runOnce(1));
    expect(runOnce(0)).not.toBe(runOnce(1));
  });
  it('rejects bad INIT_MEM_REGION arguments before touching anything', () => {
    const { b } = make();
    b.vmIoctl('tdx_init_vm', {});
    expect(() => b.vcpuIoctl(0, 'tdx_init_mem_region', { source_addr: 0x10000, gpa: 0, nr_pages: 1 })).toThrow(/vCPU not initialized/);
    b.vcpuIoctl(0, 'tdx_init_vcpu', {});
    for (const a of [
      { source_addr: 0x10001, gpa: 0, nr_pages: 1 },
      { source_addr: 0x10000, gpa: 0x800, nr_pages: 1 },
      { source_addr: 0x10000, gpa: 0, nr_pages: 0 },
      { source_addr: 0x10000, gpa: 2 ** 47, nr_pages: 1 },
      { source_addr: 0x10000, gpa: 0, nr_pages: 1, flags: 2 },
    ]) {
      expect(() => b.vcpuIoctl(0, 'tdx_init_mem_region', a)).toThrow(expect.objectContaining({ code: 'EINVAL' }));
    }
    expect(b.td.callCount('TDH.MEM.PAGE.ADD')).toBe(0);
  });
  it('writes progress back when a later page fails', () => {
    const { b, vm } = make();
    b.vmIoctl('tdx_init_vm', {});
    b.vcpuIoctl(0, 'tdx_init_vcpu', {});
    const last = (vm.privateGfns - 1) * P;
    const r = b.vcpuIoctl(0, 'tdx_init_mem_region', { source_addr: 0x10000, gpa: last, nr_pages: 2 });
    expect(r.ret).toBe(-22);
    expect(r.out).toEqual({ source_addr: 0x11000, gpa: last + P, nr_pages: 1 });
  });
  it('PAGE.ADD without a staged source page bugs the VM', () => {
    const { b, vm, phys } = make();
    b.vmIoctl('tdx_init_vm', {});
    expect(vm.mapPrivate(0, phys.allocPage())).toBe(-5);
    expect(vm.bugged).toMatch(/without a staged source/);
  });
});

describe('TDX backend: runtime AUG / ACCEPT and the pending rule', () => {
  it('AUG leaves the page PENDING until the guest accepts it; touching it first kills the TD', () => {
    const { b, vm } = make();
    build(b, vm);
    const gfn = 0x300;
    const pfn = (vm.gmemGetPfn(gfn) as { pfn: number }).pfn;
    expect(vm.mapPrivate(gfn, pfn)).toBe(0);
    expect(b.td.leafStateAt(gfn).state).toBe(SEPT_PENDING);
    const access = { vcpuId: 0, gpa: gfn * P, gfn, pfn, level: 1, isPrivate: true, write: false, fetch: false };
    expect(b.checkGuestAccess(access).kind).toBe('vm-dead');
    expect(b.guestOp(0, { op: 'accept', args: { gpa: gfn * P } }).ret).toBe('TDX_SUCCESS');
    expect(b.checkGuestAccess(access)).toEqual({ kind: 'ok' });
    expect(b.guestOp(0, { op: 'accept', args: { gpa: gfn * P } }).ret).toBe('TDX_PAGE_ALREADY_ACCEPTED');
    expect(b.checkInvariants()).toEqual([]);
  });
  it('without SEPT_VE_DISABLE the guest gets #VE instead', () => {
    const { b, vm } = make();
    b.vmIoctl('tdx_init_vm', { attributes: 0 });
    b.vcpuIoctl(0, 'tdx_init_vcpu', {});
    b.vmIoctl('tdx_finalize_vm', {});
    vm.mapPrivate(7, 12345);
    const v = b.checkGuestAccess({ vcpuId: 0, gpa: 7 * P, gfn: 7, pfn: 12345, level: 1, isPrivate: true, write: true, fetch: false });
    expect(v).toMatchObject({ kind: 'guest-exception', vector: '#VE' });
  });
  it('ACCEPT on an unmapped page exits with an EPT violation that KVM maps (AUG) before the retry', () => {
    const { b, vm } = make();
    build(b, vm);
    expect(b.guestOp(1, { op: 'accept', args: { gpa: 0x5000 } }).ret).toBe('TDX_SUCCESS');
    expect(b.td.leafStateAt(5).state).toBe(SEPT_PRESENT);
    expect(b.td.callCount('TDH.MEM.PAGE.AUG')).toBe(1);
    expect(b.guestOp(0, { op: 'accept', args: { gpa: 2 ** 47 } }).ret).toBe('TDX_OPERAND_INVALID');
  });
  it('a shared access to a TD private page never reaches it; the invariant reports the alias', () => {
    const { b, vm } = make();
    build(b, vm);
    const pfn = vm.mirrorLeaves.get(0)!.pfn;
    const v = b.checkGuestAccess({ vcpuId: 0, gpa: 2 ** 47, gfn: 2 ** 35, pfn, level: 1, isPrivate: false, write: false, fetch: false });
    expect(v.kind).toBe('guest-exception');
    vm.directLeaves.set(2 ** 35, pfn);
    expect(b.checkInvariants().join()).toMatch(/reachable through shared alias/);
  });
  it('a private access with no S-EPT mapping is an EPT violation with PFERR_PRIVATE_ACCESS', () => {
    const { b, vm } = make();
    build(b, vm);
    const v = b.checkGuestAccess({ vcpuId: 0, gpa: 0x9000, gfn: 9, pfn: 1, level: 1, isPrivate: true, write: true, fetch: false });
    expect(v).toMatchObject({ kind: 'npf', errorCode: PFERR_PRIVATE_ACCESS + 2 });
  });
});

describe('TDX backend: REMOVE order and busy handling', () => {
  it('removes in the order BLOCK → TRACK → kick → REMOVE → WBINVD and resets the page', () => {
    const { b, vm, phys } = make();
    build(b, vm);
    const events: string[] = [];
    b.module.tracer = { enabled: true, emit: (name, f) => events.push(`${name}:${f.status}`) };
    const pfn = vm.mirrorLeaves.get(1)!.pfn;
    b.checkGuestAccess({ vcpuId: 0, gpa: P, gfn: 1, pfn, level: 1, isPrivate: true, write: false, fetch: false });
    expect(b.td.vcpuInGuest(0)).toBe(true);
    const k0 = vm.kicks;
    vm.zapPrivate(1);
    expect(events).toEqual([
      'tdh_mem_range_block:TDX_SUCCESS',
      'tdh_mem_track:TDX_SUCCESS',
      'tdh_mem_page_remove:TDX_SUCCESS',
      'tdh_phymem_page_wbinvd:TDX_SUCCESS',
    ]);
    expect(vm.kicks).toBe(k0 + 1);
    expect(vm.log.at(-1)).toBe('kick: tdx_track');
    expect(b.td.vcpuInGuest(0)).toBe(false);
    expect(b.td.leafStateAt(1).state).toBe(SEPT_FREE);
    expect(phys.readBytes(pfn, 0, 1)[0]).toBe(0);
    expect(vm.bugged).toBeNull();
    expect(b.checkInvariants()).toEqual([]);
  });
  it('BUSY on BLOCK kicks every vCPU and retries once', () => {
    const { b, vm } = make();
    build(b, vm);
    b.td.injectOperandBusy(1, 'TDH.MEM.RANGE.BLOCK');
    const before = seq(vm, b);
    vm.zapPrivate(0);
    expect(vm.bugged).toBeNull();
    expect(vm.kicks - before.kicks).toBe(2); // the busy kick, then tdx_track's kick
    expect(b.td.callCount('TDH.MEM.RANGE.BLOCK') - (before.calls['TDH.MEM.RANGE.BLOCK']?.calls ?? 0)).toBe(2);
    expect(b.stats.busyRetries).toBe(1);
    expect(b.waitForSeptZap).toBe(false);
    expect(b.td.leafStateAt(0).state).toBe(SEPT_FREE);
  });
  it('a second BUSY marks the VM bugged and leaves the entry blocked', () => {
    const { b, vm } = make();
    build(b, vm);
    b.td.injectOperandBusy(2, 'TDH.MEM.PAGE.REMOVE');
    vm.zapPrivate(0);
    expect(vm.bugged).toMatch(/TDH.MEM.PAGE.REMOVE failed: TDX_OPERAND_BUSY/);
    expect(b.td.leafStateAt(0).state).toBe(SEPT_BLOCKED);
    expect(b.checkInvariants().join()).toMatch(/left BLOCKED/);
  });
  it('BUSY in the fault path is -EBUSY (the fault retries), nothing changes', () => {
    const { b, vm } = make();
    build(b, vm);
    b.td.injectOperandBusy(1, 'TDH.MEM.PAGE.AUG');
    expect(b.setExternalSpte(0x10, 1, 4242)).toBe(-16);
    expect(b.td.leafStateAt(0x10).state).toBe(SEPT_FREE);
    expect(b.setExternalSpte(0x10, 1, 4242)).toBe(0);
    b.td.injectOperandBusy(1, 'TDH.MEM.SEPT.ADD');
    expect(b.linkExternalSpt(0x40000, 2, 999)).toBe(-16);
    expect(vm.bugged).toBeNull();
  });
  it('any other error marks the VM bugged', () => {
    const { b, vm } = make();
    build(b, vm);
    expect(b.setExternalSpte(0, 1, 4242)).toBe(-5); // already PRESENT
    expect(vm.bugged).toMatch(/TDH.MEM.PAGE.AUG failed: TDX_EPT_ENTRY_STATE_INCORRECT/);
  });
  it('a 2 MiB leaf without the huge-page option is a KVM bug', () => {
    const { b, vm } = make();
    build(b, vm);
    expect(b.setExternalSpte(0x200, 2, 4242)).toBe(-5);
    expect(vm.bugged).toMatch(/level 2/);
  });
});

describe('TDX backend: teardown order', () => {
  it('zap leaves with the HKID → release HKID → reclaim S-EPT tables', () => {
    const { b, vm } = make();
    build(b, vm);
    vm.zapPrivate(0);
    vm.zapPrivate(1);
    b.destroy();
    const td = b.inspect('td', {}) as { lifecycle: string; hkidReleased: boolean };
    expect(td).toMatchObject({ lifecycle: 'TEARDOWN', hkidReleased: true });
    expect(vm.freeMirrorTables()).toEqual([0, 0, 0]);
    expect(b.td.sept!.tableCount).toBe(1); // the root, reclaimed with the TDCS
    expect(vm.bugged).toBeNull();
    expect(b.checkInvariants()).toEqual([]);
  });
  it('freeing a table page while the HKID is assigned bugs the VM and keeps the page', () => {
    const { b, vm } = make();
    build(b, vm);
    expect(vm.freeMirrorTables()[0]).toBe(-5);
    expect(vm.bugged).toMatch(/free_external_spt while the HKID is assigned/);
    expect(b.td.sept!.tableCount).toBe(4);
  });
  it('removing a private leaf after the HKID was released is a KVM bug', () => {
    const { b, vm } = make();
    build(b, vm);
    b.destroy();
    expect(b.checkInvariants().join()).toMatch(/still in the S-EPT after the HKID was released/);
    vm.zapPrivate(0);
    expect(vm.bugged).toMatch(/after the HKID was released/);
  });
});

describe('TDX backend: split hook (not upstream)', () => {
  it('splits a 2 MiB private leaf with BLOCK → TRACK → kick → DEMOTE', () => {
    const { b, vm, phys } = make({ hugePages: true });
    build(b, vm);
    const base = phys.allocPage();
    for (let i = 1; i < 512; i++) phys.allocPage();
    expect(vm.mapPrivate(512, base, 2)).toBe(0);
    expect(b.guestOp(0, { op: 'accept', args: { gpa: 512 * P, level: 2 } }).ret).toBe('TDX_SUCCESS');
    const events: string[] = [];
    b.module.tracer = { enabled: true, emit: (name) => events.push(name) };
    const k0 = vm.kicks;
    expect(b.splitExternalSpt(512, 2, phys.allocPage())).toBe(0);
    expect(events).toEqual(['tdh_mem_range_block', 'tdh_mem_track', 'tdh_mem_page_demote']);
    expect(vm.kicks).toBe(k0 + 1);
    expect(b.td.leafStateAt(512 + 7)).toEqual({ state: SEPT_PRESENT, pfn: base + 7, level: 0 });
    expect(vm.bugged).toBeNull();
  });
  it('is refused without the huge-page option', () => {
    const { b, vm } = make();
    build(b, vm);
    expect(b.splitExternalSpt(512, 2, 1)).toBe(-5);
  });
});

describe('TDX backend: MapGPA', () => {
  it('forwards 2 MiB steps as KVM_HC_MAP_GPA_RANGE and completes', () => {
    const { b, vm } = make();
    build(b, vm);
    const shared = 2 ** 47;
    const r = b.guestOp(0, { op: 'map_gpa', args: { gpa: shared + 0x100000, size: 0x300000 } });
    expect(r.exit).toEqual({
      reason: 'KVM_EXIT_HYPERCALL',
      hypercall: { nr: KVM_HC_MAP_GPA_RANGE, args: [0x100000, 512, KVM_MAP_GPA_RANGE_DECRYPTED], ret: 0, flags: KVM_EXIT_HYPERCALL_LONG_MODE },
    });
    const r2 = b.completeHypercall(0, 0)!;
    expect(r2.exit && r2.exit.reason === 'KVM_EXIT_HYPERCALL' && r2.exit.hypercall.args).toEqual([0x300000, 256, KVM_MAP_GPA_RANGE_DECRYPTED]);
    expect(b.completeHypercall(0, 0)).toEqual({ ret: 'TDVMCALL_STATUS_SUCCESS' });
    expect(b.completeHypercall(0, 0)).toBeNull();
    const p = b.guestOp(0, { op: 'map_gpa', args: { gpa: 0, size: P } });
    expect(p.exit && p.exit.reason === 'KVM_EXIT_HYPERCALL' && p.exit.hypercall.args[2]).toBe(KVM_MAP_GPA_RANGE_ENCRYPTED);
    expect(b.completeHypercall(0, 22)).toEqual({ ret: 'TDVMCALL_STATUS_INVALID_OPERAND', detail: { r11: 0 } });
  });
  it('returns RETRY with the next gpa when an interrupt is pending between steps', () => {
    const { b, vm } = make();
    build(b, vm);
    b.guestOp(0, { op: 'map_gpa', args: { gpa: 0, size: 0x400000 } });
    b.guestOp(0, { op: 'pending_interrupt', args: { pending: true } });
    expect(b.completeHypercall(0, 0)).toEqual({ ret: 'TDVMCALL_STATUS_RETRY', detail: { r11: 0x200000 } });
  });
  it('checks in order: hypercall exit enabled, operands, alignment', () => {
    const { b, vm } = make();
    build(b, vm);
    vm.hypercallExit = false;
    expect(b.guestOp(0, { op: 'map_gpa', args: { gpa: 0x1001, size: 1 } }).ret).toBe('TDVMCALL_STATUS_SUBFUNC_UNSUPPORTED');
    vm.hypercallExit = true;
    expect(b.guestOp(0, { op: 'map_gpa', args: { gpa: 2 ** 47 - P, size: 2 * P } })).toEqual({ ret: 'TDVMCALL_STATUS_INVALID_OPERAND', detail: { r11: 2 ** 47 - P } });
    expect(b.guestOp(0, { op: 'map_gpa', args: { gpa: 2 ** 48 - P, size: 2 * P } }).ret).toBe('TDVMCALL_STATUS_INVALID_OPERAND');
    expect(b.guestOp(0, { op: 'map_gpa', args: { gpa: 0x1001, size: P } }).ret).toBe('TDVMCALL_STATUS_ALIGN_ERROR');
    expect(b.guestOp(0, { op: 'map_gpa', args: { gpa: 0x1000, size: 0 } }).ret).toBe('TDVMCALL_STATUS_INVALID_OPERAND');
  });
});

describe('TDX backend: invariants against the mirror root', () => {
  it('reports a mirror leaf without an S-EPT entry and the reverse', () => {
    const { b, vm } = make();
    build(b, vm);
    vm.mirrorLeaves.set(0x777, { pfn: 1, level: 1 });
    const leaf = vm.mirrorLeaves.get(0)!;
    vm.mirrorLeaves.delete(0);
    const v = b.checkInvariants().join('\n');
    expect(v).toMatch(/mirror leaf gfn 1911 \(level 1\) has no S-EPT entry/);
    expect(v).toMatch(/S-EPT leaf gfn 0 \(level 1\) has no mirror leaf/);
    vm.mirrorLeaves.set(0, leaf);
    vm.mirrorLeaves.delete(0x777);
    expect(b.checkInvariants()).toEqual([]);
  });
});
