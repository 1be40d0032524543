import { describe, expect, it } from 'vitest';
import { Kvm } from './kvm.js';
import { KVM_MEMORY_ATTRIBUTE_PRIVATE, KVM_MEM_GUEST_MEMFD, KVM_X86_SW_PROTECTED_VM, PAGE_SIZE } from './uapi.js';
import { checkVmInvariants } from './invariants.js';
import { pageOffset } from './guest-access-op.js';
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

describe('Vcpu.access results and the run-to-completion shortcut', () => {
  it('writes and zero reads share frozen results; other reads get their own', () => {
    const { v0 } = swVm();
    const w1 = v0.guestWrite(BASE, 8, 7n);
    const w2 = v0.guestWrite(BASE + PAGE_SIZE, 4, 9n);
    expect(w1).toEqual({});
    expect(w1).toBe(w2);
    expect(Object.isFrozen(w1)).toBe(true);
    const z1 = v0.guestRead(BASE + 2 * PAGE_SIZE, 8);
    const z2 = v0.guestRead(BASE + 3 * PAGE_SIZE, 2);
    expect(z1).toEqual({ value: 0n });
    expect(z1).toBe(z2);
    expect(Object.isFrozen(z1)).toBe(true);
    const r1 = v0.guestRead(BASE, 8);
    const r2 = v0.guestRead(BASE, 8);
    expect(r1).toEqual({ value: 7n });
    expect(r1).not.toBe(r2);
  });

  it('pageOffset is gpa % 4096 for gpas above 2^32 and for odd inputs', () => {
    for (const gpa of [0, 1, 4095, 4096, 2 ** 32 + 17, 2 ** 47 + 4095, 2 ** 52 - 1, -5, 7.5]) {
      expect(pageOffset(gpa)).toBe(gpa % PAGE_SIZE);
    }
  });

  it('the synchronous driver and the step-by-step op end in the same state', () => {
    // the same accesses through Vcpu.access (no re-walk after a fix) and through beginAccess
    // (a walk after every fault) give the same results, mappings and invariants
    const a = swVm();
    const b = swVm();
    const accesses: { gpa: number; kind: 'read' | 'write' | 'fetch'; value?: bigint }[] = [];
    for (let i = 0; i < 40; i++) {
      const page = (i * 7) % 16;
      accesses.push({ gpa: BASE + page * PAGE_SIZE + (i % 4) * 8, kind: i % 3 === 0 ? 'write' : i % 3 === 1 ? 'read' : 'fetch', value: BigInt(i) });
      if (i === 20) accesses.push({ gpa: -1, kind: 'read' }); // marker: convert two pages to private
    }
    for (const acc of accesses) {
      if (acc.gpa === -1) {
        for (const s of [a, b]) s.vm.setMemoryAttributes({ address: BASE + 4 * PAGE_SIZE, size: 2 * PAGE_SIZE, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE });
        continue;
      }
      const ra = a.v0.access({ gpa: acc.gpa, size: 8, kind: acc.kind, value: acc.value });
      const op = b.v0.beginAccess({ gpa: acc.gpa, size: 8, kind: acc.kind, value: acc.value }, { maxRetries: 64 });
      while (!op.step());
      expect(ra).toEqual(op.result());
    }
    for (let page = 0; page < 16; page++) {
      const gfn = BASE / PAGE_SIZE + page;
      expect(a.vm.mmu.leafAt(gfn, false)?.level).toBe(b.vm.mmu.leafAt(gfn, false)?.level);
      expect(a.vm.mmu.leafAt(gfn, false)?.writable).toBe(b.vm.mmu.leafAt(gfn, false)?.writable);
    }
    expect(a.vm.mmu.stats).toEqual(b.vm.mmu.stats);
    expect(checkVmInvariants(a.vm)).toEqual([]);
    expect(checkVmInvariants(b.vm)).toEqual([]);
  });
});
