/** Memory attributes: KVM_SET_MEMORY_ATTRIBUTES. */
import { PAGE_SIZE } from '@ccmem/core';
import { z } from 'zod';
import { flagsU64, u64Exact } from './fields.js';
import { defineOp } from './op.js';

export const ATTRIBUTE_OPS = {
  set_memory_attributes: defineOp({
    args: z.strictObject({ address: u64Exact(), size: u64Exact(), attributes: flagsU64('attributes'), flags: u64Exact().optional() }),
    does: '`KVM_SET_MEMORY_ATTRIBUTES`',
    needs: { caps: ['KVM_CAP_MEMORY_ATTRIBUTES'] },
    // kvm_vm_set_mem_attributes() zaps and stores [start, end) only
    footprint: { gfns: (a) => [Math.floor(Number(a.address) / PAGE_SIZE), Math.ceil((Number(a.address) + Number(a.size)) / PAGE_SIZE)] },
  }),
};
