/**
 * Sparse contents of host page frames. A frame that was never written (or was zeroed) has
 * no storage and reads as zeros. A written frame gets a page slot; the slot holds
 * LINES_PER_PAGE line ids, and only the 512-byte lines that received non-zero data get
 * storage. A guest that writes one word per page (a populate, a page-table entry, a
 * pvalidate'd page touched once) therefore costs and clears 512 bytes, not 4 KiB.
 *
 * Lines live in slabs (one ArrayBuffer of SLAB_LINES lines each, with a byte view, a u64
 * view for aligned 8-byte accesses and an i32 view for aligned 32-bit halves), recycled
 * through a free list; a recycled line is zeroed before reuse (clear_page). Nothing here
 * allocates an object per page.
 */
import { PAGE_SIZE } from '../uapi.js';

// the u64 and i32 views read in the platform's byte order; contents are little-endian
if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) throw new Error('page-contents: the typed-array views need a little-endian platform');

export const LINE_SHIFT = 9;
/** bytes per content line */
export const LINE_SIZE = 1 << LINE_SHIFT;
export const LINES_PER_PAGE = PAGE_SIZE / LINE_SIZE;
const SLAB_SHIFT = 11;
/** lines per slab (1 MiB) */
const SLAB_LINES = 1 << SLAB_SHIFT;
/**
 * Lines in slab `s`: the first slabs are small (8, 16, 32, ... lines) so a small VM does not
 * pay for a 1 MiB slab on its first write; from the ninth slab on, SLAB_LINES each.
 */
function slabCapacity(s: number): number {
  return s >= SLAB_SHIFT - 3 ? SLAB_LINES : 8 << s;
}
/** pfns per block of the pfn -> page slot index (a 2M page frame) */
const BLOCK = 512;

/*
 * Storage of disposed PageContents, handed out again zeroed (as a fresh array) by later ones,
 * so that a program building and dropping many small hosts (the explorer) allocates none:
 * the first slabs by slab index, and per-block index leaves (Int32Array(BLOCK)). At most
 * MAX_CACHED of each kind.
 */
const MAX_CACHED = 64;
const cachedSlabs: Uint8Array[][] = [[], []];
const cachedLeaves: Int32Array[] = [];

function newLeaf(): Int32Array {
  const leaf = cachedLeaves.pop();
  if (leaf === undefined) return new Int32Array(BLOCK);
  leaf.fill(0);
  return leaf;
}

export class PageContents {
  /**
   * pfn -> page slot + 1, per 512-pfn block: a block with one stored page holds the number
   * (pfn % 512) + 512 * (slot + 1); a block with more holds an Int32Array(512) of slot + 1.
   * So a 2M frame written once costs one Map entry, not per-4K state.
   */
  private readonly index = new Map<number, number | Int32Array>();
  /** page slot s owns lineIds[s * LINES_PER_PAGE + k] = line id + 1 of its line k (0 = zeros) */
  private lineIds = new Int32Array(LINES_PER_PAGE * 2); // 64 bytes: on the V8 heap; grows on demand
  private nextPageSlot = 0;
  private freePageSlots = new Int32Array(16);
  private freePageSlotCount = 0;
  private readonly slabs: Uint8Array[] = [];
  private readonly slabs64: BigUint64Array[] = [];
  /** int32 views of the slabs: aligned 32-bit halves of page-table entries in one load */
  private readonly slabs32: Int32Array[] = [];
  private nextLine = 0;
  private freeLines = new Int32Array(16);
  private freeLineCount = 0;
  private pages = 0;
  private disposed = false;
  /**
   * Bumped whenever a page slot is given up (clear, dispose): a page slot that a caller
   * cached (pageSlot) still belongs to its pfn while this is unchanged. Storing into a page
   * never moves it to another slot.
   */
  private slotGen = 0;

  get slotGeneration(): number {
    return this.slotGen;
  }

  /** frames with stored contents */
  get storedPages(): number {
    return this.pages;
  }

  /* the index entry of the last block looked up (accesses walk memory in order) */
  private lastBlock = -1;
  private lastEntry: number | Int32Array | undefined = undefined;

  /** the index entry of block `b` (through the one-entry cache) */
  private entryOf(b: number): number | Int32Array | undefined {
    if (b === this.lastBlock) return this.lastEntry;
    const e = this.index.get(b);
    this.lastBlock = b;
    this.lastEntry = e;
    return e;
  }

  /** store the index entry of block `b` (undefined: delete), keeping the cache in step */
  private setEntry(b: number, e: number | Int32Array | undefined): void {
    if (e === undefined) this.index.delete(b);
    else this.index.set(b, e);
    this.lastBlock = b;
    this.lastEntry = e;
  }

  /** page slot + 1 of `pfn`, 0 when it has no contents */
  private slotOf(pfn: number): number {
    if (this.disposed) throw new Error('PageContents: disposed');
    if (this.pages === 0) return 0;
    const e = this.entryOf(Math.floor(pfn / BLOCK));
    if (e === undefined) return 0;
    // pfn and e are non-negative integers: & instead of a modulo (no float modulo for a double)
    if (typeof e === 'number') return (e & (BLOCK - 1)) === (pfn & (BLOCK - 1)) ? Math.floor(e / BLOCK) : 0;
    return e[pfn & (BLOCK - 1)]!;
  }

  private setSlot(pfn: number, s1: number): void {
    const b = Math.floor(pfn / BLOCK);
    const i = pfn & (BLOCK - 1);
    const e = this.entryOf(b);
    if (e === undefined) {
      if (s1 !== 0) this.setEntry(b, i + BLOCK * s1);
    } else if (typeof e === 'number') {
      if ((e & (BLOCK - 1)) === i) {
        this.setEntry(b, s1 === 0 ? undefined : i + BLOCK * s1);
      } else if (s1 !== 0) {
        const leaf = newLeaf();
        leaf[e & (BLOCK - 1)] = Math.floor(e / BLOCK);
        leaf[i] = s1;
        this.setEntry(b, leaf);
      }
    } else {
      e[i] = s1;
    }
  }

  private attachPage(pfn: number): number {
    let slot: number;
    if (this.freePageSlotCount > 0) slot = this.freePageSlots[--this.freePageSlotCount]!;
    else {
      slot = this.nextPageSlot++;
      if ((slot + 1) * LINES_PER_PAGE > this.lineIds.length) this.lineIds = growI32(this.lineIds, (slot + 1) * LINES_PER_PAGE);
    }
    this.setSlot(pfn, slot + 1);
    this.pages++;
    return slot + 1;
  }

  /** a zeroed line; returns its id + 1 */
  private allocLine(): number {
    let line: number;
    if (this.freeLineCount > 0) {
      line = this.freeLines[--this.freeLineCount]!;
      const o = (line & (SLAB_LINES - 1)) << LINE_SHIFT;
      this.slabs[line >> SLAB_SHIFT]!.fill(0, o, o + LINE_SIZE);
    } else {
      line = this.nextLine;
      const s = line >> SLAB_SHIFT;
      const cap = slabCapacity(s);
      if (s >= this.slabs.length) {
        let slab = s < cachedSlabs.length ? cachedSlabs[s]!.pop() : undefined;
        if (slab === undefined) slab = new Uint8Array(cap * LINE_SIZE);
        else slab.fill(0); // as a fresh ArrayBuffer
        this.slabs.push(slab);
        this.slabs64.push(new BigUint64Array(slab.buffer));
        this.slabs32.push(new Int32Array(slab.buffer, slab.byteOffset, slab.length >>> 2));
      }
      // a small slab's unused line ids are skipped: line ids keep addressing slab s by s
      this.nextLine = (line & (SLAB_LINES - 1)) + 1 < cap ? line + 1 : (s + 1) << SLAB_SHIFT;
    }
    return line + 1;
  }

  /** drop every line of `pfn`: it reads as zeros again */
  clear(pfn: number): void {
    const s1 = this.slotOf(pfn);
    if (s1 === 0) return;
    this.setSlot(pfn, 0);
    this.slotGen++;
    const base = (s1 - 1) * LINES_PER_PAGE;
    for (let k = 0; k < LINES_PER_PAGE; k++) {
      const l1 = this.lineIds[base + k]!;
      if (l1 === 0) continue;
      this.lineIds[base + k] = 0;
      if (this.freeLineCount === this.freeLines.length) this.freeLines = growI32(this.freeLines, this.freeLineCount + 1);
      this.freeLines[this.freeLineCount++] = l1 - 1;
    }
    if (this.freePageSlotCount === this.freePageSlots.length) this.freePageSlots = growI32(this.freePageSlots, this.freePageSlotCount + 1);
    this.freePageSlots[this.freePageSlotCount++] = s1 - 1;
    this.pages--;
  }

  /** clear every pfn of [first, first + n) (n a multiple of 512, first aligned): one lookup per block */
  clearBlocks(first: number, n: number): void {
    if (this.disposed) throw new Error('PageContents: disposed');
    for (let b = first / BLOCK; b < (first + n) / BLOCK; b++) {
      if (this.pages === 0) return;
      const e = this.entryOf(b);
      if (e === undefined) continue;
      if (typeof e === 'number') this.clear(b * BLOCK + (e & (BLOCK - 1)));
      else for (let i = 0; i < BLOCK; i++) if (e[i] !== 0) this.clear(b * BLOCK + i);
    }
  }

  /** line id + 1 holding byte `offset` of `pfn`, 0 for zeros; with `create`, allocated */
  private lineAt(pfn: number, offset: number, create: boolean): number {
    let s1 = this.slotOf(pfn);
    if (s1 === 0) {
      if (!create) return 0;
      s1 = this.attachPage(pfn);
    }
    const i = (s1 - 1) * LINES_PER_PAGE + (offset >>> LINE_SHIFT);
    let l1 = this.lineIds[i]!;
    if (l1 === 0 && create) {
      l1 = this.allocLine();
      this.lineIds[i] = l1;
    }
    return l1;
  }

  /** byte at `offset` of `pfn` */
  private byteAt(pfn: number, offset: number): number {
    const l1 = this.lineAt(pfn, offset, false);
    if (l1 === 0) return 0;
    const line = l1 - 1;
    return this.slabs[line >> SLAB_SHIFT]![((line & (SLAB_LINES - 1)) << LINE_SHIFT) + (offset & (LINE_SIZE - 1))]!;
  }

  /** little-endian load of `size` (1, 2, 4, 8) bytes inside one page */
  readValue(pfn: number, offset: number, size: number): bigint {
    // (sizes 3, 5, 6, 7 are the fragments of a page-crossing access: byte by byte below)
    if ((size & (size - 1)) === 0 && (offset & (size - 1)) === 0) {
      // aligned: one line
      const l1 = this.lineAt(pfn, offset, false);
      if (l1 === 0) return 0n;
      const line = l1 - 1;
      const o = ((line & (SLAB_LINES - 1)) << LINE_SHIFT) + (offset & (LINE_SIZE - 1));
      if (size === 8) return this.slabs64[line >> SLAB_SHIFT]![o >>> 3]!;
      const b = this.slabs[line >> SLAB_SHIFT]!;
      let v = 0;
      for (let i = size - 1; i >= 0; i--) v = v * 256 + b[o + i]!;
      return BigInt(v);
    }
    let lo = 0;
    let hi = 0;
    for (let i = Math.min(size, 4) - 1; i >= 0; i--) lo = lo * 256 + this.byteAt(pfn, offset + i);
    for (let i = size - 1; i >= 4; i--) hi = hi * 256 + this.byteAt(pfn, offset + i);
    return hi === 0 ? BigInt(lo) : (BigInt(hi) << 32n) | BigInt(lo);
  }

  /** the little-endian u32 at a 4-aligned `offset`, as a signed int32 (no BigInt, no allocation) */
  readI32(pfn: number, offset: number): number {
    const l1 = this.lineAt(pfn, offset, false);
    if (l1 === 0) return 0;
    const line = l1 - 1;
    return this.slabs32[line >> SLAB_SHIFT]![(((line & (SLAB_LINES - 1)) << LINE_SHIFT) + (offset & (LINE_SIZE - 1))) >>> 2]!;
  }

  /** page slot + 1 of `pfn` (0: no contents, reads as zeros); see slotGeneration */
  pageSlot(pfn: number): number {
    return this.slotOf(pfn);
  }

  /**
   * The u32 at a 4-aligned `offset` of page slot `s1` (from pageSlot, while slotGeneration is
   * unchanged), as a signed int32: one line id and one load, no pfn lookup.
   */
  readI32InSlot(s1: number, offset: number): number {
    const l1 = this.lineIds[(s1 - 1) * LINES_PER_PAGE + (offset >>> LINE_SHIFT)]!;
    if (l1 === 0) return 0;
    const line = l1 - 1;
    return this.slabs32[line >> SLAB_SHIFT]![(((line & (SLAB_LINES - 1)) << LINE_SHIFT) + (offset & (LINE_SIZE - 1))) >>> 2]!;
  }

  /**
   * The 64-bit entry at an 8-aligned `offset` of page slot `s1` as int32 halves in `out`
   * (readI32InSlot of both halves with one line lookup: an 8-aligned entry is in one line)
   */
  readI64InSlot(s1: number, offset: number, out: { lo: number; hi: number }): void {
    const l1 = this.lineIds[(s1 - 1) * LINES_PER_PAGE + (offset >>> LINE_SHIFT)]!;
    if (l1 === 0) {
      out.lo = 0;
      out.hi = 0;
      return;
    }
    const line = l1 - 1;
    const w = this.slabs32[line >> SLAB_SHIFT]!;
    const o = (((line & (SLAB_LINES - 1)) << LINE_SHIFT) + (offset & (LINE_SIZE - 1))) >>> 2;
    out.lo = w[o]!;
    out.hi = w[o + 1]!;
  }

  /**
   * Store a 32-bit value at a 4-aligned `offset` of page slot `s1` when its line has storage
   * already (true); false when the line reads as zeros (store through writeI32 instead).
   */
  writeI32InSlot(s1: number, offset: number, v: number): boolean {
    const l1 = this.lineIds[(s1 - 1) * LINES_PER_PAGE + (offset >>> LINE_SHIFT)]!;
    if (l1 === 0) return false;
    const line = l1 - 1;
    this.slabs32[line >> SLAB_SHIFT]![(((line & (SLAB_LINES - 1)) << LINE_SHIFT) + (offset & (LINE_SIZE - 1))) >>> 2] = v;
    return true;
  }

  /** `n` 64-bit entries at an 8-aligned `offset` of page slot `s1` as int32 halves (see readI32InSlot) */
  readI64HalvesInSlot(s1: number, offset: number, n: number, lo: Int32Array, hi: Int32Array): void {
    const ids = (s1 - 1) * LINES_PER_PAGE;
    if ((offset & (LINE_SIZE - 1)) + 8 * n <= LINE_SIZE) {
      // one line (a prefetch group always is)
      const l1 = this.lineIds[ids + (offset >>> LINE_SHIFT)]!;
      if (l1 === 0) {
        lo.fill(0, 0, n);
        hi.fill(0, 0, n);
        return;
      }
      const w = this.slabs32[(l1 - 1) >> SLAB_SHIFT]!;
      const o = (((l1 - 1) & (SLAB_LINES - 1)) << (LINE_SHIFT - 2)) + ((offset & (LINE_SIZE - 1)) >>> 2);
      for (let k = 0; k < n; k++) {
        lo[k] = w[o + 2 * k]!;
        hi[k] = w[o + 2 * k + 1]!;
      }
      return;
    }
    let w: Int32Array | null = null;
    let base = 0;
    for (let k = 0; k < n; k++) {
      const off = offset + 8 * k;
      if (k === 0 || (off & (LINE_SIZE - 1)) === 0) {
        const l1 = this.lineIds[ids + (off >>> LINE_SHIFT)]!;
        w = l1 === 0 ? null : this.slabs32[(l1 - 1) >> SLAB_SHIFT]!;
        base = l1 === 0 ? 0 : ((l1 - 1) & (SLAB_LINES - 1)) << (LINE_SHIFT - 2);
      }
      if (w === null) {
        lo[k] = 0;
        hi[k] = 0;
        continue;
      }
      const o = base + ((off & (LINE_SIZE - 1)) >>> 2);
      lo[k] = w[o]!;
      hi[k] = w[o + 1]!;
    }
  }

  /** store a 32-bit value at a 4-aligned `offset` (little-endian); zeros over zeros store nothing */
  writeI32(pfn: number, offset: number, v: number): void {
    const l1 = this.lineAt(pfn, offset, v !== 0);
    if (l1 === 0) return;
    const line = l1 - 1;
    this.slabs32[line >> SLAB_SHIFT]![(((line & (SLAB_LINES - 1)) << LINE_SHIFT) + (offset & (LINE_SIZE - 1))) >>> 2] = v;
  }

  /** `n` consecutive 64-bit entries at an 8-aligned `offset` as int32 halves (one line lookup per line) */
  readI64Halves(pfn: number, offset: number, n: number, lo: Int32Array, hi: Int32Array): void {
    const s1 = this.slotOf(pfn);
    if (s1 === 0) {
      lo.fill(0, 0, n);
      hi.fill(0, 0, n);
      return;
    }
    this.readI64HalvesInSlot(s1, offset, n, lo, hi);
  }

  /** little-endian store of `size` bytes of `value` (mod 2^(8*size)) inside one page */
  writeValue(pfn: number, offset: number, size: number, value: bigint): void {
    const v = BigInt.asUintN(size * 8, value);
    if (v === 0n && this.slotOf(pfn) === 0) return; // zeros over zeros: nothing to store
    if (size === 8 && (offset & 7) === 0) {
      const l1 = this.lineAt(pfn, offset, v !== 0n);
      if (l1 === 0) return;
      const line = l1 - 1;
      const o = ((line & (SLAB_LINES - 1)) << LINE_SHIFT) + (offset & (LINE_SIZE - 1));
      this.slabs64[line >> SLAB_SHIFT]![o >>> 3] = v;
      return;
    }
    let lo = Number(v & 0xffffffffn);
    let hi = size > 4 ? Number(v >> 32n) : 0;
    for (let i = 0; i < size; i++) {
      let byte: number;
      if (i < 4) {
        byte = lo & 0xff;
        lo = (lo - byte) / 256;
      } else {
        byte = hi & 0xff;
        hi = (hi - byte) / 256;
      }
      this.storeByte(pfn, offset + i, byte);
    }
  }

  private storeByte(pfn: number, offset: number, byte: number): void {
    const l1 = this.lineAt(pfn, offset, byte !== 0);
    if (l1 === 0) return; // a zero byte in a zero line
    const line = l1 - 1;
    this.slabs[line >> SLAB_SHIFT]![((line & (SLAB_LINES - 1)) << LINE_SHIFT) + (offset & (LINE_SIZE - 1))] = byte;
  }

  /** copy [offset, offset + out.length) of `pfn` into `out` (zeros where nothing is stored) */
  readInto(pfn: number, offset: number, out: Uint8Array): void {
    const s1 = this.slotOf(pfn);
    if (s1 === 0) return;
    const end = offset + out.length;
    for (let o = offset; o < end; ) {
      const lineEnd = Math.min(end, (o | (LINE_SIZE - 1)) + 1);
      const l1 = this.lineIds[(s1 - 1) * LINES_PER_PAGE + (o >>> LINE_SHIFT)]!;
      if (l1 !== 0) {
        const line = l1 - 1;
        const base = (line & (SLAB_LINES - 1)) << LINE_SHIFT;
        const lo = base + (o & (LINE_SIZE - 1));
        out.set(this.slabs[line >> SLAB_SHIFT]!.subarray(lo, lo + (lineEnd - o)), o - offset);
      }
      o = lineEnd;
    }
  }

  /** store `data` at `offset` of `pfn`; lines that would only receive zeros stay unallocated */
  write(pfn: number, offset: number, data: Uint8Array): void {
    const end = offset + data.length;
    for (let o = offset; o < end; ) {
      const lineEnd = Math.min(end, (o | (LINE_SIZE - 1)) + 1);
      const part = data.subarray(o - offset, lineEnd - offset);
      const l1 = this.lineAt(pfn, o, !isAllZero(part));
      if (l1 !== 0) {
        const line = l1 - 1;
        this.slabs[line >> SLAB_SHIFT]!.set(part, ((line & (SLAB_LINES - 1)) << LINE_SHIFT) + (o & (LINE_SIZE - 1)));
      }
      o = lineEnd;
    }
  }

  /**
   * Gives the first slabs and the index leaves back for reuse by later PageContents (the host
   * is being torn down). Every access throws afterwards.
   */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.slotGen++;
    for (let s = 0; s < this.slabs.length && s < cachedSlabs.length; s++) {
      const list = cachedSlabs[s]!;
      if (list.length < MAX_CACHED) list.push(this.slabs[s]!);
    }
    for (const e of this.index.values()) if (typeof e !== 'number' && cachedLeaves.length < MAX_CACHED) cachedLeaves.push(e);
    this.index.clear();
    this.lastBlock = -1;
    this.lastEntry = undefined;
    this.slabs.length = 0;
    this.slabs64.length = 0;
    this.slabs32.length = 0;
  }

  /** bytes held: slabs, line tables, the pfn index and the free lists */
  byteLength(): number {
    let b = this.slabs.reduce((n, slab) => n + slab.byteLength, 0) + this.lineIds.byteLength + this.freeLines.byteLength + this.freePageSlots.byteLength;
    for (const e of this.index.values()) b += typeof e === 'number' ? 16 : e.byteLength + 16;
    return b;
  }
}

function growI32(a: Int32Array, min: number): Int32Array<ArrayBuffer> {
  let n = a.length * 2;
  while (n < min) n *= 2;
  const b = new Int32Array(n);
  b.set(a);
  return b;
}

export function isAllZero(data: Uint8Array): boolean {
  for (let i = 0; i < data.length; i++) if (data[i] !== 0) return false;
  return true;
}
