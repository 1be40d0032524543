import { describe, expect, it } from 'vitest';
import { Kvm } from './kvm.js';
import { KVM_MEMORY_ATTRIBUTE_PRIVATE, KVM_MEM_GUEST_MEMFD, KVM_X86_SW_PROTECTED_VM, PAGE_SIZE } from './uapi.js';
import { checkVmInvariants } from './invariants.js';
import { FakeGmem } from './testing/fake-gmem.js';

const BASE = 0x100000;

function swVm() {
  const kvm = new Kvm();
  const vm = kvm.createVm({ type: KVM_X86_SW_PROTECTED_VM });
  const size = 16 * PAGE_SIZE;
  const hva = kvm.process.mm.mmap({ length: size, prot: { read: true, write: true }, shared: false });
  const fd = kvm.process.installFd(new FakeGmem(vm, size, kvm.process.phys));
  vm.setUserMemoryRegion2({ slot: 0, flags: KVM_MEM_GUEST_MEMFD, guest_phys_addr: BASE, memory_size: size, userspace_addr: hva, guest_memfd: fd, guest_memfd_offset: 0 });
  return { kvm, vm, hva, v0: vm.createVcpu(0), v1: vm.createVcpu(1) };
}

describe('GuestAccessOp', () => {
  it('a miss runs walk → faultin → map → walk; a hit is one walk', () => {
    const { vm, v0 } = swVm();
    const op = v0.beginAccess({ gpa: BASE, size: 8, kind: 'write', value: 0x1234n });
    const phases: string[] = [];
    while (true) {
      phases.push(op.phase);
      if (op.step()) break;
    }
    expect(phases).toEqual(['walk', 'faultin', 'map', 'walk']);
    expect(op.result()).toEqual({});
    const hit = v0.beginAccess({ gpa: BASE, size: 8, kind: 'read' });
    expect(hit.step()).toBe(true);
    expect(hit.result().value).toBe(0x1234n);
    expect(checkVmInvariants(vm)).toEqual([]);
  });

  it('a conversion between faultin and map makes the fault retry; the access then exits to userspace', () => {
    const { vm, v0 } = swVm();
    const op = v0.beginAccess({ gpa: BASE, size: 8, kind: 'read' });
    op.step(); // walk: miss
    op.step(); // faultin: shared pfn resolved, seq snapshot
    expect(op.phase).toBe('map');
    vm.setMemoryAttributes({ address: BASE, size: PAGE_SIZE, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE });
    op.step(); // map: is_page_fault_stale → RET_PF_RETRY
    expect(op.spinning).toBe(true);
    expect(op.phase).toBe('walk');
    while (!op.step());
    expect(op.result().exit?.reason).toBe('KVM_EXIT_MEMORY_FAULT');
    expect(vm.mmu.leafAt(BASE / PAGE_SIZE, false)).toBeFalsy();
    expect(checkVmInvariants(vm)).toEqual([]);
  });

  it('with skipRetryCheck the same interleaving installs a stale mapping the invariants catch', () => {
    const { vm, v0 } = swVm();
    vm.faultInjection.skipRetryCheck = true;
    const op = v0.beginAccess({ gpa: BASE, size: 8, kind: 'read' });
    op.step();
    op.step();
    vm.setMemoryAttributes({ address: BASE, size: PAGE_SIZE, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE });
    op.step();
    expect(checkVmInvariants(vm).length).toBeGreaterThan(0);
  });

  it('the synchronous access and the op agree', () => {
    const a = swVm();
    const b = swVm();
    a.v0.guestWrite(BASE + 8, 4, 0xabcdn);
    const w = b.v0.beginAccess({ gpa: BASE + 8, size: 4, kind: 'write', value: 0xabcdn });
    while (!w.step());
    expect(a.v0.guestRead(BASE + 8, 4)).toEqual(b.v0.guestRead(BASE + 8, 4));
    expect(a.vm.mmu.stats.pages_4k).toBe(b.vm.mmu.stats.pages_4k);
  });

  it('entry checks: bad size throws EINVAL, a pending signal finishes with EINTR', () => {
    const { v0 } = swVm();
    expect(() => v0.beginAccess({ gpa: BASE, size: 3, kind: 'read' })).toThrow(/EINVAL|size/);
    v0.signalPending = true;
    const op = v0.beginAccess({ gpa: BASE, size: 8, kind: 'read' });
    expect(op.phase).toBe('done');
    expect(op.result().errno).toBe('EINTR');
  });
});
