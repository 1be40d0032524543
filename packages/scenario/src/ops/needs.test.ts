import { CAPS } from '@ccmem/core';
import { describe, expect, it } from 'vitest';
import { OPS, OP_NAMES, opSpec } from './index.js';
import { missingNeed } from './needs.js';

describe('what an op needs from a kernel', () => {
  const bare = { KVM_CAP_MEMORY_ATTRIBUTES: 0, KVM_CAP_PRE_FAULT_MEMORY: 0, KVM_CAP_VM_TYPES: 1, KVM_CAP_GUEST_MEMFD: 1 };

  it('names the capability or VM type a host lacks', () => {
    expect(missingNeed(OPS.set_memory_attributes.needs, bare)).toBe('KVM_CAP_MEMORY_ATTRIBUTES');
    expect(missingNeed(OPS.pre_fault_memory.needs, bare)).toBe('KVM_CAP_PRE_FAULT_MEMORY');
    expect(missingNeed(OPS.snp_launch_update.needs, bare)).toBe('KVM_X86_SNP_VM');
    expect(missingNeed(OPS.tdx_init_mem_region.needs, bare)).toBe('KVM_X86_TDX_VM');
    expect(missingNeed(OPS.create_guest_memfd.needs, bare)).toBeNull();
    expect(missingNeed(OPS.guest_read.needs, bare)).toBeNull();
    expect(missingNeed(OPS.snp_launch_update.needs, { ...bare, KVM_CAP_VM_TYPES: 1 | (1 << 4) })).toBeNull();
    // a kernel without KVM_CAP_VM_TYPES offers the default VM only
    expect(missingNeed(OPS.guest_accept.needs, {})).toBe('KVM_X86_TDX_VM');
  });

  it('every capability the registry names is one @ccmem/core knows', () => {
    for (const op of OP_NAMES) for (const cap of opSpec(op).needs?.caps ?? []) expect(CAPS, `${op} needs ${cap}`).toHaveProperty(cap);
  });
});
