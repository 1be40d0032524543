/** Memslots: KVM_SET_USER_MEMORY_REGION[2]. */
import { z } from 'zod';
import { addr, flags, u64Exact, uint } from './fields.js';
import { defineOp } from './op.js';

/**
 * The uAPI slot field carries the address space in bits 16-31; `as_id` is a convenience OR-ed
 * into them (kvm_set_memory_region() splits them again: `as_id = mem->slot >> 16`).
 */
export function foldAsId<A extends { slot: number; as_id?: number }>({ as_id, ...rest }: A): Omit<A, 'as_id'> {
  return as_id === undefined ? rest : { ...rest, slot: ((as_id << 16) | rest.slot) >>> 0 };
}

/**
 * With `as_id`, `slot` is the u16 slot id: its bits 16-31 would be a second address space
 * (a located error rather than a silently OR-ed value).
 */
export function slotWithAsId(a: { slot: number; as_id?: number | undefined }, ctx: z.RefinementCtx): void {
  if (a.as_id !== undefined && a.slot > 0xffff) {
    ctx.addIssue({ code: 'custom', path: ['slot'], message: `with as_id, slot is the u16 slot id; ${'0x' + a.slot.toString(16)} carries an address space in bits 16-31 too` });
  }
}

const memslotFields = {
  /** kvm_userspace_memory_region.slot (u32): bits 0-15 slot id, bits 16-31 address space */
  slot: uint(32),
  as_id: uint(16).optional(),
  flags: flags('memslot', 32).optional(),
  guest_phys_addr: u64Exact(),
  memory_size: u64Exact(),
  /** default 0 (allowed for guest_memfd slots, which need no hva) */
  userspace_addr: addr().default(0),
  /** another VM (a `create_vm` result); default: the scenario's VM */
  vm: addr().optional(),
};

export const MEMSLOT_OPS = {
  set_user_memory_region: defineOp({
    args: z.strictObject(memslotFields).superRefine(slotWithAsId),
    does: '`KVM_SET_USER_MEMORY_REGION` (`userspace_addr` defaults to 0; `vm`: another VM\'s fd from `create_vm`)',
    normalize: foldAsId,
  }),
  set_user_memory_region2: defineOp({
    args: z.strictObject({ ...memslotFields, guest_memfd_offset: u64Exact().optional(), guest_memfd: addr().optional() }).superRefine(slotWithAsId),
    does: '`KVM_SET_USER_MEMORY_REGION2`',
    needs: { caps: ['KVM_CAP_USER_MEMORY2'] },
    normalize: foldAsId,
  }),
};
