/**
 * A flat, sorted copy of a memslot set's gfn ranges for search_memslots(): the slots'
 * base_gfns, ends and slot table indexes in base_gfn order, the base_gfns searched as the B+
 * tree searches a node (floorIndex(): an interpolation guess, a gallop and a binary search).
 * With slots laid out back to back (what a VMM does) the guess lands on the answer: one or two
 * cache lines per lookup, where a tree descent reads a line per level.
 *
 * The kernel searches its gfn rbtree (include/linux/kvm_host.h search_memslots()); the model
 * keeps its B+ tree as the structure every change updates in O(log n), and this copy only
 * speeds up lookups between changes. `KvmMemslots` invalidates it on every change and builds
 * it again (O(n)) only after as many lookups as there are slots have used the tree, so a run of
 * changes interleaved with lookups never pays for a rebuild, and a rebuild is paid for by the
 * lookups before it.
 */

import { floorIndex } from '../floor-index.js';
import type { KvmMemorySlot } from './memslot.js';

const NO_SLOTS: readonly KvmMemorySlot[] = [];

export class MemslotGfnIndex {
  /** base_gfn of each slot, sorted */
  private bases = new Float64Array(0);
  /** base_gfn + npages of each slot, in the same order */
  private ends = new Float64Array(0);
  /** slot table index of each slot, in the same order */
  private indexes = new Int32Array(0);
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
    if (this.bases.length < n) {
      const cap = Math.max(16, n);
      this.bases = new Float64Array(cap);
      this.ends = new Float64Array(cap);
      this.indexes = new Int32Array(cap);
    }
    const bases = this.bases;
    const ends = this.ends;
    const indexes = this.indexes;
    const slots: KvmMemorySlot[] = new Array<KvmMemorySlot>(n);
    let k = 0;
    let prev = -Infinity;
    forEach((base, end, index, slot) => {
      if (k >= n || !(base > prev)) throw new Error('MemslotGfnIndex.rebuild: slots must come in increasing base_gfn order, as many as announced');
      prev = base;
      bases[k] = base;
      ends[k] = end;
      indexes[k] = index;
      slots[k] = slot;
      k++;
    });
    if (k !== n) throw new Error(`MemslotGfnIndex.rebuild: ${k} slots given, ${n} announced`);
    this.count = n;
    this.slots = slots;
    this.valid = true;
  }

  /** The slot holding `gfn`, or null. */
  findSlot(gfn: number): KvmMemorySlot | null {
    const k = this.find(gfn);
    return k < 0 ? null : this.slots[k]!;
  }

  /** the record holding `gfn`, or -1 (none, or a gap between slots) */
  find(gfn: number): number {
    const k = floorIndex(this.bases, 0, this.count, gfn);
    if (k < 0 || gfn >= this.ends[k]!) return -1;
    return k;
  }

  /** slot table index of record `k` */
  indexAt(k: number): number {
    return this.indexes[k]!;
  }

  /** base_gfn of record `k` */
  baseAt(k: number): number {
    return this.bases[k]!;
  }

  /** end gfn (base_gfn + npages) of record `k` */
  endAt(k: number): number {
    return this.ends[k]!;
  }

  /** bytes held by the records */
  get bytes(): number {
    return this.bases.byteLength + this.ends.byteLength + this.indexes.byteLength;
  }
}
