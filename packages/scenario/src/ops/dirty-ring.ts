/**
 * The dirty ring: KVM_RESET_DIRTY_RINGS, the VMM's harvest of a vCPU's ring, the mmap of the
 * ring, and KVM_RUN again after KVM_EXIT_DIRTY_RING_FULL. The ring itself is enabled with
 * `enable_cap: { cap: KVM_CAP_DIRTY_LOG_RING, args: [size] }` before the first vCPU.
 */
import { z } from 'zod';
import { addr, flags, num } from './fields.js';
import { defineOp } from './op.js';

export const DIRTY_RING_OPS = {
  harvest_dirty_ring: defineOp({
    args: z.strictObject({ vcpu: addr(), max: num().optional() }),
    does:
      "the VMM collects the vCPU's ring through its shared mapping: from where its last harvest stopped, each entry whose flags are `KVM_DIRTY_GFN_F_DIRTY` is read and marked `KVM_DIRTY_GFN_F_RESET` (at most `max`)",
    result: '`dirty_gfns` (in ring order), `dirty_pages` (their offsets), value: how many',
    needs: { caps: ['KVM_CAP_DIRTY_LOG_RING'] },
  }),
  reset_dirty_rings: defineOp({
    args: z.strictObject({}),
    does: '`KVM_RESET_DIRTY_RINGS`: harvested entries are reset and their pages write-protected again',
    result: 'value: the entries reset',
    needs: { caps: ['KVM_CAP_DIRTY_LOG_RING'] },
  }),
  mmap_dirty_ring: defineOp({
    args: z.strictObject({ vcpu: addr(), prot: flags('prot').optional(), flags: flags('map').optional() }),
    does: "mmap(2) of the vCPU fd at `KVM_DIRTY_LOG_PAGE_OFFSET` over the whole ring (`prot` defaults to `PROT_READ\\|PROT_WRITE`, `flags` to `MAP_SHARED`): `PROT_EXEC` → `EPERM` (do_mmap(): the vCPU fd is a noexec anon inode), `MAP_PRIVATE` → `EINVAL` (kvm_vcpu_mmap()); a mapping that succeeds is unmapped again",
    needs: { caps: ['KVM_CAP_DIRTY_LOG_RING'] },
  }),
  guest_touch: defineOp({
    args: z.strictObject({ vcpu: addr(), gpa: num(), size: num(), value: num().optional() }),
    does:
      'the guest stores the byte `value` (default 1) at the start of every 4 KiB page of [`gpa`, `gpa + size`) in one `KVM_RUN` (the selftests\' dirtying loop); a `KVM_EXIT_DIRTY_RING_FULL` stops it mid-range and `run_vcpu` continues',
    result: 'an exit, if any',
  }),
};
