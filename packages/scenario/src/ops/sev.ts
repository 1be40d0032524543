/**
 * SEV and SEV-ES: KVM_SEV_INIT2 and the launch commands (KVM_MEMORY_ENCRYPT_OP), encrypted
 * regions (KVM_MEMORY_ENCRYPT_REG_REGION / UNREG_REGION), and the guest's GHCB requests.
 */
import { z } from 'zod';
import { addr, bool, num, u64 } from './fields.js';
import { defineOp } from './op.js';

/** sev_mem_enc_ioctl() answers on every SEV type (and KVM_SEV_INIT2 on the others with EINVAL) */
const SEV_ANY = { vmTypes: ['KVM_X86_SEV_VM', 'KVM_X86_SEV_ES_VM', 'KVM_X86_SNP_VM'] } as const;
const SEV = { vmTypes: ['KVM_X86_SEV_VM', 'KVM_X86_SEV_ES_VM'] } as const;
const GHCB = { vmTypes: ['KVM_X86_SEV_ES_VM', 'KVM_X86_SNP_VM'] } as const;

export const SEV_OPS = {
  sev_init2: defineOp({
    args: z.strictObject({ vmsa_features: num().optional(), flags: num().optional(), ghcb_version: num().optional(), vm: addr().optional() }),
    does: '`KVM_SEV_INIT2` (`struct kvm_sev_init`) on the scenario\'s VM, or on `vm` (a `create_vm` result)',
    needs: SEV_ANY,
  }),
  sev_init: defineOp({
    args: z.strictObject({ es: bool().optional() }),
    does: 'the deprecated `KVM_SEV_INIT` (`KVM_SEV_ES_INIT` with `es: true`), for `KVM_X86_DEFAULT_VM` only',
    needs: SEV_ANY,
  }),
  sev_launch_start: defineOp({
    args: z.strictObject({ policy: num().optional(), vm: addr().optional() }),
    does: '`KVM_SEV_LAUNCH_START` with a guest `policy` (`SEV_POLICY_*` bits) on the scenario\'s VM, or on `vm` (a `create_vm` result)',
    needs: SEV,
  }),
  sev_launch_update_data: defineOp({
    args: z.strictObject({ uaddr: addr(), len: num() }),
    does: '`KVM_SEV_LAUNCH_UPDATE_DATA`: pin `[uaddr, uaddr + len)`, encrypt and measure it in place',
    needs: SEV,
  }),
  sev_launch_update_vmsa: defineOp({ args: z.strictObject({}), does: "`KVM_SEV_LAUNCH_UPDATE_VMSA`: encrypt and measure every vCPU's VMSA (SEV-ES)", needs: SEV }),
  sev_launch_measure: defineOp({
    args: z.strictObject({ uaddr: addr().optional(), len: num().optional() }),
    does: '`KVM_SEV_LAUNCH_MEASURE` into `len` bytes at `uaddr` (`len` 0: ask for the length)',
    result: 'value: the blob length written back (also with the `EIO` of the length query and the `EFAULT` of a buffer KVM cannot write)',
    needs: SEV,
  }),
  sev_launch_finish: defineOp({ args: z.strictObject({}), does: '`KVM_SEV_LAUNCH_FINISH`', needs: SEV }),
  sev_guest_status: defineOp({ args: z.strictObject({}), does: '`KVM_SEV_GUEST_STATUS`', result: 'value: the guest state (`SEV_GUEST_STATE_*`)', needs: SEV }),
  memory_encrypt_reg_region: defineOp({
    args: z.strictObject({ addr: addr(), size: num() }),
    does: '`KVM_MEMORY_ENCRYPT_REG_REGION`: pin the pages of `[addr, addr + size)` as guest memory',
    needs: SEV,
  }),
  memory_encrypt_unreg_region: defineOp({
    args: z.strictObject({ addr: addr(), size: num() }),
    does: '`KVM_MEMORY_ENCRYPT_UNREG_REGION` of a region registered with exactly that `addr` and `size`',
    needs: SEV,
  }),
  guest_ghcb_msr: defineOp({
    args: z.strictObject({ vcpu: addr(), value: u64() }),
    does: 'the guest writes `value` to the GHCB MSR and runs VMGEXIT (the GHCB MSR protocol)',
    result: '`ret`: the GHCB MSR afterwards (all 64 bits), or an exit',
    needs: GHCB,
  }),
  guest_ghcb_terminate: defineOp({
    args: z.strictObject({ vcpu: addr(), reason_set: num().optional(), reason_code: num().optional(), ghcb_gpa: num().optional() }),
    does: 'the guest asks to be terminated: `GHCB_MSR_TERM_REQ` with the reason, or `SVM_VMGEXIT_TERM_REQUEST` in the GHCB page at `ghcb_gpa`',
    result: 'an exit (`KVM_SYSTEM_EVENT_SEV_TERM`)',
    needs: GHCB,
  }),
};
