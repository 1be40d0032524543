import { describe, expect, it } from 'vitest';
import { Kvm } from '../../kvm.js';
import { MADV_DONTNEED } from '../../host/address-space.js';
import { KVM_MEM_READONLY } from '../../uapi.js';
import type { GpteHalves } from '../paging-tmpl.js';

const MiB = 1 << 20;

function vmWithSlot() {
  const kvm = new Kvm({ profile: 'upstream-shadow' });
  const vm = kvm.createVm();
  const hva = kvm.process.mm.mmap({ length: 4 * MiB, prot: { read: true, write: true }, shared: false });
  vm.setUserMemoryRegion2({ slot: 0, flags: 0, guest_phys_addr: 0, memory_size: 4 * MiB, userspace_addr: hva });
  return { kvm, vm, hva, mem: vm.guestMemory };
}

describe('VmGuestMemory (guest page-table reads through the memslot hva)', () => {
  it('reads what was stored, through its cache as well, and sees every later store', () => {
    const { mem } = vmWithSlot();
    const g: GpteHalves = { lo: 0, hi: 0 };
    const lo = new Int32Array(8);
    const hi = new Int32Array(8);
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i < 8; i++) mem.write64(0x3000 + 8 * i, (0x1000 * (i + 1)) | 0x23 | round, 0x80000000 | i);
      for (let pass = 0; pass < 2; pass++) {
        for (let i = 0; i < 8; i++) {
          expect(mem.readGpte(0x3000 + 8 * i, g)).toBe(true);
          expect([g.lo, g.hi]).toEqual([(0x1000 * (i + 1)) | 0x23 | round, 0x80000000 | i]);
        }
        expect(mem.readGptes(0x3000, 8, lo, hi)).toBe(true);
        for (let i = 0; i < 8; i++) expect([lo[i], hi[i]]).toEqual([(0x1000 * (i + 1)) | 0x23 | round, 0x80000000 | i]);
      }
    }
    // a table page nothing was stored in reads as zeros
    expect(mem.readGpte(0x9000, g)).toBe(true);
    expect([g.lo, g.hi]).toEqual([0, 0]);
    mem.write64(0x9008, 0x7, 0);
    expect(mem.readGpte(0x9008, g)).toBe(true);
    expect(g.lo).toBe(0x7);
  });

  it('cmpxchg stores only over the expected value and the next read sees it', () => {
    const { mem } = vmWithSlot();
    const g: GpteHalves = { lo: 0, hi: 0 };
    mem.write64(0x5000, 0x1003, 0x12);
    mem.readGpte(0x5000, g);
    expect(mem.cmpxchgGpte(0x5000, 0x1001, 0x12, 0x1021, 0x12)).toBe(1); // the gpte changed
    expect(mem.cmpxchgGpte(0x5000, 0x1003, 0x12, 0x1023, 0x13)).toBe(0);
    expect(mem.readGpte(0x5000, g)).toBe(true);
    expect([g.lo, g.hi]).toEqual([0x1023, 0x13]);
    // over zeros in a page with no stored contents
    expect(mem.cmpxchgGpte(0x6000, 0, 0, 0x20, 0)).toBe(0);
    expect(mem.readGpte(0x6000, g)).toBe(true);
    expect([g.lo, g.hi]).toEqual([0x20, 0]);
  });

  it('a host page dropped under the table (MADV_DONTNEED), a memslot deleted: the next read follows', () => {
    const { kvm, vm, hva, mem } = vmWithSlot();
    const g: GpteHalves = { lo: 0, hi: 0 };
    mem.write64(0x7000, 0x4003, 0);
    expect(mem.readGpte(0x7000, g)).toBe(true);
    expect(g.lo).toBe(0x4003);
    // the private anonymous page is freed: the table reads as zeros (the zero page) ...
    kvm.process.mm.madvise(hva + 0x7000, 4096, MADV_DONTNEED);
    expect(mem.readGpte(0x7000, g)).toBe(true);
    expect([g.lo, g.hi]).toEqual([0, 0]);
    // ... and a new store lands in a new frame that the next read finds
    mem.write64(0x7000, 0x5003, 1);
    expect(mem.readGpte(0x7000, g)).toBe(true);
    expect([g.lo, g.hi]).toEqual([0x5003, 1]);
    // the slot deleted: no read; created again read-only: readable, not writable for A/D updates
    vm.setUserMemoryRegion2({ slot: 0, flags: 0, guest_phys_addr: 0, memory_size: 0, userspace_addr: hva });
    expect(mem.readGpte(0x7000, g)).toBe(false);
    vm.setUserMemoryRegion2({ slot: 0, flags: KVM_MEM_READONLY, guest_phys_addr: 0, memory_size: 4 * MiB, userspace_addr: hva });
    expect(mem.readGpte(0x7000, g)).toBe(true);
    expect([g.lo, g.hi]).toEqual([0x5003, 1]);
    expect(mem.gptWritable(7)).toBe(false);
  });
});
