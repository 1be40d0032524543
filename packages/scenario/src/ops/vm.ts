/** Other VM and system ioctls: capabilities, more VMs, vCPU creation and KVM_RUN. */
import { z } from 'zod';
import { addr, bool, constant, flags, num, uint } from './fields.js';
import { defineOp } from './op.js';

/** the VM types a scenario names (schema.ts VM_TYPE_NAMES) */
const vmType = () => z.enum(['default', 'sw-protected', 'sev', 'sev-es', 'snp', 'tdx']);

export const VM_OPS = {
  check_extension: defineOp({
    args: z.strictObject({ cap: constant('cap'), on: z.enum(['vm', 'system']).optional() }),
    does: '`KVM_CHECK_EXTENSION` on the VM fd (default) or /dev/kvm (`on: system`)',
    result: 'value',
  }),
  enable_cap: defineOp({
    args: z.strictObject({ cap: constant('cap'), flags: uint(32).optional(), args: z.array(flags('enable_cap_args')).max(4).optional() }),
    does: '`KVM_ENABLE_CAP`; `args: [[KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE, KVM_DIRTY_LOG_INITIALLY_SET]]` sets `args[0]` to both bits',
  }),
  create_vm: defineOp({
    args: z.strictObject({ type: vmType().optional() }),
    does: '`KVM_CREATE_VM`: another VM beside the scenario\'s (`type` defaults to `vm.type`); VM ops take it as `vm:`',
    result: 'result: the VM fd',
  }),
  vm_fd: defineOp({
    args: z.strictObject({}),
    does: 'the scenario VM\'s own fd (to close it, or to pass it where KVM expects another fd)',
    result: 'result: the VM fd',
  }),
  vcpu_fd: defineOp({
    args: z.strictObject({ vcpu: addr() }),
    does: 'a vCPU\'s fd (`create_vcpu_fd()`), to close it: each vCPU fd holds a reference to its VM (`kvm_get_kvm()`), dropped at its close (`kvm_vcpu_release()`); the vCPU\'s ioctls are `EBADF` after',
    result: 'result: the vCPU fd',
  }),
  set_nr_mmu_pages: defineOp({
    args: z.strictObject({ pages: num(), vm: addr().optional() }),
    does: '`KVM_SET_NR_MMU_PAGES`: the shadow-page budget (below `KVM_MIN_ALLOC_MMU_PAGES` = 64: `EINVAL`)',
  }),
  create_vcpu: defineOp({
    args: z.strictObject({ id: num(), bare: bool().optional() }),
    does: '`KVM_CREATE_VCPU`; `bare: true` keeps the vCPU in its reset state (the real-KVM target installs no guest code in it). On a `tdx` VM only between `tdx_init_vm` and `tdx_finalize_vm` (`EIO` otherwise, `tdx_vcpu_create()`)',
    result: 'result: the vCPU id',
  }),
  run_vcpu: defineOp({
    args: z.strictObject({ vcpu: addr() }),
    does: '`KVM_RUN` with no new guest access: after `KVM_EXIT_DIRTY_RING_FULL` the interrupted access (or `guest_touch`) runs again, the ring check first; a `bare` vCPU runs from its reset state: its first fetch is at 0xfffffff0 (CS.base 0xffff0000 + RIP 0xfff0), and without memory there the emulator cannot fetch: `KVM_EXIT_INTERNAL_ERROR`',
    result: 'value, or an exit',
  }),
};
