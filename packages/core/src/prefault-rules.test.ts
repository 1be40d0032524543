/**
 * KVM_PRE_FAULT_MEMORY rules pinned one by one (virt/kvm/kvm_main.c:
 * kvm_vcpu_pre_fault_memory(); arch/x86/kvm/mmu/mmu.c: kvm_arch_vcpu_pre_fault_memory(),
 * kvm_tdp_page_prefault()): each case fails if the model drops or bends one rule, its errno,
 * or the range it reports back.
 */
import { describe, expect, it } from 'vitest';
import { Kvm } from './kvm.js';
import { errnoOf } from './testing/errno-of.js';
import { runOp } from './steps.js';
import { PreFaultMemoryOp, type KvmPreFaultMemory } from './prefault.js';
import type { VendorBackend } from './backend.js';
import { probeVm } from './testing/probe-vm.js';
import { KVM_MEMORY_ATTRIBUTE_PRIVATE } from './uapi.js';

const MiB = 1 << 20;
const GPA = 0x40000000;

function setup() {
  const kvm = new Kvm();
  const vm = kvm.createVm();
  const hva = kvm.process.mm.mmap({ length: 8 * MiB, prot: { read: true, write: true }, shared: false });
  vm.setUserMemoryRegion2({ slot: 0, flags: 0, guest_phys_addr: GPA, memory_size: 8 * MiB, userspace_addr: hva });
  return { kvm, vm, hva, vcpu: vm.createVcpu(0) };
}

/** a KVM_X86_SW_PROTECTED_VM whose vendor backend has `hooks`, 8 MiB of memory at GPA */
function vendorVm(hooks: Partial<VendorBackend>) {
  const { kvm, vm } = probeVm(hooks, { memorySize: 8 * MiB, gpa: GPA });
  return { kvm, vm, vcpu: vm.createVcpu(0) };
}

describe('kvm_vcpu_pre_fault_memory()', () => {
  it('a dead VM is EIO before anything runs, and the range is left alone', () => {
    const { vm, vcpu } = setup();
    vm.markBugged('test');
    const r: KvmPreFaultMemory = { gpa: GPA, size: 4096 };
    expect(errnoOf(() => vcpu.preFaultMemory(r))).toBe('EIO');
    expect(r).toEqual({ gpa: GPA, size: 4096 });
    expect(vm.mmu.stats.pages_4k).toBe(0);
    // kvm_vcpu_ioctl() answers EIO for a dead VM before the ioctl looks at its argument
    expect(errnoOf(() => vcpu.preFaultMemory({ gpa: GPA, size: 4096, flags: 1 }))).toBe('EIO');
    expect(errnoOf(() => vcpu.preFaultMemory({ gpa: GPA + 1, size: 0 }))).toBe('EIO');
  });

  it('a VM that dies between chunks stops the call: EIO with nothing done, else 0 and the rest', () => {
    const { vm, vcpu } = setup();
    const r = { gpa: GPA, size: 3 * 4096 };
    const op = new PreFaultMemoryOp(vcpu, r);
    expect(op.step()).toBe(false); // faultin
    expect(op.step()).toBe(false); // map: one page done
    vm.markBugged('test');
    expect(op.step()).toBe(true);
    expect(op.result()).toBeNull();
    expect(r).toEqual({ gpa: GPA + 4096, size: 2 * 4096 });

    const other = setup();
    const r2 = { gpa: GPA, size: 4096 };
    const op2 = new PreFaultMemoryOp(other.vcpu, r2);
    other.vm.markBugged('test');
    expect(op2.step()).toBe(true);
    expect(op2.result()).toBe('EIO');
    expect(r2).toEqual({ gpa: GPA, size: 4096 });
  });

  it('a pending signal stops the call with EINTR; after it is handled the next call runs', () => {
    const { vm, vcpu } = setup();
    vcpu.signalPending = true;
    const r = { gpa: GPA, size: 4096 };
    expect(errnoOf(() => vcpu.preFaultMemory(r))).toBe('EINTR');
    expect(r.size).toBe(4096);
    vcpu.preFaultMemory(r);
    expect(r).toEqual({ gpa: GPA + 4096, size: 0 });
    expect(vm.mmu.stats.pages_4k).toBe(1);
  });

  it('a signal after some progress returns 0 with the rest of the range', () => {
    const { vcpu } = setup();
    const r = { gpa: GPA, size: 2 * 4096 };
    const op = new PreFaultMemoryOp(vcpu, r);
    op.step();
    op.step();
    vcpu.signalPending = true;
    expect(runOp(op)).toBeNull();
    expect(r).toEqual({ gpa: GPA + 4096, size: 4096 });
  });

  it('a chunk mapped by a 2M leaf ends where the huge page ends, even when the range starts inside it', () => {
    const kvm = new Kvm();
    const vm = kvm.createVm();
    const hva = kvm.process.mm.mmap({ length: 8 * MiB, prot: { read: true, write: true }, shared: false, hugepage: '2M' });
    vm.setUserMemoryRegion2({ slot: 0, flags: 0, guest_phys_addr: GPA, memory_size: 8 * MiB, userspace_addr: hva });
    const vcpu = vm.createVcpu(0);
    // kvm_arch_vcpu_pre_fault_memory(): end = (gfn - gfn % pages) + pages of the mapping level
    const r = { gpa: GPA + 3 * 4096, size: 4 * MiB };
    const op = new PreFaultMemoryOp(vcpu, r);
    op.step();
    op.step();
    vcpu.signalPending = true;
    expect(runOp(op)).toBeNull();
    expect(vm.mmu.stats.pages_2m).toBe(1);
    expect(r).toEqual({ gpa: GPA + 2 * MiB, size: 4 * MiB - (2 * MiB - 3 * 4096) });
  });

  it('pre-faulting a range again maps nothing new and returns 0 (RET_PF_SPURIOUS counts as done)', () => {
    const { vm, vcpu } = setup();
    vcpu.preFaultMemory({ gpa: GPA, size: 4 * 4096 });
    const r = { gpa: GPA, size: 4 * 4096 };
    vcpu.preFaultMemory(r);
    expect(r).toEqual({ gpa: GPA + 4 * 4096, size: 0 });
    expect(vm.mmu.stats.pages_4k).toBe(4);
  });

  it('a memslot whose userspace memory is not mapped is EFAULT', () => {
    const kvm = new Kvm();
    const vm = kvm.createVm();
    vm.setUserMemoryRegion2({ slot: 0, flags: 0, guest_phys_addr: GPA, memory_size: 2 * MiB, userspace_addr: 0x7f0000000000 });
    const r = { gpa: GPA, size: 4096 };
    expect(errnoOf(() => vm.createVcpu(0).preFaultMemory(r))).toBe('EFAULT');
    expect(r).toEqual({ gpa: GPA, size: 4096 });
  });
});

describe('kvm_tdp_page_prefault(): RET_PF_RETRY', () => {
  /** a one-page pre-fault of GPA while an invalidation covering it is in progress */
  function underInvalidation() {
    const { vm, vcpu } = setup();
    const gfn = GPA / 4096;
    vm.mmuInvalidate.begin();
    vm.mmuInvalidate.rangeAdd(gfn, gfn + 1);
    const r = { gpa: GPA, size: 4096 };
    return { vm, r, op: new PreFaultMemoryOp(vcpu, r) };
  }

  it('retries the chunk while an invalidation covers it, and maps it once the invalidation ends', () => {
    const { vm, r, op } = underInvalidation();
    for (let i = 0; i < 5; i++) {
      expect(op.step()).toBe(false);
      expect(op.phase).toBe('chunk');
    }
    vm.mmuInvalidate.end();
    expect(runOp(op)).toBeNull();
    expect(r.size).toBe(0);
    expect(vm.mmu.stats.pages_4k).toBe(1);
  });

  it('gives up with EIO after 1000 retries of one chunk (an invalidation that never ends)', () => {
    const { r, op } = underInvalidation();
    let steps = 0;
    while (!op.step()) steps++;
    expect(steps).toBe(1000);
    expect(op.result()).toBe('EIO');
    expect(r).toEqual({ gpa: GPA, size: 4096 });
  });

  it('the retry count starts over for each chunk', () => {
    const { vm, vcpu } = setup();
    const gfn = GPA / 4096;
    const r = { gpa: GPA, size: 2 * 4096 };
    const op = new PreFaultMemoryOp(vcpu, r);
    vm.mmuInvalidate.begin();
    vm.mmuInvalidate.rangeAdd(gfn, gfn + 2);
    for (let i = 0; i < 600; i++) op.step();
    vm.mmuInvalidate.end();
    op.step();
    op.step(); // first page mapped
    expect(r.size).toBe(4096);
    vm.mmuInvalidate.begin();
    vm.mmuInvalidate.rangeAdd(gfn, gfn + 2);
    for (let i = 0; i < 600; i++) expect(op.step()).toBe(false);
    vm.mmuInvalidate.end();
    expect(runOp(op)).toBeNull();
    expect(r.size).toBe(0);
  });
});

describe('kvm_arch_vcpu_pre_fault_memory(): the vendor', () => {
  it('a VM without kvm->arch.pre_fault_allowed (TDX before KVM_TDX_FINALIZE_VM) is EOPNOTSUPP', () => {
    const { vcpu } = vendorVm({ preFaultAllowed: () => false });
    expect(errnoOf(() => vcpu.preFaultMemory({ gpa: GPA, size: 4096 }))).toBe('EOPNOTSUPP');
    const ok = vendorVm({ preFaultAllowed: () => true });
    ok.vcpu.preFaultMemory({ gpa: GPA, size: 4096 });
  });

  it('with a shared bit: a gpa that already has it is EINVAL; a shared page is faulted through its alias', () => {
    const direct = 2 ** 35; // the shared bit, gpa bit 47
    const { vm, vcpu } = vendorVm({ gfnDirectBits: direct });
    const r = { gpa: GPA + direct * 4096, size: 4096 };
    expect(errnoOf(() => vcpu.preFaultMemory(r))).toBe('EINVAL');
    expect(r.size).toBe(4096);
    vcpu.preFaultMemory({ gpa: GPA, size: 4096 });
    expect(vcpu.fault.addr).toBe(GPA + direct * 4096);
    expect(vcpu.fault.isPrivate).toBe(false);
    expect(vm.getMemoryAttributes(GPA / 4096)).toBe(0);
    vm.setMemoryAttributes({ address: GPA + 4096, size: 4096, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE });
    errnoOf(() => vcpu.preFaultMemory({ gpa: GPA + 4096, size: 4096 }));
    expect(vcpu.fault.addr).toBe(GPA + 4096);
    expect(vcpu.fault.isPrivate).toBe(true);
  });
});
