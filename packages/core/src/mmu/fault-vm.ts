/**
 * What the fault path needs from the VM. @ccmem/core's Vm implements it; keeping it narrow
 * keeps the fault path testable and free of the VM's other concerns.
 */
import type { KernelProfile, VendorBackend } from '../backend.js';
import type { MmuInvalidate } from '../invalidate.js';
import type { KvmMemorySlot } from '../memslot/memslot.js';
import type { RangeMap } from '../range-map.js';
import type { KvmPageFault } from './page-fault.js';

/** Switches that break a kernel rule on purpose, so the explorer can show what the rule prevents. */
export interface FaultInjection {
  /** skip the mmu_invalidate_retry_gfn() check under mmu_lock (is_page_fault_stale) */
  skipRetryCheck: boolean;
}

export interface FaultVm {
  readonly mmuInvalidate: MmuInvalidate;
  readonly faultInjection: FaultInjection;
  readonly hasPrivateMem: boolean;
  /** kvm->mem_attr_array as ranges */
  readonly attributes: RangeMap;
  readonly backend: VendorBackend | null;
  /** the kernel profile the VM follows (absent: upstream) */
  readonly profile?: KernelProfile;
  /** kvm_mem_is_private() */
  memIsPrivate(gfn: number): boolean;
  /** kvm_mmu_max_gfn() (absent: no limit beyond the MMU's) */
  readonly maxGfn?: number;
  /** the slot of `gfn` in address space 0, INVALID slots included */
  gfnToMemslot(gfn: number): KvmMemorySlot | null;
  /** GUP for a shared fault: fills fault.pfn / hostLevel / mapWritable; 0 or -errno */
  hvaToPfn(hva: number, write: boolean, fault: KvmPageFault): number;
  /** kvm_tdp_mmu_map() for the prepared fault: RET_PF_* or -errno */
  tdpMmuMap(fault: KvmPageFault): number;
  /** a writable SPTE was installed (make_spte: mark_page_dirty_in_slot when logging) */
  markMappedWritable(fault: KvmPageFault): void;
}
