/**
 * The TDP MMU's page tables: a pool of 512-entry tables (`sp->spt`) allocated in chunks,
 * with the per-table part of `struct kvm_mmu_page` in typed arrays. There is no object per
 * table: a table is a number (its id), which is also what a non-leaf SPTE stores in its pfn
 * bits (the model's "physical address" of the table).
 *
 * Entries are interleaved u32 halves: entry `i` of table `t` is at
 * `chunks[t >>> CHUNK_SHIFT][tableBase(t) + 2*i]` (lo) and `+ 1` (hi).
 *
 * Chunk `c` covers table ids [c * TABLES_PER_CHUNK, (c + 1) * TABLES_PER_CHUNK), but the first
 * chunks hold fewer tables (FIRST_CHUNK_TABLES, doubling up to TABLES_PER_CHUNK): ids past a
 * chunk's capacity are never handed out. So a small VM (a root and a few tables) costs a few
 * KiB instead of a whole 256 KiB chunk, and a chunk's array never moves once created (callers
 * may hold `words(t)` across an `alloc`).
 */

import { SHADOW_NONPRESENT_HI } from './spte.js';

/** log2 of the tables per chunk */
export const CHUNK_SHIFT = 6;
export const TABLES_PER_CHUNK = 1 << CHUNK_SHIFT;
const CHUNK_MASK = TABLES_PER_CHUNK - 1;
/** tables in chunk 0; chunk c holds min(TABLES_PER_CHUNK, FIRST_CHUNK_TABLES << c) */
export const FIRST_CHUNK_TABLES = 4;

/** usable tables of chunk `c` */
function chunkCapacity(c: number): number {
  return c >= CHUNK_SHIFT ? TABLES_PER_CHUNK : Math.min(TABLES_PER_CHUNK, FIRST_CHUNK_TABLES << c);
}
/** u32 words per table: 512 entries × 2 halves */
export const WORDS_PER_TABLE = 1024;

/** SHADOW_NONPRESENT_VALUE as a u64, for filling fresh tables */
const NONPRESENT_U64 = BigInt(SHADOW_NONPRESENT_HI >>> 0) << 32n;

/**
 * Chunk storage of disposed pools, by chunk index, handed out again (zeroed, like a fresh
 * ArrayBuffer) by the next pool's addChunk: a program that builds and drops many small VMs
 * (the explorer) then allocates no new table memory. Only the small first chunks are kept,
 * at most MAX_CACHED_CHUNKS of each.
 */
const cachedChunks: Int32Array[][] = [[], []];
const MAX_CACHED_CHUNKS = 64;

export class SptPool {
  /** entry storage (int32 halves, see spte.ts), one Int32Array per chunk of TABLES_PER_CHUNK tables */
  readonly chunks: Int32Array[] = [];
  /** 64-bit views of the same chunks, for filling with SHADOW_NONPRESENT_VALUE */
  private readonly chunks64: BigUint64Array[] = [];

  /* per-table bookkeeping (struct kvm_mmu_page fields), indexed by table id; they start at
   * chunk 0's capacity (small enough for V8 to keep them on the JS heap) and double as
   * chunks are added */
  /** sp->gfn: first gfn the table maps */
  gfnBase = new Float64Array(FIRST_CHUNK_TABLES);
  /** sp->role.level: level of the table's entries */
  level = new Uint8Array(FIRST_CHUNK_TABLES);
  /** the table holding the SPTE that points here (sp->ptep), -1 for a root */
  parentTable = new Int32Array(FIRST_CHUNK_TABLES);
  /** index of that SPTE in the parent table */
  parentIndex = new Uint16Array(FIRST_CHUNK_TABLES);
  /** sp->external_spt: the page handed to the TDX module for mirror tables, 0 = none */
  externalSpt = new Int32Array(FIRST_CHUNK_TABLES);
  /** number of shadow-present entries */
  presentCount = new Uint16Array(FIRST_CHUNK_TABLES);
  /** sp->role.is_mirror */
  isMirror = new Uint8Array(FIRST_CHUNK_TABLES);

  private freeList = new Int32Array(FIRST_CHUNK_TABLES);
  private freeTop = 0;
  /** the next fresh table id (ids below it were handed out, except past a chunk's capacity) */
  private highWater = 0;
  /** tables currently in use */
  liveTables = 0;
  private disposed = false;

  /** The chunk words of table `t`. */
  words(t: number): Int32Array {
    return this.chunks[t >>> CHUNK_SHIFT]!;
  }

  /** Offset of entry 0 of table `t` within `words(t)`. */
  static base(t: number): number {
    return (t & CHUNK_MASK) << 10;
  }

  /**
   * Allocates a table (tdp_mmu_alloc_sp + tdp_mmu_init_sp). With `fill`, every entry is
   * SHADOW_NONPRESENT_VALUE (the kernel's shadow-page cache init value); without it the
   * caller writes all 512 entries itself (huge-page split).
   */
  alloc(gfnBase: number, level: number, parentTable: number, parentIndex: number, mirror: boolean, fill: boolean): number {
    if (this.disposed) throw new Error('SptPool.alloc: the pool was disposed');
    let t: number;
    if (this.freeTop > 0) {
      t = this.freeList[--this.freeTop]!;
    } else {
      t = this.highWater;
      const c = t >>> CHUNK_SHIFT;
      if (c >= this.chunks.length) this.addChunk();
      // the next fresh id: the next table of this chunk, or the start of the next chunk
      this.highWater = (t & CHUNK_MASK) + 1 < chunkCapacity(c) ? t + 1 : (c + 1) << CHUNK_SHIFT;
    }
    if (fill) {
      const first = (t & CHUNK_MASK) << 9;
      this.chunks64[t >>> CHUNK_SHIFT]!.fill(NONPRESENT_U64, first, first + 512);
    }
    this.gfnBase[t] = gfnBase;
    this.level[t] = level;
    this.parentTable[t] = parentTable;
    this.parentIndex[t] = parentIndex;
    this.externalSpt[t] = 0;
    this.presentCount[t] = fill ? 0 : 512;
    this.isMirror[t] = mirror ? 1 : 0;
    this.liveTables++;
    return t;
  }

  /** Returns a table to the pool (tdp_mmu_free_sp). */
  release(t: number): void {
    if (this.disposed) throw new Error('SptPool.release: the pool was disposed');
    if (this.freeTop === this.freeList.length) {
      const f = new Int32Array(this.freeList.length * 2);
      f.set(this.freeList);
      this.freeList = f;
    }
    this.freeList[this.freeTop++] = t;
    this.level[t] = 0;
    this.presentCount[t] = 0;
    this.liveTables--;
  }

  private addChunk(): void {
    const c = this.chunks.length;
    let words = c < cachedChunks.length ? cachedChunks[c]!.pop() : undefined;
    if (words === undefined) words = new Int32Array(chunkCapacity(c) * WORDS_PER_TABLE);
    else words.fill(0); // as a fresh ArrayBuffer
    this.chunks.push(words);
    this.chunks64.push(new BigUint64Array(words.buffer));
    const cap = (this.chunks.length - 1) * TABLES_PER_CHUNK + chunkCapacity(this.chunks.length - 1);
    if (cap > this.level.length) {
      let n = this.level.length;
      while (n < cap) n *= 2;
      this.gfnBase = grow(this.gfnBase, n);
      this.level = grow(this.level, n);
      this.parentTable = grow(this.parentTable, n);
      this.parentIndex = grow(this.parentIndex, n);
      this.externalSpt = grow(this.externalSpt, n);
      this.presentCount = grow(this.presentCount, n);
      this.isMirror = grow(this.isMirror, n);
    }
  }

  /**
   * Gives the pool's small chunks back for reuse by later pools (the VM is being torn down).
   * The pool must not be used afterwards: alloc and release throw, and no chunk is reachable
   * from it any more.
   */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (let c = 0; c < this.chunks.length && c < cachedChunks.length; c++) {
      const list = cachedChunks[c]!;
      if (list.length < MAX_CACHED_CHUNKS) list.push(this.chunks[c]!);
    }
    this.chunks.length = 0;
    this.chunks64.length = 0;
    this.liveTables = 0;
  }

  /** Bytes of table memory plus bookkeeping. */
  metadataBytes(): number {
    let bytes = 0;
    for (const c of this.chunks) bytes += c.byteLength;
    bytes +=
      this.gfnBase.byteLength +
      this.level.byteLength +
      this.parentTable.byteLength +
      this.parentIndex.byteLength +
      this.externalSpt.byteLength +
      this.presentCount.byteLength +
      this.isMirror.byteLength +
      this.freeList.byteLength;
    return bytes;
  }
}

type AnyTyped = Float64Array | Uint8Array | Int32Array | Uint16Array;
function grow<T extends AnyTyped>(a: T, n: number): T {
  const b = new (a.constructor as new (n: number) => T)(n);
  b.set(a as never);
  return b;
}
