/** Shared types of the explorer. */

/** What a phase touches: a gfn range, or everything (an invalidation begin/end, an atomic action). */
export interface Footprint {
  lo: number;
  hi: number;
  global: boolean;
}

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

/** Two phases commute when they touch disjoint gfn ranges and neither is global. */
export function independent(a: Footprint, b: Footprint): boolean {
  if (a.global || b.global) return false;
  return a.hi <= b.lo || b.hi <= a.lo;
}

export type ExploreMode = 'exhaustive' | 'random' | 'pct';
