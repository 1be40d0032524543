/** SEV-SNP: the launch ioctls (KVM_MEMORY_ENCRYPT_OP) and the guest's own instructions. */
import { z } from 'zod';
import { addr, bool, constant, num, pageSize, pfn } from './fields.js';
import { defineOp } from './op.js';

const SNP = { vmTypes: ['KVM_X86_SNP_VM'] } as const;
const operation = z.enum(['private', 'shared']);
/** a GHCB page-state-change entry's operation (GHCB spec: SNP_PAGE_STATE_PRIVATE 1, SHARED 2, PSMASH 3, UNSMASH 4) */
const pscOperation = z.enum(['private', 'shared', 'psmash', 'unsmash']);

export const SNP_OPS = {
  snp_launch_start: defineOp({
    args: z.strictObject({ policy: num().optional(), flags: num().optional() }),
    does: '`KVM_SEV_SNP_LAUNCH_START`',
    needs: SNP,
  }),
  snp_launch_update: defineOp({
    args: z.strictObject({ gfn_start: num(), len: num(), type: constant('snp_page_type'), uaddr: addr().optional(), flags: num().optional() }),
    does: '`KVM_SEV_SNP_LAUNCH_UPDATE`: populate `len` bytes from `gfn_start` with pages of `type` (copied from `uaddr`)',
    needs: SNP,
  }),
  snp_launch_finish: defineOp({
    args: z.strictObject({ flags: num().optional(), host_data: z.string().optional() }),
    does: '`KVM_SEV_SNP_LAUNCH_FINISH`; `host_data` is a hex string',
    needs: SNP,
  }),
  guest_pvalidate: defineOp({
    args: z.strictObject({ vcpu: addr(), gpa: num(), page_size: pageSize().optional(), validate: bool() }),
    does: 'PVALIDATE by the guest',
    result: '`ret`',
    needs: SNP,
  }),
  guest_psc: defineOp({
    args: z.strictObject({
      vcpu: addr(),
      entries: z.array(z.strictObject({ gpa: num(), operation: pscOperation, page_size: pageSize().optional(), cur_page: num().optional() })).min(1),
    }),
    does:
      'a GHCB Page State Change request; an entry\'s `cur_page` (default 0) is the number of its 4K pages already done (`struct psc_entry`), `psmash`/`unsmash` entries ask the host to split or merge the RMP entry',
    result: '`ret`, or an exit',
    needs: SNP,
  }),
  guest_psc_msr: defineOp({
    args: z.strictObject({ vcpu: addr(), gpa: num(), operation }),
    does: 'one 4K page-state change through the GHCB MSR protocol (`GHCB_MSR_PSC_REQ`)',
    result: 'an exit, if any',
    needs: SNP,
  }),
  guest_rmpadjust: defineOp({
    args: z.strictObject({ vcpu: addr(), gpa: num(), page_size: pageSize().optional(), vmpl: num(), perms: num(), vmsa: bool().optional() }),
    does: "RMPADJUST by the VMPL0 guest: set VMPL `vmpl`'s (1–3) permission mask `perms` (and the VMSA bit) of a page",
    result: '`ret`',
    needs: SNP,
  }),
  snp_rmp_insn: defineOp({
    args: z.strictObject({
      insn: z.enum(['rmpupdate', 'psmash']),
      pfn: pfn().optional(),
      gpa: num().optional(),
      assigned: bool().optional(),
      page_size: pageSize().optional(),
      immutable: bool().optional(),
      asid: num().optional(),
      rmp_gpa: num().optional(),
    }),
    does:
      "model only: the host runs RMPUPDATE or PSMASH on a frame, as the kernel's wrappers do (the direct map adjusted first; no retry): `pfn`, or the guest_memfd page behind the guest's `gpa`; RMPUPDATE writes `assigned` (default true), `page_size`, `immutable`, `asid` (default the VM's) and `rmp_gpa` (default `gpa`)",
    result: '`ret` (`FAIL_INPUT`, `FAIL_PERMISSION`, `FAIL_INUSE`, `FAIL_BADADDR`, ...)',
    needs: SNP,
  }),
  snp_host_access: defineOp({
    args: z.strictObject({ pfn: pfn().optional(), gpa: num().optional(), write: bool().optional() }),
    does:
      "model only: the host kernel reads (default) or writes (`write: true`) a frame through its direct map: `pfn`, or the guest_memfd page behind the guest's `gpa`. A frame missing from the direct map faults (a kernel oops); a read of a guest's frame returns ciphertext; a write is checked by the RMP at the page size of the direct-map page it goes through, so it faults on an assigned frame, and through a 2M or 1G mapping on any frame whose 2M region holds an assigned one",
    result: '`exception: "#PF"` with `detail.reason` when the access faults',
    needs: SNP,
  }),
};
