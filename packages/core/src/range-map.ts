/**
 * A total map from integer keys in [0, 2^53) to small integer values (default 0), kept as
 * sorted runs. The kernel stores per-gfn attributes in an xarray (kvm->mem_attr_array) and
 * walks it entry by entry; the model stores the same information as runs, so converting a
 * 4 TiB range costs O(runs), not O(pages).
 *
 * Representation: `starts[i]` is the first key of run i, `values[i]` its value; run i covers
 * [starts[i], starts[i+1]) and the last run reaches KEY_LIMIT. Invariants: starts[0] === 0,
 * starts is strictly increasing, and neighbouring runs never have equal values (runs are
 * coalesced), so a run boundary is exactly a place where the value changes.
 */

/** Keys are integers in [0, KEY_LIMIT). */
export const KEY_LIMIT = 2 ** 53;

export type RunCallback = (runStart: number, runEnd: number, value: number) => void;

export class RangeMap {
  private starts: Float64Array;
  private values: Int32Array;
  private n: number;

  constructor(initialValue = 0) {
    this.starts = new Float64Array(8);
    this.values = new Int32Array(8);
    this.starts[0] = 0;
    this.values[0] = initialValue | 0;
    this.n = 1;
  }

  /** Number of runs (1 for a map with a single value everywhere). */
  get runCount(): number {
    return this.n;
  }

  /** Index of the run holding `key`: the largest i with starts[i] <= key. */
  private runIndex(key: number): number {
    const s = this.starts;
    let lo = 0;
    let hi = this.n - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      if (s[mid]! <= key) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  get(key: number): number {
    return this.values[this.runIndex(key)]!;
  }

  /** Every key in [start, end) has `value` (true for an empty range). */
  rangeHasValue(start: number, end: number, value: number): boolean {
    if (start >= end) return true;
    const i = this.runIndex(start);
    if (this.values[i] !== value) return false;
    return i + 1 >= this.n || this.starts[i + 1]! >= end;
  }

  /**
   * Some run starts strictly inside (start, end), i.e. [start, end) does not have one value.
   * Used for KVM_LPAGE_MIXED_FLAG: a huge page is "mixed" iff this is true over its gfns.
   */
  hasBoundaryIn(start: number, end: number): boolean {
    if (end - start < 2) return false;
    const i = this.runIndex(start);
    return i + 1 < this.n && this.starts[i + 1]! < end;
  }

  /** Calls `cb` for each run overlapping [start, end), clipped to the range, in key order. */
  forEachRun(start: number, end: number, cb: RunCallback): void {
    if (start >= end) return;
    let i = this.runIndex(start);
    let s = start;
    while (s < end) {
      const runEnd = i + 1 < this.n ? this.starts[i + 1]! : KEY_LIMIT;
      const e = runEnd < end ? runEnd : end;
      cb(s, e, this.values[i]!);
      s = e;
      i++;
    }
  }

  /** Sets every key in [start, end) to `value`; returns whether anything changed. */
  set(start: number, end: number, value: number): boolean {
    if (start < 0 || end > KEY_LIMIT || !Number.isInteger(start) || !Number.isInteger(end)) {
      throw new RangeError(`RangeMap.set: bad range [${start}, ${end})`);
    }
    value |= 0;
    if (start >= end || this.rangeHasValue(start, end, value)) return false;

    const n = this.n;
    const starts = this.starts;
    const values = this.values;
    const i = this.runIndex(start);
    const j = this.runIndex(end - 1);

    // Build the replacement for runs i..j (at most 3 runs): [head][middle][tail].
    let cnt = 0;
    const rs = [0, 0, 0];
    const rv = [0, 0, 0];
    const prevValue = i > 0 ? values[i - 1]! : NaN;
    if (starts[i]! < start) {
      rs[cnt] = starts[i]!;
      rv[cnt++] = values[i]!;
    }
    // the middle run, unless it merges with what precedes it
    const before = cnt > 0 ? rv[cnt - 1]! : prevValue;
    if (before !== value) {
      rs[cnt] = start;
      rv[cnt++] = value;
    }
    // what follows `end`: the rest of run j, unless run j+1 starts exactly at end
    let tailFrom = j + 1; // first untouched old run after the replacement
    if (end < KEY_LIMIT && !(j + 1 < n && starts[j + 1] === end)) {
      if (values[j] !== value) {
        rs[cnt] = end;
        rv[cnt++] = values[j]!;
      }
    } else if (j + 1 < n && values[j + 1] === value) {
      // run j+1 starts at end with the same value: it merges into the middle
      tailFrom = j + 2;
    }

    const removed = tailFrom - i;
    const newN = n - removed + cnt;
    if (newN > starts.length) this.grow(newN);
    const S = this.starts;
    const V = this.values;
    // shift the untouched tail into place, then write the replacement
    if (tailFrom < n && i + cnt !== tailFrom) {
      S.copyWithin(i + cnt, tailFrom, n);
      V.copyWithin(i + cnt, tailFrom, n);
    }
    for (let k = 0; k < cnt; k++) {
      S[i + k] = rs[k]!;
      V[i + k] = rv[k]!;
    }
    this.n = newN;
    return true;
  }

  private grow(min: number): void {
    let cap = this.starts.length * 2;
    while (cap < min) cap *= 2;
    const s = new Float64Array(cap);
    s.set(this.starts.subarray(0, this.n));
    const v = new Int32Array(cap);
    v.set(this.values.subarray(0, this.n));
    this.starts = s;
    this.values = v;
  }

  clone(): RangeMap {
    const c = new RangeMap();
    c.starts = this.starts.slice();
    c.values = this.values.slice();
    c.n = this.n;
    return c;
  }

  /** Bytes held by the run arrays. */
  byteLength(): number {
    return this.starts.byteLength + this.values.byteLength;
  }
}
