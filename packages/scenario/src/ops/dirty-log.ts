/** The dirty log: KVM_GET_DIRTY_LOG and KVM_CLEAR_DIRTY_LOG. */
import { z } from 'zod';
import { num, numList, uint } from './fields.js';
import { foldAsId, slotWithAsId } from './memslots.js';
import { defineOp } from './op.js';

export const DIRTY_LOG_OPS = {
  get_dirty_log: defineOp({
    args: z.strictObject({ slot: uint(32), as_id: uint(16).optional() }).superRefine(slotWithAsId),
    does: '`KVM_GET_DIRTY_LOG`',
    result: '`dirty_pages`',
    normalize: foldAsId,
  }),
  clear_dirty_log: defineOp({
    args: z.strictObject({
      slot: uint(32),
      as_id: uint(16).optional(),
      first_page: num(),
      num_pages: uint(32),
      /** bit numbers set in the user bitmap (bit 0 = first_page); default: every bit */
      dirty_bitmap: numList().optional(),
    }).superRefine(slotWithAsId),
    does: '`KVM_CLEAR_DIRTY_LOG`; `dirty_bitmap` lists the bit numbers set (bit 0 = `first_page`; default: every bit)',
    needs: { caps: ['KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2'] },
    normalize: foldAsId,
  }),
};
