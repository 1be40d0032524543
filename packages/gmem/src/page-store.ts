/**
 * The page cache of a guest_memfd inode (`inode->i_mapping`): which file page (pgoff) is
 * backed by which host frame, plus the folio flags the provider cares about.
 *
 * Storage is sparse: 512-entry chunks (one 2 MiB granule each) are created on first use and
 * dropped when they become empty, so a 1 TiB file costs memory only for what was allocated.
 * guest_memfd folios are always order-0 upstream (kvm_gmem_get_folio() WARNs otherwise), so
 * one entry is one 4 KiB folio.
 *
 * fallocate() allocates without choosing frames: the range is *reserved* (kept as runs, so
 * allocating 1 TiB costs O(runs), not O(pages)) and each page gets its frame on first use
 * (a fault, populate, a host touch, memory failure, inspection). A reserved page counts as
 * allocated; reserved pages never have a frame (insert() ends the reservation).
 */
import { KEY_LIMIT, RangeMap } from '@ccmem/core';

/** folio_test_uptodate(): contents were zeroed or populated, the guest may see them */
export const PAGE_UPTODATE = 1 << 0;
/** folio_test_hwpoison(): memory failure hit this page */
export const PAGE_HWPOISON = 1 << 1;
/** the vendor's gmem_prepare hook succeeded at least once for this page (inspection only) */
export const PAGE_PREPARED = 1 << 2;

const CHUNK_SHIFT = 9;
const CHUNK_PAGES = 1 << CHUNK_SHIFT;
const CHUNK_MASK = CHUNK_PAGES - 1;

interface Chunk {
  /**
   * pfn + 1 per page; 0 = hole. Int32 (host pfns are below 2^31): a pfn read back is a small
   * integer, so the RMP / PAMT / frame lookups it feeds do integer arithmetic.
   */
  readonly pfn: Int32Array;
  readonly flags: Uint8Array;
  present: number;
}

export class GmemPageStore {
  private readonly chunks = new Map<number, Chunk>();
  private lastIdx = -1;
  private last: Chunk | undefined = undefined;
  /** folios in the page cache */
  nrPages = 0;
  /** poisoned folios still in the page cache */
  nrPoisoned = 0;
  /** pages allocated by fallocate that have no frame yet */
  nrReserved = 0;
  private readonly reserved = new RangeMap(0);

  private chunk(idx: number): Chunk | undefined {
    if (idx === this.lastIdx) return this.last;
    const c = this.chunks.get(idx);
    this.lastIdx = idx;
    this.last = c;
    return c;
  }

  /** the pfn at `pgoff`, or -1 for a hole */
  pfnAt(pgoff: number): number {
    const c = this.chunk(Math.floor(pgoff / CHUNK_PAGES));
    if (c === undefined) return -1;
    return c.pfn[pgoff & CHUNK_MASK]! - 1;
  }

  flagsAt(pgoff: number): number {
    const c = this.chunk(Math.floor(pgoff / CHUNK_PAGES));
    return c === undefined ? 0 : c.flags[pgoff & CHUNK_MASK]!;
  }

  setFlags(pgoff: number, bits: number): void {
    const c = this.chunk(Math.floor(pgoff / CHUNK_PAGES));
    if (c === undefined || c.pfn[pgoff & CHUNK_MASK] === 0) throw new Error(`no page at pgoff ${pgoff}`);
    const i = pgoff & CHUNK_MASK;
    if (bits & PAGE_HWPOISON && !(c.flags[i]! & PAGE_HWPOISON)) this.nrPoisoned++;
    c.flags[i] = c.flags[i]! | bits;
  }

  /** add a folio at a hole (filemap_add_folio); flags start clear (not up to date) */
  insert(pgoff: number, pfn: number): void {
    if (!(pfn >= 0 && pfn < 0x7fffffff)) throw new RangeError(`pfn ${pfn} beyond 2^31 - 1`);
    const idx = Math.floor(pgoff / CHUNK_PAGES);
    let c = this.chunk(idx);
    if (c === undefined) {
      c = { pfn: new Int32Array(CHUNK_PAGES), flags: new Uint8Array(CHUNK_PAGES), present: 0 };
      this.chunks.set(idx, c);
      this.lastIdx = idx;
      this.last = c;
    }
    if (this.nrReserved > 0 && this.reserved.get(pgoff) !== 0) {
      this.reserved.set(pgoff, pgoff + 1, 0);
      this.nrReserved--;
    }
    const i = pgoff & CHUNK_MASK;
    if (c.pfn[i] !== 0) throw new Error(`pgoff ${pgoff} already has a page`);
    c.pfn[i] = pfn + 1;
    c.flags[i] = 0;
    c.present++;
    this.nrPages++;
  }

  /**
   * Remove every folio in [start, end), calling `onRemove(pgoff, pfn, flags)` for each in
   * index order (truncate_inode_pages_range). Touches only the chunks that exist.
   */
  removeRange(start: number, end: number, onRemove: (pgoff: number, pfn: number, flags: number) => void): number {
    if (end > start && this.nrReserved > 0) this.unreserve(start, end);
    if (end <= start || this.nrPages === 0) return 0;
    let removed = 0;
    for (const idx of this.chunkIndicesIn(start, end)) {
      const c = this.chunks.get(idx)!;
      const base = idx * CHUNK_PAGES;
      const lo = Math.max(start, base) - base;
      const hi = Math.min(end, base + CHUNK_PAGES) - base;
      for (let i = lo; i < hi; i++) {
        const p = c.pfn[i]!;
        if (p === 0) continue;
        const flags = c.flags[i]!;
        c.pfn[i] = 0;
        c.flags[i] = 0;
        c.present--;
        this.nrPages--;
        if (flags & PAGE_HWPOISON) this.nrPoisoned--;
        removed++;
        onRemove(base + i, p - 1, flags);
      }
      if (c.present === 0) {
        this.chunks.delete(idx);
        if (this.lastIdx === idx) {
          this.lastIdx = -1;
          this.last = undefined;
        }
      }
    }
    return removed;
  }

  /** call `fn` for every present page in [start, end), in index order, without changing anything */
  forEachIn(start: number, end: number, fn: (pgoff: number, pfn: number, flags: number) => void): void {
    for (const idx of this.chunkIndicesIn(start, end)) {
      const c = this.chunks.get(idx)!;
      const base = idx * CHUNK_PAGES;
      const lo = Math.max(start, base) - base;
      const hi = Math.min(end, base + CHUNK_PAGES) - base;
      for (let i = lo; i < hi; i++) if (c.pfn[i] !== 0) fn(base + i, c.pfn[i]! - 1, c.flags[i]!);
    }
  }

  /** fallocate(): every hole in [start, end) becomes allocated (reserved, no frame yet) */
  reserve(start: number, end: number): void {
    let at = start;
    const gap = (lo: number, hi: number) => {
      if (lo >= hi) return;
      this.reserved.forEachRun(lo, hi, (s, e, v) => {
        if (v === 0) this.nrReserved += e - s;
      });
      this.reserved.set(lo, hi, 1);
    };
    this.forEachIn(start, end, (pgoff) => {
      gap(at, pgoff);
      at = pgoff + 1;
    });
    gap(at, end);
  }

  /** `pgoff` is allocated but has no frame yet */
  isReserved(pgoff: number): boolean {
    return this.nrReserved > 0 && this.reserved.get(pgoff) !== 0;
  }

  private unreserve(start: number, end: number): void {
    const hi = Math.min(end, KEY_LIMIT);
    this.reserved.forEachRun(start, hi, (s, e, v) => {
      if (v !== 0) this.nrReserved -= e - s;
    });
    this.reserved.set(start, hi, 0);
  }

  /** existing chunk indices overlapping [start, end), ascending */
  private chunkIndicesIn(start: number, end: number): number[] {
    const first = Math.floor(start / CHUNK_PAGES);
    const last = Math.floor((end - 1) / CHUNK_PAGES);
    const out: number[] = [];
    if (last - first + 1 <= this.chunks.size) {
      for (let idx = first; idx <= last; idx++) if (this.chunks.has(idx)) out.push(idx);
    } else {
      for (const idx of this.chunks.keys()) if (idx >= first && idx <= last) out.push(idx);
      out.sort((a, b) => a - b);
    }
    return out;
  }
}
