/** TDX: the KVM_MEMORY_ENCRYPT_OP setup ioctls and the guest's TDCALLs. */
import { z } from 'zod';
import { addr, flags, num, pageSize } from './fields.js';
import { defineOp } from './op.js';

const TDX = { vmTypes: ['KVM_X86_TDX_VM'] } as const;

export const TDX_OPS = {
  tdx_init_vm: defineOp({ args: z.strictObject({ attributes: num().optional(), xfam: num().optional() }), does: '`KVM_TDX_INIT_VM`', needs: TDX }),
  tdx_init_vcpu: defineOp({ args: z.strictObject({ vcpu: addr() }), does: '`KVM_TDX_INIT_VCPU`', needs: TDX }),
  tdx_init_mem_region: defineOp({
    args: z.strictObject({ vcpu: addr(), source_addr: addr(), gpa: num(), nr_pages: num(), flags: flags('tdx_init_mem_region').optional() }),
    does: '`KVM_TDX_INIT_MEM_REGION`: add `nr_pages` pages copied from `source_addr` at `gpa` (TDH.MEM.PAGE.ADD; TDH.MR.EXTEND too with `KVM_TDX_MEASURE_MEMORY_REGION`)',
    result: '`gpa`, `nr_pages`: the region copied back (also after a page past the first failed)',
    needs: TDX,
  }),
  tdx_finalize_vm: defineOp({ args: z.strictObject({}), does: '`KVM_TDX_FINALIZE_VM`', needs: TDX }),
  guest_accept: defineOp({
    args: z.strictObject({ vcpu: addr(), gpa: num(), page_size: pageSize().optional() }),
    does: '`TDG.MEM.PAGE.ACCEPT` by the guest',
    result: '`ret`, or an exit',
    needs: TDX,
  }),
  tdx_pending_interrupt: defineOp({
    args: z.strictObject({ vcpu: addr(), pending: z.boolean().optional() }),
    does:
      'model only: an interrupt is pending for the vCPU (`pending`, default true; false: none is), as a posted interrupt makes kvm_vcpu_has_events() true: a `TDG.VP.VMCALL<MapGPA>` then stops between its 2 MiB steps with `TDVMCALL_STATUS_RETRY` (tdx_complete_vmcall_map_gpa())',
    needs: TDX,
  }),
  tdx_seamcall: defineOp({
    args: z.strictObject({
      leaf: z.enum(['TDH.MEM.PAGE.ADD', 'TDH.MEM.PAGE.AUG', 'TDH.MEM.SEPT.ADD', 'TDH.MEM.RANGE.BLOCK', 'TDH.MEM.TRACK', 'TDH.MEM.PAGE.REMOVE', 'TDH.MEM.PAGE.DEMOTE', 'TDH.MR.EXTEND']),
      gpa: num().optional(),
      level: num().optional(),
      page: num().optional(),
      page_of: num().optional(),
    }),
    does:
      'model only: the host kernel issues one SEAMCALL to the TDX module behind KVM\'s back (its checks and their order, its return codes): `gpa` (default 0; for TDH.MR.EXTEND the 256-byte chunk), TDX `level` (0 = 4K, 1 = 2M, 2 = 1G; default 0), `page` the pfn operand, or `page_of` the private page the S-EPT maps at that gpa (default: a fresh host page)',
    result: '`ret`: the TDX status name',
    needs: TDX,
  }),
};
