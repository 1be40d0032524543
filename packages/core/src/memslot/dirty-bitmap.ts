/**
 * A memslot's dirty bitmap (slot->dirty_bitmap, kvm_alloc_dirty_bitmap()), one bit per page in
 * the kernel's layout: ALIGN(npages, 64) bits, bit i (little-endian within each 64-bit word) =
 * page i of the slot, read and written as 32-bit words.
 *
 * The kernel allocates the whole bitmap up front (256 MiB for a slot of 2^31 pages); the model
 * costs memory in proportion to what is touched: the bitmap is cut into chunks of
 * DIRTY_CHUNK_PAGES pages (4 KiB of bits each), and a chunk is one of
 *  - zero (nothing allocated),
 *  - full: every page of the chunk below `npages` set (nothing allocated; what
 *    KVM_DIRTY_LOG_INITIALLY_SET's bitmap_set(dirty_bitmap, 0, npages) makes of every chunk),
 *  - its own Uint32Array of words, allocated by the first change that leaves it neither.
 * The chunk directory is allocated on the first such change (one entry per chunk: 65,536 for
 * 2^31 pages).
 */

/** log2 of the pages one chunk covers */
export const DIRTY_CHUNK_SHIFT = 15;
/** pages per chunk: 32 Ki pages = 1,024 words = 4 KiB of bits */
export const DIRTY_CHUNK_PAGES = 1 << DIRTY_CHUNK_SHIFT;
const CHUNK_WORDS = DIRTY_CHUNK_PAGES / 32;

/** the shared markers of a chunk without words (compared by identity, never written) */
const ZERO: Uint32Array = new Uint32Array(0);
const FULL: Uint32Array = new Uint32Array(0);

/** the state of one chunk, as `DirtyBitmap.chunkKind()` reports it */
export const CHUNK_ZERO = 0;
export const CHUNK_FULL = 1;
export const CHUNK_WORDS_KIND = 2;

function popcount32(x: number): number {
  x -= (x >>> 1) & 0x55555555;
  x = (x & 0x33333333) + ((x >>> 2) & 0x33333333);
  return (((x + (x >>> 4)) & 0x0f0f0f0f) * 0x01010101) >>> 24;
}

export class DirtyBitmap {
  /** the pages (bits) the bitmap covers; bits from npages up to the 64-bit boundary stay 0 */
  readonly npages: number;
  /** 32-bit words: ALIGN(npages, 64) / 32 */
  readonly nwords: number;
  /** chunks: ceil(nwords / 1024) */
  readonly nchunks: number;
  /** per chunk: ZERO, FULL or its words; null until the first chunk gets its own state */
  private dir: Uint32Array[] | null = null;
  /** what a chunk is while `dir` is null: ZERO or FULL */
  private all: Uint32Array;

  /** `allSet`: bitmap_set(bitmap, 0, npages) (KVM_DIRTY_LOG_INITIALLY_SET), at no cost */
  constructor(npages: number, allSet = false) {
    if (!Number.isSafeInteger(npages) || npages < 0 || npages > 2 ** 32) throw new RangeError(`DirtyBitmap: bad page count ${npages}`);
    this.npages = npages;
    this.nwords = Math.ceil(npages / 64) * 2;
    this.nchunks = Math.ceil(this.nwords / CHUNK_WORDS);
    this.all = allSet ? FULL : ZERO;
  }

  /** kvm_dirty_bitmap_bytes(): the bytes of the kernel's bitmap */
  get byteLength(): number {
    return this.nwords * 4;
  }

  /**
   * set_bit_le(rel) (mark_page_dirty_in_slot(), on the write-fault path): no allocation unless
   * the page's chunk is zero.
   */
  set(rel: number): void {
    const c = rel >>> DIRTY_CHUNK_SHIFT;
    let words = this.dir === null ? this.all : this.dir[c]!;
    if (words.length === 0) {
      if (words === FULL) return;
      words = this.materialize(c);
    }
    const i = (rel >>> 5) & (CHUNK_WORDS - 1);
    words[i] = words[i]! | (1 << (rel & 31));
  }

  /** test_bit_le(rel) */
  test(rel: number): boolean {
    return ((this.word(rel >>> 5) >>> (rel & 31)) & 1) === 1;
  }

  /** 32-bit word `i` (0 beyond the bitmap) */
  word(i: number): number {
    if (i < 0 || i >= this.nwords) return 0;
    const words = this.dir === null ? this.all : this.dir[i >>> 10]!;
    if (words === ZERO) return 0;
    if (words === FULL) return this.fullWord(i);
    return words[i & (CHUNK_WORDS - 1)]!;
  }

  /** replace word `i` (bits at and beyond npages are dropped, as the kernel never sets them) */
  setWord(i: number, value: number): void {
    if (i < 0 || i >= this.nwords) throw new RangeError(`DirtyBitmap: word ${i} out of range`);
    const v = (value & this.fullWord(i)) >>> 0;
    const c = i >>> 10;
    const words = this.dir === null ? this.all : this.dir[c]!;
    if (words.length === 0 && v === (words === FULL ? this.fullWord(i) : 0)) return;
    this.chunkWords(c)[i & (CHUNK_WORDS - 1)] = v;
  }

  /** what chunk `c` is: CHUNK_ZERO, CHUNK_FULL (every page below npages set) or CHUNK_WORDS_KIND */
  chunkKind(c: number): number {
    const words = this.dir === null ? this.all : this.dir[c]!;
    return words === ZERO ? CHUNK_ZERO : words === FULL ? CHUNK_FULL : CHUNK_WORDS_KIND;
  }

  /** the words of chunk `c`, allocated (from its zero or full state) if it has none */
  chunkWords(c: number): Uint32Array {
    const words = this.dir === null ? this.all : this.dir[c]!;
    return words.length === 0 ? this.materialize(c) : words;
  }

  /** make chunk `c` zero or full (its words, if any, are dropped) */
  setChunk(c: number, full: boolean): void {
    const want = full ? FULL : ZERO;
    if (this.dir === null && this.all === want) return;
    this.directory()[c] = want;
  }

  /** the first word of chunk `c` and one past its last */
  chunkWordRange(c: number): { start: number; end: number } {
    const start = c * CHUNK_WORDS;
    return { start, end: Math.min(start + CHUNK_WORDS, this.nwords) };
  }

  /** bitmap_set(bitmap, 0, npages) */
  setAll(): void {
    this.dir = null;
    this.all = FULL;
  }

  /** bitmap_zero() */
  clearAll(): void {
    this.dir = null;
    this.all = ZERO;
  }

  /** a copy (chunks with words are copied, the others cost nothing) */
  clone(): DirtyBitmap {
    const out = new DirtyBitmap(this.npages);
    out.all = this.all;
    if (this.dir !== null) out.dir = this.dir.map((w) => (w.length === 0 ? w : w.slice()));
    return out;
  }

  /** whether every bit of [from, to) is set (O(chunks) for full chunks) */
  allSet(from: number, to: number): boolean {
    if (from >= to) return true;
    if (from < 0 || to > this.npages) return false;
    for (let c = from >>> DIRTY_CHUNK_SHIFT; c * DIRTY_CHUNK_PAGES < to; c++) {
      const kind = this.chunkKind(c);
      if (kind === CHUNK_ZERO) return false;
      if (kind === CHUNK_FULL) continue;
      const lo = Math.max(from, c * DIRTY_CHUNK_PAGES);
      const hi = Math.min(to, (c + 1) * DIRTY_CHUNK_PAGES);
      for (let p = lo; p < hi; ) {
        const k = Math.min(32 - (p & 31), hi - p);
        const want = k === 32 ? 0xffffffff : ((2 ** k - 1) * 2 ** (p & 31)) >>> 0;
        if (((this.word(p >>> 5) & want) >>> 0) !== want) return false;
        p += k;
      }
    }
    return true;
  }

  /** the number of set bits */
  count(): number {
    let n = 0;
    for (let c = 0; c < this.nchunks; c++) {
      const kind = this.chunkKind(c);
      if (kind === CHUNK_ZERO) continue;
      const { start, end } = this.chunkWordRange(c);
      if (kind === CHUNK_FULL) n += Math.min(end * 32, this.npages) - start * 32;
      else {
        const words = this.dir![c]!;
        for (let i = 0; i < words.length; i++) if (words[i] !== 0) n += popcount32(words[i]!);
      }
    }
    return n;
  }

  /**
   * The set bits in ascending runs [start, end): `cb(start, end)` once per run of a full chunk
   * or of adjacent set bits in a word (adjacent runs are not merged). O(touched chunks).
   */
  forEachSetRun(cb: (start: number, end: number) => void): void {
    for (let c = 0; c < this.nchunks; c++) {
      const kind = this.chunkKind(c);
      if (kind === CHUNK_ZERO) continue;
      const { start, end } = this.chunkWordRange(c);
      if (kind === CHUNK_FULL) {
        const hi = Math.min(end * 32, this.npages);
        if (hi > start * 32) cb(start * 32, hi);
        continue;
      }
      const words = this.dir![c]!;
      for (let k = 0; k < words.length; k++) {
        let x = words[k]!;
        const base = (start + k) * 32;
        while (x !== 0) {
          const lo = 31 - Math.clz32(x & -x); // __ffs()
          const inv = ~(x >>> lo) >>> 0; // the run of ones from `lo` up ends at inv's lowest bit
          const len = inv === 0 ? 32 : 31 - Math.clz32(inv & -inv);
          cb(base + lo, base + lo + len);
          const end = lo + len;
          x = end >= 32 ? 0 : ((x >>> end) << end) >>> 0;
        }
      }
    }
  }

  /** the whole bitmap as the kernel's words (O(npages): for small slots and tests) */
  toUint32Array(): Uint32Array {
    const out = new Uint32Array(this.nwords);
    for (let c = 0; c < this.nchunks; c++) {
      const kind = this.chunkKind(c);
      const { start, end } = this.chunkWordRange(c);
      if (kind === CHUNK_FULL) for (let i = start; i < end; i++) out[i] = this.fullWord(i);
      else if (kind === CHUNK_WORDS_KIND) out.set(this.dir![c]!, start);
    }
    return out;
  }

  /** the whole bitmap in the kernel's byte layout (O(npages): for small slots and tests) */
  toBytes(): Uint8Array {
    return new Uint8Array(this.toUint32Array().buffer);
  }

  /** a bitmap of `npages` pages from the kernel's byte layout (bits at and beyond npages dropped) */
  static fromBytes(bytes: Uint8Array, npages = bytes.length * 8): DirtyBitmap {
    const out = new DirtyBitmap(npages);
    const n = Math.min(out.byteLength, bytes.length);
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
    for (let b = 0; b + 4 <= n; b += 4) {
      const w = view.getUint32(b, true);
      if (w !== 0) out.setWord(b / 4, w);
    }
    if (n % 4) {
      let w = 0;
      for (let b = n - (n % 4); b < n; b++) w |= bytes[b]! << ((b % 4) * 8);
      if (w !== 0) out.setWord(Math.floor(n / 4), w >>> 0);
    }
    return out;
  }

  /** word `i` with every page below npages set */
  fullWord(i: number): number {
    const first = i * 32;
    if (first + 32 <= this.npages) return 0xffffffff;
    if (first >= this.npages) return 0;
    return (2 ** (this.npages - first) - 1) >>> 0;
  }

  private directory(): Uint32Array[] {
    if (this.dir === null) this.dir = new Array<Uint32Array>(this.nchunks).fill(this.all);
    return this.dir;
  }

  private materialize(c: number): Uint32Array {
    const dir = this.directory();
    const prev = dir[c]!;
    const { start, end } = this.chunkWordRange(c);
    const words = new Uint32Array(end - start);
    if (prev === FULL) for (let i = start; i < end; i++) words[i - start] = this.fullWord(i);
    dir[c] = words;
    return words;
  }
}
