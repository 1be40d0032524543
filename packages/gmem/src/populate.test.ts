import { ERRNO, KVM_X86_SNP_VM, PAGE_SIZE } from '@ccmem/core';
import type { GmemPfn } from '@ccmem/core';
import { describe, expect, it } from 'vitest';
import { createDeviceFd } from './device-fd.js';
import { guestMemfdFactory } from './guest-memfd.js';
import { kvmGmemPopulate } from './populate.js';
import type { KvmGmemPopulateArgs } from './populate.js';
import { FakeVm, bindSlot, fakeSlot } from './testing/fake-vm.js';

function setup(npages = 4) {
  const vm = new FakeVm({ vmType: KVM_X86_SNP_VM, hasPrivateMem: true, withBackend: true });
  const f = guestMemfdFactory.create(vm, { size: npages * PAGE_SIZE, flags: 0 });
  const slot = bindSlot({ id: 1, baseGfn: 0x80, npages, file: f });
  const populated: { gfn: number; pfn: number; src: Uint8Array | null }[] = [];
  const base = {
    slot,
    startGfn: 0x80,
    npages,
    src: null,
    isPrivate: () => true,
    postPopulate: (gfn: number, pfn: number, src: Uint8Array | null) => {
      populated.push({ gfn, pfn, src });
      if (src) vm.phys.writeBytes(pfn, 0, src);
      return 0;
    },
  } satisfies KvmGmemPopulateArgs;
  return { vm, f, slot, populated, base };
}

describe('kvm_gmem_populate (§6.7)', () => {
  it('checks in order: npages, src alignment, slot has gmem, file live', () => {
    const { f, base } = setup();
    expect(kvmGmemPopulate({ ...base, npages: 0, slot: null })).toBe(-ERRNO.EINVAL);
    expect(kvmGmemPopulate({ ...base, src: 0x1001, slot: null })).toBe(-ERRNO.EINVAL);
    expect(kvmGmemPopulate({ ...base, slot: null })).toBe(-ERRNO.EINVAL);
    expect(kvmGmemPopulate({ ...base, slot: fakeSlot({ id: 2, baseGfn: 0x80, npages: 4, file: null }) })).toBe(-ERRNO.EINVAL);
    f.release();
    expect(kvmGmemPopulate(base)).toBe(-ERRNO.EFAULT);
  });

  it('populates each page through the callback, copying the source; contents survive the first fault', () => {
    const { vm, f, slot, populated, base } = setup();
    const srcs = new Map<number, Uint8Array>();
    for (let i = 0; i < 4; i++) srcs.set(0x7000 + i * PAGE_SIZE, new Uint8Array([i + 1, 0xee]));
    const n = kvmGmemPopulate({ ...base, src: 0x7000, getSrcPage: (hva) => srcs.get(hva) ?? -ERRNO.EFAULT });
    expect(n).toBe(4);
    expect(populated.map((p) => p.gfn)).toEqual([0x80, 0x81, 0x82, 0x83]);
    expect(f.stats.allocatedPages).toBe(4);
    const out: GmemPfn = { pfn: -1, maxOrder: -1 };
    expect(f.getPfn(slot, 0x82, out)).toBe(0);
    expect(out.pfn).toBe(populated[2]!.pfn);
    expect(vm.phys.readBytes(out.pfn, 0, 2)).toEqual(new Uint8Array([3, 0xee])); // not zeroed
  });

  it('clamps to the end of the slot', () => {
    const { populated, base } = setup();
    expect(kvmGmemPopulate({ ...base, startGfn: 0x82, npages: 100 })).toBe(2);
    expect(populated.map((p) => p.gfn)).toEqual([0x82, 0x83]);
  });

  it('a gfn without the PRIVATE attribute is EINVAL; after some pages, the count is returned', () => {
    const { populated, base } = setup();
    expect(kvmGmemPopulate({ ...base, isPrivate: () => false })).toBe(-ERRNO.EINVAL);
    expect(populated).toEqual([]);
    expect(kvmGmemPopulate({ ...base, isPrivate: (g) => g < 0x82 })).toBe(2);
  });

  it('a failed callback stops the loop and leaves the page not up to date', () => {
    const { f, base } = setup();
    let calls = 0;
    expect(kvmGmemPopulate({ ...base, postPopulate: () => (++calls === 2 ? -ERRNO.EIO : 0) })).toBe(1);
    expect(calls).toBe(2);
    expect(f.pageFlags(1) & 1).toBe(0);
  });

  it('source pin failure and poisoned pages stop the loop with their errno', () => {
    const { f, base } = setup();
    expect(kvmGmemPopulate({ ...base, src: 0x7000, getSrcPage: () => -ERRNO.EFAULT })).toBe(-ERRNO.EFAULT);
    f.fallocate(1, 0, PAGE_SIZE);
    f.poison(0);
    expect(kvmGmemPopulate(base)).toBe(-ERRNO.EHWPOISON);
  });

  it('a device-fd slot cannot be populated', () => {
    const vm = new FakeVm({ vmType: KVM_X86_SNP_VM, hasPrivateMem: true });
    const d = createDeviceFd(vm, { size: PAGE_SIZE });
    const slot = bindSlot({ id: 1, baseGfn: 0, npages: 1, file: d });
    expect(kvmGmemPopulate({ slot, startGfn: 0, npages: 1, src: null, isPrivate: () => true, postPopulate: () => 0 })).toBe(-ERRNO.EINVAL);
  });
});
