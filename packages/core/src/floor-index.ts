/**
 * Search of a sorted run of keys in a Float64Array, shared by the B+ tree's nodes
 * (btree-map.ts) and the memslots' flat gfn index (memslot/gfn-index.ts).
 */

/**
 * The index of the last key <= `key` among a[base .. base+count), or -1 (count may be 0).
 * An interpolation guess, then a gallop and a binary search around it: one or two probes
 * when the keys are evenly spaced (memslots laid out back to back), O(log count) at worst.
 */
export function floorIndex(a: Float64Array, base: number, count: number, key: number): number {
  if (count <= 0 || key < a[base]!) return -1;
  const last = count - 1;
  const kl = a[base + last]!;
  if (key >= kl) return last;
  // a[base] <= key < a[base + last]: the answer is in [0, last)
  const k0 = a[base]!;
  let g = Math.floor(((key - k0) / (kl - k0)) * last);
  if (!(g >= 0 && g < last)) g = 0;
  let lo: number;
  let hi: number;
  if (a[base + g]! <= key) {
    // answer in [g, last): gallop up
    lo = g;
    let step = 1;
    hi = g + 1;
    while (hi < last && a[base + hi]! <= key) {
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
    while (lo > 0 && a[base + lo]! > key) {
      hi = lo - 1;
      step <<= 1;
      lo = g - step;
    }
    if (lo < 0) lo = 0;
  }
  // a[base + lo] <= key (or lo is 0, and a[base] <= key holds), answer in [lo, hi]
  while (lo < hi) {
    const mid = (lo + hi + 1) >>> 1;
    if (a[base + mid]! <= key) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}
