/**
 * Host physical memory: the page frames behind the VMM's anonymous memory, guest_memfd and
 * every other memory provider.
 *
 * Frames are handed out lazily by a bump allocator that starts at pfn 0x100 (the low frames
 * stand for firmware / kernel memory and are never given out), with freed frames recycled
 * through a free list kept in a typed array. Contents are stored sparsely (page-contents.ts):
 * a never-written frame reads as zeros for free, and a written one holds storage only for the
 * 512-byte lines that received non-zero bytes. Leaked frames (snp_leak_pages(): a frame the
 * firmware still owns) are never reused.
 */
import type { HostPhysMem } from '../backend.js';
import { PAGE_SIZE } from '../uapi.js';
import { PageContents } from './page-contents.js';

/** First pfn the allocator hands out. */
export const FIRST_ALLOC_PFN = 0x100;

/**
 * The shared zero page (ZERO_PAGE(0)): what a read-only GUP of a never-touched anonymous page
 * maps. It belongs to nobody, always reads zero, and must never be written.
 */
export const ZERO_PFN = 0x1;

/* Per-frame state (one byte per pfn of a block that holds 4K frames). */
const FRAME_NEVER = 0;
const FRAME_ALLOCATED = 1;
const FRAME_FREE = 2;
const FRAME_LEAKED = 3;

/** largest pfn the allocator hands out (frames are numbered in an Int32Array free list) */
const MAX_PFN = 0x7fffffff;

/** pfns per block: a 2M frame */
const BLOCK = 512;
/* Per-block state: 4K frames with per-frame detail, or one whole 2M (compound) frame. */
const BLOCK_SMALL = 0;
const BLOCK_HUGE = 1;
const BLOCK_HUGE_FREE = 2;

/**
 * Per-frame detail arrays (Uint8Array(BLOCK)) of disposed PhysMems, handed out again zeroed
 * (as a fresh array) by later ones: a program that builds and drops many small hosts (the
 * explorer) then allocates none. At most MAX_CACHED_DETAIL are kept.
 */
const cachedDetail: Uint8Array[] = [];
const MAX_CACHED_DETAIL = 64;

/** a zeroed Uint8Array(BLOCK): a recycled one or a new one */
function newDetail(): Uint8Array {
  const d = cachedDetail.pop();
  if (d === undefined) return new Uint8Array(BLOCK);
  d.fill(0);
  return d;
}

export class PhysMem implements HostPhysMem {
  /** next never-used pfn */
  private nextPfn = FIRST_ALLOC_PFN;
  /** block state by pfn / 512 (grows with the bump pointer) */
  private blockState = new Uint8Array(64);
  /** per-frame state of BLOCK_SMALL blocks (null: every frame FRAME_NEVER) */
  private readonly detail: (Uint8Array | null)[] = [];
  /** whole free 2M blocks (freed hugetlb pages), reused by allocContiguous(512) */
  private freeHuge: number[] = [];
  /**
   * LIFO free list of pfns. Int32: a pfn read back is a small integer, not a double (a float
   * modulo or division downstream is a libm call); pfns stay below 2^31 (8 TiB of frames).
   */
  private freeList = new Int32Array(16); // 64 bytes: on the V8 heap; doubles on demand
  private freeCount = 0;
  /** contents of the frames that hold non-zero bytes */
  private readonly contents = new PageContents();
  private allocated = 0;
  private leaked = 0;
  /** the NUMA node of frames not on node 0 (page_to_nid()); empty on a one-node host */
  private readonly nodes = new Map<number, number>();
  private disposed = false;

  get allocatedPages(): number {
    return this.allocated;
  }

  get storedPages(): number {
    return this.contents.storedPages;
  }

  /** the frame state of `pfn` */
  private stateOf(pfn: number): number {
    const b = Math.floor(pfn / BLOCK);
    if (b >= this.blockState.length || b < 0) return FRAME_NEVER;
    const k = this.blockState[b]!;
    if (k === BLOCK_HUGE) return FRAME_ALLOCATED;
    if (k === BLOCK_HUGE_FREE) return FRAME_FREE;
    const d = this.detail[b];
    return d ? d[pfn & (BLOCK - 1)]! : FRAME_NEVER;
  }

  /** set one frame's state; a whole-2M block turns into per-frame detail first */
  private setState(pfn: number, state: number): void {
    const b = Math.floor(pfn / BLOCK);
    if (b < this.blockState.length && this.blockState[b] === BLOCK_SMALL) {
      // the common case: a block that already has per-frame detail
      const d0 = this.detail[b];
      if (d0 !== null && d0 !== undefined) {
        d0[pfn & (BLOCK - 1)] = state;
        return;
      }
    }
    this.ensureBlocks(b + 1);
    let d = this.detail[b] ?? null;
    const k = this.blockState[b]!;
    if (k !== BLOCK_SMALL || d === null) {
      d = newDetail();
      if (k === BLOCK_HUGE) d.fill(FRAME_ALLOCATED);
      else if (k === BLOCK_HUGE_FREE) {
        // a freed 2M block handed out frame by frame: its other frames join the 4K free list
        const at = this.freeHuge.lastIndexOf(b);
        if (at >= 0) this.freeHuge.splice(at, 1);
        d.fill(FRAME_FREE);
        for (let i = 0; i < BLOCK; i++) if (b * BLOCK + i !== pfn) this.pushFreeList(b * BLOCK + i);
      }
      this.detail[b] = d;
      this.blockState[b] = BLOCK_SMALL;
    }
    d[pfn & (BLOCK - 1)] = state;
  }

  private ensureBlocks(n: number): void {
    if (n <= this.blockState.length) return;
    const grown = new Uint8Array(Math.max(this.blockState.length * 2, n));
    grown.set(this.blockState);
    this.blockState = grown;
    while (this.detail.length < grown.length) this.detail.push(null);
  }

  allocPage(): number {
    this.assertLive('allocPage');
    let pfn: number;
    if (this.freeCount > 0) pfn = this.freeList[--this.freeCount]!;
    else if (this.freeHuge.length > 0) pfn = this.freeHuge[this.freeHuge.length - 1]! * BLOCK; // split a free 2M block
    else pfn = this.nextPfn++;
    this.setState(pfn, FRAME_ALLOCATED);
    this.allocated++;
    return pfn;
  }

  /**
   * Allocate `npages` (a power of two) physically contiguous frames aligned to `npages`
   * (a hugetlb page, a 2M folio); returns the first pfn. Frames skipped for alignment go to
   * the free list. A 2M (or larger) allocation is kept as whole blocks: no per-4K state.
   */
  allocContiguous(npages: number): number {
    this.assertLive('allocContiguous');
    if (npages < 1 || (npages & (npages - 1)) !== 0) throw new RangeError(`allocContiguous: ${npages} is not a power of two`);
    if (npages === BLOCK && this.freeHuge.length > 0) {
      const b = this.freeHuge.pop()!;
      this.blockState[b] = BLOCK_HUGE;
      this.allocated += npages;
      return b * BLOCK;
    }
    const first = Math.ceil(this.nextPfn / npages) * npages;
    for (let p = this.nextPfn; p < first; p++) this.pushFree(p);
    this.nextPfn = first + npages;
    if (npages >= BLOCK) {
      this.ensureBlocks((first + npages) / BLOCK);
      this.blockState.fill(BLOCK_HUGE, first / BLOCK, (first + npages) / BLOCK);
    } else {
      for (let p = first; p < first + npages; p++) this.setState(p, FRAME_ALLOCATED);
    }
    this.allocated += npages;
    return first;
  }

  /**
   * Free `npages` frames from allocContiguous(); whole 2M blocks are freed as blocks (their
   * contents dropped with one lookup per block), anything else frame by frame.
   */
  freeContiguous(first: number, npages: number): void {
    this.assertLive('freeContiguous');
    if (npages % BLOCK === 0 && first % BLOCK === 0) {
      for (let b = first / BLOCK; b < (first + npages) / BLOCK; b++) {
        if (b < this.blockState.length && this.blockState[b] === BLOCK_HUGE) {
          this.contents.clearBlocks(b * BLOCK, BLOCK);
          this.blockState[b] = BLOCK_HUGE_FREE;
          this.freeHuge.push(b);
          this.allocated -= BLOCK;
        } else {
          for (let p = b * BLOCK; p < (b + 1) * BLOCK; p++) this.freePage(p);
        }
      }
      return;
    }
    for (let p = first; p < first + npages; p++) this.freePage(p);
  }

  private pushFree(pfn: number): void {
    this.setState(pfn, FRAME_FREE);
    this.pushFreeList(pfn);
  }

  private pushFreeList(pfn: number): void {
    if (!(pfn >= 0 && pfn <= MAX_PFN)) throw new RangeError(`PhysMem: pfn 0x${pfn.toString(16)} beyond the model's 2^31 frames`);
    if (this.freeCount === this.freeList.length) {
      const grown = new Int32Array(this.freeList.length * 2);
      grown.set(this.freeList);
      this.freeList = grown;
    }
    this.freeList[this.freeCount++] = pfn;
  }

  /** page_to_nid(): the node the frame was allocated on (0 unless setNode() said otherwise) */
  nodeOf(pfn: number): number {
    return this.nodes.size === 0 ? 0 : (this.nodes.get(pfn) ?? 0);
  }

  /** record that a just-allocated frame came from `node` (a memory policy chose it) */
  setNode(pfn: number, node: number): void {
    if (node === 0) this.nodes.delete(pfn);
    else this.nodes.set(pfn, node);
  }

  freePage(pfn: number): void {
    this.assertAllocated(pfn, 'freePage');
    if (this.nodes.size !== 0) this.nodes.delete(pfn);
    this.contents.clear(pfn);
    this.setState(pfn, FRAME_FREE);
    this.allocated--;
    this.pushFreeList(pfn);
  }

  leakPage(pfn: number): void {
    this.assertAllocated(pfn, 'leakPage');
    this.setState(pfn, FRAME_LEAKED);
    this.allocated--;
    this.leaked++;
  }

  isAllocated(pfn: number): boolean {
    this.assertLive('isAllocated');
    return this.stateOf(pfn) === FRAME_ALLOCATED;
  }

  /** true for a frame that was leaked (never handed out again) */
  isLeaked(pfn: number): boolean {
    this.assertLive('isLeaked');
    return this.stateOf(pfn) === FRAME_LEAKED;
  }

  zeroPage(pfn: number): void {
    this.assertWritable(pfn, 'zeroPage');
    this.contents.clear(pfn);
  }

  readValue(pfn: number, offset: number, size: number): bigint {
    this.assertLive('readValue');
    checkValueAccess(offset, size);
    if (pfn === ZERO_PFN) return 0n; // never written (assertWritable): no lookup
    return this.contents.readValue(pfn, offset, size);
  }

  /** the u32 at a 4-aligned offset as a signed int32 (hot paths that read 64-bit entries as halves) */
  readI32(pfn: number, offset: number): number {
    this.assertLive('readI32');
    if ((offset & 3) !== 0 || offset < 0 || offset > 4092) throw new RangeError(`readI32: offset ${offset} is not a 4-aligned offset in a page`);
    if (pfn === ZERO_PFN) return 0;
    return this.contents.readI32(pfn, offset);
  }

  /** store a 32-bit value at a 4-aligned offset (a page-table entry's half) */
  writeI32(pfn: number, offset: number, v: number): void {
    if ((offset & 3) !== 0 || offset < 0 || offset > 4092) throw new RangeError(`writeI32: offset ${offset} is not a 4-aligned offset in a page`);
    this.assertWritable(pfn, 'writeI32');
    this.contents.writeI32(pfn, offset, v);
  }

  /** `n` 64-bit entries from an 8-aligned offset, as int32 halves into `lo` / `hi` (page-table reads) */
  readI64Halves(pfn: number, offset: number, n: number, lo: Int32Array, hi: Int32Array): void {
    this.assertLive('readI64Halves');
    if ((offset & 7) !== 0 || offset < 0 || offset + 8 * n > 4096) throw new RangeError(`readI64Halves: ${n} entries at offset ${offset} do not fit the page`);
    if (pfn === ZERO_PFN) {
      lo.fill(0, 0, n);
      hi.fill(0, 0, n);
      return;
    }
    this.contents.readI64Halves(pfn, offset, n, lo, hi);
  }

  /**
   * The contents slot of `pfn` for a reader that resolves a frame once and reads it many
   * times (guest page-table walks): 0 when the frame holds no contents (it reads as zeros;
   * ask again after a store). A non-zero slot stays the frame's while `contentsGeneration`
   * is unchanged (it changes when any frame's contents are dropped or the memory is disposed).
   */
  contentsSlot(pfn: number): number {
    this.assertLive('contentsSlot');
    if (pfn === ZERO_PFN) return 0;
    return this.contents.pageSlot(pfn);
  }

  get contentsGeneration(): number {
    return this.contents.slotGeneration;
  }

  /** `n` 64-bit entries at an 8-aligned offset of contents slot `s1` (contentsSlot) as int32 halves */
  readI64HalvesInSlot(s1: number, offset: number, n: number, lo: Int32Array, hi: Int32Array): void {
    if ((offset & 7) !== 0 || offset < 0 || offset + 8 * n > 4096) throw new RangeError(`readI64HalvesInSlot: ${n} entries at offset ${offset} do not fit the page`);
    this.contents.readI64HalvesInSlot(s1, offset, n, lo, hi);
  }

  /** the u32 at a 4-aligned offset of contents slot `s1` (contentsSlot), as a signed int32 */
  readI32InSlot(s1: number, offset: number): number {
    if ((offset & 3) !== 0 || offset < 0 || offset > 4092) throw new RangeError(`readI32InSlot: offset ${offset} is not a 4-aligned offset in a page`);
    return this.contents.readI32InSlot(s1, offset);
  }

  /** the 64-bit entry at an 8-aligned offset of contents slot `s1` (contentsSlot) as int32 halves in `out` */
  readI64InSlot(s1: number, offset: number, out: { lo: number; hi: number }): void {
    if ((offset & 7) !== 0 || offset < 0 || offset > 4088) throw new RangeError(`readI64InSlot: offset ${offset} is not an 8-aligned offset in a page`);
    this.contents.readI64InSlot(s1, offset, out);
  }

  /**
   * Store a 32-bit value at a 4-aligned offset of contents slot `s1` (contentsSlot), false
   * when that part of the frame holds no storage yet (then store with writeI32). A slot that
   * is still the frame's (contentsGeneration unchanged) belongs to a frame that was written
   * and has not been freed since, so it is writable.
   */
  writeI32InSlot(s1: number, offset: number, v: number): boolean {
    if ((offset & 3) !== 0 || offset < 0 || offset > 4092) throw new RangeError(`writeI32InSlot: offset ${offset} is not a 4-aligned offset in a page`);
    return this.contents.writeI32InSlot(s1, offset, v);
  }

  writeValue(pfn: number, offset: number, size: number, value: bigint): void {
    checkValueAccess(offset, size);
    this.assertWritable(pfn, 'writeValue');
    this.contents.writeValue(pfn, offset, size, value);
  }

  readBytes(pfn: number, offset: number, length: number): Uint8Array {
    this.assertLive('readBytes');
    checkRange(offset, length);
    const out = new Uint8Array(length);
    this.contents.readInto(pfn, offset, out);
    return out;
  }

  writeBytes(pfn: number, offset: number, data: Uint8Array): void {
    checkRange(offset, data.length);
    this.assertWritable(pfn, 'writeBytes');
    this.contents.write(pfn, offset, data);
  }

  /** bytes held for page contents */
  contentBytes(): number {
    return this.contents.byteLength();
  }

  /** bytes of frame bookkeeping (block states, per-frame detail, free lists) */
  metadataBytes(): number {
    let b = this.blockState.byteLength + this.freeList.byteLength + this.freeHuge.length * 8 + this.detail.length * 8;
    for (const d of this.detail) if (d) b += d.byteLength;
    return b;
  }

  /**
   * Gives the frame bookkeeping and content storage back for reuse by later PhysMems (the
   * host is being torn down with everything that used it). Every method throws afterwards.
   */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (let b = 0; b < this.detail.length && cachedDetail.length < MAX_CACHED_DETAIL; b++) {
      const d = this.detail[b];
      if (d) cachedDetail.push(d);
    }
    this.detail.length = 0;
    this.blockState = new Uint8Array(0);
    this.contents.dispose();
  }

  private assertLive(op: string): void {
    if (this.disposed) throw new Error(`PhysMem.${op}: disposed`);
  }

  private assertAllocated(pfn: number, op: string): void {
    if (!this.isAllocated(pfn)) throw new Error(`PhysMem.${op}: pfn 0x${pfn.toString(16)} is not allocated`);
  }

  private assertWritable(pfn: number, op: string): void {
    if (pfn === ZERO_PFN) throw new Error(`PhysMem.${op}: the shared zero page (pfn 0x${pfn.toString(16)}) is read-only`);
    this.assertAllocated(pfn, op);
  }
}

function checkValueAccess(offset: number, size: number): void {
  // 1..8 bytes: a page-crossing access's fragments may be 3, 5, 6 or 7 bytes long
  if (!Number.isInteger(size) || size < 1 || size > 8) throw new RangeError(`access size ${size} is not 1 to 8 bytes`);
  checkRange(offset, size);
}

function checkRange(offset: number, length: number): void {
  if (!Number.isInteger(offset) || !Number.isInteger(length) || offset < 0 || length < 0 || offset + length > PAGE_SIZE) {
    throw new RangeError(`access [${offset}, +${length}) does not fit in one page`);
  }
}

