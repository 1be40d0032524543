/** The VMM process: its memory and its fds. */
import { z } from 'zod';
import { accessSize, addr, flags, hugepage, num, u64 } from './fields.js';
import { defineOp } from './op.js';

export const PROCESS_OPS = {
  mmap: defineOp({
    args: z.strictObject({ size: num(), prot: flags('prot').optional(), flags: flags('map').optional(), fd: addr().optional(), offset: num().optional(), hugepage: hugepage().optional() }),
    does:
      'mmap(2); `prot` defaults to `PROT_READ\\|PROT_WRITE`, `flags` to `MAP_SHARED` (anonymous without `fd`); `hugepage: 2MiB` is `MAP_HUGETLB` with 2 MiB pages (anonymous only; KVM can then map 2M); with `fd`, maps that file (guest_memfd needs `GUEST_MEMFD_FLAG_MMAP`: else `ENODEV`; `MAP_PRIVATE` → `EINVAL`)',
    result: 'result: the hva',
  }),
  munmap: defineOp({ args: z.strictObject({ addr: addr(), size: num() }), does: 'munmap(2)' }),
  read: defineOp({
    args: z.strictObject({ addr: addr(), size: accessSize() }),
    does: 'a little-endian load by the VMM',
    result: 'value; `signal: SIGBUS` when the page cannot be faulted (private guest_memfd, beyond EOF)',
  }),
  write: defineOp({
    args: z.strictObject({ addr: addr(), size: accessSize(), value: u64() }),
    does: 'a little-endian store by the VMM',
    result: '`signal` as for `read`',
  }),
  close: defineOp({ args: z.strictObject({ fd: addr() }), does: 'close(2) of an fd' }),
};
