/** Shared types of the explorer. */

/**
 * What a phase touches: a gfn range, or everything (`global`: an atomic action, a hole punch,
 * a default VM's zap-all), plus the VM-wide state it reads or writes besides its range
 * (`reads`/`writes`, bitmasks of SHARED_*).
 */
export interface Footprint {
  lo: number;
  hi: number;
  global: boolean;
  /** SHARED_* the phase reads */
  reads?: number;
  /** SHARED_* the phase writes */
  writes?: number;
}

/**
 * The MMU-notifier invalidation state (mmu_invalidate_seq, _in_progress, _range_start/end):
 * written by kvm_mmu_invalidate_begin()/end(), read by a fault's kvm_mmu_faultin_pfn()
 * (snapshot, mmu_invalidate_retry_gfn_unsafe) and is_page_fault_stale(). A fault on another
 * page still sees the sequence count move, so these do not commute whatever their ranges.
 */
export const SHARED_INVALIDATE = 1;
/** the memslot array and its generation (kvm_swap_active_memslots()), read by the MMIO SPTE check */
export const SHARED_MEMSLOTS = 2;

/**
 * What the explorer re-checks after a phase (Actor.checkRange): the SPTEs overlapping
 * [lo, hi) (everything when global), and the memslot rules when the phase can change memslots.
 */
export interface CheckRange extends Footprint {
  memslots: boolean;
}

export const GLOBAL: Footprint = Object.freeze({ lo: 0, hi: Number.MAX_SAFE_INTEGER, global: true });

/** check everything */
export const CHECK_ALL: CheckRange = Object.freeze({ lo: 0, hi: Number.MAX_SAFE_INTEGER, global: true, memslots: true });

/**
 * Two phases commute when neither is global, neither writes VM-wide state the other reads or
 * writes, and their gfn ranges are disjoint.
 */
export function independent(a: Footprint, b: Footprint): boolean {
  if (a.global || b.global) return false;
  const aw = a.writes ?? 0;
  const bw = b.writes ?? 0;
  if (aw & ((b.reads ?? 0) | bw) || bw & (a.reads ?? 0)) return false;
  return a.hi <= b.lo || b.hi <= a.lo;
}

export type ExploreMode = 'exhaustive' | 'random' | 'pct';
