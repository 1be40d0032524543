import { describe, expect, it } from 'vitest';
import { checkVmInvariants } from './invariants.js';
import { Kvm } from './kvm.js';
import { FakeGmem } from './testing/fake-gmem.js';
import { KVM_MEMORY_ATTRIBUTE_PRIVATE, KVM_MEM_GUEST_MEMFD, KVM_X86_SW_PROTECTED_VM, PAGE_SIZE } from './uapi.js';

const BASE = 0x100000;
/** 4 MiB: two 2M regions */
const SIZE = 1024 * PAGE_SIZE;

/** a SW-protected VM whose gfn BASE/4K keeps a stale shared SPTE after a conversion (skipRetryCheck) */
function staleVm() {
  const kvm = new Kvm();
  const vm = kvm.createVm({ type: KVM_X86_SW_PROTECTED_VM });
  const hva = kvm.process.mm.mmap({ length: SIZE, prot: { read: true, write: true }, shared: false });
  const fd = kvm.process.installFd(new FakeGmem(vm, SIZE, kvm.process.phys));
  vm.setUserMemoryRegion2({ slot: 0, flags: KVM_MEM_GUEST_MEMFD, guest_phys_addr: BASE, memory_size: SIZE, userspace_addr: hva, guest_memfd: fd, guest_memfd_offset: 0 });
  const v0 = vm.createVcpu(0);
  v0.guestWrite(BASE + 0x200000, 8, 7n); // a correct mapping in the other 2M region
  vm.faultInjection.skipRetryCheck = true;
  const op = v0.beginAccess({ gpa: BASE, size: 8, kind: 'read' });
  op.step(); // walk: miss
  op.step(); // faultin: the shared pfn
  vm.setMemoryAttributes({ address: BASE, size: PAGE_SIZE, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE });
  op.step(); // map: installs the shared pfn for a now-private gfn
  return { kvm, vm, gfn: BASE / PAGE_SIZE };
}

describe('checkVmInvariants options', () => {
  it('gfnRange: a range holding the bad SPTE reports it exactly as the full check does', () => {
    const { vm, gfn } = staleVm();
    const full = checkVmInvariants(vm);
    expect(full.some((m) => m.includes(`gfn 0x${gfn.toString(16)}`))).toBe(true);
    expect(checkVmInvariants(vm, { gfnRange: { start: gfn, end: gfn + 1 } })).toEqual(full);
    expect(checkVmInvariants(vm, { gfnRange: { start: gfn - 5, end: gfn + 512 } })).toEqual(full);
  });

  it('gfnRange: a range without it checks only its own SPTEs', () => {
    const { vm, gfn } = staleVm();
    expect(checkVmInvariants(vm, { gfnRange: { start: gfn + 512, end: gfn + 1024 } })).toEqual([]);
    expect(checkVmInvariants(vm, { gfnRange: { start: gfn, end: gfn } })).toEqual([]);
  });

  it('memslots: false skips the memslot rules only', () => {
    const { vm, gfn } = staleVm();
    vm.memslots.slots.nrMemslotPages += 1; // break a memslot rule
    const all = checkVmInvariants(vm);
    expect(all.some((m) => m.startsWith('nr_memslot_pages'))).toBe(true);
    const noSlots = checkVmInvariants(vm, { memslots: false });
    expect(noSlots.some((m) => m.startsWith('nr_memslot_pages'))).toBe(false);
    expect(noSlots.some((m) => m.includes(`gfn 0x${gfn.toString(16)}`))).toBe(true);
    expect(noSlots.length).toBe(all.length - 1);
  });
});

describe('checkVmInvariants: disallow_lpage, written out', () => {
  const MiB = 1 << 20;
  /** a sw-protected VM with one legal 2M leaf over a 2M hugetlb page at gpa 1 GiB */
  function hugeVm() {
    const kvm = new Kvm();
    const vm = kvm.createVm({ type: KVM_X86_SW_PROTECTED_VM });
    const hva = kvm.process.mm.mmap({ length: 2 * MiB, prot: { read: true, write: true }, shared: false, hugepage: '2M' });
    vm.setUserMemoryRegion2({ slot: 0, flags: 0, guest_phys_addr: 0x4000_0000, memory_size: 2 * MiB, userspace_addr: hva });
    vm.createVcpu(0).guestRead(0x4000_0000, 1);
    expect(vm.mmu.stats.pages_2m).toBe(1);
    expect(checkVmInvariants(vm)).toEqual([]);
    return vm;
  }

  it('a huge leaf over pages whose attributes differ (changed behind the MMU\'s back) is reported', () => {
    const vm = hugeVm();
    vm.attributes.set(0x4_0005, 0x4_0006, KVM_MEMORY_ATTRIBUTE_PRIVATE);
    const v = checkVmInvariants(vm).filter((m) => m.includes('disallow_lpage'));
    expect(v).toEqual([expect.stringMatching(/gfn 0x40005 has other attributes than the first page \(mixed\)/)]);
  });

  it('a huge leaf whose slot no longer lines gfn and hva up, or no longer covers it, is reported', () => {
    const vm = hugeVm();
    const slot = vm.gfnToMemslot(0x4_0000)!;
    (slot as { userspaceAddr: number }).userspaceAddr += PAGE_SIZE;
    expect(checkVmInvariants(vm).filter((m) => m.includes('disallow_lpage'))).toEqual([expect.stringMatching(/gfn and hva are not equally aligned/)]);
    (slot as { userspaceAddr: number }).userspaceAddr -= PAGE_SIZE;
    (slot as { npages: number }).npages -= 1;
    expect(checkVmInvariants(vm).filter((m) => m.includes('disallow_lpage'))).toEqual([expect.stringMatching(/sticks out of its memslot/)]);
  });
});
