/**
 * The MMU invalidation protocol (include/linux/kvm_host.h, virt/kvm/kvm_main.c):
 * `mmu_invalidate_seq`, `mmu_invalidate_in_progress` and the accumulated range
 * `[mmu_invalidate_range_start, mmu_invalidate_range_end)`. Every invalidation is
 * begin → range_add (≥ 1) → end; a fault snapshots the sequence before resolving its pfn
 * and retries if an invalidation covering its gfn is in progress or the sequence moved.
 */
import { fail } from './errno.js';

/** INVALID_GPA as a gfn: no range accumulated yet. */
export const INVALID_GFN = -1;

export class MmuInvalidate {
  /** mmu_invalidate_seq */
  seq = 0;
  /** mmu_invalidate_in_progress */
  inProgress = 0;
  /** mmu_invalidate_range_start / _end (gfns); INVALID_GFN when none */
  rangeStart = INVALID_GFN;
  rangeEnd = INVALID_GFN;
  /** begin calls whose range_add never came (a kernel WARN) */
  warnings = 0;

  /** kvm_mmu_invalidate_begin() */
  begin(): void {
    this.inProgress++;
    if (this.inProgress === 1) {
      this.rangeStart = INVALID_GFN;
      this.rangeEnd = INVALID_GFN;
    }
  }

  /** kvm_mmu_invalidate_range_add(): widen the accumulated range */
  rangeAdd(start: number, end: number): void {
    if (this.inProgress <= 0) this.warnings++;
    if (this.rangeStart === INVALID_GFN) {
      this.rangeStart = start;
      this.rangeEnd = end;
    } else {
      if (start < this.rangeStart) this.rangeStart = start;
      if (end > this.rangeEnd) this.rangeEnd = end;
    }
  }

  /** kvm_mmu_invalidate_end(): seq++ then in_progress-- */
  end(): void {
    if (this.rangeStart === INVALID_GFN) this.warnings++;
    this.seq++;
    this.inProgress--;
    if (this.inProgress < 0) fail('EIO', 'kvm_mmu_invalidate_end: KVM_BUG_ON(mmu_invalidate_in_progress < 0)');
  }

  /**
   * mmu_invalidate_retry_gfn(): true when a fault that snapshotted `mmuSeq` must retry for
   * `gfn` — an invalidation in progress covers it (or has no range yet), or the sequence moved.
   */
  retryGfn(mmuSeq: number, gfn: number): boolean {
    if (this.inProgress > 0) {
      if (this.rangeStart === INVALID_GFN) return true;
      if (gfn >= this.rangeStart && gfn < this.rangeEnd) return true;
    }
    return this.seq !== mmuSeq;
  }
}
