/**
 * A total map from integer keys in [0, 2^53) to small integer values (default 0), kept as
 * runs. The kernel stores per-gfn attributes in an xarray (kvm->mem_attr_array) and walks it
 * entry by entry; the model stores the same information as runs, so converting a 4 TiB
 * range costs O(runs it touches · log runs), not O(pages), and a single-page change costs
 * O(log runs) in any order (ascending, descending, random).
 *
 * Representation: an ordered map (BTreeMap, a B+ tree on typed arrays) from the first key
 * of each run to its value; a run reaches the next run's first key, the last run reaches
 * KEY_LIMIT. Invariants: key 0 is always present, and neighbouring runs never have equal
 * values (runs are coalesced), so a run boundary is exactly a place where the value changes.
 */
import { BTreeMap } from './btree-map.js';

/** Keys are integers in [0, KEY_LIMIT). */
export const KEY_LIMIT = 2 ** 53;

export type RunCallback = (runStart: number, runEnd: number, value: number) => void;

export class RangeMap {
  private runs: BTreeMap;

  constructor(initialValue = 0) {
    this.runs = new BTreeMap();
    this.runs.set(0, initialValue | 0);
  }

  /** Number of runs (1 for a map with a single value everywhere). */
  get runCount(): number {
    return this.runs.size;
  }

  get(key: number): number {
    return this.runs.floorValueOf(key, 0);
  }

  /** Every key in [start, end) has `value` (true for an empty range). */
  rangeHasValue(start: number, end: number, value: number): boolean {
    if (start >= end) return true;
    const r = this.runs;
    r.seek(start);
    return r.floorValue === value && r.nextKey >= end;
  }

  /**
   * Some run starts strictly inside (start, end), i.e. [start, end) does not have one value.
   * Used for KVM_LPAGE_MIXED_FLAG: a huge page is "mixed" iff this is true over its gfns.
   */
  hasBoundaryIn(start: number, end: number): boolean {
    if (end - start < 2) return false;
    return this.runs.hasKeyBetween(start, end);
  }

  /** the run [runStart, runEnd) that seekRun() found */
  runStart = 0;
  runEnd = KEY_LIMIT;

  /**
   * Finds the run holding `key` (0 <= key < KEY_LIMIT) and sets runStart / runEnd to its
   * bounds; returns its value. One seek answers hasBoundaryIn() for every range around
   * `key`: [lo, hi) with lo <= key < hi has a boundary inside iff runStart > lo or runEnd < hi.
   */
  seekRun(key: number): number {
    const r = this.runs;
    r.seek(key);
    this.runStart = r.floorKey;
    this.runEnd = r.nextKey === Infinity ? KEY_LIMIT : r.nextKey;
    return r.floorValue;
  }

  /** Calls `cb` for each run overlapping [start, end), clipped to the range, in key order. */
  forEachRun(start: number, end: number, cb: RunCallback): void {
    if (start >= end) return;
    const r = this.runs;
    r.seek(start);
    let s = start;
    let v = r.floorValue;
    r.forRange(start + 1, end, (k, value) => {
      cb(s, k, v);
      s = k;
      v = value;
    });
    cb(s, end, v);
  }

  /** Sets every key in [start, end) to `value`; returns whether anything changed. */
  set(start: number, end: number, value: number): boolean {
    if (start < 0 || end > KEY_LIMIT || !Number.isInteger(start) || !Number.isInteger(end)) {
      throw new RangeError(`RangeMap.set: bad range [${start}, ${end})`);
    }
    value |= 0;
    if (start >= end) return false;
    const r = this.runs;
    r.seek(start);
    if (r.floorValue === value && r.nextKey >= end) return false;
    // the value just before `start` (NaN at key 0): a run starting at `start` with the same
    // value would not be a boundary
    const floorKey = r.floorKey;
    const nextKey = r.nextKey;
    const before = floorKey < start ? r.floorValue : r.prevValue;
    // what lies at `end`: the value there and whether a run already starts there
    let endValue = 0;
    let runAtEnd = true;
    if (end < KEY_LIMIT) {
      if (nextKey > end) {
        // no boundary in (start, end]: the run holding start also holds end
        endValue = r.floorValue;
        runAtEnd = false;
      } else {
        r.seek(end);
        endValue = r.floorValue;
        runAtEnd = r.floorKey === end;
      }
    }
    if (nextKey >= end) {
      // no run starts inside (start, end): at most the run at `start` itself changes, in
      // place (one descent, the neighbourhood stays in the tree's finger)
      if (floorKey === start) {
        if (before !== value) r.set(start, value);
        else if (end < KEY_LIMIT && runAtEnd && endValue === value) {
          // the run [start, end) merges with the runs on both sides: both its keys go
          r.deletePair(start, end);
          return true;
        } else r.delete(start);
      } else if (before !== value) {
        if (end < KEY_LIMIT && !runAtEnd && endValue !== value) {
          // a new run inside a run: keys at start and at end, side by side
          r.insertPair(start, value, end, endValue);
          return true;
        }
        r.set(start, value);
      }
    } else {
      r.deleteRange(start, end);
      if (before !== value) r.set(start, value);
    }
    if (end < KEY_LIMIT) {
      if (runAtEnd) {
        if (endValue === value) r.delete(end);
      } else if (endValue !== value) r.set(end, endValue);
    }
    return true;
  }

  clone(): RangeMap {
    const c = new RangeMap();
    c.runs = this.runs.clone();
    return c;
  }

  /** Bytes held by the run tree's arrays. */
  byteLength(): number {
    return this.runs.byteLength();
  }
}
