import { describe, expect, it } from 'vitest';
import { Kvm } from './kvm.js';
import { errnoOf } from './testing/errno-of.js';
import { assertVmInvariants } from './invariants.js';
import { runOp } from './steps.js';
import { PreFaultMemoryOp, type KvmPreFaultMemory } from './prefault.js';

const MiB = 1 << 20;


function setup(opts: { huge?: boolean; profile?: string } = {}) {
  const kvm = new Kvm(opts.profile ? { profile: opts.profile } : {});
  const vm = kvm.createVm();
  const hva = kvm.process.mm.mmap({
    length: 8 * MiB,
    prot: { read: true, write: true },
    shared: false,
    ...(opts.huge ? { hugepage: '2M' as const } : {}),
  });
  vm.setUserMemoryRegion2({ slot: 0, flags: 0, guest_phys_addr: 0x40000000, memory_size: 8 * MiB, userspace_addr: hva });
  return { kvm, vm, hva, vcpu: vm.createVcpu(0) };
}

describe('KVM_PRE_FAULT_MEMORY', () => {
  it('argument checks: flags, alignment, size 0 and wrap are EINVAL and leave the range alone', () => {
    const { vcpu } = setup();
    const r: KvmPreFaultMemory = { gpa: 0x40000000, size: 4096, flags: 1 };
    expect(errnoOf(() => vcpu.preFaultMemory(r))).toBe('EINVAL');
    expect(errnoOf(() => vcpu.preFaultMemory({ gpa: 0x40000800, size: 4096 }))).toBe('EINVAL');
    expect(errnoOf(() => vcpu.preFaultMemory({ gpa: 0x40000000, size: 0 }))).toBe('EINVAL');
    expect(errnoOf(() => vcpu.preFaultMemory({ gpa: 2 ** 64 - 4096, size: 8192 }))).toBe('EINVAL');
    expect(r).toEqual({ gpa: 0x40000000, size: 4096, flags: 1 });
  });

  it('u64 checks on exact values: a range ending at 2^64 wraps (EINVAL, not ENOENT); bigints keep every bit', () => {
    const { vcpu } = setup();
    expect(errnoOf(() => vcpu.preFaultMemory({ gpa: 2 ** 64 - 4096, size: 4096 }))).toBe('EINVAL');
    expect(errnoOf(() => vcpu.preFaultMemory({ gpa: 0xfffffffffffff000n, size: 0x1000n }))).toBe('EINVAL');
    // 2^53 + 1 is not page aligned (as a number it would round to 2^53)
    expect(errnoOf(() => vcpu.preFaultMemory({ gpa: 2n ** 53n + 1n, size: 4096 }))).toBe('EINVAL');
    // the last page below 2^64 is a valid range with no memslot
    const r: KvmPreFaultMemory = { gpa: 0xffffffffffffe000n, size: 0x1000n };
    expect(errnoOf(() => vcpu.preFaultMemory(r))).toBe('ENOENT');
    expect(r).toEqual({ gpa: 2 ** 64 - 0x2000, size: 0x1000 });
    expect(() => vcpu.preFaultMemory({ gpa: 2n ** 64n, size: 4096 })).toThrow(RangeError);
  });

  it('maps the range as read faults (zero page, CoW not broken) and returns 0 with size 0', () => {
    const { vm, vcpu, kvm } = setup();
    const r = { gpa: 0x40000000, size: 16 * 4096 };
    vcpu.preFaultMemory(r);
    expect(r).toEqual({ gpa: 0x40010000, size: 0 });
    expect(vm.mmu.stats.pages_4k).toBe(16);
    expect(kvm.process.phys.allocatedPages).toBe(0); // read faults: nothing allocated
    assertVmInvariants(vm);
  });

  it('a huge mapping consumes more than 4 KiB in one step', () => {
    const { vm, vcpu } = setup({ huge: true });
    const r = { gpa: 0x40000000, size: 4 * MiB };
    const op = new PreFaultMemoryOp(vcpu, r);
    op.step(); // faultin
    op.step(); // map: one 2M mapping
    expect(r.size).toBe(2 * MiB);
    runOp(op);
    expect(r.size).toBe(0);
    expect(vm.mmu.stats.pages_2m).toBe(2);
  });

  it('no memslot is ENOENT; after partial progress the call returns 0 and reports the rest', () => {
    const { vcpu } = setup();
    expect(errnoOf(() => vcpu.preFaultMemory({ gpa: 0x10000000, size: 4096 }))).toBe('ENOENT');
    const r = { gpa: 0x40000000 + 8 * MiB - 8192, size: 4 * 4096 };
    vcpu.preFaultMemory(r); // two pages mapped, then the end of the slot
    expect(r).toEqual({ gpa: 0x40000000 + 8 * MiB, size: 2 * 4096 });
  });

  it('a memslot being deleted is EAGAIN (v6.18); a pending signal is EINTR', () => {
    const { vm, vcpu } = setup();
    const del = vm.beginSetUserMemoryRegion2({ slot: 0, flags: 0, guest_phys_addr: 0x40000000, memory_size: 0, userspace_addr: 0 });
    del.step(); // invalidate: the slot is KVM_MEMSLOT_INVALID now
    expect(errnoOf(() => vcpu.preFaultMemory({ gpa: 0x40000000, size: 4096 }))).toBe('EAGAIN');
    runOp(del);
    const { vcpu: v2 } = setup();
    v2.signalPending = true;
    expect(errnoOf(() => v2.preFaultMemory({ gpa: 0x40000000, size: 4096 }))).toBe('EINTR');
  });

  it('without a TDP MMU (linux-6.18-pvm profile) the call is EOPNOTSUPP', () => {
    const { vcpu } = setup({ profile: 'linux-6.18-pvm' });
    expect(errnoOf(() => vcpu.preFaultMemory({ gpa: 0x40000000, size: 4096 }))).toBe('EOPNOTSUPP');
  });
});
