/** Model handlers: the VMM process and the memory providers (guest_memfd, device fd). */
import { fail, GUEST_MEMFD_FLAG_MMAP, PAGE_SIZE, type KvmFile, type MappingBacking } from '@ccmem/core';
import { createDeviceFd, DeviceFdFile, GuestMemfd } from '@ccmem/gmem';
import { MAP_PRIVATE, MAP_SHARED, PROT_READ, PROT_WRITE } from '../numbers.js';
import type { ModelHandlers } from './run.js';

export const HOST_HANDLERS = {
  mmap(a, m) {
    const prot = a.prot ?? PROT_READ | PROT_WRITE;
    const flags = a.flags ?? MAP_SHARED;
    const type = flags & (MAP_SHARED | MAP_PRIVATE);
    if (type !== MAP_SHARED && type !== MAP_PRIVATE) fail('EINVAL', 'mmap: exactly one of MAP_SHARED and MAP_PRIVATE');
    let backing: MappingBacking | undefined;
    if (a.fd !== undefined) {
      const f = m.file(a.fd) as KvmFile & Partial<MappingBacking>;
      if (typeof f.checkMmap !== 'function' || typeof f.faultPage !== 'function') fail('ENODEV', `mmap: a ${f.kind} fd cannot be mapped`);
      backing = f as MappingBacking;
    }
    const hva = m.kvm.process.mm.mmap({
      length: a.size,
      prot: { read: (prot & PROT_READ) !== 0, write: (prot & PROT_WRITE) !== 0 },
      shared: type === MAP_SHARED,
      ...(backing && { backing }),
      ...(a.offset !== undefined && { fileOffset: a.offset }),
      ...(a.hugepage !== undefined && { hugepage: '2M' as const }),
    });
    return { result: hva };
  },
  munmap(a, m) {
    m.kvm.process.mm.munmap(a.addr, a.size);
    return {};
  },
  read: (a, m) => ({ value: m.kvm.process.mm.read(a.addr, a.size) }),
  write(a, m) {
    m.kvm.process.mm.write(a.addr, a.size, a.value);
    return {};
  },
  close(a, m) {
    m.kvm.process.close(a.fd);
    return {};
  },

  create_guest_memfd(a, m) {
    const flags = a.flags ?? 0;
    if (m.config.provider === 'device_fd') {
      // the device exports a region of the requested size; GUEST_MEMFD_FLAG_MMAP stands
      // for a region the VMM may map (hostAccessible)
      if (flags & ~GUEST_MEMFD_FLAG_MMAP) fail('EINVAL', 'device fd: only GUEST_MEMFD_FLAG_MMAP has a device equivalent');
      const file = createDeviceFd(m.vmOf(a.vm), { size: a.size, hostAccessible: (flags & GUEST_MEMFD_FLAG_MMAP) !== 0 });
      m.deviceRegions.push(file.region);
      return { result: m.kvm.process.installFd(file) };
    }
    return { result: m.vmOf(a.vm).createGuestMemfd({ size: a.size, flags }) };
  },
  fallocate(a, m) {
    const f = m.file(a.fd);
    // vfs_fallocate(): a file without ->fallocate is EOPNOTSUPP
    if (!(f instanceof GuestMemfd)) fail('EOPNOTSUPP', `fallocate: a ${f.kind} fd has no fallocate`);
    f.fallocate(a.mode, a.offset, a.len);
    return {};
  },
  gmem_poison(a, m) {
    const f = m.file(a.fd);
    if (!(f instanceof GuestMemfd)) fail('EINVAL', `gmem_poison: a ${f.kind} fd is not a guest_memfd`);
    return { detail: { poisoned: f.poison(Math.floor(a.offset / PAGE_SIZE)) } };
  },
  device_revoke(a, m) {
    const f = m.file(a.fd);
    if (!(f instanceof DeviceFdFile)) fail('EINVAL', `device_revoke: a ${f.kind} fd is not a device fd`);
    f.revoke();
    return {};
  },
} satisfies ModelHandlers;
