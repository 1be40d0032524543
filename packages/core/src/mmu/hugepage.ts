/**
 * Mapping-level rules (mmu-and-vendors.md §A.6): `lpage_info.disallow_lpage` and
 * `kvm_mmu_hugepage_adjust()` / `kvm_mmu_max_mapping_level()`.
 *
 * The kernel stores disallow_lpage per huge page per slot (an int array sized by the slot)
 * and recomputes the KVM_LPAGE_MIXED_FLAG bits in the post-attribute hook. The model derives
 * both on demand: slot-edge and hva-alignment rules from the slot's geometry, MIXED from the
 * attribute range map (a huge page is mixed iff an attribute run boundary falls strictly
 * inside it). That costs O(log runs) per fault and nothing per huge page, and gives the same
 * answers (property-tested against a per-page reference in hugepage.test.ts).
 */
import { KVM_MEM_PCI_HOLE, KVM_MEMSLOT_GMEM_ONLY, PG_LEVEL_1G, PG_LEVEL_4K } from '../uapi.js';
import { PAGES_PER_LEVEL } from './tdp-iter.js';
import { kvmSlotDirtyTrackEnabled, type KvmMemorySlot } from '../memslot/memslot.js';
import type { RangeMap } from '../range-map.js';
import type { FaultVm } from './fault-vm.js';
import type { KvmPageFault } from './page-fault.js';

/** KVM_MAX_HUGEPAGE_LEVEL on x86 */
export const KVM_MAX_HUGEPAGE_LEVEL = PG_LEVEL_1G;

/**
 * lpage_info_slot(gfn, slot, level)->disallow_lpage != 0: huge page at `level` around `gfn`
 * may not be mapped huge in `slot`.
 */
export function disallowLpage(
  slot: KvmMemorySlot,
  gfn: number,
  level: number,
  attributes: RangeMap | null,
): boolean {
  const n = PAGES_PER_LEVEL[level]!;
  const start = gfn - (gfn % n);
  // head / tail huge pages that stick out of the slot (kvm_alloc_memslot_metadata)
  if (start < slot.baseGfn || start + n > slot.baseGfn + slot.npages) return true;
  // gfn and hva disagree on their offset within a huge page: never line up
  const ugfn = Math.floor(slot.userspaceAddr / 4096);
  if (slot.baseGfn % n !== ugfn % n) return true;
  // KVM_MEM_PCI_HOLE slots are never mapped huge (RFC)
  if (slot.flags & KVM_MEM_PCI_HOLE) return true;
  // KVM_LPAGE_MIXED_FLAG: the huge page's gfns do not all have the same attributes
  if (attributes && attributes.hasBoundaryIn(start, start + n)) return true;
  return false;
}

/**
 * kvm_mmu_hugepage_adjust(): sets fault.reqLevel / goalLevel and aligns fault.pfn down to
 * the huge page. (The NX huge-page mitigation is not modelled: it is off on hosts without
 * the iTLB-multihit erratum.)
 */
export function kvmMmuHugepageAdjust(vm: FaultVm, fault: KvmPageFault): void {
  fault.goalLevel = fault.reqLevel = PG_LEVEL_4K;
  const slot = fault.slot;
  if (!slot || fault.maxLevel === PG_LEVEL_4K || fault.pfn < 0) return;
  if (kvmSlotDirtyTrackEnabled(slot)) return; // 4K while logging (bitmap or dirty ring)

  let level = Math.min(fault.maxLevel, KVM_MAX_HUGEPAGE_LEVEL);
  const viaGmem = fault.isPrivate || (slot.flags & KVM_MEMSLOT_GMEM_ONLY) !== 0;
  // host_pfn_mapping_level() caps a shared mapping. The kernel applies it after the
  // lpage_info loop; applying it first gives the same level (disallow_lpage is monotone:
  // a huge page that may not be mapped at 2M may not be mapped at 1G either) and skips the
  // loop for 4K host pages.
  if (!viaGmem && fault.hostLevel < level) level = fault.hostLevel;
  if (level === PG_LEVEL_4K) return;
  const attrs = vm.hasPrivateMem ? vm.attributes : null;
  while (level > PG_LEVEL_4K && disallowLpage(slot, fault.gfn, level, attrs)) level--;
  if (level === PG_LEVEL_4K) return;

  if (viaGmem) {
    // kvm_gmem_max_mapping_level(): the vendor may lower it (SNP: RMP level, TDX: 4K private)
    const vendor = vm.backend?.gmemMaxMappingLevel?.(fault.pfn, fault.isPrivate) ?? 0;
    if (vendor > 0 && vendor < level) level = vendor;
  }
  if (level <= PG_LEVEL_4K) return;
  fault.reqLevel = fault.goalLevel = level;
  const n = PAGES_PER_LEVEL[level]!;
  fault.pfn -= fault.pfn % n;
}
