/**
 * guest_memfd through the core VM: guest_memfd_test.c's guest access (kvm-uapi.md §9.2
 * item 21) and private_mem_conversions_test.c's punch-hole flow (§9.4).
 */
import {
  FALLOC_FL_KEEP_SIZE,
  FALLOC_FL_PUNCH_HOLE,
  GUEST_MEMFD_FLAG_INIT_SHARED,
  GUEST_MEMFD_FLAG_MMAP,
  KVM_CAP_GUEST_MEMFD,
  KVM_CAP_GUEST_MEMFD_FLAGS,
  KVM_MEMORY_ATTRIBUTE_PRIVATE,
  KVM_MEM_GUEST_MEMFD,
  KVM_X86_SW_PROTECTED_VM,
  Kvm,
  PAGE_SIZE,
} from '@ccmem/core';
import { describe, expect, it } from 'vitest';
import { GuestMemfd, guestMemfdFactory } from './guest-memfd.js';
import { createDeviceFd } from './device-fd.js';

const GiB = 2 ** 30;
const MiB = 2 ** 20;

function gmemOf(kvm: Kvm, fd: number): GuestMemfd {
  const f = kvm.process.getFile(fd);
  if (!(f instanceof GuestMemfd)) throw new Error('not a guest_memfd');
  return f;
}

describe('guest_memfd through the VM', () => {
  it('caps: KVM_CAP_GUEST_MEMFD 1; flags MMAP|INIT_SHARED on the default VM, MMAP on SW_PROTECTED', () => {
    const kvm = new Kvm({ guestMemfd: guestMemfdFactory });
    const vm = kvm.createVm();
    const sw = kvm.createVm({ type: KVM_X86_SW_PROTECTED_VM });
    expect(vm.checkExtension(KVM_CAP_GUEST_MEMFD)).toBe(1);
    expect(vm.checkExtension(KVM_CAP_GUEST_MEMFD_FLAGS)).toBe(GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED);
    expect(sw.checkExtension(KVM_CAP_GUEST_MEMFD_FLAGS)).toBe(GUEST_MEMFD_FLAG_MMAP);
  });

  it('§9.2 item 21: a gmem-only slot serves shared guest accesses from the mmap-able file', () => {
    const kvm = new Kvm({ guestMemfd: guestMemfdFactory });
    const vm = kvm.createVm();
    const fd = vm.createGuestMemfd({ size: PAGE_SIZE, flags: GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED });
    const file = gmemOf(kvm, fd);
    vm.setUserMemoryRegion2({
      slot: 1,
      flags: KVM_MEM_GUEST_MEMFD,
      guest_phys_addr: 4 * GiB,
      memory_size: PAGE_SIZE,
      userspace_addr: 0,
      guest_memfd: fd,
      guest_memfd_offset: 0,
    });
    const mm = kvm.process.mm;
    const hva = mm.mmap({ length: PAGE_SIZE, prot: { read: true, write: true }, shared: true, backing: file });
    mm.writeBytes(hva, new Uint8Array(PAGE_SIZE).fill(0xaa));
    const vcpu = vm.createVcpu(0);
    for (let off = 0; off < PAGE_SIZE; off += 512) {
      expect(vcpu.guestRead(4 * GiB + off, 8).value).toBe(0xaaaaaaaaaaaaaaaan);
    }
    for (let off = 0; off < PAGE_SIZE; off += 8) expect(vcpu.guestWrite(4 * GiB + off, 8, 0xffffffffffffffffn)).toEqual({});
    mm.munmap(hva, PAGE_SIZE);
    const hva2 = mm.mmap({ length: PAGE_SIZE, prot: { read: true, write: true }, shared: true, backing: file });
    expect(mm.readBytes(hva2, PAGE_SIZE)).toEqual(new Uint8Array(PAGE_SIZE).fill(0xff));
  });

  it('kvm_handle_hva_range(): munmap of a gmem-only slot\'s userspace_addr zaps its shared SPTEs', () => {
    const kvm = new Kvm({ guestMemfd: guestMemfdFactory });
    const vm = kvm.createVm();
    const mm = kvm.process.mm;
    const fd = vm.createGuestMemfd({ size: PAGE_SIZE, flags: GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED });
    const ram = mm.mmap({ length: PAGE_SIZE, prot: { read: true, write: true }, shared: false });
    vm.setUserMemoryRegion2({ slot: 1, flags: KVM_MEM_GUEST_MEMFD, guest_phys_addr: 4 * GiB, memory_size: PAGE_SIZE, userspace_addr: ram, guest_memfd: fd, guest_memfd_offset: 0 });
    const vcpu = vm.createVcpu(0);
    vcpu.guestWrite(4 * GiB, 8, 0x77n);
    const w = { lo: 0, hi: 0, level: 0, present: false, pfn: 0 };
    const gfn = (4 * GiB) / PAGE_SIZE;
    expect(vm.mmu.walk(gfn, false, w) && w.present).toBe(true);
    const seq = vm.mmuInvalidateSeq;
    mm.munmap(ram, PAGE_SIZE);
    expect(vm.mmu.walk(gfn, false, w) && w.present).toBe(false);
    expect(vm.mmuInvalidateSeq).toBe(seq + 1);
    // the data lives in the guest_memfd: the next fault maps it again
    expect(vcpu.guestRead(4 * GiB, 8).value).toBe(0x77n);
  });

  it('§9.4 punch-hole flow: private pages re-fault zeroed after PUNCH_HOLE; the host never sees them', () => {
    const kvm = new Kvm({ guestMemfd: guestMemfdFactory });
    const vm = kvm.createVm({ type: KVM_X86_SW_PROTECTED_VM });
    const size = 2 * MiB + PAGE_SIZE;
    const gmemSize = 4 * MiB;
    const fd = vm.createGuestMemfd({ size: gmemSize, flags: 0 });
    const file = gmemOf(kvm, fd);
    const hva = kvm.process.mm.mmap({ length: gmemSize, prot: { read: true, write: true }, shared: false });
    const gpa = 4 * GiB;
    vm.setUserMemoryRegion2({
      slot: 10,
      flags: KVM_MEM_GUEST_MEMFD,
      guest_phys_addr: gpa,
      memory_size: gmemSize,
      userspace_addr: hva,
      guest_memfd: fd,
      guest_memfd_offset: 0,
    });
    vm.setMemoryAttributes({ address: gpa, size: gmemSize, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE });
    const vcpu = vm.createVcpu(0);
    // the whole chunk is punched first, then the guest writes 0xcc and reads it back
    file.fallocate(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, 0, gmemSize);
    for (let off = 0; off < size; off += PAGE_SIZE) {
      expect(vcpu.guestWrite(gpa + off, 8, 0xccccccccccccccccn, true)).toEqual({});
    }
    for (let off = 0; off < size; off += PAGE_SIZE) expect(vcpu.guestRead(gpa + off, 8, true).value).toBe(0xccccccccccccccccn);
    // the shared (hva) view never held the private data
    expect(kvm.process.mm.readBytes(hva, 8)).toEqual(new Uint8Array(8));
    // punch a 4K range at 4K: the guest reads 0 there, 0xcc elsewhere
    file.fallocate(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, PAGE_SIZE, PAGE_SIZE);
    expect(vcpu.guestRead(gpa + PAGE_SIZE, 8, true).value).toBe(0n);
    expect(vcpu.guestRead(gpa, 8, true).value).toBe(0xccccccccccccccccn);
    expect(vcpu.guestRead(gpa + 2 * PAGE_SIZE, 8, true).value).toBe(0xccccccccccccccccn);
    // punch 2M at 0: all zero
    file.fallocate(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, 0, 2 * MiB);
    for (let off = 0; off < 2 * MiB; off += 64 * PAGE_SIZE) expect(vcpu.guestRead(gpa + off, 8, true).value).toBe(0n);
  });

  it('§9.4 end: after the VM fd is closed, the still-open gmem fd can punch and allocate; closing it frees the VM', () => {
    const kvm = new Kvm({ guestMemfd: guestMemfdFactory });
    const vm = kvm.createVm({ type: KVM_X86_SW_PROTECTED_VM });
    const fd = vm.createGuestMemfd({ size: 2 * MiB, flags: 0 });
    const file = gmemOf(kvm, fd);
    kvm.process.close(vm.fd);
    expect(vm.alive).toBe(true);
    expect(file.fallocate(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, 0, 2 * MiB)).toBe(0);
    expect(file.fallocate(FALLOC_FL_KEEP_SIZE, 0, 2 * MiB)).toBe(0);
    kvm.process.close(fd);
    expect(vm.alive).toBe(false);
  });

  it('closing the gmem fd leaves the slot; its private faults then fail with EFAULT', () => {
    const kvm = new Kvm({ guestMemfd: guestMemfdFactory });
    const vm = kvm.createVm({ type: KVM_X86_SW_PROTECTED_VM });
    const fd = vm.createGuestMemfd({ size: 2 * MiB, flags: 0 });
    const hva = kvm.process.mm.mmap({ length: 2 * MiB, prot: { read: true, write: true }, shared: false });
    vm.setUserMemoryRegion2({ slot: 1, flags: KVM_MEM_GUEST_MEMFD, guest_phys_addr: GiB, memory_size: 2 * MiB, userspace_addr: hva, guest_memfd: fd, guest_memfd_offset: 0 });
    vm.setMemoryAttributes({ address: GiB, size: 2 * MiB, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE });
    const vcpu = vm.createVcpu(0);
    expect(vcpu.guestWrite(GiB, 8, 1n, true)).toEqual({});
    kvm.process.close(fd);
    const r = vcpu.guestRead(GiB, 8, true);
    expect(r.errno).toBe('EFAULT');
    expect(r.exit?.reason).toBe('KVM_EXIT_MEMORY_FAULT');
  });

  it('kvm_destroy_vm() frees the memslots: a closed device fd still bound to a slot ends its import then', () => {
    const kvm = new Kvm({ guestMemfd: guestMemfdFactory });
    const vm = kvm.createVm({ type: KVM_X86_SW_PROTECTED_VM });
    const dev = createDeviceFd(vm, { size: 2 * MiB });
    const fd = kvm.process.installFd(dev);
    const hva = kvm.process.mm.mmap({ length: 2 * MiB, prot: { read: true, write: true }, shared: false });
    vm.setUserMemoryRegion2({ slot: 1, flags: KVM_MEM_GUEST_MEMFD, guest_phys_addr: GiB, memory_size: 2 * MiB, userspace_addr: hva, guest_memfd: fd, guest_memfd_offset: 0 });
    kvm.process.close(fd);
    expect(dev.live).toBe(true); // the slot's binding keeps it
    kvm.process.close(vm.fd);
    expect(vm.alive).toBe(false);
    expect(dev.live).toBe(false); // kvm_free_memslot() → unbind: the last binding went
    expect(dev.boundRanges()).toEqual([]);
  });

  it('a frame snp_leak_pages() took is not freed when its folio goes (the leak holds its own reference)', () => {
    const kvm = new Kvm({ guestMemfd: guestMemfdFactory });
    const vm = kvm.createVm({ type: KVM_X86_SW_PROTECTED_VM });
    const fd = vm.createGuestMemfd({ size: 2 * MiB, flags: 0 });
    const file = gmemOf(kvm, fd);
    const hva = kvm.process.mm.mmap({ length: 2 * MiB, prot: { read: true, write: true }, shared: false });
    vm.setUserMemoryRegion2({ slot: 1, flags: KVM_MEM_GUEST_MEMFD, guest_phys_addr: GiB, memory_size: 2 * MiB, userspace_addr: hva, guest_memfd: fd, guest_memfd_offset: 0 });
    const pfns = [0, 1].map((i) => vm.gmemGetPfn(GiB / PAGE_SIZE + i));
    const phys = kvm.process.phys;
    expect(phys.allocatedPages).toBe(2);
    const leaked = file.pageAt(1);
    expect(pfns[1]).toMatchObject({ pfn: leaked });
    phys.leakPage(leaked);
    expect(file.fallocate(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, 0, 2 * PAGE_SIZE)).toBe(0);
    expect(phys.isLeaked(leaked)).toBe(true);
    expect(phys.allocatedPages).toBe(0); // the other page went back
  });
});
