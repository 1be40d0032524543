/**
 * The TDP page-walk iterator (arch/x86/kvm/mmu/tdp_iter.c): a pre-order walk over the SPTEs
 * that map [startGfn, endGfn), from a root down to `minLevel`. Every range operation of the
 * TDP MMU uses it, as `for_each_tdp_pte_min_level()` does in the kernel.
 *
 * One iterator object is reused; `next()` advances and returns false at the end, and the
 * current position is in public fields (no allocation per step):
 *
 *   it.start(pool, root, rootLevel, PG_LEVEL_4K, start, end);
 *   while (it.next()) { ... it.gfn, it.level, it.table, it.index, it.lo, it.hi ... }
 *
 * Like the kernel's iterator, stepping down re-reads the current SPTE, so a caller that
 * changes the entry in place (zaps it, links a table under it) steers the walk.
 */

import { SptPool } from './spt-pool.js';
import { isLargePte, spteIsPresent, sptePfn } from './spte.js';

/** KVM_PAGES_PER_HPAGE(level) for levels 0..6 (index 0 unused) */
export const PAGES_PER_LEVEL: readonly number[] = [0, 1, 512, 512 ** 2, 512 ** 3, 512 ** 4, 512 ** 5];

/** SPTE_INDEX(gfn << PAGE_SHIFT, level), exact for gfn < 2^53 */
export function spteIndex(gfn: number, level: number): number {
  return (gfn / PAGES_PER_LEVEL[level]!) & 511;
}

/**
 * gfn_round_for_level(). Up to level 4 a level's pages divide 2^32, so the low 32 bits of a
 * non-negative integer gfn give the offset without a float modulo (a libm call for a gfn
 * held as a double).
 */
export function gfnRoundForLevel(gfn: number, level: number): number {
  if (level === 1) return gfn;
  return gfn - (level <= 4 ? (gfn >>> 0) & (PAGES_PER_LEVEL[level]! - 1) : gfn % PAGES_PER_LEVEL[level]!);
}

export class TdpIter {
  /** first gfn mapped by the current SPTE */
  gfn = 0;
  /** level of the current SPTE (1 = 4K) */
  level = 0;
  /** table holding the current SPTE */
  table = -1;
  /** index of the current SPTE in its table */
  index = 0;
  /** current SPTE value (iter->old_spte), as halves */
  lo = 0;
  hi = 0;
  /** the chunk holding `table` and the offset of the current entry's low half in it */
  words: Int32Array = EMPTY;
  off = 0;
  valid = false;

  rootLevel = 0;
  minLevel = 1;
  /** the gfn the walk heads for next (iter->next_last_level_gfn) */
  nextLastLevelGfn = 0;
  endGfn = 0;
  /** tables on the path from the root (iter->pt_path), indexed by level - 1 */
  readonly ptPath = new Int32Array(6);

  private pool: SptPool | null = null;
  private started = false;

  /** tdp_iter_start(): position on the root SPTE covering `startGfn`. */
  start(pool: SptPool, root: number, rootLevel: number, minLevel: number, startGfn: number, endGfn: number): this {
    this.pool = pool;
    this.rootLevel = rootLevel;
    this.minLevel = minLevel;
    this.nextLastLevelGfn = startGfn;
    this.endGfn = endGfn;
    this.ptPath[rootLevel - 1] = root;
    this.level = rootLevel;
    this.gfn = gfnRoundForLevel(startGfn, rootLevel);
    this.refresh();
    this.valid = true;
    this.started = false;
    return this;
  }

  /**
   * Advances to the next SPTE (the first call yields the starting one). Returns false when
   * the walk is over or has passed endGfn.
   */
  next(): boolean {
    if (!this.started) {
      this.started = true;
      return this.valid && this.gfn < this.endGfn;
    }
    if (!this.tryStepDown()) {
      for (;;) {
        if (this.tryStepSide()) break;
        if (!this.tryStepUp()) {
          this.valid = false;
          return false;
        }
      }
    }
    return this.gfn < this.endGfn;
  }

  /** Writes the current SPTE (the caller keeps bookkeeping); updates lo/hi. */
  write(lo: number, hi: number): void {
    this.words[this.off] = lo;
    this.words[this.off + 1] = hi;
    this.lo = lo | 0;
    this.hi = hi | 0;
  }

  /** Re-reads the current SPTE from the table. */
  reread(): void {
    this.lo = this.words[this.off]!;
    this.hi = this.words[this.off + 1]!;
  }

  /** tdp_iter_refresh_sptep() */
  private refresh(): void {
    const t = this.ptPath[this.level - 1]!;
    this.table = t;
    this.index = (this.gfn / PAGES_PER_LEVEL[this.level]!) & 511;
    this.words = this.pool!.words(t);
    this.off = SptPool.base(t) + (this.index << 1);
    this.lo = this.words[this.off]!;
    this.hi = this.words[this.off + 1]!;
  }

  /** try_step_down(): into the table under a present non-leaf SPTE, towards the goal gfn */
  private tryStepDown(): boolean {
    if (this.level === this.minLevel) return false;
    this.reread();
    const lo = this.lo;
    if (!spteIsPresent(lo) || isLargePte(lo) || this.level === 1) return false;
    const child = sptePfn(lo, this.hi);
    this.level--;
    this.ptPath[this.level - 1] = child;
    this.gfn = gfnRoundForLevel(this.nextLastLevelGfn, this.level);
    this.refresh();
    return true;
  }

  /** try_step_side(): the next entry of the same table */
  private tryStepSide(): boolean {
    if (this.index === 511) return false;
    this.gfn += PAGES_PER_LEVEL[this.level]!;
    this.nextLastLevelGfn = this.gfn;
    this.index++;
    this.off += 2;
    this.lo = this.words[this.off]!;
    this.hi = this.words[this.off + 1]!;
    return true;
  }

  /** try_step_up(): back to the parent entry (already visited; the caller steps side) */
  private tryStepUp(): boolean {
    if (this.level === this.rootLevel) return false;
    this.level++;
    this.gfn = gfnRoundForLevel(this.gfn, this.level);
    this.refresh();
    return true;
  }
}

const EMPTY = new Int32Array(0);
