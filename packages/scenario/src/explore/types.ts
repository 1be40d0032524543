/** Shared types of the explorer. */

/** What a phase touches: a gfn range, or everything (an invalidation begin/end, an atomic action). */
export interface Footprint {
  lo: number;
  hi: number;
  global: boolean;
}

export const GLOBAL: Footprint = Object.freeze({ lo: 0, hi: Number.MAX_SAFE_INTEGER, global: true });

/** Two phases commute when they touch disjoint gfn ranges and neither is global. */
export function independent(a: Footprint, b: Footprint): boolean {
  if (a.global || b.global) return false;
  return a.hi <= b.lo || b.hi <= a.lo;
}

export type ExploreMode = 'exhaustive' | 'random' | 'pct';
