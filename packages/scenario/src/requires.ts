/**
 * `requires:` in a scenario file: facts of a kernel build the expectations depend on (a
 * `profile: host` scenario that holds only where guest_memfd is built, or only under shadow
 * paging). A target whose kernel profile does not have them skips the scenario, naming the
 * fact; both the model (under the profile it runs) and the real-KVM target (the detected host
 * profile) check them.
 */
import { z } from 'zod';
import type { KernelProfile } from '@ccmem/core';
import { bool, num } from './ops/fields.js';

/** each `requires:` key, the KernelProfile field it reads, and that field's default */
const FACTS = {
  guest_memfd: { field: 'guestMemfd', absent: true, says: 'CONFIG_KVM_GUEST_MEMFD' },
  tdp: { field: 'tdpEnabled', absent: true, says: 'TDP (EPT/NPT)' },
  tdp_mmu: { field: 'tdpMmu', absent: true, says: 'the TDP MMU' },
  mmio_caching: { field: 'mmioCaching', absent: true, says: 'MMIO caching' },
  smm: { field: 'smmAddressSpaces', absent: true, says: 'an SMM address space (CONFIG_KVM_SMM)' },
  memory_attributes: { field: 'memoryAttributes', absent: true, says: 'KVM_SET_MEMORY_ATTRIBUTES' },
  pre_fault_memory: { field: 'preFaultMemory', absent: true, says: 'KVM_PRE_FAULT_MEMORY' },
  max_vcpus: { field: 'maxVcpus', absent: 4096, says: 'KVM_MAX_VCPUS' },
  dirty_ring: { field: 'dirtyRing', absent: true, says: 'KVM_CAP_DIRTY_LOG_RING' },
  cpu_dirty_log_size: { field: 'cpuDirtyLogSize', absent: 0, says: 'dirty ring entries reserved for the CPU dirty log (PML)' },
  dirty_ring_relogs_each_run: { field: 'dirtyRingRelogsEachRun', absent: false, says: 'a page written in each KVM_RUN logged again' },
  dirty_ring_soft_full_at_limit: { field: 'dirtyRingSoftFullAtLimit', absent: true, says: 'KVM_EXIT_DIRTY_RING_FULL right at the soft limit' },
  read_fault_logs_writable_page: { field: 'readFaultLogsWritablePage', absent: true, says: 'a logged read of a host-writable page' },
} as const satisfies Record<string, { field: keyof KernelProfile; absent: boolean | number; says: string }>;

export const requiresSchema = z.strictObject({
  guest_memfd: bool().optional(),
  tdp: bool().optional(),
  tdp_mmu: bool().optional(),
  mmio_caching: bool().optional(),
  smm: bool().optional(),
  memory_attributes: bool().optional(),
  pre_fault_memory: bool().optional(),
  max_vcpus: num().optional(),
  dirty_ring: bool().optional(),
  cpu_dirty_log_size: num().optional(),
  dirty_ring_relogs_each_run: bool().optional(),
  dirty_ring_soft_full_at_limit: bool().optional(),
  read_fault_logs_writable_page: bool().optional(),
});
export type Requires = z.output<typeof requiresSchema>;

/** the first requirement `profile` does not meet, in words, or null when it meets them all */
export function unmetRequirement(requires: Requires | undefined, profile: KernelProfile): string | null {
  if (!requires) return null;
  for (const [key, want] of Object.entries(requires)) {
    if (want === undefined) continue;
    const fact = FACTS[key as keyof typeof FACTS];
    const have = (profile[fact.field] as boolean | number | undefined) ?? fact.absent;
    if (have !== want) {
      const what = typeof want === 'boolean' ? `${want ? '' : 'no '}${fact.says}` : `${fact.says} ${want}`;
      const got = typeof have === 'boolean' ? (have ? 'has it' : 'has not') : `has ${have}`;
      return `requires ${what}; the ${profile.name} profile ${got}`;
    }
  }
  return null;
}
