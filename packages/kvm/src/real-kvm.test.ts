import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import {
  FALLOC_FL_KEEP_SIZE,
  FALLOC_FL_PUNCH_HOLE,
  GUEST_MEMFD_FLAG_INIT_SHARED,
  GUEST_MEMFD_FLAG_MMAP,
  KVM_CAP_GUEST_MEMFD,
  KVM_CAP_GUEST_MEMFD_FLAGS,
  KVM_CAP_NR_MEMSLOTS,
  KVM_CAP_USER_MEMORY2,
  KVM_MEM_GUEST_MEMFD,
  KVM_MEM_LOG_DIRTY_PAGES,
  KVM_MEM_READONLY,
  KVM_MEMORY_ATTRIBUTE_PRIVATE,
  KVM_USER_MEM_SLOTS,
} from '@ccmem/core';
import { RealKvm, type RealVm } from './real-kvm.js';
import { close, fallocate, mmap, munmap, touchFileInChild } from './host-memory.js';
import { describeWithKvm } from './testing/kvm-gate.js';
import { errnoOf } from '../../core/src/testing/errno-of.js';

const hasKvm = existsSync('/dev/kvm');
const MiB = 0x10_0000;
if (!hasKvm) console.warn('real-kvm.test.ts: /dev/kvm is missing on this host: every real-KVM test here is SKIPPED');

/**
 * Host facts established here by direct ioctls, independently of the code under test
 * (detectHostProfile, hostCapabilities): whether KVM_CREATE_GUEST_MEMFD exists at all.
 */
function probeGuestMemfd(): boolean {
  if (!hasKvm) return false;
  const kvm = RealKvm.open();
  const vm = kvm.createVm(0);
  try {
    close(vm.createGuestMemfd({ size: 0x1000, flags: 0 }));
    return true;
  } catch (e) {
    if ((e as { code?: string }).code === 'ENOTTY') return false;
    throw e;
  } finally {
    vm.close();
    kvm.close();
  }
}
const hasGmem = probeGuestMemfd();
if (hasKvm && !hasGmem) console.warn('real-kvm.test.ts: this kernel has no guest_memfd (KVM_CREATE_GUEST_MEMFD is ENOTTY): guest_memfd tests are SKIPPED, the no-guest_memfd rules are checked instead');

describe('RealKvm without a device', () => {
  it('available() says whether /dev/kvm exists', () => {
    expect(RealKvm.available()).toBe(hasKvm);
  });
});

describeWithKvm('real memslots and guest_memfd (needs /dev/kvm)', () => {
  let kvm: RealKvm;
  let vm: RealVm;
  let hva: number;
  beforeEach(() => {
    kvm = RealKvm.open();
    vm = kvm.createVm(0);
    hva = mmap({ length: 4 * MiB });
  });
  afterEach(() => {
    vm.close();
    kvm.close();
    munmap(hva, 4 * MiB);
  });

  it('closing the VM fd alone keeps the VM for its vCPU fd: VM ioctls are EBADF, the vCPU still answers', () => {
    const vcpu = vm.createVcpu(0);
    vcpu.setRegs({ rax: 0x1234n });
    vm.closeVmFd();
    expect(errnoOf(() => vm.checkExtension(KVM_CAP_NR_MEMSLOTS))).toBe('EBADF');
    // kvm_vcpu_release() has not run: the vCPU fd reaches its vCPU, whose VM lives on
    expect(vcpu.getReg('rax')).toBe(0x1234n);
    expect(vcpu.isClosed).toBe(false);
    vm.close(); // closes the vCPU fd too: the last reference
    expect(vcpu.isClosed).toBe(true);
  });

  it('KVM_CHECK_EXTENSION answers the uAPI capabilities', () => {
    expect(kvm.apiVersion()).toBe(12);
    expect(vm.checkExtension(KVM_CAP_NR_MEMSLOTS)).toBe(KVM_USER_MEM_SLOTS);
    // KVM_CAP_USER_MEMORY2 answers 1 exactly when the ioctl exists: deleting a slot that does
    // not exist is EINVAL from kvm_set_memory_region(), ENOTTY from a kernel without the ioctl
    const v2 = errnoOf(() => vm.setUserMemoryRegion2({ slot: 9, flags: 0, guest_phys_addr: 0, memory_size: 0, userspace_addr: 0 })) !== 'ENOTTY';
    expect(vm.checkExtension(KVM_CAP_USER_MEMORY2)).toBe(v2 ? 1 : 0);
    // KVM_CAP_GUEST_MEMFD answers what KVM_CREATE_GUEST_MEMFD does
    expect(vm.checkExtension(KVM_CAP_GUEST_MEMFD)).toBe(hasGmem ? 1 : 0);
    const flags = vm.checkExtension(KVM_CAP_GUEST_MEMFD_FLAGS);
    if (!hasGmem) expect(flags).toBe(0);
    expect(flags & ~(GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED)).toBe(0);
  });

  it('create, overlap (EEXIST), bad flags (EINVAL), as_id 1 beyond the address spaces (EINVAL), delete', () => {
    const r = { slot: 1, flags: 0, guest_phys_addr: 0, memory_size: 2 * MiB, userspace_addr: hva };
    vm.setUserMemoryRegion(r);
    expect(() => vm.setUserMemoryRegion({ ...r, slot: 2, guest_phys_addr: MiB })).toThrow(
      expect.objectContaining({ code: 'EEXIST', check: 'KVM_SET_USER_MEMORY_REGION' }),
    );
    // the legacy ioctl accepts only LOG_DIRTY_PAGES | READONLY
    expect(() => vm.setUserMemoryRegion({ ...r, slot: 3, guest_phys_addr: 4 * MiB, flags: KVM_MEM_GUEST_MEMFD })).toThrow(
      expect.objectContaining({ code: 'EINVAL' }),
    );
    expect(() => vm.setUserMemoryRegion({ ...r, slot: 3, guest_phys_addr: 4 * MiB, flags: 1 << 3 })).toThrow(
      expect.objectContaining({ code: 'EINVAL' }),
    );
    const spaces = vm.checkExtension(118 /* KVM_CAP_MULTI_ADDRESS_SPACE */);
    if (spaces <= 1) {
      expect(() => vm.setUserMemoryRegion({ ...r, slot: (1 << 16) | 3, guest_phys_addr: 4 * MiB })).toThrow(
        expect.objectContaining({ code: 'EINVAL' }),
      );
    }
    // resizing an existing slot is EINVAL; deleting it lets another slot take the range
    expect(() => vm.setUserMemoryRegion({ ...r, memory_size: MiB })).toThrow(expect.objectContaining({ code: 'EINVAL' }));
    vm.setUserMemoryRegion({ ...r, memory_size: 0 });
    vm.setUserMemoryRegion({ ...r, slot: 2, guest_phys_addr: MiB });
    // deleting a slot that does not exist
    expect(() => vm.setUserMemoryRegion({ ...r, slot: 7, memory_size: 0 })).toThrow(expect.objectContaining({ code: 'EINVAL' }));
  });

  it('KVM_GET_DIRTY_LOG on a slot without LOG_DIRTY_PAGES is ENOENT; with it, a fresh slot is clean', () => {
    vm.setUserMemoryRegion({ slot: 1, flags: 0, guest_phys_addr: 0, memory_size: MiB, userspace_addr: hva });
    expect(() => vm.getDirtyLog({ slot: 1 })).toThrow(expect.objectContaining({ code: 'ENOENT', check: 'KVM_GET_DIRTY_LOG' }));
    vm.setUserMemoryRegion({ slot: 2, flags: KVM_MEM_LOG_DIRTY_PAGES, guest_phys_addr: MiB, memory_size: MiB, userspace_addr: hva + MiB });
    const bitmap = vm.getDirtyLog({ slot: 2 });
    expect(bitmap.length).toBe(256 / 8);
    expect(bitmap.every((b) => b === 0)).toBe(true);
  });

  it.skipIf(!hasGmem)('guest_memfd: flags, size checks, bind, overlapping bind, fallocate (needs guest_memfd)', () => {
    const supported = vm.checkExtension(KVM_CAP_GUEST_MEMFD_FLAGS);
    expect(() => vm.createGuestMemfd({ size: MiB, flags: 1 << 7 })).toThrow(
      expect.objectContaining({ code: 'EINVAL', check: 'KVM_CREATE_GUEST_MEMFD' }),
    );
    expect(() => vm.createGuestMemfd({ size: 0x1001, flags: 0 })).toThrow(expect.objectContaining({ code: 'EINVAL' }));
    expect(() => vm.createGuestMemfd({ size: 0, flags: 0 })).toThrow(expect.objectContaining({ code: 'EINVAL' }));
    const gmem = vm.createGuestMemfd({ size: 2 * MiB, flags: supported });
    try {
      const base = { flags: KVM_MEM_GUEST_MEMFD, memory_size: MiB, userspace_addr: hva, guest_memfd: gmem };
      vm.setUserMemoryRegion2({ ...base, slot: 1, guest_phys_addr: 0, guest_memfd_offset: 0 });
      // the same file pages bound to a second slot: EINVAL before 7ea987a9, EEXIST after
      const overlap = errnoOf(() => vm.setUserMemoryRegion2({ ...base, slot: 2, guest_phys_addr: 4 * MiB, guest_memfd_offset: MiB / 2 }));
      expect(['EINVAL', 'EEXIST']).toContain(overlap);
      // beyond the file's size
      expect(() => vm.setUserMemoryRegion2({ ...base, slot: 2, guest_phys_addr: 4 * MiB, guest_memfd_offset: 2 * MiB })).toThrow(
        expect.objectContaining({ code: 'EINVAL' }),
      );
      // gmem slots cannot log dirty pages or be read-only
      for (const extra of [KVM_MEM_LOG_DIRTY_PAGES, KVM_MEM_READONLY]) {
        expect(() =>
          vm.setUserMemoryRegion2({ ...base, flags: KVM_MEM_GUEST_MEMFD | extra, slot: 2, guest_phys_addr: 4 * MiB, guest_memfd_offset: MiB }),
        ).toThrow(expect.objectContaining({ code: 'EINVAL' }));
      }
      // the free half binds fine
      vm.setUserMemoryRegion2({ ...base, slot: 2, guest_phys_addr: 4 * MiB, guest_memfd_offset: MiB });
      // fallocate: KEEP_SIZE is mandatory, unaligned is EINVAL, allocate and punch work
      expect(() => fallocate(gmem, 0, 0, 0x1000)).toThrow(expect.objectContaining({ code: 'EOPNOTSUPP' }));
      expect(() => fallocate(gmem, FALLOC_FL_KEEP_SIZE, 0x10, 0x1000)).toThrow(expect.objectContaining({ code: 'EINVAL' }));
      fallocate(gmem, FALLOC_FL_KEEP_SIZE, 0, 0x1000);
      fallocate(gmem, FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, 0, 0x1000);
    } finally {
      close(gmem);
    }
  });

  it('bad fd in a gmem binding is EBADF, a non-gmem fd EINVAL; without guest_memfd the flag itself is EINVAL', () => {
    const r = { slot: 1, flags: KVM_MEM_GUEST_MEMFD, guest_phys_addr: 0, memory_size: MiB, userspace_addr: hva, guest_memfd_offset: 0 };
    // check_memory_region_flags(): KVM_MEM_GUEST_MEMFD is valid only with guest_memfd in the build
    expect(() => vm.setUserMemoryRegion2({ ...r, guest_memfd: 0x7fff_fff0 })).toThrow(expect.objectContaining({ code: hasGmem ? 'EBADF' : 'EINVAL' }));
    expect(() => vm.setUserMemoryRegion2({ ...r, guest_memfd: vm.fd })).toThrow(expect.objectContaining({ code: 'EINVAL' }));
  });

  it.skipIf(!hasGmem)('host mmap of guest_memfd: ENODEV without MMAP; with MMAP|INIT_SHARED the host reads zeros', () => {
    const flags = vm.checkExtension(KVM_CAP_GUEST_MEMFD_FLAGS);
    const plain = vm.createGuestMemfd({ size: MiB, flags: 0 });
    try {
      expect(() => mmap({ length: MiB, shared: true, fd: plain })).toThrow(expect.objectContaining({ code: 'ENODEV', check: 'mmap' }));
    } finally {
      close(plain);
    }
    if ((flags & (GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED)) === (GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED)) {
      const shared = vm.createGuestMemfd({ size: MiB, flags: GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED });
      try {
        expect(() => mmap({ length: MiB, shared: false, fd: shared })).toThrow(expect.objectContaining({ code: 'EINVAL' }));
        expect(touchFileInChild({ fd: shared, offset: 0x2008, size: 8 })).toEqual({ value: 0n });
      } finally {
        close(shared);
      }
    }
    if (flags & GUEST_MEMFD_FLAG_MMAP) {
      // MMAP without INIT_SHARED: the memory is private, a host touch dies of SIGBUS
      const priv = vm.createGuestMemfd({ size: MiB, flags: GUEST_MEMFD_FLAG_MMAP });
      try {
        expect(touchFileInChild({ fd: priv, offset: 0, size: 1 })).toEqual({ signal: 'SIGBUS' });
      } finally {
        close(priv);
      }
    }
  });

  it('KVM_SET_MEMORY_ATTRIBUTES: ENOTTY where the kernel lacks it, else it takes the request', () => {
    const call = () => vm.setMemoryAttributes({ address: 0, size: 0x1000, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE });
    if (!vm.checkExtension(233 /* KVM_CAP_MEMORY_ATTRIBUTES */)) {
      expect(call).toThrow(expect.objectContaining({ code: 'ENOTTY', check: 'KVM_SET_MEMORY_ATTRIBUTES' }));
    } else {
      // the default VM supports no attributes: EINVAL
      expect(call).toThrow(expect.objectContaining({ code: 'EINVAL' }));
    }
  });

  it('KVM_ENABLE_CAP: manual dirty-log protect with a bad argument is EINVAL, a good one works', () => {
    if (!vm.checkExtension(168)) return;
    expect(() => vm.enableCap({ cap: 168, args: [1 << 5] })).toThrow(expect.objectContaining({ code: 'EINVAL', check: 'KVM_ENABLE_CAP' }));
    vm.enableCap({ cap: 168, args: [1] });
  });
});
