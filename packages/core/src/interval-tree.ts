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
const EMPTY_F64 = new Float64Array(0);
const EMPTY_I32 = new Int32Array(0);

export class IntervalTree {
  /** per node: start, end, maxEnd (allocated with the first insert) */
  private f = EMPTY_F64;
  /** per node: value, left, right, height */
  private g = EMPTY_I32;
  private top = 0;
  private free: number[] = [];
  private root = NIL;
  private n = 0;
  /** node stack of insert() and forEachOverlap(); `sp` is its first free entry */
  private readonly stack: number[] = [];
  private sp = 0;

  get size(): number {
    return this.n;
  }

  /**
   * adds [start, end) with `value`; the pair (start, value) must not be present. As the
   * kernel's interval_tree_insert() does, the descent raises each ancestor's max end on the
   * way down; the way back up stops at the first subtree whose height did not change (or
   * after the one rotation an AVL insert needs), so a walk back to the root is rare.
   */
  insert(start: number, end: number, value: number): void {
    const x = this.alloc();
    const f = this.f;
    const g = this.g;
    f[x * 3] = start;
    f[x * 3 + 1] = end;
    f[x * 3 + 2] = end;
    g[x * 4] = value;
    g[x * 4 + 1] = NIL;
    g[x * 4 + 2] = NIL;
    g[x * 4 + 3] = 1;
    this.n++;
    if (this.root === NIL) {
      this.root = x;
      return;
    }
    const path = this.stack;
    const base = this.sp;
    let sp = base;
    let t = this.root;
    for (;;) {
      if (f[t * 3 + 2]! < end) f[t * 3 + 2] = end;
      path[sp++] = t;
      const s = f[t * 3]!;
      const side = start < s || (start === s && value < g[t * 4]!) ? 1 : 2;
      const c = g[t * 4 + side]!;
      if (c === NIL) {
        g[t * 4 + side] = x;
        break;
      }
      t = c;
    }
    // back up: heights, and at most one (single or double) rotation
    while (sp > base) {
      t = path[--sp]!;
      const before = g[t * 4 + 3]!;
      const hl = this.h(g[t * 4 + 1]!);
      const hr = this.h(g[t * 4 + 2]!);
      if (hl - hr > 1 || hr - hl > 1) {
        const r = this.balance(t);
        if (sp === base) this.root = r;
        else {
          const p = path[sp - 1]!;
          if (g[p * 4 + 1] === t) g[p * 4 + 1] = r;
          else g[p * 4 + 2] = r;
        }
        break;
      }
      const after = (hl > hr ? hl : hr) + 1;
      if (after === before) break;
      g[t * 4 + 3] = after;
    }
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
    if (!(lo < hi)) return;
    // an in-order walk that skips every subtree whose max end is <= lo and stops at the first
    // start >= hi; the explicit stack sits above any walk this one runs inside of (a callback
    // may query the tree again)
    const f = this.f;
    const g = this.g;
    const stack = this.stack;
    const base = this.sp;
    let sp = base;
    let x = this.root;
    try {
      for (;;) {
        while (x !== NIL && f[x * 3 + 2]! > lo) {
          stack[sp++] = x;
          x = g[x * 4 + 1]!;
        }
        if (sp === base) return;
        x = stack[--sp]!;
        const s = f[x * 3]!;
        if (s >= hi) return; // everything after starts at s or later
        const e = f[x * 3 + 1]!;
        this.sp = sp;
        if (e > lo && cb(g[x * 4]!, s, e) === true) return;
        x = g[x * 4 + 2]!;
      }
    } finally {
      this.sp = base;
    }
  }

  /** every (start, end, value) by start, for tests */
  entries(): [number, number, number][] {
    const out: [number, number, number][] = [];
    this.forEachOverlap(-Infinity, Infinity, (v, s, e) => {
      out.push([s, e, v]);
    });
    return out;
  }

  private removeAt(t: number, start: number, value: number): number {
    if (t === NIL) return NIL;
    const s = this.f[t * 3]!;
    const v = this.g[t * 4]!;
    if (start < s || (start === s && value < v)) this.g[t * 4 + 1] = this.removeAt(this.g[t * 4 + 1]!, start, value);
    else if (start > s || value > v) this.g[t * 4 + 2] = this.removeAt(this.g[t * 4 + 2]!, start, value);
    else {
      this.n--;
      const l = this.g[t * 4 + 1]!;
      const r = this.g[t * 4 + 2]!;
      this.free.push(t);
      if (l === NIL) return r;
      if (r === NIL) return l;
      // the successor (leftmost of the right subtree) takes t's place
      let m = r;
      while (this.g[m * 4 + 1] !== NIL) m = this.g[m * 4 + 1]!;
      this.g[m * 4 + 2] = this.removeMin(r);
      this.g[m * 4 + 1] = l;
      return this.balance(m);
    }
    return this.balance(t);
  }

  private removeMin(t: number): number {
    if (this.g[t * 4 + 1] === NIL) return this.g[t * 4 + 2]!;
    this.g[t * 4 + 1] = this.removeMin(this.g[t * 4 + 1]!);
    return this.balance(t);
  }

  private h(t: number): number {
    return t === NIL ? 0 : this.g[t * 4 + 3]!;
  }

  private update(t: number): void {
    const l = this.g[t * 4 + 1]!;
    const r = this.g[t * 4 + 2]!;
    const hl = this.h(l);
    const hr = this.h(r);
    this.g[t * 4 + 3] = (hl > hr ? hl : hr) + 1;
    let m = this.f[t * 3 + 1]!;
    if (l !== NIL && this.f[l * 3 + 2]! > m) m = this.f[l * 3 + 2]!;
    if (r !== NIL && this.f[r * 3 + 2]! > m) m = this.f[r * 3 + 2]!;
    this.f[t * 3 + 2] = m;
  }

  private rotateRight(t: number): number {
    const l = this.g[t * 4 + 1]!;
    this.g[t * 4 + 1] = this.g[l * 4 + 2]!;
    this.g[l * 4 + 2] = t;
    this.update(t);
    this.update(l);
    return l;
  }

  private rotateLeft(t: number): number {
    const r = this.g[t * 4 + 2]!;
    this.g[t * 4 + 2] = this.g[r * 4 + 1]!;
    this.g[r * 4 + 1] = t;
    this.update(t);
    this.update(r);
    return r;
  }

  private balance(t: number): number {
    this.update(t);
    const bf = this.h(this.g[t * 4 + 1]!) - this.h(this.g[t * 4 + 2]!);
    if (bf > 1) {
      const l = this.g[t * 4 + 1]!;
      if (this.h(this.g[l * 4 + 1]!) < this.h(this.g[l * 4 + 2]!)) this.g[t * 4 + 1] = this.rotateLeft(l);
      return this.rotateRight(t);
    }
    if (bf < -1) {
      const r = this.g[t * 4 + 2]!;
      if (this.h(this.g[r * 4 + 2]!) < this.h(this.g[r * 4 + 1]!)) this.g[t * 4 + 2] = this.rotateRight(r);
      return this.rotateLeft(t);
    }
    return t;
  }

  private alloc(): number {
    const f = this.free.pop();
    if (f !== undefined) return f;
    const id = this.top++;
    if (id * 4 >= this.g.length) {
      const cap = Math.max(16, (this.g.length / 4) * 2);
      const f = new Float64Array(cap * 3);
      f.set(this.f);
      const g = new Int32Array(cap * 4);
      g.set(this.g);
      this.f = f;
      this.g = g;
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
      const s = this.f[t * 3]!;
      const v = this.g[t * 4]!;
      if (lo && (s < lo[0] || (s === lo[0] && v <= lo[1]))) out.push(`node (${s}, ${v}) is not above its left bound`);
      if (hi && (s > hi[0] || (s === hi[0] && v >= hi[1]))) out.push(`node (${s}, ${v}) is not below its right bound`);
      walk(this.g[t * 4 + 1]!, lo, [s, v]);
      walk(this.g[t * 4 + 2]!, [s, v], hi);
      const hl = this.h(this.g[t * 4 + 1]!);
      const hr = this.h(this.g[t * 4 + 2]!);
      if (Math.abs(hl - hr) > 1) out.push(`node (${s}, ${v}) is out of balance (${hl} vs ${hr})`);
      if (this.g[t * 4 + 3] !== Math.max(hl, hr) + 1) out.push(`node (${s}, ${v}) has a stale height`);
      let m = this.f[t * 3 + 1]!;
      for (const c of [this.g[t * 4 + 1]!, this.g[t * 4 + 2]!]) if (c !== NIL) m = Math.max(m, this.f[c * 3 + 2]!);
      if (this.f[t * 3 + 2] !== m) out.push(`node (${s}, ${v}) has a stale max end`);
    };
    walk(this.root, null, null);
    if (count !== this.n) out.push(`size is ${this.n}, the tree holds ${count}`);
    return out;
  }

  /** bytes held by the node arrays */
  byteLength(): number {
    return this.f.byteLength + this.g.byteLength + this.free.length * 8;
  }
}
