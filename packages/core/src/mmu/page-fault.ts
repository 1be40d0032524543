/**
 * The x86 TDP fault path (arch/x86/kvm/mmu/mmu.c, mmu-and-vendors.md §A.4):
 * `struct kvm_page_fault`, `kvm_mmu_faultin_pfn()` (phase 1, no mmu_lock) and
 * `is_page_fault_stale()` + `kvm_tdp_mmu_map()` (phase 2, under mmu_lock).
 * Returns RET_PF_* or a negative errno, like the kernel.
 */
import { ERRNO } from '../errno.js';
import { KVM_MEM_LOG_DIRTY_PAGES, KVM_MEM_PCI_HOLE, KVM_MEM_READONLY, KVM_MEMSLOT_GMEM_ONLY, KVM_MEMSLOT_INVALID, PAGE_SHIFT, PG_LEVEL_1G, PG_LEVEL_4K } from '../uapi.js';
import type { GmemPfn } from '../backend.js';
import { RET_PF_CONTINUE, RET_PF_EMULATE, RET_PF_FIXED, RET_PF_RETRY } from './mmu-internal.js';
import type { KvmMemorySlot } from '../memslot/memslot.js';
import { kvmMmuHugepageAdjust } from './hugepage.js';
import type { FaultVm } from './fault-vm.js';

/** `struct kvm_page_fault`: one per vCPU, reset for each fault (the kernel's is on the stack). */
export class KvmPageFault {
  /** the faulting gpa, including a TDX shared bit */
  addr = 0;
  /** gpa_to_gfn(addr) with kvm_gfn_direct_bits() cleared */
  gfn = 0;
  // error-code bits (PFERR_*), kept as booleans: the u64 error code has bits above 31
  exec = false;
  write = false;
  present = false;
  rsvd = false;
  user = false;
  /** PFERR_PRIVATE_ACCESS */
  isPrivate = false;
  /** prefetch / pre-fault: no vCPU is waiting on this access */
  prefetch = false;
  maxLevel = PG_LEVEL_1G;
  reqLevel = PG_LEVEL_4K;
  goalLevel = PG_LEVEL_4K;
  slot: KvmMemorySlot | null = null;
  /** snapshot of mmu_invalidate_seq taken before resolving the pfn */
  mmuSeq = 0;
  pfn = -1;
  /** host mapping level of the pfn (host_pfn_mapping_level), for shared memory */
  hostLevel = PG_LEVEL_4K;
  mapWritable = false;
  /** the read is served in-kernel by a KVM_MEM_PCI_HOLE slot (all-ones) */
  pciHoleRead = false;
  /** the fault ended in a KVM_EXIT_MEMORY_FAULT (flags/gpa/size for kvm_run) */
  memoryFaultExit = false;
  /** why the fault failed or was emulated, for traces and failing-step explanations */
  reason = '';
  readonly gmemOut: GmemPfn = { pfn: 0, maxOrder: 0 };

  reset(addr: number, gfn: number): void {
    this.addr = addr;
    this.gfn = gfn;
    this.exec = this.write = this.present = this.rsvd = this.user = false;
    this.isPrivate = this.prefetch = false;
    this.maxLevel = PG_LEVEL_1G;
    this.reqLevel = this.goalLevel = PG_LEVEL_4K;
    this.slot = null;
    this.mmuSeq = 0;
    this.pfn = -1;
    this.hostLevel = PG_LEVEL_4K;
    this.mapWritable = false;
    this.pciHoleRead = false;
    this.memoryFaultExit = false;
    this.reason = '';
  }
}

/** kvm_max_level_for_order() */
export function kvmMaxLevelForOrder(order: number): number {
  if (order >= 18) return PG_LEVEL_1G;
  if (order >= 9) return 2;
  return PG_LEVEL_4K;
}

function memoryFault(fault: KvmPageFault, reason: string): number {
  fault.memoryFaultExit = true;
  fault.reason = reason;
  return -ERRNO.EFAULT;
}

/**
 * Phase 1, `kvm_mmu_faultin_pfn()`: no mmu_lock. Snapshots the sequence, checks the
 * private/shared attribute, finds the slot and resolves the pfn. Returns RET_PF_CONTINUE
 * when phase 2 should run.
 */
export function kvmMmuFaultinPfn(vm: FaultVm, fault: KvmPageFault): number {
  const inv = vm.mmuInvalidate;
  fault.mmuSeq = inv.seq;

  // Private/shared mismatch: the guest asks for a conversion (implicit); userspace decides.
  if (vm.memIsPrivate(fault.gfn) !== fault.isPrivate) {
    return memoryFault(fault, fault.isPrivate ? 'private access to a shared gfn' : 'shared access to a private gfn');
  }

  const slot = vm.gfnToMemslot(fault.gfn);
  fault.slot = slot;
  if (!slot) {
    // kvm_handle_noslot_fault(): private memory is never emulated
    if (fault.isPrivate) return memoryFault(fault, 'private access with no memslot');
    fault.reason = 'no memslot: emulated MMIO';
    // with MMIO caching the fault goes on to install an MMIO SPTE (kvm_tdp_mmu_map() →
    // make_mmio_spte()); without it, or above kvm_mmu_max_gfn(), emulate at once. (Vendor VM
    // types keep the immediate emulation in the model: their MMIO goes through #VC / #VE.)
    if (vm.profile?.mmioCaching === false || vm.backend !== null || fault.gfn > (vm.maxGfn ?? Infinity)) return RET_PF_EMULATE;
    return RET_PF_CONTINUE;
  }
  if (slot.flags & KVM_MEMSLOT_INVALID) {
    fault.reason = 'memslot is being deleted or moved (KVM_MEMSLOT_INVALID)';
    return fault.prefetch ? -ERRNO.EAGAIN : RET_PF_RETRY;
  }
  if (vm.mmuInvalidate.inProgress > 0 && inv.retryGfn(fault.mmuSeq, fault.gfn)) {
    fault.reason = 'mmu_invalidate_retry_gfn_unsafe';
    return RET_PF_RETRY;
  }

  // KVM_MEM_PCI_HOLE (2020 RFC): reads return all-ones in the kernel, writes go to userspace.
  if (slot.flags & KVM_MEM_PCI_HOLE) {
    if (!fault.write && !fault.exec) fault.pciHoleRead = true;
    fault.reason = fault.pciHoleRead ? 'KVM_MEM_PCI_HOLE read' : 'KVM_MEM_PCI_HOLE write: emulated MMIO';
    return RET_PF_EMULATE;
  }

  if (fault.isPrivate || (slot.flags & KVM_MEMSLOT_GMEM_ONLY) !== 0) {
    // kvm_mmu_faultin_pfn_gmem()
    const file = slot.gmemFile;
    if (!file) return memoryFault(fault, 'private access to a memslot without guest_memfd');
    const r = file.getPfn(slot, fault.gfn, fault.gmemOut);
    if (r < 0) {
      fault.memoryFaultExit = true;
      fault.reason = `kvm_gmem_get_pfn failed (${r})`;
      return r;
    }
    fault.pfn = fault.gmemOut.pfn;
    fault.maxLevel = Math.min(fault.maxLevel, kvmMaxLevelForOrder(fault.gmemOut.maxOrder));
    fault.mapWritable = !(slot.flags & KVM_MEM_READONLY);
  } else {
    // __kvm_faultin_pfn(): hva → pfn through the VMM's page tables (GUP)
    const hva = slot.userspaceAddr + (fault.gfn - slot.baseGfn) * 4096;
    const readonly = (slot.flags & KVM_MEM_READONLY) !== 0;
    if (readonly && fault.write) {
      fault.reason = 'write to a read-only memslot: emulated MMIO';
      return RET_PF_EMULATE;
    }
    const r = vm.hvaToPfn(hva, fault.write, fault);
    if (r < 0) {
      if (vm.profile?.unfaultableHvaEmulatesMmio) {
        // a kernel whose fault path emulates the access instead (profile docs/profiles.md)
        fault.reason = `no host page at hva 0x${hva.toString(16)}: emulated MMIO`;
        return RET_PF_EMULATE;
      }
      // kvm_handle_error_pfn(): -EFAULT with a memory-fault exit
      return memoryFault(fault, `no host page at hva 0x${hva.toString(16)}`);
    }
    if (readonly) fault.mapWritable = false;
    // a kernel that maps a read fault of a dirty-logged page read-only, so the read is not
    // logged (KernelProfile.readFaultLogsWritablePage, measured on the PVM host)
    else if (!fault.write && vm.profile?.readFaultLogsWritablePage === false && slot.flags & KVM_MEM_LOG_DIRTY_PAGES) fault.mapWritable = false;
  }

  if (vm.mmuInvalidate.inProgress > 0 && inv.retryGfn(fault.mmuSeq, fault.gfn)) {
    fault.reason = 'mmu_invalidate_retry_gfn_unsafe (after pfn)';
    return RET_PF_RETRY;
  }
  return RET_PF_CONTINUE;
}

/**
 * Phase 2, under mmu_lock: `is_page_fault_stale()` then `kvm_tdp_mmu_map()`.
 * The skip switch exists for the explorer's fault injection only.
 */
export function kvmTdpMmuMapFault(vm: FaultVm, fault: KvmPageFault): number {
  if (!vm.faultInjection.skipRetryCheck && vm.mmuInvalidate.retryGfn(fault.mmuSeq, fault.gfn)) {
    fault.reason = 'is_page_fault_stale: mmu_invalidate_retry_gfn';
    return RET_PF_RETRY;
  }
  kvmMmuHugepageAdjust(vm, fault);
  const r = vm.tdpMmuMap(fault);
  if (r === RET_PF_FIXED && fault.slot && fault.mapWritable) vm.markMappedWritable(fault);
  return r;
}

export const GFN_SHIFT = PAGE_SHIFT;
