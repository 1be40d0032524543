/**
 * Device-fd rules beyond the flows in device-fd.test.ts: the region's frames (a BAR range,
 * RAM taken contiguously or page by page) and their return, which check refuses a call, the
 * lifetime of the import, and the trace.
 */
import { ERRNO, KVM_X86_SNP_VM, KVM_X86_TDX_VM, PAGE_SIZE, UPSTREAM_PROFILE } from '@ccmem/core';
import type { GmemPfn } from '@ccmem/core';
import { describe, expect, it } from 'vitest';
import { DeviceMemoryRegion, createDeviceFd } from './device-fd.js';
import { FakeVm, bindSlot, fakeSlot } from './testing/fake-vm.js';
import type { FakeVmOptions } from './testing/fake-vm.js';
import { failureOf } from '../../core/src/testing/errno-of.js';

const pfnOut = (): GmemPfn => ({ pfn: -1, maxOrder: -1 });
const tdxVm = (extra: FakeVmOptions = {}) => new FakeVm({ vmType: KVM_X86_TDX_VM, hasPrivateMem: true, withBackend: true, ...extra });
const events = (vm: FakeVm, name: string) => vm.events.filter((e) => e.name === name).map((e) => e.fields);

describe('DeviceMemoryRegion frames', () => {
  it('size must be a positive multiple of PAGE_SIZE', () => {
    const vm = tdxVm();
    for (const size of [0, -PAGE_SIZE, 100, PAGE_SIZE + 1, Number.NaN]) {
      expect(failureOf(() => new DeviceMemoryRegion(vm.phys, { size }))).toEqual({
        code: 'EINVAL',
        check: 'device region: size must be a positive multiple of PAGE_SIZE',
      });
    }
    expect(vm.phys.allocatedPages).toBe(0);
  });

  it('a BAR range: frame i is basePfn + i, nothing comes from host RAM and nothing goes back to it', () => {
    const vm = tdxVm();
    const r = new DeviceMemoryRegion(vm.phys, { size: 3 * PAGE_SIZE, basePfn: 0x90000 });
    expect([0, 1, 2].map((i) => r.pfnAt(i))).toEqual([0x90000, 0x90001, 0x90002]);
    expect(vm.phys.allocatedPages).toBe(0);
    expect(() => r.destroy()).not.toThrow();
    expect(r.revoked).toBe(true);
    expect(vm.phys.allocatedPages).toBe(0);
  });

  it('from RAM, a region is taken like a BAR: aligned to its power-of-two span, all of it returned on destroy', () => {
    const vm = tdxVm();
    vm.phys.allocPage(); // the next free frame is no longer 4-aligned
    const before = vm.phys.allocatedPages;
    const r = new DeviceMemoryRegion(vm.phys, { size: 3 * PAGE_SIZE });
    expect(r.pfnAt(0) % 4).toBe(0);
    expect([1, 2].map((i) => r.pfnAt(i) - r.pfnAt(0))).toEqual([1, 2]);
    expect(r.maxOrderAt(0)).toBe(1);
    expect(vm.phys.allocatedPages).toBe(before + 4);
    r.destroy();
    expect(vm.phys.allocatedPages).toBe(before);
    r.destroy(); // hot-unplug once: a second destroy frees nothing again
    expect(vm.phys.allocatedPages).toBe(before);
  });

  it('a host without a contiguous allocator: frames page by page, huge only if they happen to be consecutive', () => {
    const vm = tdxVm({ phys: { without: ['allocContiguous', 'freeContiguous'] } });
    const r = new DeviceMemoryRegion(vm.phys, { size: 4 * PAGE_SIZE });
    expect(r.contiguous).toBe(true);
    expect(r.maxOrderAt(0)).toBe(2);
    // a free even frame followed by a used one: the region's two frames are 2-aligned but not consecutive
    const a = vm.phys.allocPage();
    vm.phys.allocPage();
    vm.phys.freePage(a);
    expect(a % 2).toBe(0);
    const gappy = new DeviceMemoryRegion(vm.phys, { size: 2 * PAGE_SIZE });
    expect(gappy.pfnAt(0)).toBe(a);
    expect(gappy.pfnAt(1)).not.toBe(a + 1);
    expect(gappy.contiguous).toBe(false);
    expect(gappy.maxOrderAt(0)).toBe(0);
    const before = vm.phys.allocatedPages;
    r.destroy();
    gappy.destroy();
    expect(vm.phys.allocatedPages).toBe(before - 6);
    expect(vm.phys.allocatedPages).toBe(1);
  });

  it('a host that frees contiguous frames but cannot allocate them gets every page-by-page frame back', () => {
    const vm = tdxVm({ phys: { without: ['allocContiguous'] } });
    const r = new DeviceMemoryRegion(vm.phys, { size: 3 * PAGE_SIZE });
    expect(vm.phys.allocatedPages).toBe(3);
    r.destroy();
    expect(vm.phys.allocatedPages).toBe(0);
  });

  it('max_order reaches 1 GiB (order 18) for an aligned 1 GiB region, and no further', () => {
    const vm = tdxVm();
    const g = new DeviceMemoryRegion(vm.phys, { size: 2 ** 30, basePfn: 2 ** 18 });
    expect(g.maxOrderAt(0)).toBe(18);
    expect(g.maxOrderAt(2 ** 18 - 1)).toBe(18);
    const two = new DeviceMemoryRegion(vm.phys, { size: 2 ** 31, basePfn: 2 ** 19 });
    expect(two.maxOrderAt(0)).toBe(18);
  });
});

describe('device fd: which check refuses a call', () => {
  it('createDeviceFd: size must be a positive multiple of PAGE_SIZE within the region', () => {
    const vm = tdxVm();
    const region = new DeviceMemoryRegion(vm.phys, { size: 2 * PAGE_SIZE });
    for (const size of [0, -PAGE_SIZE, 100, PAGE_SIZE + 1, 3 * PAGE_SIZE]) {
      expect(failureOf(() => createDeviceFd(vm, { region, size }))).toEqual({
        code: 'EINVAL',
        check: 'device fd: size must be a positive multiple of PAGE_SIZE within the region',
      });
    }
    expect(createDeviceFd(vm, { region, size: PAGE_SIZE }).size).toBe(PAGE_SIZE);
  });

  it('bind: the offset is checked for range and alignment first, then for being 0', () => {
    const vm = tdxVm();
    const d = createDeviceFd(vm, { size: 4 * PAGE_SIZE });
    const bind = (offset: number, npages = 1) => failureOf(() => bindSlot({ id: 1, baseGfn: 0, npages, file: d, offset }))?.check ?? null;
    const range = 'device fd bind: offset < 0, unaligned, or offset + size > region size';
    expect(bind(-PAGE_SIZE)).toBe(range);
    expect(bind(100)).toBe(range);
    expect(bind(PAGE_SIZE + 0.5)).toBe(range);
    expect(bind(2 * PAGE_SIZE, 3)).toBe(range);
    expect(bind(0, 5)).toBe(range);
    expect(bind(PAGE_SIZE)).toBe('device fd bind: offset must be 0 (vfio_dmabuf RFC)');
    expect(bind(0, 4)).toBeNull();
    expect(failureOf(() => bindSlot({ id: 2, baseGfn: 8, npages: 1, file: d }))).toEqual({
      code: UPSTREAM_PROFILE.gmemBindOverlapErrno,
      check: 'device fd bind: page already bound to another memslot',
    });
  });

  it('a VM type whose private pages need gmem_prepare (SEV-SNP) cannot bind a device fd', () => {
    const vm = new FakeVm({ vmType: KVM_X86_SNP_VM, hasPrivateMem: true, withBackend: true, prepareRequired: true });
    const d = createDeviceFd(vm, { size: PAGE_SIZE });
    const e = failureOf(() => bindSlot({ id: 1, baseGfn: 0, npages: 1, file: d }));
    expect(e?.code).toBe('EINVAL');
    expect(e?.check).toMatch(/the fake VM type needs gmem_prepare/);
    expect(d.boundRanges()).toEqual([]);
  });
});

describe('device fd: the import and its end', () => {
  it('after the VMM fd is closed the import ends with the unbind of the bound slot, and hears no more revokes', () => {
    const vm = tdxVm();
    const d = createDeviceFd(vm, { size: 4 * PAGE_SIZE });
    const region = d.region;
    const s = bindSlot({ id: 1, baseGfn: 0, npages: 2, file: d });
    expect(d.boundRanges().map((b) => [b.start, b.end, b.slot])).toEqual([[0, 2, s]]);
    d.release();
    d.unbind(fakeSlot({ id: 2, baseGfn: 0, npages: 2, file: d })); // never bound: nothing changes
    expect(d.live).toBe(true);
    expect(d.getPfn(s, 1, pfnOut())).toBe(0);
    expect(events(vm, 'kvm_device_fd_release')).toEqual([]);
    d.unbind(s);
    expect(d.live).toBe(false);
    expect(events(vm, 'kvm_device_fd_release')).toEqual([{}]);
    region.revoke();
    expect(events(vm, 'kvm_device_fd_move_notify')).toEqual([]);
  });

  it('closing an fd with no bound slot ends the import at once; it cannot be bound or closed again', () => {
    const vm = tdxVm();
    const d = createDeviceFd(vm, { size: PAGE_SIZE });
    d.release();
    expect(d.live).toBe(false);
    expect(failureOf(() => bindSlot({ id: 1, baseGfn: 0, npages: 1, file: d }))).toEqual({ code: 'EBADF', check: 'device fd: fget' });
    expect(() => d.release()).toThrow('device fd closed twice');
    expect(events(vm, 'kvm_device_fd_release')).toHaveLength(1);
  });

  it('bind and move_notify are traced; a second revoke of a revoked region zaps nothing', () => {
    const vm = tdxVm();
    const d = createDeviceFd(vm, { size: 2 * PAGE_SIZE });
    bindSlot({ id: 5, asId: 1, baseGfn: 0x40, npages: 2, file: d });
    expect(events(vm, 'kvm_device_fd_bind')).toEqual([{ slot: 5, as_id: 1, npages: 2 }]);
    expect(d.revoked).toBe(false);
    vm.clearCalls();
    d.revoke();
    expect(d.revoked).toBe(true);
    expect(vm.calls.map((c) => c.op)).toEqual(['begin', 'unmap', 'end']);
    expect(events(vm, 'kvm_device_fd_move_notify')).toEqual([{ bindings: 1 }]);
    vm.clearCalls();
    d.revoke();
    d.region.destroy();
    expect(vm.calls.filter((c) => c.op !== 'free')).toEqual([]);
    expect(events(vm, 'kvm_device_fd_move_notify')).toHaveLength(1);
  });

  it('peekPfn: the device frame of a bound gfn, -1 for a slot of another file or once revoked', () => {
    const vm = tdxVm();
    const d = createDeviceFd(vm, { size: 4 * PAGE_SIZE });
    const s = bindSlot({ id: 1, baseGfn: 0x100, npages: 4, file: d });
    expect(d.peekPfn(s, 0x102)).toBe(d.region.pfnAt(2));
    expect(d.peekPfn(fakeSlot({ id: 2, baseGfn: 0x100, npages: 4, file: null }), 0x102)).toBe(-1);
    d.revoke();
    expect(d.peekPfn(s, 0x102)).toBe(-1);
    expect(d.getPfn(s, 0x102, pfnOut())).toBe(-ERRNO.EFAULT);
  });
});
