/**
 * A dirty bitmap (the kernel's layout: bit i = page i of the slot) as the page list a
 * `get_dirty_log` outcome carries, without one JS value per page of the slot: zero words are
 * skipped, and a list longer than MAX_LISTED_DIRTY_PAGES is refused before it is built (a
 * 2^31-page slot with every bit set would otherwise be a 2^31-entry array).
 */

import { DirtyBitmap } from '@ccmem/core';

/** the most pages a `get_dirty_log` outcome lists (docs/scenarios.md, "Limits") */
export const MAX_LISTED_DIRTY_PAGES = 1 << 20;

export class DirtyListTooLong extends Error {
  constructor(count: number) {
    super(
      `get_dirty_log: ${count} dirty pages are more than a step lists (${MAX_LISTED_DIRTY_PAGES}); ` +
        'use a smaller slot or clear the log in ranges',
    );
    this.name = 'DirtyListTooLong';
  }
}

function popcount32(x: number): number {
  x -= (x >>> 1) & 0x55555555;
  x = (x & 0x33333333) + ((x >>> 2) & 0x33333333);
  return (((x + (x >>> 4)) & 0x0f0f0f0f) * 0x01010101) >>> 24;
}

/**
 * the indexes of the set bits of `bitmap` below `npages` (all of it by default), ascending: the
 * kernel's bytes, or the model's DirtyBitmap (counted and listed chunk by chunk, so a slot of
 * 2^31 pages all dirty is refused without a page-sized allocation)
 */
export function dirtyPageList(bitmap: Uint8Array | DirtyBitmap, npages?: number): number[] {
  if (bitmap instanceof DirtyBitmap) return sparsePageList(bitmap, npages ?? bitmap.npages);
  return densePageList(bitmap, npages ?? bitmap.length * 8);
}

function sparsePageList(bitmap: DirtyBitmap, npages: number): number[] {
  const limit = Math.min(npages, bitmap.npages);
  let count = bitmap.count();
  if (limit < bitmap.npages) {
    // bits from `limit` on are not listed
    bitmap.forEachSetRun((s, e) => {
      if (e > limit) count -= e - Math.max(s, limit);
    });
  }
  if (count > MAX_LISTED_DIRTY_PAGES) throw new DirtyListTooLong(count);
  const out = new Array<number>(count);
  let k = 0;
  bitmap.forEachSetRun((s, e) => {
    for (let p = s; p < Math.min(e, limit); p++) out[k++] = p;
  });
  return out;
}

function densePageList(bitmap: Uint8Array, npages: number): number[] {
  const n32 = Math.ceil(bitmap.length / 4);
  let words: Uint32Array;
  if (bitmap.byteOffset % 4 === 0 && bitmap.length % 4 === 0) words = new Uint32Array(bitmap.buffer, bitmap.byteOffset, n32);
  else {
    const copy = new Uint8Array(n32 * 4);
    copy.set(bitmap);
    words = new Uint32Array(copy.buffer);
  }
  const limit = Math.min(npages, bitmap.length * 8);
  const nwords = Math.ceil(limit / 32);
  const tail = limit % 32;
  const word = (w: number) => (w === nwords - 1 && tail !== 0 ? (words[w]! & (2 ** tail - 1)) >>> 0 : words[w]!);
  let count = 0;
  for (let w = 0; w < nwords; w++) {
    const x = word(w);
    if (x !== 0) count += popcount32(x);
  }
  if (count > MAX_LISTED_DIRTY_PAGES) throw new DirtyListTooLong(count);
  const out = new Array<number>(count);
  let k = 0;
  for (let w = 0; w < nwords; w++) {
    let x = word(w);
    while (x !== 0) {
      const low = (x & -x) >>> 0;
      out[k++] = w * 32 + (31 - Math.clz32(low));
      x = (x ^ low) >>> 0;
    }
  }
  return out;
}

/**
 * `clearBitmap()` for the model: the same bits as a DirtyBitmap of the same byte length, which
 * costs memory by the listed bits (the default, every bit, costs nothing)
 */
export function clearBitmapSparse(numPages: number, bits: readonly number[] | undefined, cap: number): DirtyBitmap {
  const bytes = Math.min(Math.ceil(numPages / 64) * 8, Math.max(cap, 8));
  const nbits = bytes * 8;
  if (bits) {
    const out = new DirtyBitmap(nbits);
    for (const bit of bits) if (Number.isInteger(bit) && bit >= 0 && bit < nbits) out.set(bit);
    return out;
  }
  const n = Math.min(numPages, nbits);
  // every bit below n: a bitmap of n pages, all set, padded to `bytes` (n < nbits only when
  // n is num_pages, whose ALIGN(n, 64) / 8 is `bytes`)
  return new DirtyBitmap(n, true);
}

/**
 * The user bitmap of a `clear_dirty_log` step: DIV_ROUND_UP(num_pages, 64) longs with the
 * listed bits set (every bit below `num_pages` by default), allocated for at most `cap` bytes
 * (what the slot can need: a larger request fails the kernel's range check before its copy).
 */
export function clearBitmap(numPages: number, bits: readonly number[] | undefined, cap: number): Uint8Array {
  const bytes = new Uint8Array(Math.min(Math.ceil(numPages / 64) * 8, Math.max(cap, 8)));
  const nbits = bytes.length * 8;
  if (bits) {
    for (const bit of bits) if (Number.isInteger(bit) && bit >= 0 && bit < nbits) bytes[bit >>> 3]! |= 1 << (bit & 7);
    return bytes;
  }
  const n = Math.min(numPages, nbits);
  bytes.fill(0xff, 0, n >>> 3);
  if (n & 7) bytes[n >>> 3] = (1 << (n & 7)) - 1;
  return bytes;
}
