/**
 * A flat, sorted copy of a memslot set's gfn ranges for search_memslots(): one array of
 * (base_gfn, base_gfn + npages, slot table index) records in base_gfn order, searched with an
 * interpolation guess, a gallop and a binary search. With slots laid out back to back (what a
 * VMM does) the guess lands on the answer: one or two cache lines per lookup, where a tree
 * descent reads a line per level.
 *
 * The kernel searches its gfn rbtree (include/linux/kvm_host.h search_memslots()); the model
 * keeps its B+ tree as the structure every change updates in O(log n), and this copy only
 * speeds up lookups between changes. `KvmMemslots` invalidates it on every change and builds
 * it again (O(n)) only after as many lookups as there are slots have used the tree, so a run of
 * changes interleaved with lookups never pays for a rebuild, and a rebuild is paid for by the
 * lookups before it.
 */

import type { KvmMemorySlot } from './memslot.js';

/** doubles per record: base_gfn, end gfn, slot table index, padding (32 bytes: two records per line) */
const STRIDE = 4;
const NO_SLOTS: readonly KvmMemorySlot[] = [];

export class MemslotGfnIndex {
  /** the records, STRIDE doubles each, sorted by base_gfn */
  private recs = new Float64Array(0);
  private count = 0;
  /** the slot of each record, in the same order (dropped with the copy: it keeps no old slot alive) */
  private slots: readonly KvmMemorySlot[] = NO_SLOTS;
  /** the records match the set (false after any change until the next rebuild) */
  valid = false;

  /** drop the copy: the set changed */
  invalidate(): void {
    this.valid = false;
    this.count = 0;
    this.slots = NO_SLOTS;
  }

  /**
   * Rebuild from the slots in base_gfn order: `forEach` calls `add(baseGfn, endGfn, index)`
   * for each slot, by increasing base_gfn.
   */
  rebuild(n: number, forEach: (add: (base: number, end: number, index: number, slot: KvmMemorySlot) => void) => void): void {
    this.invalidate();
    if (this.recs.length < n * STRIDE) this.recs = new Float64Array(Math.max(16, n) * STRIDE);
    const r = this.recs;
    const slots: KvmMemorySlot[] = new Array<KvmMemorySlot>(n);
    let k = 0;
    let prev = -Infinity;
    forEach((base, end, index, slot) => {
      if (k >= n || !(base > prev)) throw new Error('MemslotGfnIndex.rebuild: slots must come in increasing base_gfn order, as many as announced');
      prev = base;
      const o = k * STRIDE;
      r[o] = base;
      r[o + 1] = end;
      r[o + 2] = index;
      slots[k] = slot;
      k++;
    });
    if (k !== n) throw new Error(`MemslotGfnIndex.rebuild: ${k} slots given, ${n} announced`);
    this.count = n;
    this.slots = slots;
    this.valid = true;
  }

  /**
   * The slot holding `gfn`, or null. The interpolation guess is checked against the guessed
   * slot's own range first: with slots laid out back to back it is the answer, found with one
   * record line, one array line and the slot object the caller reads anyway.
   */
  findSlot(gfn: number): KvmMemorySlot | null {
    const a = this.recs;
    const last = this.count - 1;
    if (last < 0) return null;
    const k0 = a[0]!;
    const kl = a[last * STRIDE]!;
    let g = kl > k0 ? Math.floor(((gfn - k0) / (kl - k0)) * last) : 0;
    if (!(g >= 0 && g <= last)) g = gfn < k0 ? 0 : last;
    const s = this.slots[g]!;
    if (gfn >= s.baseGfn && gfn < s.baseGfn + s.npages) return s;
    const k = this.find(gfn);
    return k < 0 ? null : this.slots[k]!;
  }

  /** the record holding `gfn`, or -1 (none, or a gap between slots) */
  find(gfn: number): number {
    const k = this.floor(gfn);
    if (k < 0 || gfn >= this.recs[k * STRIDE + 1]!) return -1;
    return k;
  }

  /** slot table index of record `k` */
  indexAt(k: number): number {
    return this.recs[k * STRIDE + 2]!;
  }

  /** base_gfn of record `k` */
  baseAt(k: number): number {
    return this.recs[k * STRIDE]!;
  }

  /** end gfn (base_gfn + npages) of record `k` */
  endAt(k: number): number {
    return this.recs[k * STRIDE + 1]!;
  }

  /** the last record whose base_gfn <= `gfn`, or -1 */
  private floor(gfn: number): number {
    const a = this.recs;
    const last = this.count - 1;
    if (last < 0 || gfn < a[0]!) return -1;
    const kl = a[last * STRIDE]!;
    if (gfn >= kl) return last;
    // a[0] <= gfn < a[last]: the answer is in [0, last)
    const k0 = a[0]!;
    let g = Math.floor(((gfn - k0) / (kl - k0)) * last);
    if (!(g >= 0 && g < last)) g = 0;
    let lo: number;
    let hi: number;
    if (a[g * STRIDE]! <= gfn) {
      if (a[(g + 1) * STRIDE]! > gfn) return g; // the guess was right
      // answer in [g + 1, last): gallop up
      lo = g + 1;
      let step = 2;
      hi = g + 2;
      while (hi < last && a[hi * STRIDE]! <= gfn) {
        lo = hi;
        step <<= 1;
        hi = g + step;
      }
      if (hi > last) hi = last;
      hi--;
    } else {
      // answer in [0, g): gallop down
      hi = g - 1;
      let step = 1;
      lo = g - 1;
      while (lo > 0 && a[lo * STRIDE]! > gfn) {
        hi = lo - 1;
        step <<= 1;
        lo = g - step;
      }
      if (lo < 0) lo = 0;
    }
    // a[lo] <= gfn (or lo is 0, and a[0] <= gfn holds), answer in [lo, hi]
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      if (a[mid * STRIDE]! <= gfn) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  /** bytes held by the records */
  get bytes(): number {
    return this.recs.byteLength;
  }
}
