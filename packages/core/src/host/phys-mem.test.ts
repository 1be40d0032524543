import { describe, expect, it } from 'vitest';
import { FIRST_ALLOC_PFN, PhysMem, ZERO_PFN } from './phys-mem.js';

describe('PhysMem', () => {
  it('allocates lazily from 0x100, reuses freed frames, never reuses leaked ones', () => {
    const m = new PhysMem();
    const a = m.allocPage();
    const b = m.allocPage();
    expect(a).toBe(FIRST_ALLOC_PFN);
    expect(b).toBe(FIRST_ALLOC_PFN + 1);
    expect(m.allocatedPages).toBe(2);
    m.freePage(a);
    expect(m.isAllocated(a)).toBe(false);
    expect(m.allocPage()).toBe(a);
    m.leakPage(b);
    expect(m.isLeaked(b)).toBe(true);
    expect(m.allocatedPages).toBe(1);
    const seen = new Set<number>();
    for (let i = 0; i < 1000; i++) seen.add(m.allocPage());
    expect(seen.has(b)).toBe(false);
    expect(() => m.freePage(b)).toThrow(/not allocated/);
    expect(() => m.freePage(0x5)).toThrow(/not allocated/);
  });

  it('stores only frames with non-zero contents; values are little-endian', () => {
    const m = new PhysMem();
    const p = m.allocPage();
    m.writeValue(p, 8, 8, 0n);
    m.writeBytes(p, 0, new Uint8Array(16));
    expect(m.storedPages).toBe(0);
    m.writeValue(p, 4094, 2, 0x1234n);
    expect(m.storedPages).toBe(1);
    expect(m.readBytes(p, 4094, 2)).toEqual(new Uint8Array([0x34, 0x12]));
    expect(m.readValue(p, 4094, 2)).toBe(0x1234n);
    m.writeValue(p, 0, 8, -1n);
    expect(m.readValue(p, 0, 8)).toBe(0xffffffffffffffffn);
    expect(m.readValue(p, 0, 4)).toBe(0xffffffffn);
    m.zeroPage(p);
    expect(m.storedPages).toBe(0);
    expect(m.readValue(p, 0, 8)).toBe(0n);
    m.writeValue(p, 0, 1, 7n);
    m.freePage(p);
    expect(m.storedPages).toBe(0);
    expect(() => m.readValue(p, 4095, 2)).toThrow(RangeError);
    expect(() => m.readValue(p, 0, 9)).toThrow(RangeError);
    expect(m.readValue(p, 4093, 3)).toBe(0n); // a page-crossing access's fragment
  });

  it('the zero page reads zero and refuses writes', () => {
    const m = new PhysMem();
    expect(m.readValue(ZERO_PFN, 0, 8)).toBe(0n);
    expect(m.readBytes(ZERO_PFN, 0, 4096).every((b) => b === 0)).toBe(true);
    expect(() => m.writeValue(ZERO_PFN, 0, 1, 1n)).toThrow(/zero page/);
    expect(() => m.writeBytes(ZERO_PFN, 0, new Uint8Array([1]))).toThrow(/zero page/);
    expect(m.isAllocated(ZERO_PFN)).toBe(false);
    for (let i = 0; i < 10; i++) expect(m.allocPage()).not.toBe(ZERO_PFN);
  });

  it('a huge number of never-written frames costs no content storage', () => {
    const m = new PhysMem();
    for (let i = 0; i < 100_000; i++) m.allocPage();
    expect(m.allocatedPages).toBe(100_000);
    expect(m.storedPages).toBe(0);
  });
});

describe('page-table reads as int32 halves', () => {
  it('readI32 / readI64Halves see the bytes writeValue stored, and zeros elsewhere', () => {
    const phys = new PhysMem();
    const pfn = phys.allocPage();
    phys.writeValue(pfn, 8, 8, 0x8000000180000002n);
    phys.writeValue(pfn, 512, 8, 0x1122334455667788n); // the next 512-byte line
    expect(phys.readI32(pfn, 8)).toBe(0x80000002 | 0);
    expect(phys.readI32(pfn, 12)).toBe(0x80000001 | 0);
    const lo = new Int32Array(66);
    const hi = new Int32Array(66);
    phys.readI64Halves(pfn, 0, 66, lo, hi);
    expect([lo[1], hi[1]]).toEqual([0x80000002 | 0, 0x80000001 | 0]);
    expect([lo[64], hi[64]]).toEqual([0x55667788, 0x11223344]);
    expect(lo[0]).toBe(0);
    expect(lo[65]).toBe(0);
    phys.writeI32(pfn, 12, 0x7fff0001);
    expect(phys.readValue(pfn, 8, 8)).toBe(0x7fff000180000002n);
    phys.writeI32(pfn, 2048, 0); // zeros over zeros: nothing stored
    expect(phys.readI32(pfn, 2048)).toBe(0);
    expect(() => phys.writeI32(ZERO_PFN, 0, 1)).toThrow();
    expect(() => phys.readI64Halves(pfn, 4, 1, lo, hi)).toThrow(RangeError);
    expect(() => phys.readI32(pfn, 4094)).toThrow(RangeError);
  });
});
