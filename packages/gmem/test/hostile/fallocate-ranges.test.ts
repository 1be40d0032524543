/**
 * fallocate() of guest_memfd allocates ranges, not pages: 1 TiB costs O(runs) in time and
 * memory, every page counts as allocated, each gets its frame on first use, and a punched
 * hole gives the range back.
 */
import { describe, expect, it } from 'vitest';
import { FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, PAGE_SIZE } from '@ccmem/core';
import { GuestMemfd } from '../../src/guest-memfd.js';
import { FakeVm } from '../../src/testing/fake-vm.js';

const KEEP = FALLOC_FL_KEEP_SIZE;
const PUNCH = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;
const TiB = 2 ** 40;

describe('guest_memfd fallocate of huge ranges', () => {
  it('1 TiB allocates in O(runs): no frame, no per-page metadata', () => {
    const vm = new FakeVm();
    const f = new GuestMemfd(vm, TiB, 0);
    const heapBefore = process.memoryUsage().heapUsed;
    expect(f.fallocate(KEEP, 0, TiB)).toBe(0);
    expect(f.stats.allocatedPages).toBe(TiB / PAGE_SIZE);
    expect(process.memoryUsage().heapUsed - heapBefore).toBeLessThan(16 * 2 ** 20);
    // a page gets its frame when used; the count does not change
    const pfn = f.pfnAt(12345);
    expect(pfn).toBeGreaterThanOrEqual(0);
    expect(f.pfnAt(12345)).toBe(pfn);
    expect(f.stats.allocatedPages).toBe(TiB / PAGE_SIZE);
    // punching half of it gives those pages back, the touched one with its frame
    expect(f.fallocate(PUNCH, 0, TiB / 2)).toBe(0);
    expect(f.stats.allocatedPages).toBe(TiB / 2 / PAGE_SIZE);
    expect(f.pfnAt(12345)).toBe(-1);
    // allocating again over a partly allocated range counts each page once
    expect(f.fallocate(KEEP, TiB / 2 - 4 * PAGE_SIZE, 8 * PAGE_SIZE)).toBe(0);
    expect(f.stats.allocatedPages).toBe(TiB / 2 / PAGE_SIZE + 4);
  });

  it('a hole is still a hole: pfnAt never allocates one', () => {
    const f = new GuestMemfd(new FakeVm(), 1 << 20, 0);
    f.fallocate(KEEP, 0, 4 * PAGE_SIZE);
    expect(f.pfnAt(8)).toBe(-1);
    expect(f.stats.allocatedPages).toBe(4);
  });
});
