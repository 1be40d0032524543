/**
 * An interval tree of half-open intervals [start, end) with an int32 value each, as an AVL
 * tree ordered by (start, value) and augmented with each subtree's greatest end — the shape
 * of the kernel's interval trees (include/linux/interval_tree_generic.h, an augmented
 * rbtree), used for the memslots' hva tree (struct kvm_memslots::hva_tree). Nodes live in
 * typed arrays: insert and remove are O(log n) with no allocation, a stabbing or overlap
 * query is O(log n + matches). Intervals may overlap and share starts; (start, value) pairs
 * are unique.
 *
 * A general-purpose interval tree from npm (@flatten-js/interval-tree) allocates interval
 * objects on every insert while recomputing maxima, which made creating and deleting 32764
 * memslots several times slower than the memslot.create_delete_32764 target (docs/core.md).
 */

const NIL = -1;

export class IntervalTree {
  private start = new Float64Array(16);
  private end = new Float64Array(16);
  private maxEnd = new Float64Array(16);
  private value = new Int32Array(16);
  private left = new Int32Array(16);
  private right = new Int32Array(16);
  private height = new Int32Array(16);
  private top = 0;
  private free: number[] = [];
  private root = NIL;
  private n = 0;

  get size(): number {
    return this.n;
  }

  /** adds [start, end) with `value`; the pair (start, value) must not be present */
  insert(start: number, end: number, value: number): void {
    const x = this.alloc();
    this.start[x] = start;
    this.end[x] = end;
    this.maxEnd[x] = end;
    this.value[x] = value;
    this.left[x] = NIL;
    this.right[x] = NIL;
    this.height[x] = 1;
    this.root = this.insertAt(this.root, x);
    this.n++;
  }

  /** removes the interval starting at `start` with `value`; returns whether it was there */
  remove(start: number, value: number): boolean {
    const before = this.n;
    this.root = this.removeAt(this.root, start, value);
    return this.n !== before;
  }

  /**
   * Calls `cb(value, start, end)` for every interval intersecting [lo, hi), by start (then
   * value); `cb` returning true stops the walk.
   */
  forEachOverlap(lo: number, hi: number, cb: (value: number, start: number, end: number) => boolean | void): void {
    if (lo < hi) this.visit(this.root, lo, hi, cb);
  }

  /** every (start, end, value) by start, for tests */
  entries(): [number, number, number][] {
    const out: [number, number, number][] = [];
    this.forEachOverlap(-Infinity, Infinity, (v, s, e) => {
      out.push([s, e, v]);
    });
    return out;
  }

  private visit(x: number, lo: number, hi: number, cb: (value: number, start: number, end: number) => boolean | void): boolean {
    if (x === NIL || this.maxEnd[x]! <= lo) return false;
    if (this.visit(this.left[x]!, lo, hi, cb)) return true;
    const s = this.start[x]!;
    if (s >= hi) return false; // everything to the right starts at s or later
    if (this.end[x]! > lo && cb(this.value[x]!, s, this.end[x]!) === true) return true;
    return this.visit(this.right[x]!, lo, hi, cb);
  }

  private less(a: number, bStart: number, bValue: number): boolean {
    const s = this.start[a]!;
    return s < bStart || (s === bStart && this.value[a]! < bValue);
  }

  private insertAt(t: number, x: number): number {
    if (t === NIL) return x;
    if (this.less(x, this.start[t]!, this.value[t]!)) this.left[t] = this.insertAt(this.left[t]!, x);
    else this.right[t] = this.insertAt(this.right[t]!, x);
    return this.balance(t);
  }

  private removeAt(t: number, start: number, value: number): number {
    if (t === NIL) return NIL;
    const s = this.start[t]!;
    const v = this.value[t]!;
    if (start < s || (start === s && value < v)) this.left[t] = this.removeAt(this.left[t]!, start, value);
    else if (start > s || value > v) this.right[t] = this.removeAt(this.right[t]!, start, value);
    else {
      this.n--;
      const l = this.left[t]!;
      const r = this.right[t]!;
      this.free.push(t);
      if (l === NIL) return r;
      if (r === NIL) return l;
      // the successor (leftmost of the right subtree) takes t's place
      let m = r;
      while (this.left[m] !== NIL) m = this.left[m]!;
      this.right[m] = this.removeMin(r);
      this.left[m] = l;
      return this.balance(m);
    }
    return this.balance(t);
  }

  private removeMin(t: number): number {
    if (this.left[t] === NIL) return this.right[t]!;
    this.left[t] = this.removeMin(this.left[t]!);
    return this.balance(t);
  }

  private h(t: number): number {
    return t === NIL ? 0 : this.height[t]!;
  }

  private update(t: number): void {
    const l = this.left[t]!;
    const r = this.right[t]!;
    const hl = this.h(l);
    const hr = this.h(r);
    this.height[t] = (hl > hr ? hl : hr) + 1;
    let m = this.end[t]!;
    if (l !== NIL && this.maxEnd[l]! > m) m = this.maxEnd[l]!;
    if (r !== NIL && this.maxEnd[r]! > m) m = this.maxEnd[r]!;
    this.maxEnd[t] = m;
  }

  private rotateRight(t: number): number {
    const l = this.left[t]!;
    this.left[t] = this.right[l]!;
    this.right[l] = t;
    this.update(t);
    this.update(l);
    return l;
  }

  private rotateLeft(t: number): number {
    const r = this.right[t]!;
    this.right[t] = this.left[r]!;
    this.left[r] = t;
    this.update(t);
    this.update(r);
    return r;
  }

  private balance(t: number): number {
    this.update(t);
    const bf = this.h(this.left[t]!) - this.h(this.right[t]!);
    if (bf > 1) {
      const l = this.left[t]!;
      if (this.h(this.left[l]!) < this.h(this.right[l]!)) this.left[t] = this.rotateLeft(l);
      return this.rotateRight(t);
    }
    if (bf < -1) {
      const r = this.right[t]!;
      if (this.h(this.right[r]!) < this.h(this.left[r]!)) this.right[t] = this.rotateRight(r);
      return this.rotateLeft(t);
    }
    return t;
  }

  private alloc(): number {
    const f = this.free.pop();
    if (f !== undefined) return f;
    const id = this.top++;
    if (id >= this.value.length) {
      const cap = this.value.length * 2;
      const g = <T extends Float64Array | Int32Array>(a: T): T => {
        const b = new (a.constructor as new (n: number) => T)(cap);
        b.set(a);
        return b;
      };
      this.start = g(this.start);
      this.end = g(this.end);
      this.maxEnd = g(this.maxEnd);
      this.value = g(this.value);
      this.left = g(this.left);
      this.right = g(this.right);
      this.height = g(this.height);
    }
    return id;
  }

  /** AVL balance, order and max-end augmentation; each violation is a sentence. For tests. */
  checkInvariants(): string[] {
    const out: string[] = [];
    let count = 0;
    const walk = (t: number, lo: [number, number] | null, hi: [number, number] | null): void => {
      if (t === NIL) return;
      count++;
      const s = this.start[t]!;
      const v = this.value[t]!;
      if (lo && (s < lo[0] || (s === lo[0] && v <= lo[1]))) out.push(`node (${s}, ${v}) is not above its left bound`);
      if (hi && (s > hi[0] || (s === hi[0] && v >= hi[1]))) out.push(`node (${s}, ${v}) is not below its right bound`);
      walk(this.left[t]!, lo, [s, v]);
      walk(this.right[t]!, [s, v], hi);
      const hl = this.h(this.left[t]!);
      const hr = this.h(this.right[t]!);
      if (Math.abs(hl - hr) > 1) out.push(`node (${s}, ${v}) is out of balance (${hl} vs ${hr})`);
      if (this.height[t] !== Math.max(hl, hr) + 1) out.push(`node (${s}, ${v}) has a stale height`);
      let m = this.end[t]!;
      for (const c of [this.left[t]!, this.right[t]!]) if (c !== NIL) m = Math.max(m, this.maxEnd[c]!);
      if (this.maxEnd[t] !== m) out.push(`node (${s}, ${v}) has a stale max end`);
    };
    walk(this.root, null, null);
    if (count !== this.n) out.push(`size is ${this.n}, the tree holds ${count}`);
    return out;
  }

  /** bytes held by the node arrays */
  byteLength(): number {
    return this.value.length * (8 * 3 + 4 * 4) + this.free.length * 8;
  }
}
