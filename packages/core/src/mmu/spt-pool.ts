/**
 * The TDP MMU's page tables: a pool of 512-entry tables (`sp->spt`) allocated in chunks,
 * with the per-table part of `struct kvm_mmu_page` in typed arrays. There is no object per
 * table: a table is a number (its id), which is also what a non-leaf SPTE stores in its pfn
 * bits (the model's "physical address" of the table).
 *
 * Entries are interleaved u32 halves: entry `i` of table `t` is at
 * `chunks[t >>> CHUNK_SHIFT][tableBase(t) + 2*i]` (lo) and `+ 1` (hi).
 */

import { SHADOW_NONPRESENT_HI } from './spte.js';

/** log2 of the tables per chunk */
export const CHUNK_SHIFT = 6;
export const TABLES_PER_CHUNK = 1 << CHUNK_SHIFT;
const CHUNK_MASK = TABLES_PER_CHUNK - 1;
/** u32 words per table: 512 entries × 2 halves */
export const WORDS_PER_TABLE = 1024;

/** SHADOW_NONPRESENT_VALUE as a u64, for filling fresh tables */
const NONPRESENT_U64 = BigInt(SHADOW_NONPRESENT_HI >>> 0) << 32n;

export class SptPool {
  /** entry storage (int32 halves, see spte.ts), one Int32Array per chunk of TABLES_PER_CHUNK tables */
  readonly chunks: Int32Array[] = [];
  /** 64-bit views of the same chunks, for filling with SHADOW_NONPRESENT_VALUE */
  private readonly chunks64: BigUint64Array[] = [];

  /* per-table bookkeeping (struct kvm_mmu_page fields) */
  /** sp->gfn: first gfn the table maps */
  gfnBase = new Float64Array(TABLES_PER_CHUNK);
  /** sp->role.level: level of the table's entries */
  level = new Uint8Array(TABLES_PER_CHUNK);
  /** the table holding the SPTE that points here (sp->ptep), -1 for a root */
  parentTable = new Int32Array(TABLES_PER_CHUNK);
  /** index of that SPTE in the parent table */
  parentIndex = new Uint16Array(TABLES_PER_CHUNK);
  /** sp->external_spt: the page handed to the TDX module for mirror tables, 0 = none */
  externalSpt = new Int32Array(TABLES_PER_CHUNK);
  /** number of shadow-present entries */
  presentCount = new Uint16Array(TABLES_PER_CHUNK);
  /** sp->role.is_mirror */
  isMirror = new Uint8Array(TABLES_PER_CHUNK);

  private freeList = new Int32Array(TABLES_PER_CHUNK);
  private freeTop = 0;
  /** tables ever handed out (ids below this exist) */
  private highWater = 0;
  /** tables currently in use */
  liveTables = 0;

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
    let t: number;
    if (this.freeTop > 0) {
      t = this.freeList[--this.freeTop]!;
    } else {
      t = this.highWater++;
      if (t >>> CHUNK_SHIFT >= this.chunks.length) this.addChunk();
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
    const buf = new ArrayBuffer(TABLES_PER_CHUNK * WORDS_PER_TABLE * 4);
    this.chunks.push(new Int32Array(buf));
    this.chunks64.push(new BigUint64Array(buf));
    const cap = this.chunks.length * TABLES_PER_CHUNK;
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
