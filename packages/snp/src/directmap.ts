/**
 * The host kernel's direct map (the linear mapping of all physical memory) at 1G / 2M / 4K
 * granularity, and the RMP check a host write through it gets.
 *
 * Stored as ranges: every 1G region starts mapped by one 1G page; `split1G` records the 1G
 * regions split to 2M pages, `split2M` the 2M regions split to 4K pages, and a bitmap per 2M
 * region records 4K pages removed from the map (the `unmap` policy).
 *
 * Two policies decide what RMPUPDATE does to the direct map:
 *  - `split` (upstream since v6.11, arch/x86/virt/svm/sev.c adjust_direct_map()): before a 4K
 *    RMPUPDATE of a frame that sits inside a 2M or 1G mapping, split that mapping to 4K
 *    (set_memory_4k). A 2M RMPUPDATE needs nothing. The split is never undone.
 *  - `unmap` (the earlier SNP host series, seed thread 002): remove the frame from the direct
 *    map before shared→private (set_direct_map_invalid_noflush) and put it back after
 *    private→shared. A frame removed from the map cannot be touched by the host kernel at all.
 *
 * The RMP check (APM vol. 2 "RMP and VMPL access checks", kernel comment above
 * adjust_direct_map): a host write is checked at the page size of the host mapping it goes
 * through, so a write through a 2M mapping faults if *any* 4K frame in that 2M is assigned,
 * even when the target frame is shared. A 1G mapping is checked as 2M ("even accesses from
 * 1GB mappings will be treated as 2MB accesses as far as RMP table checks are concerned").
 */
import { ERRNO, PG_LEVEL_1G, PG_LEVEL_2M, PG_LEVEL_4K } from '@ccmem/core';
import type { Rmp } from './rmp.js';

export type DirectMapPolicy = 'split' | 'unmap';

export const PAGES_PER_2M = 512;
export const PAGES_PER_1G = 512 * 512;

export interface DirectMapStats {
  /** 1G mappings split to 2M */
  splits1G: number;
  /** 2M mappings split to 4K */
  splits2M: number;
  /** 4K frames removed from the map */
  unmaps: number;
  /** 4K frames put back */
  restores: number;
}

export class DirectMap {
  readonly maxPfn: number;
  private readonly split1G = new Set<number>();
  private readonly split2M = new Set<number>();
  /** 2M region index → bitmap of its 512 frames that are NOT mapped */
  private readonly holes = new Map<number, Uint32Array>();
  readonly stats: DirectMapStats = { splits1G: 0, splits2M: 0, unmaps: 0, restores: 0 };
  /**
   * The 2M region last found in `split2M` (-1: none). Splits are never undone, so the answer
   * cannot go stale: a run of 4K RMPUPDATEs in one 2M region looks the set up once.
   */
  private last4kRegion = -1;

  constructor(opts: { maxPfn: number }) {
    this.maxPfn = opts.maxPfn;
  }

  /** pfn_valid() for the model: inside host memory */
  pfnValid(pfn: number): boolean {
    return Number.isInteger(pfn) && pfn >= 0 && pfn < this.maxPfn;
  }

  /** lookup_address(): the level of the mapping covering `pfn` (PG_LEVEL_*), 0 if none */
  mappingLevel(pfn: number): number {
    if (!this.pfnValid(pfn) || !this.isPresent(pfn)) return 0;
    if (!this.split1G.has(Math.floor(pfn / PAGES_PER_1G))) return PG_LEVEL_1G;
    if (!this.split2M.has(Math.floor(pfn / PAGES_PER_2M))) return PG_LEVEL_2M;
    return PG_LEVEL_4K;
  }

  /** the frame has a present direct-map entry */
  isPresent(pfn: number): boolean {
    if (!this.pfnValid(pfn)) return false;
    const h = this.holes.get(Math.floor(pfn / PAGES_PER_2M));
    if (h === undefined) return true;
    const i = pfn % PAGES_PER_2M;
    return (h[i >>> 5]! & (1 << (i & 31))) === 0;
  }

  /** split the 1G mapping covering `pfn` into 2M mappings (its 2M mapping stays) */
  private splitTo2M(pfn: number): void {
    const g = Math.floor(pfn / PAGES_PER_1G);
    if (!this.split1G.has(g)) {
      this.split1G.add(g);
      this.stats.splits1G++;
    }
  }

  /** set_memory_4k() on one frame: split its 1G and 2M mappings down to 4K */
  setMemory4k(pfn: number): void {
    const g = Math.floor(pfn / PAGES_PER_1G);
    if (!this.split1G.has(g)) {
      this.split1G.add(g);
      this.stats.splits1G++;
    }
    const m = Math.floor(pfn / PAGES_PER_2M);
    if (!this.split2M.has(m)) {
      this.split2M.add(m);
      this.stats.splits2M++;
    }
  }

  /**
   * adjust_direct_map(pfn, rmp_level) as upstream: 0 or -EINVAL. Splits the mapping around a
   * frame that is about to get a 4K RMP entry.
   */
  adjustDirectMap(pfn: number, rmpLevel: number): number {
    if (rmpLevel > PG_LEVEL_2M) return -ERRNO.EINVAL;
    if (!this.pfnValid(pfn)) return -ERRNO.EINVAL;
    if (rmpLevel === PG_LEVEL_2M && (pfn % PAGES_PER_2M !== 0 || !this.pfnValid(pfn + PAGES_PER_2M - 1))) return -ERRNO.EINVAL;
    // a whole 2M transition: even a 1G mapping is checked as 2M, so nothing can collide
    if (rmpLevel === PG_LEVEL_2M) return 0;
    // a 2M region already mapped at 4K (its 1G region was split with it): nothing to split,
    // whether or not the frame is present
    const m = Math.floor(pfn / PAGES_PER_2M);
    if (m === this.last4kRegion) return 0;
    if (this.split2M.has(m)) {
      this.last4kRegion = m;
      return 0;
    }
    const level = this.mappingLevel(pfn);
    if (level === 0 || level === PG_LEVEL_4K) return 0;
    this.setMemory4k(pfn);
    return 0;
  }

  /**
   * set_direct_map_invalid_noflush() on [pfn, pfn+npages): remove frames from the map (the
   * `unmap` policy). Removing a 4K frame from a large mapping splits it first, as CPA does.
   * Returns the number of frames that were present.
   */
  unmap(pfn: number, npages: number): number {
    let n = 0;
    for (let p = pfn; p < pfn + npages; p++) {
      if (!this.isPresent(p)) continue;
      const head = p - (p % PAGES_PER_2M);
      if (head >= pfn && head + PAGES_PER_2M <= pfn + npages) {
        // the whole aligned 2M block goes: CPA only splits a 1G mapping above it down to 2M
        this.splitTo2M(p);
      } else {
        this.setMemory4k(p);
      }
      const m = Math.floor(p / PAGES_PER_2M);
      let h = this.holes.get(m);
      if (h === undefined) {
        h = new Uint32Array(PAGES_PER_2M / 32);
        this.holes.set(m, h);
      }
      const i = p % PAGES_PER_2M;
      h[i >>> 5] = h[i >>> 5]! | (1 << (i & 31));
      n++;
    }
    this.stats.unmaps += n;
    return n;
  }

  /** set_direct_map_default_noflush() on [pfn, pfn+npages): put frames back (at 4K) */
  restore(pfn: number, npages: number): number {
    let n = 0;
    for (let p = pfn; p < pfn + npages; p++) {
      if (!this.pfnValid(p) || this.isPresent(p)) continue;
      const m = Math.floor(p / PAGES_PER_2M);
      const h = this.holes.get(m)!;
      const i = p % PAGES_PER_2M;
      h[i >>> 5] = h[i >>> 5]! & ~(1 << (i & 31));
      if (h.every((x) => x === 0)) this.holes.delete(m);
      n++;
    }
    this.stats.restores += n;
    return n;
  }

  /**
   * A host kernel write through the direct map to `pfn`: null when it completes, otherwise
   * why it faults. The RMP check uses the mapping's page size (1G is checked as 2M).
   */
  checkHostWrite(pfn: number, rmp: Rmp): string | null {
    const level = this.mappingLevel(pfn);
    if (level === 0) return `#PF: pfn 0x${pfn.toString(16)} is not mapped in the direct map (kernel oops)`;
    return rmpCheckHostWrite(rmp, pfn, level, 'direct map');
  }

  /** a host kernel read: only a missing mapping faults (the RMP lets the host read ciphertext) */
  checkHostRead(pfn: number): string | null {
    if (this.mappingLevel(pfn) === 0) return `#PF: pfn 0x${pfn.toString(16)} is not mapped in the direct map (kernel oops)`;
    return null;
  }

  /** every frame not mapped, ascending within each 2M region */
  forEachUnmapped(fn: (pfn: number) => void): void {
    for (const [m, h] of this.holes) {
      for (let i = 0; i < PAGES_PER_2M; i++) if ((h[i >>> 5]! >>> (i & 31)) & 1) fn(m * PAGES_PER_2M + i);
    }
  }

  /** frames not mapped */
  get unmappedPages(): number {
    let n = 0;
    for (const h of this.holes.values()) for (const w of h) n += popcount32(w);
    return n;
  }

  /** 2M regions mapped at 4K */
  get split2MCount(): number {
    return this.split2M.size;
  }

  /** read-only description of the mapping of one frame */
  inspect(pfn: number): { pfn: number; present: boolean; level: number; levelName: string } {
    const level = this.mappingLevel(pfn);
    return { pfn, present: level !== 0, level, levelName: level === 0 ? 'none' : (['', '4K', '2M', '1G'][level] ?? '?') };
  }
}

/**
 * The RMP check for a host (ASID 0) write to `pfn` through a host mapping of `level`
 * (direct map or a user mapping): #PF with PFERR bit 31 (X86_PF_RMP) if the mapping's page —
 * 4K, or the 2M region for 2M and 1G mappings — contains an assigned frame.
 */
export function rmpCheckHostWrite(rmp: Rmp, pfn: number, level: number, via: string): string | null {
  if (level <= PG_LEVEL_4K) {
    return rmp.isAssigned(pfn) ? `RMP #PF: host write through a 4K ${via} mapping to assigned pfn 0x${pfn.toString(16)}` : null;
  }
  if (rmp.assignedIn2M(pfn) > 0) {
    const what = rmp.isAssigned(pfn) ? 'assigned' : 'shared';
    return `RMP #PF: host write to ${what} pfn 0x${pfn.toString(16)} through a ${level >= PG_LEVEL_1G ? '1G' : '2M'} ${via} mapping whose 2M region holds an assigned page`;
  }
  return null;
}

function popcount32(x: number): number {
  x = x - ((x >>> 1) & 0x55555555);
  x = (x & 0x33333333) + ((x >>> 2) & 0x33333333);
  return (((x + (x >>> 4)) & 0x0f0f0f0f) * 0x01010101) >>> 24;
}
