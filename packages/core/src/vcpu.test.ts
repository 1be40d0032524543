import { describe, expect, it } from 'vitest';
import { Kvm } from './kvm.js';
import type { GuestAccessResult } from './vcpu.js';
import { UPSTREAM_PROFILE, withPciHole } from './profile.js';
import { assertVmInvariants } from './invariants.js';
import {
  KVM_MEM_LOG_DIRTY_PAGES,
  KVM_MEM_PCI_HOLE,
  KVM_MEM_READONLY,
  KVM_MEMORY_ATTRIBUTE_PRIVATE,
  KVM_MEMORY_EXIT_FLAG_PRIVATE,
  KVM_MEM_GUEST_MEMFD,
  KVM_X86_SW_PROTECTED_VM,
} from './uapi.js';
import { FakeGmem } from './testing/fake-gmem.js';

const MiB = 1 << 20;
const mmioOf = (r: GuestAccessResult) => (r.exit && 'mmio' in r.exit ? r.exit.mmio : undefined);

function defaultVm(flags = 0, size = 2 * MiB) {
  const kvm = new Kvm();
  const vm = kvm.createVm();
  const hva = kvm.process.mm.mmap({ length: size, prot: { read: true, write: true }, shared: false });
  vm.setUserMemoryRegion2({ slot: 0, flags, guest_phys_addr: 0x100000, memory_size: size, userspace_addr: hva });
  const vcpu = vm.createVcpu(0);
  return { kvm, vm, hva, vcpu };
}

describe('guest accesses on a default VM', () => {
  it('data round-trips between the VMM (hva) and the guest (gpa)', () => {
    const { kvm, vm, hva, vcpu } = defaultVm();
    kvm.process.mm.write(hva + 0x10, 4, 0xcafef00dn);
    expect(vcpu.guestRead(0x100010, 4)).toEqual({ value: 0xcafef00dn });
    expect(vcpu.guestWrite(0x100020, 8, 0x1122334455667788n)).toEqual({});
    expect(kvm.process.mm.read(hva + 0x20, 8)).toBe(0x1122334455667788n);
    expect(vcpu.guestRead(0x100024, 2).value).toBe(0x3344n);
    assertVmInvariants(vm);
  });

  it('a never-touched page reads zero through the zero page, and a later VMM write is seen', () => {
    const { kvm, vm, hva, vcpu } = defaultVm();
    expect(vcpu.guestRead(0x101000, 8).value).toBe(0n);
    kvm.process.mm.write(hva + 0x1000, 4, 0x55n); // CoW of the zero page: KVM's SPTE is zapped
    expect(vcpu.guestRead(0x101000, 4).value).toBe(0x55n);
    assertVmInvariants(vm);
  });

  it('an access that crosses a page boundary is split', () => {
    const { kvm, vcpu, hva } = defaultVm();
    expect(vcpu.guestWrite(0x100ffe, 4, 0xaabbccddn)).toEqual({});
    expect(kvm.process.mm.read(hva + 0xffe, 4)).toBe(0xaabbccddn);
    expect(vcpu.guestRead(0x100ffe, 4).value).toBe(0xaabbccddn);
  });

  it('emulator_read_write(): RAM → MMIO crossing exits once with the MMIO fragment; the load is assembled', () => {
    const { kvm, vm, hva, vcpu } = defaultVm(0, 0x1000); // RAM [0x100000, 0x101000), nothing above
    kvm.process.mm.write(hva + 0xffc, 4, 0x11223344n);
    const r = vcpu.guestRead(0x100ffc, 8);
    expect(r.exit).toEqual({ reason: 'KVM_EXIT_MMIO', mmio: { phys_addr: 0x101000, data: 0n, len: 4, is_write: false } });
    expect(vcpu.mmioNeeded).toBe(true);
    // a RAM change after the exit is not seen: the emulator read the RAM fragment already
    kvm.process.mm.write(hva + 0xffc, 4, 0n);
    expect(vcpu.completeMmio(0xaabbccddn)).toEqual({ value: 0xaabbccdd11223344n });
    expect(vcpu.mmioNeeded).toBe(false);
    // a store: the low half is written to RAM now, the high half exits as data
    const w = vcpu.guestWrite(0x100ffc, 8, 0x0102030405060708n);
    expect(w.exit).toEqual({ reason: 'KVM_EXIT_MMIO', mmio: { phys_addr: 0x101000, data: 0x01020304n, len: 4, is_write: true } });
    expect(kvm.process.mm.read(hva + 0xffc, 4)).toBe(0x05060708n);
    expect(vcpu.completeMmio()).toEqual({});
    expect(() => vcpu.completeMmio()).toThrow(/no KVM_EXIT_MMIO/);
    assertVmInvariants(vm);
  });

  it('emulator_read_write(): MMIO → RAM exits with the head; both halves MMIO exit twice (mmio_nr_fragments 2)', () => {
    const kvm = new Kvm();
    const vm = kvm.createVm();
    const hva = kvm.process.mm.mmap({ length: 0x1000, prot: { read: true, write: true }, shared: false });
    kvm.process.mm.write(hva, 8, 0x8877665544332211n);
    vm.setUserMemoryRegion2({ slot: 0, flags: 0, guest_phys_addr: 0x101000, memory_size: 0x1000, userspace_addr: hva });
    const vcpu = vm.createVcpu(0);
    const r = vcpu.guestRead(0x100fff, 4);
    expect(mmioOf(r)).toEqual({ phys_addr: 0x100fff, data: 0n, len: 1, is_write: false });
    expect(vcpu.completeMmioRead(0xabn)).toEqual({ value: 0x332211abn });
    // two MMIO fragments: 6 + 2 bytes
    expect(mmioOf(vcpu.guestRead(0xffffa, 8))).toEqual({ phys_addr: 0xffffa, data: 0n, len: 6, is_write: false });
    expect(mmioOf(vcpu.completeMmio(0xffff665544332211n))).toEqual({ phys_addr: 0x100000, data: 0n, len: 2, is_write: false });
    expect(vcpu.completeMmio(0x8877n)).toEqual({ value: 0x8877665544332211n });
    const w = vcpu.guestWrite(0xffffc, 8, 0x1122334455667788n);
    expect(mmioOf(w)).toEqual({ phys_addr: 0xffffc, data: 0x55667788n, len: 4, is_write: true });
    expect(mmioOf(vcpu.completeMmio())).toEqual({ phys_addr: 0x100000, data: 0x11223344n, len: 4, is_write: true });
    expect(vcpu.completeMmio()).toEqual({});
    assertVmInvariants(vm);
  });

  it('a page-crossing store whose second page faults with an errno writes nothing', () => {
    const { kvm, hva, vcpu } = defaultVm(0, 0x2000);
    kvm.process.mm.munmap(hva + 0x1000, 0x1000); // the second page's hva is gone: EFAULT
    const r = vcpu.guestWrite(0x100ffc, 8, 0x1122334455667788n);
    expect(r.errno).toBe('EFAULT');
    expect(kvm.process.mm.read(hva + 0xffc, 4)).toBe(0n);
  });

  it('a write to a read-only slot exits with KVM_EXIT_MMIO; reads are served', () => {
    const { kvm, hva, vcpu } = defaultVm(KVM_MEM_READONLY);
    kvm.process.mm.write(hva, 4, 0x12345678n);
    expect(vcpu.guestRead(0x100000, 4).value).toBe(0x12345678n);
    const r = vcpu.guestWrite(0x100000, 4, 0xdeadbeefn);
    expect(r.exit).toEqual({ reason: 'KVM_EXIT_MMIO', mmio: { phys_addr: 0x100000, data: 0xdeadbeefn, len: 4, is_write: true } });
    expect(kvm.process.mm.read(hva, 4)).toBe(0x12345678n);
  });

  it('an unbacked gpa is emulated MMIO; the VMM completes the read', () => {
    const { vcpu } = defaultVm();
    const r = vcpu.guestRead(0xfee00000, 4);
    expect(r.exit).toEqual({ reason: 'KVM_EXIT_MMIO', mmio: { phys_addr: 0xfee00000, data: 0n, len: 4, is_write: false } });
    expect(vcpu.completeMmioRead(0x1234567890n)).toEqual({ value: 0x34567890n });
  });

  it('KVM_MEM_PCI_HOLE: reads are all-ones in the kernel, writes exit as MMIO, nothing is mapped', () => {
    const kvm = new Kvm({ profile: withPciHole(UPSTREAM_PROFILE) });
    const vm = kvm.createVm();
    vm.setUserMemoryRegion2({ slot: 3, flags: KVM_MEM_PCI_HOLE, guest_phys_addr: 0xe0000000, memory_size: 16 * MiB, userspace_addr: 0 });
    const vcpu = vm.createVcpu(0);
    expect(vcpu.guestRead(0xe0001000, 4).value).toBe(0xffffffffn);
    expect(vcpu.guestRead(0xe0001000, 8).value).toBe(0xffffffffffffffffn);
    expect(vcpu.guestWrite(0xe0001000, 2, 0x1n).exit?.reason).toBe('KVM_EXIT_MMIO');
    expect(vm.mmu.stats.pages_4k).toBe(0);
  });

  it('munmap of the backing makes the next fault fail with EFAULT and a memory-fault exit', () => {
    const { kvm, vm, hva, vcpu } = defaultVm();
    expect(vcpu.guestWrite(0x100000, 4, 1n)).toEqual({});
    kvm.process.mm.munmap(hva, 4096);
    const r = vcpu.guestRead(0x100000, 4);
    expect(r.errno).toBe('EFAULT');
    expect(r.exit).toEqual({ reason: 'KVM_EXIT_MEMORY_FAULT', memory_fault: { flags: 0, gpa: 0x100000, size: 4096 } });
    assertVmInvariants(vm);
  });

  it('deleting a slot removes every mapping made through it', () => {
    const { vm, vcpu } = defaultVm();
    vcpu.guestWrite(0x100000, 4, 1n);
    vcpu.guestWrite(0x180000, 4, 1n);
    expect(vm.mmu.stats.pages_4k).toBe(2);
    vm.setUserMemoryRegion2({ slot: 0, flags: 0, guest_phys_addr: 0x100000, memory_size: 0, userspace_addr: 0 });
    expect(vm.mmu.stats.pages_4k).toBe(0);
    expect(vcpu.guestRead(0x100000, 4).exit?.reason).toBe('KVM_EXIT_MMIO');
    assertVmInvariants(vm);
  });
});

describe('dirty logging fed by guest writes', () => {
  it('every guest write lands in the bitmap; GET_DIRTY_LOG re-arms tracking', () => {
    const { vm, vcpu } = defaultVm(KVM_MEM_LOG_DIRTY_PAGES);
    vcpu.guestWrite(0x100000, 4, 1n);
    vcpu.guestWrite(0x105000, 1, 1n);
    let bm = vm.getDirtyLog({ slot: 0 });
    expect(bm.length).toBe(64); // 512 pages → ALIGN(512,64)/8
    expect(bm[0]).toBe(0b100001);
    bm = vm.getDirtyLog({ slot: 0 });
    expect(bm[0]).toBe(0); // taken and cleared
    vcpu.guestWrite(0x100008, 4, 2n); // write-protected again: logged again
    bm = vm.getDirtyLog({ slot: 0 });
    expect(bm[0]).toBe(1);
    assertVmInvariants(vm);
  });

  it('turning logging on splits huge mappings and write-protects (eager split)', () => {
    const kvm = new Kvm();
    const vm = kvm.createVm();
    const hva = kvm.process.mm.mmap({ length: 4 * MiB, prot: { read: true, write: true }, shared: false, hugepage: '2M' });
    vm.setUserMemoryRegion2({ slot: 0, flags: 0, guest_phys_addr: 0x200000, memory_size: 4 * MiB, userspace_addr: hva });
    const vcpu = vm.createVcpu(0);
    vcpu.guestWrite(0x200000, 4, 1n);
    expect(vm.mmu.stats.pages_2m).toBe(1);
    vm.setUserMemoryRegion2({ slot: 0, flags: KVM_MEM_LOG_DIRTY_PAGES, guest_phys_addr: 0x200000, memory_size: 4 * MiB, userspace_addr: hva });
    expect(vm.mmu.stats.pages_2m).toBe(0);
    expect(vm.mmu.stats.pages_4k).toBe(512);
    vcpu.guestWrite(0x201000, 4, 1n);
    expect(vm.getDirtyLog({ slot: 0 })[0]).toBe(0b10);
    assertVmInvariants(vm);
  });
});

describe('huge mappings', () => {
  it('a 2 MiB-aligned hugetlb backing is mapped at 2M; a misaligned hva stays 4K', () => {
    const kvm = new Kvm();
    const vm = kvm.createVm();
    const hva = kvm.process.mm.mmap({ length: 8 * MiB, prot: { read: true, write: true }, shared: false, hugepage: '2M' });
    vm.setUserMemoryRegion2({ slot: 0, flags: 0, guest_phys_addr: 0x40000000, memory_size: 4 * MiB, userspace_addr: hva });
    vm.setUserMemoryRegion2({ slot: 1, flags: 0, guest_phys_addr: 0x80001000, memory_size: 2 * MiB, userspace_addr: hva + 4 * MiB });
    const vcpu = vm.createVcpu(0);
    vcpu.guestWrite(0x40000000, 4, 7n);
    expect(vm.mmu.stats.pages_2m).toBe(1);
    vcpu.guestRead(0x80001000, 4);
    expect(vm.mmu.stats.pages_4k).toBe(1);
    assertVmInvariants(vm);
  });
});

describe('software-protected VM: private memory', () => {
  function swVm() {
    const kvm = new Kvm();
    const vm = kvm.createVm({ type: KVM_X86_SW_PROTECTED_VM });
    const gmem = new FakeGmem(vm, 2 * MiB, kvm.process.phys);
    const fd = kvm.process.installFd(gmem);
    const hva = kvm.process.mm.mmap({ length: 2 * MiB, prot: { read: true, write: true }, shared: false });
    vm.setUserMemoryRegion2({
      slot: 0,
      flags: KVM_MEM_GUEST_MEMFD,
      guest_phys_addr: 0x100000,
      memory_size: 2 * MiB,
      userspace_addr: hva,
      guest_memfd: fd,
      guest_memfd_offset: 0,
    });
    return { kvm, vm, gmem, hva, vcpu: vm.createVcpu(0) };
  }

  it('the attribute decides: private data lives in guest_memfd, the hva keeps the shared data', () => {
    const { kvm, vm, hva, vcpu } = swVm();
    kvm.process.mm.write(hva, 4, 0x11n);
    expect(vcpu.guestRead(0x100000, 4).value).toBe(0x11n);
    vm.setMemoryAttributes({ address: 0x100000, size: 4096, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE });
    expect(vcpu.guestRead(0x100000, 4).value).toBe(0n); // fresh private page
    vcpu.guestWrite(0x100000, 4, 0x22n);
    expect(kvm.process.mm.read(hva, 4)).toBe(0x11n); // the host never sees private data
    vm.setMemoryAttributes({ address: 0x100000, size: 4096, attributes: 0 });
    expect(vcpu.guestRead(0x100000, 4).value).toBe(0x11n);
    assertVmInvariants(vm);
  });

  it('a private gfn in a slot without guest_memfd exits with KVM_EXIT_MEMORY_FAULT (PRIVATE)', () => {
    const kvm = new Kvm();
    const vm = kvm.createVm({ type: KVM_X86_SW_PROTECTED_VM });
    const hva = kvm.process.mm.mmap({ length: 2 * MiB, prot: { read: true, write: true }, shared: false });
    vm.setUserMemoryRegion2({ slot: 0, flags: 0, guest_phys_addr: 0, memory_size: 2 * MiB, userspace_addr: hva });
    vm.setMemoryAttributes({ address: 0x3000, size: 4096, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE });
    const r = vm.createVcpu(0).guestRead(0x3008, 4);
    expect(r.errno).toBe('EFAULT');
    expect(r.exit).toEqual({ reason: 'KVM_EXIT_MEMORY_FAULT', memory_fault: { flags: KVM_MEMORY_EXIT_FLAG_PRIVATE, gpa: 0x3000, size: 4096 } });
  });

  it('a closed guest_memfd makes private faults fail with EFAULT', () => {
    const { vm, gmem, vcpu } = swVm();
    vm.setMemoryAttributes({ address: 0x100000, size: 2 * MiB, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE });
    gmem.live = false;
    const r = vcpu.guestRead(0x100000, 1);
    expect(r.errno).toBe('EFAULT');
    expect(r.exit?.reason).toBe('KVM_EXIT_MEMORY_FAULT');
  });
});

describe('instruction fetches', () => {
  it('a fetch from RAM reads it; a fetch where no RAM is cannot be emulated (KVM_EXIT_INTERNAL_ERROR)', () => {
    const { kvm, hva, vcpu } = defaultVm();
    kvm.process.mm.write(hva + 0x40, 1, 0x90n);
    expect(vcpu.guestFetch(0x100040, 1)).toEqual({ value: 0x90n });
    const r = vcpu.guestFetch(0xfee00000, 1);
    expect(r.exit).toEqual({ reason: 'KVM_EXIT_INTERNAL_ERROR', internal: { suberror: 1 } });
    expect(vcpu.pendingMmioRead).toBeNull();
  });
});

describe('make_spte() and the dirty log (TDP MMU)', () => {
  it('a read fault of a host-writable page maps it writable and logs it; a zero-page read does not', () => {
    const { kvm, vm, hva, vcpu } = defaultVm(KVM_MEM_LOG_DIRTY_PAGES, 0x4000);
    kvm.process.mm.write(hva + 0x1000, 4, 0x1234n);
    expect(vcpu.guestRead(0x100000, 4).value).toBe(0n);
    expect(vcpu.guestRead(0x101000, 4).value).toBe(0x1234n);
    expect(vm.getDirtyLog({ slot: 0 })[0]).toBe(0b10);
    // write-protected by KVM_GET_DIRTY_LOG: reads through the read-only SPTE are not logged
    expect(vcpu.guestRead(0x101000, 4).value).toBe(0x1234n);
    expect(vm.getDirtyLog({ slot: 0 })[0]).toBe(0);
    assertVmInvariants(vm);
  });
});

describe('MMIO caching (kvm_handle_noslot_fault, handle_mmio_page_fault)', () => {
  function swVm(profile = UPSTREAM_PROFILE) {
    const kvm = new Kvm({ profile });
    const vm = kvm.createVm({ type: KVM_X86_SW_PROTECTED_VM });
    return { kvm, vm, vcpu: vm.createVcpu(0) };
  }

  it('a no-slot fault installs an MMIO SPTE of the current generation; it answers until the generation changes', () => {
    const { kvm, vm, vcpu } = swVm();
    const gfn = 0x300;
    expect(vcpu.guestRead(gfn * 4096, 4).exit?.reason).toBe('KVM_EXIT_MMIO');
    vcpu.completeMmio(0n);
    const w = { lo: 0, hi: 0, level: 0, present: false, pfn: 0 };
    vm.mmu.walk(gfn, false, w);
    expect(vm.mmu.mmioSpteGeneration(w.lo, w.hi)).toBe(vm.memslotsGeneration);
    vm.setMemoryAttributes({ address: gfn * 4096, size: 4096, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE });
    const r = vcpu.guestRead(gfn * 4096, 4, true);
    expect(r.exit?.reason).toBe('KVM_EXIT_MMIO');
    expect(r.reason).toMatch(/cached MMIO SPTE/);
    vcpu.completeMmio(0n);
    const hva = kvm.process.mm.mmap({ length: 4096, prot: { read: true, write: true }, shared: false });
    vm.setUserMemoryRegion2({ slot: 0, flags: 0, guest_phys_addr: 0x100000, memory_size: 4096, userspace_addr: hva });
    const r2 = vcpu.guestRead(gfn * 4096, 4, true);
    expect(r2.exit?.reason).toBe('KVM_EXIT_MEMORY_FAULT');
    expect(r2.errno).toBe('EFAULT');
  });

  it('with mmio_caching=N nothing is cached: the private conversion is seen at once', () => {
    const { vm, vcpu } = swVm({ ...UPSTREAM_PROFILE, mmioCaching: false });
    expect(vcpu.guestRead(0x300000, 4).exit?.reason).toBe('KVM_EXIT_MMIO');
    vcpu.completeMmio(0n);
    const w = { lo: 0, hi: 0, level: 0, present: false, pfn: 0 };
    vm.mmu.walk(0x300, false, w);
    expect(vm.mmu.mmioSpteGeneration(w.lo, w.hi)).toBe(-1);
    vm.setMemoryAttributes({ address: 0x300000, size: 4096, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE });
    expect(vcpu.guestRead(0x300000, 4, true).exit?.reason).toBe('KVM_EXIT_MEMORY_FAULT');
  });
});

describe('page-crossing accesses under the shadow MMU (paging off: gva = gpa)', () => {
  function shadowVm(slotGpa: number, size: number) {
    const kvm = new Kvm({ profile: 'upstream-shadow' });
    const vm = kvm.createVm();
    const hva = kvm.process.mm.mmap({ length: size, prot: { read: true, write: true }, shared: false });
    vm.setUserMemoryRegion2({ slot: 0, flags: KVM_MEM_LOG_DIRTY_PAGES, guest_phys_addr: slotGpa, memory_size: size, userspace_addr: hva });
    return { kvm, vm, hva, vcpu: vm.createVcpu(0) };
  }

  it('RAM → RAM is one access; both pages are faulted in through the shadow MMU and logged', () => {
    const { kvm, vm, hva, vcpu } = shadowVm(0x100000, 0x2000);
    expect(vm.tdpEnabled).toBe(false);
    expect(vcpu.guestWrite(0x100ffe, 4, 0xaabbccddn)).toEqual({});
    expect(kvm.process.mm.read(hva + 0xffe, 4)).toBe(0xaabbccddn);
    expect(vcpu.guestRead(0x100ffe, 4)).toEqual({ value: 0xaabbccddn });
    expect(vm.getDirtyLog({ slot: 0 })[0]).toBe(0b11);
    expect(vm.mmuStats().pages_4k).toBe(2);
    assertVmInvariants(vm);
  });

  it('RAM → MMIO and MMIO → MMIO exit once per MMIO fragment, as on the TDP MMU', () => {
    const { kvm, vm, hva, vcpu } = shadowVm(0x100000, 0x1000);
    kvm.process.mm.write(hva + 0xffc, 4, 0x11223344n);
    expect(mmioOf(vcpu.guestRead(0x100ffc, 8))).toEqual({ phys_addr: 0x101000, data: 0n, len: 4, is_write: false });
    expect(vcpu.completeMmio(0xaabbccddn)).toEqual({ value: 0xaabbccdd11223344n });
    expect(mmioOf(vcpu.guestRead(0x101ffa, 8))).toEqual({ phys_addr: 0x101ffa, data: 0n, len: 6, is_write: false });
    expect(mmioOf(vcpu.completeMmio(0x665544332211n))).toEqual({ phys_addr: 0x102000, data: 0n, len: 2, is_write: false });
    expect(vcpu.completeMmio(0x8877n)).toEqual({ value: 0x8877665544332211n });
    const w = vcpu.guestWrite(0x100ffc, 8, 0x0102030405060708n);
    expect(mmioOf(w)).toEqual({ phys_addr: 0x101000, data: 0x01020304n, len: 4, is_write: true });
    expect(kvm.process.mm.read(hva + 0xffc, 4)).toBe(0x05060708n);
    expect(vcpu.completeMmio()).toEqual({});
    assertVmInvariants(vm);
  });
});

describe('emulatedGuestAccesses: every access runs in the instruction emulator (kvm_pvm)', () => {
  function pvmVm(flags = 0, prot = { read: true, write: true }) {
    const kvm = new Kvm({ profile: 'linux-6.18-pvm-no-gmem' });
    const vm = kvm.createVm();
    const hva = kvm.process.mm.mmap({ length: 0x2000, prot, shared: false });
    vm.setUserMemoryRegion2({ slot: 0, flags, guest_phys_addr: 0x100000, memory_size: 0x2000, userspace_addr: hva });
    return { kvm, vm, hva, vcpu: vm.createVcpu(0) };
  }

  it('reads and writes go through the hva: no SPTE, the store is logged and tracked', () => {
    const { kvm, vm, hva, vcpu } = pvmVm(KVM_MEM_LOG_DIRTY_PAGES);
    expect(vm.profile.emulatedGuestAccesses).toBe(true);
    kvm.process.mm.write(hva + 0x1008, 8, 0x1122334455667788n);
    expect(vcpu.guestRead(0x101008, 8)).toEqual({ value: 0x1122334455667788n });
    expect(vcpu.guestWrite(0x100ffc, 8, 0xa1a2a3a4b1b2b3b4n)).toEqual({});
    expect(kvm.process.mm.read(hva + 0xffc, 8)).toBe(0xa1a2a3a4b1b2b3b4n);
    expect(vm.getDirtyLog({ slot: 0 })[0]).toBe(0b11);
    const s = vm.mmuStats();
    // KVM_RUN loaded a root (one shadow page); nothing was faulted in
    expect(s.pages_4k).toBe(0);
    assertVmInvariants(vm);
  });

  it('what the emulator cannot reach through the hva is MMIO: no slot, a read-only slot store, an unfaultable hva', () => {
    const ro = pvmVm(KVM_MEM_READONLY);
    expect(mmioOf(ro.vcpu.guestWrite(0x100010, 4, 7n))).toEqual({ phys_addr: 0x100010, data: 7n, len: 4, is_write: true });
    expect(ro.vcpu.completeMmio()).toEqual({});
    expect(ro.vcpu.guestRead(0x100010, 4)).toEqual({ value: 0n });
    expect(mmioOf(ro.vcpu.guestRead(0x200000, 2))).toEqual({ phys_addr: 0x200000, data: 0n, len: 2, is_write: false });
    const none = pvmVm(0, { read: false, write: false });
    expect(mmioOf(none.vcpu.guestRead(0x100000, 8))).toEqual({ phys_addr: 0x100000, data: 0n, len: 8, is_write: false });
    expect(none.vcpu.guestFetch(0x100000, 1).exit?.reason).toBe('KVM_EXIT_INTERNAL_ERROR');
  });

  it('deleting the slot zaps the loaded root; the next KVM_RUN puts it and zaps it again (mmu_free_root_page)', () => {
    const { vm, hva, vcpu } = pvmVm();
    expect(vcpu.guestRead(0x100000, 8)).toEqual({ value: 0n });
    const z0 = vm.mmuStats().mmu_shadow_zapped!;
    vm.setUserMemoryRegion2({ slot: 0, flags: 0, guest_phys_addr: 0x100000, memory_size: 0, userspace_addr: hva });
    expect(vm.mmuStats().mmu_shadow_zapped).toBe(z0 + 1);
    expect(mmioOf(vcpu.guestRead(0x100000, 8))?.phys_addr).toBe(0x100000);
    expect(vm.mmuStats().mmu_shadow_zapped).toBe(z0 + 2);
    assertVmInvariants(vm);
  });
});
