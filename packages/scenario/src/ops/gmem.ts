/** guest_memfd and the other memory providers (a device fd). */
import { FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE } from '@ccmem/core';
import { z } from 'zod';
import { addr, flags, num } from './fields.js';
import { defineAlias, defineOp } from './op.js';

export const GMEM_OPS = {
  create_guest_memfd: defineOp({
    args: z.strictObject({ size: num(), flags: flags('guest_memfd').optional(), vm: addr().optional() }),
    does: '`KVM_CREATE_GUEST_MEMFD` (or a device fd when `vm.provider` is `device_fd`) on the scenario\'s VM, or on `vm` (a `create_vm` result)',
    result: 'result: the fd',
    needs: { caps: ['KVM_CAP_GUEST_MEMFD'] },
  }),
  fallocate: defineOp({
    args: z.strictObject({ fd: addr(), mode: flags('fallocate'), offset: num(), len: num() }),
    does: 'fallocate(2) on the file',
  }),
  punch_hole: defineAlias('fallocate', {
    args: z.strictObject({ fd: addr(), offset: num(), len: num() }),
    does: '`fallocate` with `FALLOC_FL_PUNCH_HOLE \\| FALLOC_FL_KEEP_SIZE` (targets see `fallocate`)',
    normalize: (a) => ({ fd: a.fd, mode: FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset: a.offset, len: a.len }),
  }),
  gmem_poison: defineOp({
    args: z.strictObject({ fd: addr(), offset: num() }),
    does: 'a memory failure on the page at `offset` (`error_remove_folio`): mappings zapped, later faults `EHWPOISON`',
  }),
  device_revoke: defineOp({
    args: z.strictObject({ fd: addr() }),
    does: 'the device withdraws its exported region (device_fd provider)',
  }),
};
