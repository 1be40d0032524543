/** Both vendors: the guest asks to convert a range (KVM_HC_MAP_GPA_RANGE / TDG.VP.VMCALL<MapGPA>). */
import { z } from 'zod';
import { addr, flags, num } from './fields.js';
import { defineOp } from './op.js';

export const MAP_GPA_OPS = {
  guest_map_gpa_range: defineOp({
    args: z.strictObject({ vcpu: addr(), gpa: num(), npages: num(), attributes: flags('map_gpa_range').optional() }),
    does: '`KVM_HC_MAP_GPA_RANGE` (SNP) / `TDG.VP.VMCALL<MapGPA>` (TDX); exits with `KVM_EXIT_HYPERCALL` when enabled',
    result: 'an exit, or `ret`',
  }),
};
