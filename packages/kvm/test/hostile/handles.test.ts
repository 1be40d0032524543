/**
 * Handles on the real /dev/kvm: a value that does not fit its uAPI field never reaches an
 * ioctl (and never sizes a buffer), and a closed VM / vCPU / /dev/kvm handle never acts on the
 * fd number it had, which the process may have handed to another file since.
 */
import { afterEach, expect, it } from 'vitest';
import { KVM_MEM_LOG_DIRTY_PAGES } from '@ccmem/core';
import { errnoOf } from '../../../core/src/testing/errno-of.js';
import { RealKvm, type RealVm } from '../../src/real-kvm.js';
import { mmap, munmap } from '../../src/host-memory.js';
import { ArgBuffer } from '../../src/libc.js';
import { describeWithKvm } from '../../src/testing/kvm-gate.js';

describeWithKvm('RealVm / RealVcpu handles (needs /dev/kvm)', () => {
  const open: { kvm: RealKvm; vms: RealVm[] } = { kvm: null as unknown as RealKvm, vms: [] };
  const newVm = () => {
    open.kvm ??= RealKvm.open();
    const vm = open.kvm.createVm(0);
    open.vms.push(vm);
    return vm;
  };
  afterEach(() => {
    for (const vm of open.vms) vm.close();
    open.vms = [];
    open.kvm?.close();
    open.kvm = null as unknown as RealKvm;
  });

  it('a slot beyond u32 is EINVAL before the ioctl: no bitmap is sized from it', () => {
    const vm = newVm();
    const hva = mmap({ length: 1 << 30 });
    try {
      vm.setUserMemoryRegion({ slot: 0, flags: KVM_MEM_LOG_DIRTY_PAGES, guest_phys_addr: 0, memory_size: 1 << 30, userspace_addr: hva });
      // 0x1_0000_0000 would have been truncated to slot 0 by the struct, with an 8-byte buffer
      // for slot 0's 32 KiB bitmap
      expect(errnoOf(() => vm.setUserMemoryRegion({ slot: 2 ** 32, flags: KVM_MEM_LOG_DIRTY_PAGES, guest_phys_addr: 1 << 30, memory_size: 4096, userspace_addr: hva }))).toBe('EINVAL');
      expect(errnoOf(() => vm.getDirtyLog({ slot: 2 ** 32 }))).toBe('EINVAL');
      expect(errnoOf(() => vm.getDirtyLog({ slot: NaN }))).toBe('EINVAL');
      expect(errnoOf(() => vm.getDirtyLog({ slot: 1.5 }))).toBe('EINVAL');
      expect(vm.getDirtyLog({ slot: 0 }).length).toBe(32 * 1024);
      expect(errnoOf(() => vm.setMemoryAttributes({ address: 0, size: 4096, attributes: 8.5 }))).toBe('EINVAL');
      expect(errnoOf(() => vm.enableCap({ cap: 1.5 }))).toBe('EINVAL');
      expect(errnoOf(() => vm.createVcpu(-1))).toBe('EINVAL');
    } finally {
      vm.close();
      munmap(hva, 1 << 30);
    }
  });

  it('a closed VM never acts on a reused fd number; a second close is a no-op', () => {
    const a = newVm();
    const fd = a.fd;
    a.close();
    const b = newVm(); // the lowest free fd: usually the number `a` had
    const hva = mmap({ length: 4096 });
    try {
      expect(errnoOf(() => a.setUserMemoryRegion({ slot: 0, flags: 0, guest_phys_addr: 0, memory_size: 4096, userspace_addr: hva }))).toBe('EBADF');
      expect(errnoOf(() => a.createVcpu(0))).toBe('EBADF');
      expect(errnoOf(() => a.getDirtyLog({ slot: 0 }))).toBe('EBADF');
      expect(errnoOf(() => a.checkExtension(1))).toBe('EBADF');
      a.close();
      // `b` (maybe on the same fd number) is untouched: its ioctls still work
      if (b.fd === fd) expect(b.fd).toBe(fd);
      expect(errnoOf(() => b.setUserMemoryRegion({ slot: 0, flags: 0, guest_phys_addr: 0, memory_size: 4096, userspace_addr: hva }))).toBeUndefined();
      expect(errnoOf(() => b.createVcpu(0))).toBeUndefined();
    } finally {
      munmap(hva, 4096);
    }
  });

  it('a closed vCPU is EBADF (no KVM_RUN on a stale fd or kvm_run mapping)', () => {
    const vm = newVm();
    const vcpu = vm.createVcpu(0);
    vcpu.close();
    expect(vcpu.isClosed).toBe(true);
    expect(errnoOf(() => vcpu.kvmRun())).toBe('EBADF');
    expect(errnoOf(() => vcpu.getRegs())).toBe('EBADF');
    vcpu.close();
  });

  it('a closed /dev/kvm handle is EBADF; a second close is a no-op', () => {
    const kvm = RealKvm.open();
    kvm.close();
    expect(errnoOf(() => kvm.checkExtension(1))).toBe('EBADF');
    expect(errnoOf(() => kvm.createVm(0))).toBe('EBADF');
    kvm.close();
  });

  it('closing a VM unmaps its argument buffer (no mapping left behind per VM)', () => {
    const kvm = RealKvm.open();
    try {
      const before = ArgBuffer.liveBytes;
      for (let i = 0; i < 20; i++) {
        const vm = kvm.createVm(0);
        vm.createVcpu(0);
        errnoOf(() => vm.getDirtyLog({ slot: 0 })); // ENOENT: the buffers are what counts
        vm.close();
      }
      expect(ArgBuffer.liveBytes).toBe(before);
    } finally {
      kvm.close();
    }
  });
});
