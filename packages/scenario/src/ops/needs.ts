/** Whether a kernel offers what an op needs (OpNeeds), from its KVM_CHECK_EXTENSION answers. */
import { KVM_X86_DEFAULT_VM, VM_TYPES } from '@ccmem/core';
import type { OpNeeds, VmTypeName } from './op.js';

/** each VM type's number (@ccmem/core's table) */
export const VM_TYPE_NUMBERS: Readonly<Record<VmTypeName, number>> = VM_TYPES;

/** KVM_CAP_VM_TYPES as a bitmap; a kernel without the capability offers the default VM only */
export function offeredVmTypes(caps: Readonly<Record<string, number>>): number {
  return caps.KVM_CAP_VM_TYPES || 1 << KVM_X86_DEFAULT_VM;
}

/**
 * The first thing `needs` names that `caps` (capability name → KVM_CHECK_EXTENSION answer)
 * lacks: a capability, or the VM type when none of the listed types is offered; null when the
 * kernel offers everything.
 */
export function missingNeed(needs: OpNeeds | undefined, caps: Readonly<Record<string, number>>): string | null {
  for (const cap of needs?.caps ?? []) if (!caps[cap]) return cap;
  const types = needs?.vmTypes ?? [];
  if (types.length && !types.some((t) => offeredVmTypes(caps) & (1 << VM_TYPE_NUMBERS[t]))) return types.join(' or ');
  return null;
}
