import { describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import { CPUID2, KVM_IOCTLS, MEMORY_REGION, REGS, SREGS, _IOC, IOC_READ, IOC_WRITE, KVMIO } from './libc.js';
import { mmap, munmap, read, write, readBytes, writeBytes, memfdCreate, close, fallocate, fileRead, fileWrite, fstat, mprotect, madvise } from './host-memory.js';
import { errnoOf } from '../../core/src/testing/errno-of.js';
import { RealKvm } from './real-kvm.js';

describe('ioctl numbers', () => {
  it('are _IOC(dir, 0xAE, nr, sizeof(struct)) with the x86-64 struct sizes', () => {
    // dir in bits 30-31, size in 16-29, type in 8-15, nr in 0-7 (asm-generic/ioctl.h)
    expect(KVM_IOCTLS.KVM_RUN).toBe(KVMIO * 256 + 0x80);
    expect(KVM_IOCTLS.KVM_SET_USER_MEMORY_REGION).toBe(IOC_WRITE * 2 ** 30 + 32 * 2 ** 16 + 0xae46);
    expect(KVM_IOCTLS.KVM_SET_USER_MEMORY_REGION.toString(16)).toBe('4020ae46');
    expect(KVM_IOCTLS.KVM_SET_USER_MEMORY_REGION2.toString(16)).toBe('40a0ae49');
    expect(KVM_IOCTLS.KVM_CREATE_GUEST_MEMFD.toString(16)).toBe('c040aed4');
    expect(KVM_IOCTLS.KVM_GET_REGS).toBe(_IOC(IOC_READ, KVMIO, 0x81, REGS.SIZE));
    expect(KVM_IOCTLS.KVM_GET_SREGS.toString(16)).toBe('8138ae83');
    expect(KVM_IOCTLS.KVM_GET_SUPPORTED_CPUID).toBe(_IOC(IOC_READ | IOC_WRITE, KVMIO, 0x05, CPUID2.SIZE));
    expect(MEMORY_REGION.SIZE_V2).toBe(MEMORY_REGION.pad2 + 14 * 8);
    expect(SREGS.SIZE).toBe(SREGS.interrupt_bitmap + 4 * 8);
  });
});

describe('host memory through FFI', () => {
  it('anonymous mmap: little-endian stores and loads of every width', () => {
    const hva = mmap({ length: 0x2000 });
    try {
      write(hva, 8, 0x0102030405060708n);
      expect(read(hva, 1)).toBe(0x08n);
      expect(read(hva, 2)).toBe(0x0708n);
      expect(read(hva, 4)).toBe(0x05060708n);
      expect(read(hva, 8)).toBe(0x0102030405060708n);
      write(hva + 0x1000, 2, 0x1ffffn); // truncated to the width
      expect(read(hva + 0x1000, 4)).toBe(0xffffn);
      writeBytes(hva + 0x10, new Uint8Array([9, 8, 7]));
      expect([...readBytes(hva + 0x10, 3)]).toEqual([9, 8, 7]);
    } finally {
      munmap(hva, 0x2000);
    }
  });

  it('memfd: a shared mapping sees its file; fallocate errors carry the errno name', () => {
    const fd = memfdCreate('ccmem-test', 0x1000);
    try {
      const a = mmap({ length: 0x1000, shared: true, fd });
      const b = mmap({ length: 0x1000, shared: true, fd });
      write(a + 8, 4, 0xcafef00dn);
      expect(read(b + 8, 4)).toBe(0xcafef00dn);
      munmap(a, 0x1000);
      munmap(b, 0x1000);
      expect(() => fallocate(fd, 0x1 | 0x2, 0, 0)).toThrow(expect.objectContaining({ code: 'EINVAL', check: 'fallocate' }));
    } finally {
      close(fd);
    }
  });

  it('file I/O: read/pread/write/pwrite and fstat of a memfd; mprotect and MADV_DONTNEED of its mapping', () => {
    const fd = memfdCreate('ccmem-test', 8192);
    const other = memfdCreate('ccmem-test', 4096);
    try {
      expect(fileRead(fd, 64)).toBe(64);
      expect(fileRead(fd, 64, 8190)).toBe(2);
      expect(fileWrite(fd, 16, 8192)).toBe(16);
      const st = fstat(fd);
      expect(st).toMatchObject({ st_size: 8208, st_blksize: 4096 });
      expect(fstat(other).st_ino).not.toBe(st.st_ino);
      const hva = mmap({ length: 8192, fd, shared: true });
      write(hva, 8, 0x1234n);
      mprotect(hva, 8192, 1 /* PROT_READ */);
      expect(read(hva, 8)).toBe(0x1234n);
      mprotect(hva, 8192, 3);
      madvise(hva, 8192, 4 /* MADV_DONTNEED: a shared file mapping keeps its data */);
      expect(read(hva, 8)).toBe(0x1234n);
      munmap(hva, 8192);
      expect(errnoOf(() => fileRead(-1, 8))).toBe('EBADF');
    } finally {
      close(fd);
      close(other);
    }
  });

  it('a failed close throws EBADF', () => {
    expect(() => close(1 << 20)).toThrow(expect.objectContaining({ code: 'EBADF' }));
  });
});

describe('KVM device presence', () => {
  // Hosts differ: one without /dev/kvm skips the real-KVM tests and says so. A CI setup that
  // promises KVM sets CCMEM_REQUIRE_KVM=1, and then a missing device is a failure.
  const hasKvm = existsSync('/dev/kvm');
  if (!hasKvm) console.warn('@ccmem/kvm: /dev/kvm is missing on this host: the tests that need it are SKIPPED (set CCMEM_REQUIRE_KVM=1 to make this an error)');
  it('/dev/kvm exists where CCMEM_REQUIRE_KVM=1 says it must', () => {
    if (process.env.CCMEM_REQUIRE_KVM === '1') expect(hasKvm, 'CCMEM_REQUIRE_KVM=1 but /dev/kvm is missing').toBe(true);
    expect(RealKvm.available()).toBe(hasKvm);
  });
});
