import { ERRNO, KVM_FILTER_PRIVATE, KVM_FILTER_SHARED, KVM_X86_TDX_VM, PAGE_SIZE } from '@ccmem/core';
import type { GmemPfn } from '@ccmem/core';
import { describe, expect, it } from 'vitest';
import { DeviceMemoryRegion, createDeviceFd } from './device-fd.js';
import { FakeVm, bindSlot } from './testing/fake-vm.js';
import { runProviderConformance } from './testing/index.js';
import { errnoOf } from '../../core/src/testing/errno-of.js';

const pfnOut = (): GmemPfn => ({ pfn: -1, maxOrder: -1 });
const tdxVm = () => new FakeVm({ vmType: KVM_X86_TDX_VM, hasPrivateMem: true, withBackend: true });

runProviderConformance('device fd', (vm) => {
  const file = createDeviceFd(vm, { size: 8 * PAGE_SIZE });
  return { vm, file, npages: 8, extraOffsets: [], remove: () => file.revoke(), kill: () => file.revoke() };
});

describe('device-fd provider', () => {
  it('is a private-memslot provider without gmem flags: kind device-fd, not gmem-only', () => {
    const d = createDeviceFd(tdxVm(), { size: 4 * PAGE_SIZE });
    expect(d.kind).toBe('device-fd');
    expect(d.flags).toBe(0);
    expect(d.gmemOnly).toBe(false);
    expect(d.size).toBe(4 * PAGE_SIZE);
  });

  it('binding offset must be 0 (vfio_dmabuf RFC)', () => {
    const d = createDeviceFd(tdxVm(), { size: 4 * PAGE_SIZE });
    expect(errnoOf(() => bindSlot({ id: 1, baseGfn: 0, npages: 1, file: d, offset: PAGE_SIZE }))).toBe('EINVAL');
    expect(errnoOf(() => bindSlot({ id: 1, baseGfn: 0, npages: 4, file: d, offset: 0 }))).toBeUndefined();
  });

  it('pfns come from the device region; no prepare, nothing allocated or freed per fault', () => {
    const vm = tdxVm();
    const d = createDeviceFd(vm, { size: 4 * PAGE_SIZE });
    const s = bindSlot({ id: 1, baseGfn: 0x100, npages: 4, file: d });
    const allocated = vm.phys.allocatedPages;
    vm.clearCalls();
    for (let i = 0; i < 4; i++) {
      const out = pfnOut();
      expect(d.getPfn(s, 0x100 + i, out)).toBe(0);
      expect(out.pfn).toBe(d.region.pfnAt(i));
    }
    expect(vm.calls).toEqual([]);
    expect(vm.phys.allocatedPages).toBe(allocated);
  });

  it('max_order is the natural alignment of the contiguous region; the vendor limits the level', () => {
    const vm = tdxVm();
    const region = new DeviceMemoryRegion(vm.phys, { size: 1024 * PAGE_SIZE, basePfn: 0x80000 });
    const d = createDeviceFd(vm, { region });
    const s = bindSlot({ id: 1, baseGfn: 0x200, npages: 1024, file: d });
    const out = pfnOut();
    expect(d.getPfn(s, 0x200, out)).toBe(0);
    expect(out).toEqual({ pfn: 0x80000, maxOrder: 10 }); // 1024 aligned pages: one 4 MiB block
    expect(d.getPfn(s, 0x201, out)).toBe(0);
    expect(out.maxOrder).toBe(10);
    const three = new DeviceMemoryRegion(vm.phys, { size: 768 * PAGE_SIZE, basePfn: 0x80000 });
    expect(three.maxOrderAt(0)).toBe(9); // 3 MiB: a 2 MiB block, then 1 MiB at the tail
    expect(three.maxOrderAt(600)).toBe(8);
    const odd = new DeviceMemoryRegion(vm.phys, { size: 3 * PAGE_SIZE, basePfn: 0x90001 });
    expect(odd.maxOrderAt(0)).toBe(0);
    // pfns 0x90002..3 form an aligned pair, but file offsets 1..2 do not: a huge mapping
    // aligns gfn and pfn down together, so no block of order 1 exists here
    expect(odd.maxOrderAt(1)).toBe(0);
    const aligned = new DeviceMemoryRegion(vm.phys, { size: 4 * PAGE_SIZE, basePfn: 0x90004 });
    expect(aligned.maxOrderAt(1)).toBe(2);
  });

  it('revoke zaps private and shared mappings of every binding; faults then get EFAULT; restore re-enables', () => {
    const vm = tdxVm();
    const region = new DeviceMemoryRegion(vm.phys, { size: 4 * PAGE_SIZE });
    const a = createDeviceFd(vm, { region });
    const b = createDeviceFd(vm, { region, size: 2 * PAGE_SIZE });
    const sa = bindSlot({ id: 1, baseGfn: 0x100, npages: 4, file: a });
    const sb = bindSlot({ id: 2, baseGfn: 0x900, npages: 2, file: b });
    vm.clearCalls();
    region.revoke();
    const both = KVM_FILTER_PRIVATE | KVM_FILTER_SHARED;
    expect(vm.calls).toEqual([
      { op: 'begin' },
      { op: 'unmap', start: 0x100, end: 0x104, filter: both },
      { op: 'end' },
      { op: 'begin' },
      { op: 'unmap', start: 0x900, end: 0x902, filter: both },
      { op: 'end' },
    ]);
    expect(a.getPfn(sa, 0x100, pfnOut())).toBe(-ERRNO.EFAULT);
    expect(b.getPfn(sb, 0x900, pfnOut())).toBe(-ERRNO.EFAULT);
    region.restore();
    expect(a.getPfn(sa, 0x100, pfnOut())).toBe(0);
  });

  it('errors in order: EFAULT (foreign slot) before EIO (unbound index) before EFAULT (revoked)', () => {
    const vm = tdxVm();
    const d = createDeviceFd(vm, { size: 4 * PAGE_SIZE });
    const s = bindSlot({ id: 1, baseGfn: 0x100, npages: 2, file: d });
    d.revoke();
    expect(d.getPfn({ ...s, gmemPgoff: 2 }, 0x100, pfnOut())).toBe(-ERRNO.EIO);
    expect(d.getPfn({ ...s, gmemFile: null }, 0x100, pfnOut())).toBe(-ERRNO.EFAULT);
  });

  it('closing the VMM fd keeps bound slots working (KVM holds its own reference) until the last unbind', () => {
    const vm = tdxVm();
    const d = createDeviceFd(vm, { size: 2 * PAGE_SIZE });
    const s = bindSlot({ id: 1, baseGfn: 0, npages: 2, file: d });
    vm.clearCalls();
    d.release();
    expect(vm.calls).toEqual([]);
    expect(d.live).toBe(true);
    expect(d.getPfn(s, 1, pfnOut())).toBe(0);
    d.unbind(s);
    expect(d.live).toBe(false);
    expect(d.getPfn(s, 1, pfnOut())).toBe(-ERRNO.EFAULT);
    expect(vm.refs).toBe(1); // a device fd never held the VM
  });

  it('without hostAccessible the VMM cannot map it at all', () => {
    const d = createDeviceFd(tdxVm(), { size: PAGE_SIZE });
    expect(d.checkMmap(true)).toBe('ENODEV');
    expect(d.faultPage(0, false)).toBe('SIGBUS');
  });

  it('hostAccessible (seed 004): the VMM maps the device pfn while the guest maps the same page privately', () => {
    const vm = tdxVm();
    const d = createDeviceFd(vm, { size: 2 * PAGE_SIZE, hostAccessible: true });
    const s = bindSlot({ id: 1, baseGfn: 0x40, npages: 2, file: d });
    expect(d.checkMmap(false)).toBe('EINVAL');
    expect(d.checkMmap(true)).toBeNull();
    const out = pfnOut();
    expect(d.getPfn(s, 0x41, out)).toBe(0);
    expect(d.faultPage(1, true)).toBe(out.pfn);
    vm.phys.writeBytes(out.pfn, 0, new Uint8Array([0x77]));
    expect(vm.phys.readBytes(d.faultPage(1, false) as number, 0, 1)[0]).toBe(0x77);
    expect(d.faultPage(2, false)).toBe('SIGBUS');
    d.revoke();
    expect(d.faultPage(1, false)).toBe('SIGBUS');
  });

  it('destroying the region revokes it and returns RAM-backed frames to the host', () => {
    const vm = tdxVm();
    const before = vm.phys.allocatedPages;
    const region = new DeviceMemoryRegion(vm.phys, { size: 4 * PAGE_SIZE });
    expect(vm.phys.allocatedPages).toBe(before + 4);
    region.destroy();
    expect(region.revoked).toBe(true);
    expect(vm.phys.allocatedPages).toBe(before);
  });

  it('size checks', () => {
    const vm = tdxVm();
    expect(errnoOf(() => createDeviceFd(vm, { size: 100 }))).toBe('EINVAL');
    const region = new DeviceMemoryRegion(vm.phys, { size: PAGE_SIZE });
    expect(errnoOf(() => createDeviceFd(vm, { region, size: 2 * PAGE_SIZE }))).toBe('EINVAL');
  });
});
