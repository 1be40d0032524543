/**
 * A logged memslot of 2^31 - 1 pages (KVM_MEM_MAX_NR_PAGES) costs memory by what is dirty, not
 * by its size: the kernel's bitmap would be 256 MiB (kvm_alloc_dirty_bitmap()); here
 * KVM_DIRTY_LOG_INITIALLY_SET, a few guest writes, KVM_GET_DIRTY_LOG and KVM_CLEAR_DIRTY_LOG of
 * the whole slot grow the heap by a few MiB at most.
 */
import { describe, expect, it } from 'vitest';
import { Kvm } from '../../src/kvm.js';
import { DirtyBitmap } from '../../src/memslot/dirty-bitmap.js';
import {
  KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2,
  KVM_DIRTY_LOG_INITIALLY_SET,
  KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE,
  KVM_MEM_LOG_DIRTY_PAGES,
  KVM_MEM_MAX_NR_PAGES,
  PAGE_SIZE,
} from '../../src/uapi.js';

const MiB = 2 ** 20;

function heapUsed(): number {
  (globalThis as { gc?: () => void }).gc?.();
  return process.memoryUsage().heapUsed + process.memoryUsage().arrayBuffers;
}

describe('dirty bitmaps bounded by what is touched', () => {
  it('a 2^31-page logged slot with INITIALLY_SET: writes, get, clear and get again stay small', () => {
    const before = heapUsed();
    const kvm = new Kvm();
    const vm = kvm.createVm();
    vm.enableCap({ cap: KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, flags: 0, args: [KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE | KVM_DIRTY_LOG_INITIALLY_SET] });
    const npages = KVM_MEM_MAX_NR_PAGES;
    const size = npages * PAGE_SIZE;
    const hva = kvm.process.mm.mmap({ length: size, prot: { read: true, write: true }, shared: false });
    vm.setUserMemoryRegion({ slot: 0, flags: KVM_MEM_LOG_DIRTY_PAGES, guest_phys_addr: 0, memory_size: size, userspace_addr: hva });
    const vcpu = vm.createVcpu(0);
    const pages = [0, 1, 40_000, npages - 1];
    for (const p of pages) vcpu.guestWrite(p * PAGE_SIZE, 8, 1n);

    // manual protect: the copy is the live bitmap, all set
    const all = vm.getDirtyLogBitmap({ slot: 0 });
    expect(all.count()).toBe(npages);
    // clear everything: the user bitmap (every bit) costs nothing either
    vm.clearDirtyLog({ slot: 0, first_page: 0, num_pages: npages, dirty_bitmap: new DirtyBitmap(npages, true) });
    expect(vm.getDirtyLogBitmap({ slot: 0 }).count()).toBe(0);
    // written again after the clear: only those pages are dirty
    for (const p of pages) vcpu.guestWrite(p * PAGE_SIZE, 8, 2n);
    const dirty: number[] = [];
    vm.getDirtyLogBitmap({ slot: 0 }).forEachSetRun((s, e) => {
      for (let p = s; p < e; p++) dirty.push(p);
    });
    expect(dirty).toEqual(pages);
    // a partial clear (not chunk aligned): the other bits stay
    const user = new DirtyBitmap(64 * 1024);
    user.set(1);
    vm.clearDirtyLog({ slot: 0, first_page: 0, num_pages: 64 * 1024, dirty_bitmap: user });
    expect(vm.getDirtyLogBitmap({ slot: 0 }).count()).toBe(3);

    const grown = heapUsed() - before;
    expect(grown).toBeLessThan(16 * MiB);
  });
});
