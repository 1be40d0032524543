import { describe, expect, it } from 'vitest';
import { INVALID_GFN, MmuInvalidate } from './invalidate.js';
import { KvmError } from './errno.js';

describe('mmu_invalidate protocol', () => {
  it('begin resets the range only for the first concurrent invalidation', () => {
    const inv = new MmuInvalidate();
    inv.begin();
    inv.rangeAdd(10, 20);
    inv.begin();
    expect(inv.inProgress).toBe(2);
    expect([inv.rangeStart, inv.rangeEnd]).toEqual([10, 20]);
    inv.rangeAdd(5, 12);
    inv.rangeAdd(18, 40);
    expect([inv.rangeStart, inv.rangeEnd]).toEqual([5, 40]);
  });

  it('end bumps the sequence before dropping in_progress', () => {
    const inv = new MmuInvalidate();
    inv.begin();
    inv.rangeAdd(0, 1);
    inv.end();
    expect(inv.seq).toBe(1);
    expect(inv.inProgress).toBe(0);
    expect(inv.warnings).toBe(0);
  });

  it('retryGfn: in-progress range covers the gfn, no range yet, or the sequence moved', () => {
    const inv = new MmuInvalidate();
    const seq = inv.seq;
    expect(inv.retryGfn(seq, 7)).toBe(false);
    inv.begin();
    expect(inv.rangeStart).toBe(INVALID_GFN);
    expect(inv.retryGfn(seq, 7)).toBe(true); // in progress with no range: WARN + retry
    inv.rangeAdd(10, 20);
    expect(inv.retryGfn(seq, 7)).toBe(false);
    expect(inv.retryGfn(seq, 10)).toBe(true);
    expect(inv.retryGfn(seq, 19)).toBe(true);
    expect(inv.retryGfn(seq, 20)).toBe(false);
    inv.end();
    expect(inv.retryGfn(seq, 7)).toBe(true); // seq moved: any fault that snapshotted it retries
    expect(inv.retryGfn(inv.seq, 7)).toBe(false);
  });

  it('an end without a begin is a KVM bug (EIO) and a missing range_add is counted', () => {
    const inv = new MmuInvalidate();
    inv.begin();
    inv.end();
    expect(inv.warnings).toBe(1);
    expect(() => inv.end()).toThrow(KvmError);
  });
});
