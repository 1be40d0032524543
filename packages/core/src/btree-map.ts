/**
 * An ordered map from integer keys (doubles holding integers, any order of insertion) to
 * int32 values, as a B+ tree whose nodes live in typed arrays: O(log n) per insert, delete,
 * floor and successor, whatever the order of the keys, and no object per entry.
 *
 * The kernel keeps memory attributes in an xarray (kvm->mem_attr_array, O(log) per entry)
 * and memslots in an rbtree by gfn (struct kvm_memslots::gfn_tree). Both maps of the model
 * (attribute runs in RangeMap, memslots by base_gfn in KvmMemslots) are this tree: a generic
 * B+ tree over JS arrays (sorted-btree) measured 600–900 ns per operation at 1 M keys on the
 * benchmark machine, too slow for the per-page conversion rate the benchmarks require
 * (docs/core.md, "Ordered maps"); here a leaf is 64 keys in one Float64Array slice, so a
 * lookup touches a few cache lines per level. Inner nodes are wide (1024 children): one inner
 * root holds 1024 leaves, 65,536 keys inserted in ascending order and at least 32,768 when
 * only inserted, so the x86 limit of 32,764 memslots is one inner search and one leaf search
 * per lookup, and a million attribute runs sit below two inner levels.
 *
 * Layout: leaves hold up to LEAF (key, value) pairs, sorted, linked to their neighbours;
 * inner nodes hold up to INNER (lowerBound, child) pairs, where lowerBound is a key no
 * greater than any key of that child's subtree and greater than every key of the previous
 * child's subtree (the first pair's bound is never compared). A node other than the root
 * has at least a quarter of its capacity; an underfull node borrows from or merges with a
 * sibling, so the height stays O(log n) after any sequence of deletes.
 */

import { floorIndex } from './floor-index.js';

const LEAF = 64;
const INNER = 1024;
const LEAF_MIN = LEAF >>> 2;
const INNER_MIN = INNER >>> 2;
const NONE = -1;
const EMPTY_F64 = new Float64Array(0);
const EMPTY_I32 = new Int32Array(0);

/**
 * The index of the last key <= `key` among a[base .. base+count), or -1, starting from the
 * guess `g` (0 <= g < count): a gallop away from the guess, then a binary search. Two probes
 * in one cache line when the guess is right.
 */
function floorFrom(a: Float64Array, base: number, count: number, key: number, g: number): number {
  let lo: number;
  let hi: number;
  if (a[base + g]! <= key) {
    // answer in [g, count): gallop up
    lo = g;
    hi = g + 1;
    let step = 1;
    while (hi < count && a[base + hi]! <= key) {
      lo = hi;
      step <<= 1;
      hi = g + step;
    }
    if (hi > count) hi = count;
    hi--;
  } else {
    // answer in [-1, g): gallop down
    hi = g - 1;
    lo = g - 1;
    let step = 1;
    while (lo >= 0 && a[base + lo]! > key) {
      hi = lo - 1;
      step <<= 1;
      lo = g - step;
    }
    if (lo < 0) lo = -1;
  }
  // a[base + lo] <= key (or lo is -1), answer in [lo, hi]
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (a[base + mid]! <= key) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

export class BTreeMap {
  /* leaves: keys, values, and per leaf (count, next, prev) */
  private lk = new Float64Array(LEAF);
  private lv = new Int32Array(LEAF);
  private lm = new Int32Array(3);
  private leafTop = 0;
  private leafFree: number[] = [];
  /* inner nodes: lower bounds, children, count */
  // no inner node until the first split (an empty array is shared: it is replaced, never written)
  private ik = EMPTY_F64;
  private ic = EMPTY_I32;
  private icnt = EMPTY_I32;
  private innerTop = 0;
  private innerFree: number[] = [];

  private root: number;
  /** 0: the root is a leaf */
  private height = 0;
  private n = 0;
  /** the finger: the last leaf descended to and the key range [fingerLo, fingerHi) it covers */
  private fingerLeaf = 0;
  private fingerLo = Infinity;
  private fingerHi = -Infinity;
  /** the descent path: node and child index per inner level (1..height); allocated with the first inner node */
  private pathNode = EMPTY_I32;
  private pathIdx = EMPTY_I32;

  /** results of seek(): the floor entry, the entry before it and the key after it */
  floorKey = NaN;
  floorValue = 0;
  prevValue = NaN;
  nextKey = Infinity;

  constructor() {
    this.root = this.allocLeaf();
  }

  get size(): number {
    return this.n;
  }

  /* ------------------------------------------------------------- lookups ---------- */

  /**
   * Descends to the leaf whose range holds `key`, recording the path. The last leaf found
   * and its key range are remembered (a finger): the next operations of a change land in
   * the same neighbourhood, and a key inside that range skips the descent. Any split, merge
   * or borrow drops the finger, so the recorded path stays the finger leaf's path.
   */
  private descend(key: number): number {
    if (key >= this.fingerLo && key < this.fingerHi) return this.fingerLeaf;
    let node = this.root;
    const ik = this.ik;
    let lo = -Infinity;
    let hi = Infinity;
    for (let h = this.height; h > 0; h--) {
      const base = node * INNER;
      const cnt = this.icnt[node]!;
      // bound 0 is never compared: the child 0 default
      const a = floorIndex(ik, base + 1, cnt - 1, key) + 1;
      if (a > 0) lo = ik[base + a]!;
      if (a + 1 < cnt) hi = ik[base + a + 1]!;
      this.pathNode[h] = node;
      this.pathIdx[h] = a;
      node = this.ic[base + a]!;
    }
    this.fingerLeaf = node;
    this.fingerLo = lo;
    this.fingerHi = hi;
    return node;
  }

  /** the tree's shape changed: the finger and the recorded path no longer hold */
  private dropFinger(): void {
    this.fingerLo = Infinity;
    this.fingerHi = -Infinity;
  }

  /**
   * index of the last key <= `key` in `leaf`, or -1; `leaf` is the one descend() just
   * returned for `key`, so the finger's bounds are the leaf's and give the first guess
   */
  private leafFloor(leaf: number, key: number): number {
    const c = this.lm[leaf * 3]!;
    if (c === 0) return -1;
    const lo = this.fingerLo;
    const hi = this.fingerHi;
    if (leaf === this.fingerLeaf && lo > -Infinity && hi < Infinity && key >= lo && key < hi) {
      let g = Math.floor(((key - lo) / (hi - lo)) * c);
      if (!(g >= 0 && g < c)) g = 0;
      return floorFrom(this.lk, leaf * LEAF, c, key, g);
    }
    return floorIndex(this.lk, leaf * LEAF, c, key);
  }

  /**
   * The value of the greatest key <= `key`, or `missing` when there is none. The fast path
   * of a lookup: one descent, no writes but the path.
   */
  floorValueOf(key: number, missing: number): number {
    let node: number;
    // the leaf's bounds: lo <= its keys < hi
    let lo = -Infinity;
    let hi = Infinity;
    if (key >= this.fingerLo && key < this.fingerHi) {
      node = this.fingerLeaf;
      lo = this.fingerLo;
      hi = this.fingerHi;
    } else {
      node = this.root;
      const ik = this.ik;
      for (let h = this.height; h > 0; h--) {
        const base = node * INNER;
        const cnt = this.icnt[node]!;
        // bound 0 is never compared: the child 0 default
        const j = floorIndex(ik, base + 1, cnt - 1, key);
        if (j >= 0) lo = ik[base + j + 1]!;
        if (j + 2 < cnt) hi = ik[base + j + 2]!;
        node = this.ic[base + j + 1]!;
      }
    }
    const c = this.lm[node * 3]!;
    let i: number;
    if (c === 0) i = -1;
    else if (lo > -Infinity && hi < Infinity) {
      // the bounds the descent found give the interpolation guess: the leaf's own first and
      // last keys (two more cache lines) are read only if the guess is off
      let g = Math.floor(((key - lo) / (hi - lo)) * c);
      if (!(g >= 0 && g < c)) g = 0;
      i = floorFrom(this.lk, node * LEAF, c, key, g);
    } else i = floorIndex(this.lk, node * LEAF, c, key);
    if (i >= 0) return this.lv[node * LEAF + i]!;
    const p = this.lm[node * 3 + 2]!;
    return p === NONE ? missing : this.lv[p * LEAF + this.lm[p * 3]! - 1]!;
  }

  /**
   * Finds the greatest key <= `key` and sets floorKey / floorValue (NaN / 0 when there is
   * none), prevValue (the value of the entry before the floor entry, NaN if none) and
   * nextKey (the least key > `key`, Infinity if none). Returns whether a floor exists.
   */
  seek(key: number): boolean {
    const leaf = this.descend(key);
    let l = leaf;
    let i = this.leafFloor(leaf, key);
    if (i < 0) {
      // the leaf's keys all exceed `key`: the floor is the previous leaf's last key
      const p = this.lm[leaf * 3 + 2]!;
      this.nextKey = this.lm[leaf * 3]! > 0 ? this.lk[leaf * LEAF]! : this.firstKeyFrom(this.lm[leaf * 3 + 1]!);
      if (p === NONE) {
        this.floorKey = NaN;
        this.floorValue = 0;
        this.prevValue = NaN;
        return false;
      }
      l = p;
      i = this.lm[p * 3]! - 1;
    } else {
      this.nextKey = i + 1 < this.lm[leaf * 3]! ? this.lk[leaf * LEAF + i + 1]! : this.firstKeyFrom(this.lm[leaf * 3 + 1]!);
    }
    const base = l * LEAF;
    this.floorKey = this.lk[base + i]!;
    this.floorValue = this.lv[base + i]!;
    if (i > 0) this.prevValue = this.lv[base + i - 1]!;
    else {
      const p = this.lm[l * 3 + 2]!;
      this.prevValue = p === NONE ? NaN : this.lv[p * LEAF + this.lm[p * 3]! - 1]!;
    }
    return true;
  }

  private firstKeyFrom(leaf: number): number {
    return leaf === NONE ? Infinity : this.lk[leaf * LEAF]!;
  }

  /** the least key > `key`, or Infinity */
  nextKeyAfter(key: number): number {
    const leaf = this.descend(key);
    const i = this.leafFloor(leaf, key) + 1;
    return i < this.lm[leaf * 3]! ? this.lk[leaf * LEAF + i]! : this.firstKeyFrom(this.lm[leaf * 3 + 1]!);
  }

  /**
   * Whether some key k has lo < k < hi. The leaf of the last descent answers most queries
   * near it (its first or last key falls inside) without a descent.
   */
  hasKeyBetween(lo: number, hi: number): boolean {
    if (this.fingerLo < this.fingerHi) {
      const f = this.fingerLeaf;
      const c = this.lm[f * 3]!;
      if (c > 0) {
        const first = this.lk[f * LEAF]!;
        const last = this.lk[f * LEAF + c - 1]!;
        if ((first > lo && first < hi) || (last > lo && last < hi)) return true;
      }
    }
    return this.nextKeyAfter(lo) < hi;
  }

  /** the value stored at exactly `key`, or `missing` */
  get(key: number, missing: number): number {
    const leaf = this.descend(key);
    const i = this.leafFloor(leaf, key);
    return i >= 0 && this.lk[leaf * LEAF + i] === key ? this.lv[leaf * LEAF + i]! : missing;
  }

  has(key: number): boolean {
    const leaf = this.descend(key);
    const i = this.leafFloor(leaf, key);
    return i >= 0 && this.lk[leaf * LEAF + i] === key;
  }

  /** calls `cb` for every key in [lo, hi), ascending; `cb` returning true stops */
  forRange(lo: number, hi: number, cb: (key: number, value: number) => boolean | void): void {
    let leaf = this.descend(lo);
    let i = this.leafFloor(leaf, lo);
    if (i < 0 || this.lk[leaf * LEAF + i]! < lo) i++;
    while (leaf !== NONE) {
      const base = leaf * LEAF;
      const c = this.lm[leaf * 3]!;
      for (; i < c; i++) {
        const k = this.lk[base + i]!;
        if (k >= hi) return;
        if (cb(k, this.lv[base + i]!) === true) return;
      }
      leaf = this.lm[leaf * 3 + 1]!;
      i = 0;
    }
  }

  /* ------------------------------------------------------------- updates ---------- */

  /** inserts or overwrites `key` */
  set(key: number, value: number): void {
    const leaf = this.descend(key);
    const i = this.leafFloor(leaf, key);
    const base = leaf * LEAF;
    if (i >= 0 && this.lk[base + i] === key) {
      this.lv[base + i] = value;
      return;
    }
    this.n++;
    const at = i + 1;
    const c = this.lm[leaf * 3]!;
    if (c < LEAF) {
      this.leafInsertAt(leaf, at, key, value);
      return;
    }
    this.dropFinger();
    // split: an append at the right end of the tree leaves the left leaf full (ascending
    // inserts then fill leaves completely); otherwise half and half
    const right = this.allocLeaf();
    const appendAtEnd = at === c && this.lm[leaf * 3 + 1] === NONE;
    const keep = appendAtEnd ? c : c >>> 1;
    const lk = this.lk;
    const lv = this.lv;
    const rb = right * LEAF;
    const lb = leaf * LEAF;
    lk.copyWithin(rb, lb + keep, lb + c);
    lv.copyWithin(rb, lb + keep, lb + c);
    this.lm[right * 3] = c - keep;
    this.lm[leaf * 3] = keep;
    const nx = this.lm[leaf * 3 + 1]!;
    this.lm[right * 3 + 1] = nx;
    this.lm[right * 3 + 2] = leaf;
    if (nx !== NONE) this.lm[nx * 3 + 2] = right;
    this.lm[leaf * 3 + 1] = right;
    if (at <= keep && !appendAtEnd) this.leafInsertAt(leaf, at, key, value);
    else this.leafInsertAt(right, at - keep, key, value);
    this.insertInParent(1, leaf, this.lk[rb]!, right);
  }

  /**
   * Inserts k1 < k2, neither present and no key between them (a run split in two around a
   * new run): one shift of the leaf when both fit in it, else two set() calls. Leaves the
   * tree exactly as set(k1, v1) then set(k2, v2) would.
   */
  insertPair(k1: number, v1: number, k2: number, v2: number): void {
    const leaf = this.descend(k1);
    const c = this.lm[leaf * 3]!;
    if (c + 2 <= LEAF && k2 < this.fingerHi) {
      const at = this.leafFloor(leaf, k1) + 1;
      const lb = leaf * LEAF;
      const b = lb + at;
      const lk = this.lk;
      const lv = this.lv;
      if (at < c) {
        lk.copyWithin(b + 2, b, lb + c);
        lv.copyWithin(b + 2, b, lb + c);
      }
      lk[b] = k1;
      lv[b] = v1;
      lk[b + 1] = k2;
      lv[b + 1] = v2;
      this.lm[leaf * 3] = c + 2;
      this.n += 2;
      return;
    }
    this.set(k1, v1);
    this.set(k2, v2);
  }

  /**
   * Removes k1 and k2, k2 being the key right after k1 (a run and the run after it merging
   * into their neighbour): one shift when both sit in one leaf that stays at least a quarter
   * full, else two delete() calls. Leaves the tree exactly as delete(k1), delete(k2) would.
   */
  deletePair(k1: number, k2: number): void {
    const leaf = this.descend(k1);
    const c = this.lm[leaf * 3]!;
    if (c - 2 >= LEAF_MIN || this.height === 0) {
      const i = this.leafFloor(leaf, k1);
      const lb = leaf * LEAF;
      const b = lb + i;
      const lk = this.lk;
      if (i >= 0 && i + 1 < c && lk[b] === k1 && lk[b + 1] === k2) {
        lk.copyWithin(b, b + 2, lb + c);
        this.lv.copyWithin(b, b + 2, lb + c);
        this.lm[leaf * 3] = c - 2;
        this.n -= 2;
        return;
      }
    }
    this.delete(k1);
    this.delete(k2);
  }

  private leafInsertAt(leaf: number, at: number, key: number, value: number): void {
    const base = leaf * LEAF;
    const c = this.lm[leaf * 3]!;
    if (at < c) {
      this.lk.copyWithin(base + at + 1, base + at, base + c);
      this.lv.copyWithin(base + at + 1, base + at, base + c);
    }
    this.lk[base + at] = key;
    this.lv[base + at] = value;
    this.lm[leaf * 3] = c + 1;
  }

  /** adds (bound, right) just after `left` in the inner node at level h (the path's) */
  private insertInParent(h: number, left: number, bound: number, right: number): void {
    if (h > this.height) {
      const r = this.allocInner();
      const b = r * INNER;
      this.ik[b] = -Infinity;
      this.ic[b] = left;
      this.ik[b + 1] = bound;
      this.ic[b + 1] = right;
      this.icnt[r] = 2;
      this.root = r;
      this.height++;
      if (this.pathNode.length <= this.height) {
        this.pathNode = new Int32Array(40);
        this.pathIdx = new Int32Array(40);
      }
      return;
    }
    const node = this.pathNode[h]!;
    const at = this.pathIdx[h]! + 1;
    const c = this.icnt[node]!;
    if (c < INNER) {
      this.innerInsertAt(node, at, bound, right);
      return;
    }
    const sib = this.allocInner();
    const keep = c >>> 1;
    const nb = node * INNER;
    const sb = sib * INNER;
    this.ik.copyWithin(sb, nb + keep, nb + c);
    this.ic.copyWithin(sb, nb + keep, nb + c);
    this.icnt[sib] = c - keep;
    this.icnt[node] = keep;
    if (at <= keep) this.innerInsertAt(node, at, bound, right);
    else this.innerInsertAt(sib, at - keep, bound, right);
    this.insertInParent(h + 1, node, this.ik[sb]!, sib);
  }

  private innerInsertAt(node: number, at: number, bound: number, child: number): void {
    const base = node * INNER;
    const c = this.icnt[node]!;
    if (at < c) {
      this.ik.copyWithin(base + at + 1, base + at, base + c);
      this.ic.copyWithin(base + at + 1, base + at, base + c);
    }
    this.ik[base + at] = bound;
    this.ic[base + at] = child;
    this.icnt[node] = c + 1;
  }

  /** removes `key`; returns whether it was there */
  delete(key: number): boolean {
    const leaf = this.descend(key);
    const i = this.leafFloor(leaf, key);
    const base = leaf * LEAF;
    if (i < 0 || this.lk[base + i] !== key) return false;
    const c = this.lm[leaf * 3]!;
    this.lk.copyWithin(base + i, base + i + 1, base + c);
    this.lv.copyWithin(base + i, base + i + 1, base + c);
    this.lm[leaf * 3] = c - 1;
    this.n--;
    if (c - 1 < LEAF_MIN && this.height > 0) this.rebalanceLeaf(leaf);
    return true;
  }

  /** an underfull leaf borrows from or merges with a sibling under the same parent */
  private rebalanceLeaf(leaf: number): void {
    this.dropFinger();
    const parent = this.pathNode[1]!;
    const idx = this.pathIdx[1]!;
    const pb = parent * INNER;
    const rIdx = idx > 0 ? idx : idx + 1;
    const left = this.ic[pb + rIdx - 1]!;
    const right = this.ic[pb + rIdx]!;
    void leaf;
    const a = this.lm[left * 3]!;
    const b = this.lm[right * 3]!;
    const lb = left * LEAF;
    const rb = right * LEAF;
    if (a + b <= LEAF) {
      this.lk.copyWithin(lb + a, rb, rb + b);
      this.lv.copyWithin(lb + a, rb, rb + b);
      this.lm[left * 3] = a + b;
      const nx = this.lm[right * 3 + 1]!;
      this.lm[left * 3 + 1] = nx;
      if (nx !== NONE) this.lm[nx * 3 + 2] = left;
      this.freeLeaf(right);
      this.innerRemoveAt(parent, rIdx);
      this.rebalanceInner(1);
      return;
    }
    const want = (a + b) >>> 1;
    if (a > want) {
      // move left's last (a - want) entries to the front of right
      const m = a - want;
      this.lk.copyWithin(rb + m, rb, rb + b);
      this.lv.copyWithin(rb + m, rb, rb + b);
      this.lk.copyWithin(rb, lb + want, lb + a);
      this.lv.copyWithin(rb, lb + want, lb + a);
      this.lm[left * 3] = want;
      this.lm[right * 3] = b + m;
    } else {
      // move right's first (want - a) entries to the end of left
      const m = want - a;
      this.lk.copyWithin(lb + a, rb, rb + m);
      this.lv.copyWithin(lb + a, rb, rb + m);
      this.lk.copyWithin(rb, rb + m, rb + b);
      this.lv.copyWithin(rb, rb + m, rb + b);
      this.lm[left * 3] = want;
      this.lm[right * 3] = b - m;
    }
    this.ik[pb + rIdx] = this.lk[rb]!;
  }

  private innerRemoveAt(node: number, at: number): void {
    const base = node * INNER;
    const c = this.icnt[node]!;
    this.ik.copyWithin(base + at, base + at + 1, base + c);
    this.ic.copyWithin(base + at, base + at + 1, base + c);
    this.icnt[node] = c - 1;
  }

  /** the inner node at level h lost a child: collapse the root, or borrow / merge */
  private rebalanceInner(h: number): void {
    const node = this.pathNode[h]!;
    if (h === this.height) {
      if (this.icnt[node] === 1) {
        this.root = this.ic[node * INNER]!;
        this.height--;
        this.freeInner(node);
      }
      return;
    }
    if (this.icnt[node]! >= INNER_MIN) return;
    const parent = this.pathNode[h + 1]!;
    const idx = this.pathIdx[h + 1]!;
    const pb = parent * INNER;
    const rIdx = idx > 0 ? idx : idx + 1;
    const left = this.ic[pb + rIdx - 1]!;
    const right = this.ic[pb + rIdx]!;
    const a = this.icnt[left]!;
    const b = this.icnt[right]!;
    const lb = left * INNER;
    const rb = right * INNER;
    // right's first bound becomes a real separator: the parent's bound for right
    this.ik[rb] = this.ik[pb + rIdx]!;
    if (a + b <= INNER) {
      this.ik.copyWithin(lb + a, rb, rb + b);
      this.ic.copyWithin(lb + a, rb, rb + b);
      this.icnt[left] = a + b;
      this.freeInner(right);
      this.innerRemoveAt(parent, rIdx);
      this.rebalanceInner(h + 1);
      return;
    }
    const want = (a + b) >>> 1;
    if (a > want) {
      const m = a - want;
      this.ik.copyWithin(rb + m, rb, rb + b);
      this.ic.copyWithin(rb + m, rb, rb + b);
      this.ik.copyWithin(rb, lb + want, lb + a);
      this.ic.copyWithin(rb, lb + want, lb + a);
      this.icnt[left] = want;
      this.icnt[right] = b + m;
    } else {
      const m = want - a;
      this.ik.copyWithin(lb + a, rb, rb + m);
      this.ic.copyWithin(lb + a, rb, rb + m);
      this.ik.copyWithin(rb, rb + m, rb + b);
      this.ic.copyWithin(rb, rb + m, rb + b);
      this.icnt[left] = want;
      this.icnt[right] = b - m;
    }
    this.ik[pb + rIdx] = this.ik[rb]!;
  }

  /** removes every key in [lo, hi); returns how many */
  deleteRange(lo: number, hi: number): number {
    let removed = 0;
    for (;;) {
      const leaf = this.descend(lo);
      let i = this.leafFloor(leaf, lo);
      let l = leaf;
      if (i < 0 || this.lk[leaf * LEAF + i]! < lo) i++;
      if (i >= this.lm[leaf * 3]!) {
        l = this.lm[leaf * 3 + 1]!;
        i = 0;
        if (l === NONE) return removed;
      }
      const k = this.lk[l * LEAF + i]!;
      if (k >= hi) return removed;
      this.delete(k);
      removed++;
    }
  }

  /* ------------------------------------------------------------- storage ---------- */

  private allocLeaf(): number {
    const f = this.leafFree.pop();
    const id = f ?? this.leafTop++;
    if (id * 3 >= this.lm.length) {
      const cap = (this.lm.length / 3) * 2;
      const lk = new Float64Array(cap * LEAF);
      lk.set(this.lk);
      const lv = new Int32Array(cap * LEAF);
      lv.set(this.lv);
      const lm = new Int32Array(cap * 3);
      lm.set(this.lm);
      this.lk = lk;
      this.lv = lv;
      this.lm = lm;
    }
    this.lm[id * 3] = 0;
    this.lm[id * 3 + 1] = NONE;
    this.lm[id * 3 + 2] = NONE;
    return id;
  }

  private freeLeaf(id: number): void {
    this.lm[id * 3] = 0;
    this.leafFree.push(id);
  }

  private allocInner(): number {
    const f = this.innerFree.pop();
    const id = f ?? this.innerTop++;
    if (id >= this.icnt.length) {
      const cap = Math.max(2, this.icnt.length * 2);
      const ik = new Float64Array(cap * INNER);
      ik.set(this.ik);
      const ic = new Int32Array(cap * INNER);
      ic.set(this.ic);
      const cnt = new Int32Array(cap);
      cnt.set(this.icnt);
      this.ik = ik;
      this.ic = ic;
      this.icnt = cnt;
    }
    this.icnt[id] = 0;
    return id;
  }

  private freeInner(id: number): void {
    this.icnt[id] = 0;
    this.innerFree.push(id);
  }

  /** a deep copy */
  clone(): BTreeMap {
    const c = new BTreeMap();
    c.lk = this.lk.slice();
    c.lv = this.lv.slice();
    c.lm = this.lm.slice();
    c.pathNode = this.pathNode.length ? new Int32Array(40) : EMPTY_I32;
    c.pathIdx = this.pathIdx.length ? new Int32Array(40) : EMPTY_I32;
    c.leafTop = this.leafTop;
    c.leafFree = this.leafFree.slice();
    c.ik = this.ik.slice();
    c.ic = this.ic.slice();
    c.icnt = this.icnt.slice();
    c.innerTop = this.innerTop;
    c.innerFree = this.innerFree.slice();
    c.root = this.root;
    c.height = this.height;
    c.n = this.n;
    c.dropFinger();
    return c;
  }

  /** bytes held by the node arrays */
  byteLength(): number {
    return (
      this.lk.byteLength +
      this.lv.byteLength +
      this.lm.byteLength +
      this.ik.byteLength +
      this.ic.byteLength +
      this.icnt.byteLength +
      (this.leafFree.length + this.innerFree.length) * 8
    );
  }

  /** the tree's height (0: the root is a leaf), for tests */
  get depth(): number {
    return this.height;
  }

  /** every (key, value) in order, for tests and snapshots */
  entries(): [number, number][] {
    const out: [number, number][] = [];
    this.forRange(-Infinity, Infinity, (k, v) => {
      out.push([k, v]);
    });
    return out;
  }

  /**
   * Structural rules (sorted keys, bounds, fill, leaf links, count); each violation is a
   * sentence. For tests.
   */
  checkInvariants(): string[] {
    const out: string[] = [];
    let count = 0;
    let prevLeaf = NONE;
    let lastKey = -Infinity;
    const walk = (node: number, h: number, lo: number, hi: number, isRoot: boolean): void => {
      if (h === 0) {
        const c = this.lm[node * 3]!;
        if (!isRoot && c < LEAF_MIN) out.push(`leaf ${node} holds ${c} < ${LEAF_MIN} keys`);
        if (this.lm[node * 3 + 2] !== prevLeaf) out.push(`leaf ${node}: prev link is ${this.lm[node * 3 + 2]}, expected ${prevLeaf}`);
        if (prevLeaf !== NONE && this.lm[prevLeaf * 3 + 1] !== node) out.push(`leaf ${prevLeaf}: next link does not point to ${node}`);
        prevLeaf = node;
        for (let i = 0; i < c; i++) {
          const k = this.lk[node * LEAF + i]!;
          if (k <= lastKey) out.push(`leaf ${node}: key ${k} not above ${lastKey}`);
          if (k < lo || k >= hi) out.push(`leaf ${node}: key ${k} outside its bounds [${lo}, ${hi})`);
          lastKey = k;
        }
        count += c;
        return;
      }
      const c = this.icnt[node]!;
      if (!isRoot && c < INNER_MIN) out.push(`inner node ${node} holds ${c} < ${INNER_MIN} children`);
      if (isRoot && c < 2) out.push(`inner root holds ${c} children`);
      for (let j = 0; j < c; j++) {
        const b = j === 0 ? lo : this.ik[node * INNER + j]!;
        const e = j + 1 < c ? this.ik[node * INNER + j + 1]! : hi;
        if (j > 0 && (b < lo || b >= hi)) out.push(`inner node ${node}: bound ${b} outside [${lo}, ${hi})`);
        walk(this.ic[node * INNER + j]!, h - 1, b, e, false);
      }
    };
    walk(this.root, this.height, -Infinity, Infinity, true);
    if (prevLeaf !== NONE && this.lm[prevLeaf * 3 + 1] !== NONE) out.push('last leaf has a next link');
    if (count !== this.n) out.push(`size is ${this.n}, the leaves hold ${count} keys`);
    return out;
  }
}
