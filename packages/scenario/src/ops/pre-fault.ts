/** KVM_PRE_FAULT_MEMORY. */
import { PAGE_SIZE } from '@ccmem/core';
import { z } from 'zod';
import { addr, num, u64Exact } from './fields.js';
import { defineOp } from './op.js';

export const PRE_FAULT_OPS = {
  pre_fault_memory: defineOp({
    args: z.strictObject({ vcpu: addr(), gpa: u64Exact(), size: u64Exact(), flags: num().optional() }),
    does: '`KVM_PRE_FAULT_MEMORY` (one call)',
    result: '`gpa`/`size`: the remaining range copied back (also on failure)',
    needs: { caps: ['KVM_CAP_PRE_FAULT_MEMORY'] },
    // kvm_tdp_map_page() may install a 2M leaf for any gfn of the range
    footprint: { gfns: (a) => [Math.floor(Number(a.gpa) / PAGE_SIZE), Math.floor(Number(a.gpa) / PAGE_SIZE) + Math.max(1, Math.ceil(Number(a.size) / PAGE_SIZE))], huge: true },
  }),
};
