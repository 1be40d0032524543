/** Other VM and system ioctls: capabilities and vCPU creation. */
import { z } from 'zod';
import { constant, flags, num, uint } from './fields.js';
import { defineOp } from './op.js';

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
  create_vcpu: defineOp({ args: z.strictObject({ id: num() }), does: '`KVM_CREATE_VCPU`', result: 'result: the vCPU id' }),
};
