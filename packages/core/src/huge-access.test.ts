import { describe, expect, it } from 'vitest';
import { Kvm } from './kvm.js';
import { assertVmInvariants } from './invariants.js';

const MiB = 1 << 20;

describe('accesses inside huge mappings', () => {
  it('every 4K page inside a 2M mapping reaches its own frame', () => {
    const kvm = new Kvm();
    const vm = kvm.createVm();
    const hva = kvm.process.mm.mmap({ length: 2 * MiB, prot: { read: true, write: true }, shared: false, hugepage: '2M' });
    vm.setUserMemoryRegion2({ slot: 0, flags: 0, guest_phys_addr: 0x40000000, memory_size: 2 * MiB, userspace_addr: hva });
    const vcpu = vm.createVcpu(0);
    for (let i = 0; i < 512; i += 37) kvm.process.mm.write(hva + i * 4096 + 8, 8, BigInt(0x1000 + i));
    expect(vcpu.guestRead(0x40000000, 1)).toEqual({ value: 0n }); // maps the whole 2M
    expect(vm.mmu.stats.pages_2m).toBe(1);
    for (let i = 0; i < 512; i += 37) {
      expect(vcpu.guestRead(0x40000000 + i * 4096 + 8, 8).value).toBe(BigInt(0x1000 + i));
      expect(vcpu.guestWrite(0x40000000 + i * 4096 + 16, 4, BigInt(i))).toEqual({});
      expect(kvm.process.mm.read(hva + i * 4096 + 16, 4)).toBe(BigInt(i));
    }
    expect(vm.mmu.stats.pages_2m).toBe(1);
    assertVmInvariants(vm);
  });
});
