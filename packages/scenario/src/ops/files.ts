/**
 * Files and host memory management of the VMM process: any fd as a file (read/write/pread/
 * pwrite, fstat), the files KVM may be handed instead of a guest_memfd (a memfd, another open
 * of /dev/kvm), and madvise / mprotect of mappings.
 */
import { z } from 'zod';
import { addr, constant, flags, num } from './fields.js';
import { defineOp } from './op.js';

export const FILE_OPS = {
  fd_read: defineOp({
    args: z.strictObject({ fd: addr(), size: num(), offset: num().optional() }),
    does: 'read(2) of `size` bytes from an fd, pread(2) with `offset`; guest_memfd has no read: `EINVAL`, and no `FMODE_PREAD`: `ESPIPE`',
    result: 'value: the bytes transferred',
  }),
  fd_write: defineOp({
    args: z.strictObject({ fd: addr(), size: num(), offset: num().optional() }),
    does: 'write(2) of `size` zero bytes to an fd, pwrite(2) with `offset` (guest_memfd: `EINVAL` / `ESPIPE`)',
    result: 'value: the bytes transferred',
  }),
  fstat: defineOp({
    args: z.strictObject({ fd: addr(), distinct_from: z.array(addr()).optional() }),
    does: 'fstat(2) of an fd; `distinct_from` lists other fds whose inode must differ',
    result: '`stat`: `st_size`, `st_blksize`, and `distinct_inode` (with `distinct_from`)',
  }),
  memfd_create: defineOp({
    args: z.strictObject({ size: num() }),
    does: 'memfd_create(2) then ftruncate(2) to `size`: a shmem file (mappable, not a guest_memfd)',
    result: 'result: the fd',
  }),
  open_dev_kvm: defineOp({
    args: z.strictObject({}),
    does: 'open(2) of /dev/kvm: another fd of the KVM device',
    result: 'result: the fd',
  }),
  madvise: defineOp({
    args: z.strictObject({ addr: addr(), size: num(), advice: constant('madvise') }),
    does:
      'madvise(2): `MADV_DONTNEED` zaps the PTEs (and KVM\'s SPTEs; private anonymous memory reads zeroes after), `MADV_REMOVE` punches the file\'s hole (`EINVAL` on private anonymous memory), `MADV_COLLAPSE` of a guest_memfd mapping is `EINVAL`',
  }),
  mprotect: defineOp({
    args: z.strictObject({ addr: addr(), size: num(), prot: flags('prot') }),
    does: 'mprotect(2): the mmu notifier zaps KVM\'s SPTEs of the range; a guest write to memory without `PROT_WRITE` then fails `KVM_RUN` with `EFAULT` (`KVM_EXIT_MEMORY_FAULT`)',
  }),
  mbind: defineOp({
    args: z.strictObject({ addr: addr(), size: num(), mode: constant('mpol'), nodes: z.array(num()).optional(), flags: flags('mbind').optional() }),
    does:
      'mbind(2) of a range to the NUMA nodes listed (`vm.numa_nodes` online): `EINVAL` for a mode >= `MPOL_MAX`, an empty or offline nodemask, `EFAULT` for a hole; a guest_memfd mapping sets the file\'s shared policy (`kvm_gmem_set_policy()`), which its page allocation follows',
  }),
  get_mempolicy: defineOp({
    args: z.strictObject({ addr: addr(), field: z.enum(['mode', 'nodemask']).optional() }),
    does: 'get_mempolicy(2) with `MPOL_F_ADDR`: the policy at `addr` (`MPOL_DEFAULT` and no nodes where none is set)',
    result: 'value: the mode (default) or the nodemask bits',
  }),
  move_pages: defineOp({
    args: z.strictObject({ pages: z.array(addr()).min(1) }),
    does: 'move_pages(2) of this process with `nodes` NULL: where each page is',
    result: '`status`: per page its node, or -2 (-ENOENT: no page) / -14 (-EFAULT: no VMA, the zero page)',
  }),
};
