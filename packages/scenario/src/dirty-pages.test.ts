/**
 * dirty-pages.ts: the page list a `get_dirty_log` outcome carries (from the kernel's bytes or
 * the model's DirtyBitmap, the same list either way) and the user bitmap of `clear_dirty_log`
 * (the model's sparse form holding the same bits as the kernel's bytes).
 */
import { DirtyBitmap } from '@ccmem/core';
import { describe, expect, it } from 'vitest';
import { clearBitmap, clearBitmapSparse, dirtyPageList, DirtyListTooLong, MAX_LISTED_DIRTY_PAGES } from './dirty-pages.js';

const range = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => from + i);

/** the kernel's bytes with `pages` set, `nbytes` long */
function bytesWith(nbytes: number, pages: readonly number[]): Uint8Array {
  const b = new Uint8Array(nbytes);
  for (const p of pages) b[p >>> 3]! |= 1 << (p & 7);
  return b;
}

function bitmapWith(npages: number, pages: readonly number[]): DirtyBitmap {
  const b = new DirtyBitmap(npages);
  for (const p of pages) b.set(p);
  return b;
}

describe('dirtyPageList: the kernel\'s bytes', () => {
  it('lists the set bits in ascending order, bit i of byte j being page 8j+i', () => {
    expect(dirtyPageList(bytesWith(8, [0, 2, 31, 32, 63]))).toEqual([0, 2, 31, 32, 63]);
    expect(dirtyPageList(new Uint8Array([0x81, 0, 0, 0, 0, 0, 0, 0x80]))).toEqual([0, 7, 63]);
    expect(dirtyPageList(new Uint8Array(8))).toEqual([]);
    expect(dirtyPageList(new Uint8Array(0))).toEqual([]);
  });

  it('lists no page at or beyond npages, inside a word or in the words past it', () => {
    const b = bytesWith(16, [0, 2, 30, 31, 32, 40, 64, 127]);
    expect(dirtyPageList(b, 31)).toEqual([0, 2, 30]);
    expect(dirtyPageList(b, 32)).toEqual([0, 2, 30, 31]);
    expect(dirtyPageList(b, 33)).toEqual([0, 2, 30, 31, 32]);
    expect(dirtyPageList(b, 3)).toEqual([0, 2]);
    expect(dirtyPageList(b, 0)).toEqual([]);
    expect(dirtyPageList(bytesWith(8, [33, 40, 63]), 32)).toEqual([]);
    expect(dirtyPageList(bytesWith(12, [64, 95]), 64)).toEqual([]);
    // npages past the bytes: the bytes are all there is
    expect(dirtyPageList(b, 1000)).toEqual([0, 2, 30, 31, 32, 40, 64, 127]);
  });

  it('reads a bitmap at any byte offset and of any length (a view into a larger buffer, a length not a multiple of 4)', () => {
    const buf = new Uint8Array(24).fill(0xff);
    const odd = buf.subarray(1, 9);
    odd.fill(0);
    odd[0] = 0x01;
    odd[7] = 0x80;
    expect(dirtyPageList(odd)).toEqual([0, 63]);
    const oddLength = buf.subarray(12, 17);
    oddLength.fill(0);
    oddLength[4] = 0x81;
    expect(dirtyPageList(oddLength)).toEqual([32, 39]);
    expect(dirtyPageList(new Uint8Array([0x01, 0, 0, 0, 0x80]))).toEqual([0, 39]);
    expect(dirtyPageList(new Uint8Array([0x00, 0x02, 0x04]))).toEqual([9, 18]);
    expect(dirtyPageList(buf.subarray(19, 21))).toEqual(range(0, 16));
  });

  it('lists up to MAX_LISTED_DIRTY_PAGES pages; one more is a DirtyListTooLong', () => {
    const max = new Uint8Array(MAX_LISTED_DIRTY_PAGES / 8).fill(0xff);
    const list = dirtyPageList(max);
    expect(list.length).toBe(MAX_LISTED_DIRTY_PAGES);
    expect(list[MAX_LISTED_DIRTY_PAGES - 1]).toBe(MAX_LISTED_DIRTY_PAGES - 1);
    const over = new Uint8Array(MAX_LISTED_DIRTY_PAGES / 8 + 8).fill(0xff);
    expect(dirtyPageList(over, MAX_LISTED_DIRTY_PAGES).length).toBe(MAX_LISTED_DIRTY_PAGES);
    over.fill(0, MAX_LISTED_DIRTY_PAGES / 8 + 1);
    over[MAX_LISTED_DIRTY_PAGES / 8] = 0x01;
    expect(() => dirtyPageList(over)).toThrow(DirtyListTooLong);
  });
});

describe('dirtyPageList: the model\'s DirtyBitmap', () => {
  it('lists the set bits in ascending order', () => {
    expect(dirtyPageList(bitmapWith(100, [99, 3, 64, 65]))).toEqual([3, 64, 65, 99]);
    expect(dirtyPageList(new DirtyBitmap(100))).toEqual([]);
    expect(dirtyPageList(new DirtyBitmap(70, true))).toEqual(range(0, 70));
  });

  it('lists no page at or beyond npages, wherever the runs of set bits start and end', () => {
    const b = bitmapWith(128, [3, 10, 11, 12, 60, 61, 62, 63, 64, 65, 70, 71, 100]);
    expect(dirtyPageList(b, 128)).toEqual([3, 10, 11, 12, 60, 61, 62, 63, 64, 65, 70, 71, 100]);
    expect(dirtyPageList(b, 1000)).toEqual([3, 10, 11, 12, 60, 61, 62, 63, 64, 65, 70, 71, 100]);
    // a run crossing the limit, runs beyond it, runs ending at it
    expect(dirtyPageList(b, 62)).toEqual([3, 10, 11, 12, 60, 61]);
    expect(dirtyPageList(b, 13)).toEqual([3, 10, 11, 12]);
    expect(dirtyPageList(b, 66)).toEqual([3, 10, 11, 12, 60, 61, 62, 63, 64, 65]);
    expect(dirtyPageList(b, 68)).toEqual([3, 10, 11, 12, 60, 61, 62, 63, 64, 65]);
    expect(dirtyPageList(b, 4)).toEqual([3]);
    expect(dirtyPageList(b, 0)).toEqual([]);
    expect(dirtyPageList(new DirtyBitmap(1000, true), 50)).toEqual(range(0, 50));
  });

  it('lists what the same bits as the kernel\'s bytes list', () => {
    const pages = [0, 1, 5, 31, 32, 33, 63, 64, 100, 127, 128, 129, 190];
    for (const npages of [0, 1, 2, 31, 32, 33, 64, 100, 128, 129, 191, 192, 500]) {
      expect(dirtyPageList(bitmapWith(192, pages), npages), `npages ${npages}`).toEqual(dirtyPageList(bytesWith(24, pages), npages));
    }
  });

  it('lists up to MAX_LISTED_DIRTY_PAGES pages; one more is a DirtyListTooLong', () => {
    expect(dirtyPageList(new DirtyBitmap(MAX_LISTED_DIRTY_PAGES, true)).length).toBe(MAX_LISTED_DIRTY_PAGES);
    expect(dirtyPageList(new DirtyBitmap(MAX_LISTED_DIRTY_PAGES + 64, true), MAX_LISTED_DIRTY_PAGES).length).toBe(MAX_LISTED_DIRTY_PAGES);
    expect(() => dirtyPageList(new DirtyBitmap(MAX_LISTED_DIRTY_PAGES + 1, true))).toThrow(DirtyListTooLong);
  });
});

describe('DirtyListTooLong', () => {
  it('names itself and says how many pages, the limit and what to do', () => {
    const e = new DirtyListTooLong(MAX_LISTED_DIRTY_PAGES + 1);
    expect(e).toBeInstanceOf(Error);
    expect(e.name).toBe('DirtyListTooLong');
    expect(e.message).toBe(
      'get_dirty_log: 1048577 dirty pages are more than a step lists (1048576); use a smaller slot or clear the log in ranges',
    );
  });
});

describe('clearBitmap: the user bitmap of clear_dirty_log', () => {
  it('is DIV_ROUND_UP(num_pages, 64) longs with every bit below num_pages set by default', () => {
    const b = clearBitmap(100, undefined, 1 << 20);
    expect(b.length).toBe(16);
    expect([...b]).toEqual([...new Array(12).fill(0xff), 0x0f, 0, 0, 0]);
    expect([...clearBitmap(64, undefined, 1 << 20)]).toEqual(new Array(8).fill(0xff));
    expect([...clearBitmap(1, undefined, 1 << 20)]).toEqual([0x01, 0, 0, 0, 0, 0, 0, 0]);
    expect([...clearBitmap(0, undefined, 1 << 20)]).toEqual([]);
  });

  it('is allocated for at most `cap` bytes (at least one long)', () => {
    expect([...clearBitmap(1000, undefined, 16)]).toEqual(new Array(16).fill(0xff));
    expect([...clearBitmap(1000, undefined, 0)]).toEqual(new Array(8).fill(0xff));
    expect([...clearBitmap(1000, undefined, 3)]).toEqual(new Array(8).fill(0xff));
  });

  it('sets the listed bits only', () => {
    expect(dirtyPageList(clearBitmap(128, [0, 5, 64, 127], 1 << 20))).toEqual([0, 5, 64, 127]);
    expect(dirtyPageList(clearBitmap(128, [], 1 << 20))).toEqual([]);
    expect(clearBitmap(128, [], 1 << 20).length).toBe(16);
  });

  it('drops a bit beyond the bitmap, negative or fractional, never wrapping it onto another bit', () => {
    const b = clearBitmap(128, [1, 128, 129, 40000, 2 ** 32 + 8, -1, -(2 ** 32) + 9, 1.5, 2.5, 2 ** 31], 1 << 20);
    expect(dirtyPageList(b)).toEqual([1]);
    expect(dirtyPageList(clearBitmap(128, [0], 1 << 20))).toEqual([0]);
    expect(dirtyPageList(clearBitmap(128, [127], 1 << 20))).toEqual([127]);
  });
});

describe('clearBitmapSparse: the same bits as clearBitmap, as a DirtyBitmap', () => {
  const cases: [number, number[] | undefined, number][] = [
    [100, undefined, 1 << 20],
    [64, undefined, 1 << 20],
    [70, undefined, 1 << 20],
    [1, undefined, 1 << 20],
    [1000, undefined, 16],
    [1000, undefined, 0],
    [1000, undefined, 3],
    [128, [0, 5, 64, 127], 1 << 20],
    [128, [], 1 << 20],
    [64, [100, 3], 1 << 20],
    [64, [100, 3], 1000],
    [1000, [0, 200, 300], 16],
    [128, [1, 128, 129, 40000, 2 ** 32 + 8, -1, -(2 ** 32) + 9, 1.5, 2.5, 2 ** 31], 1 << 20],
  ];
  for (const [numPages, bits, cap] of cases) {
    it(`num_pages ${numPages}, bits ${bits ? `[${bits.join(', ')}]` : 'all'}, cap ${cap}`, () => {
      const dense = clearBitmap(numPages, bits, cap);
      const sparse = clearBitmapSparse(numPages, bits, cap);
      expect(sparse.byteLength).toBe(dense.length);
      expect([...sparse.toBytes()]).toEqual([...dense]);
      expect(sparse.count()).toBe(dirtyPageList(dense).length);
      expect(dirtyPageList(sparse)).toEqual(dirtyPageList(dense));
    });
  }

  it('every bit below num_pages is a bitmap of num_pages pages, all set', () => {
    const b = clearBitmapSparse(100, undefined, 1 << 20);
    expect(b.npages).toBe(100);
    expect(b.count()).toBe(100);
    const capped = clearBitmapSparse(1000, undefined, 16);
    expect(capped.npages).toBe(128);
    expect(capped.count()).toBe(128);
  });

  it('listed bits: a bitmap as long as the bytes', () => {
    const b = clearBitmapSparse(100, [0, 99, 127, 128], 1 << 20);
    expect(b.npages).toBe(128);
    expect(dirtyPageList(b)).toEqual([0, 99, 127]);
  });
});
