import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { ACC_ALL, ACC_EXEC_MASK, ACC_USER_MASK, ACC_WRITE_MASK } from './mmu-internal.js';
import {
  EPT_MMIO_VALUE,
  FROZEN_SPTE_HI,
  FROZEN_SPTE_LO,
  MMIO_SPTE_GEN_MASK,
  SHADOW_NONPRESENT_HI,
  SHADOW_NONPRESENT_LO,
  TDX_MMIO_VALUE,
  type Spte,
  getMmioSpteGeneration,
  getMmioSpteGfn,
  isAccessed,
  isDirty,
  isExecutable,
  isFrozenSpte,
  isHostWritable,
  isLargePte,
  isLastSpte,
  isMmioSpte,
  isMmuWritable,
  isReadable,
  isSuppressVe,
  isWritable,
  leafSpteChangeNeedsTlbFlush,
  makeMmioSpte,
  makeNonleafSpte,
  makeSmallSpte,
  makeSpte,
  spteFromBigInt,
  spteIsPresent,
  sptePfn,
  spteToBigInt,
  spteToHex,
  spteWritableInvariantViolation,
} from './spte.js';

const s = (): Spte => ({ lo: 0, hi: 0 });
const bit = (v: bigint, n: number): boolean => ((v >> BigInt(n)) & 1n) === 1n;
const MAX_PFN = 2 ** 40 - 1;

describe('SPTE encoding (EPT masks)', () => {
  it('places every bit where spte.h says', () => {
    const v = spteToBigInt(...((x) => [x.lo, x.hi] as const)(makeSpte(s(), 2, 0x12345600, ACC_ALL, true, false)));
    expect(bit(v, 0)).toBe(true); // R (present mask + user)
    expect(bit(v, 1)).toBe(true); // W
    expect(bit(v, 2)).toBe(true); // X
    expect(bit(v, 7)).toBe(true); // page size (level 2)
    expect(bit(v, 8)).toBe(true); // A (not prefetch)
    expect(bit(v, 9)).toBe(true); // D (writable SPTEs are created dirty)
    expect(bit(v, 11)).toBe(true); // SPTE_MMU_PRESENT_MASK
    expect(bit(v, 57)).toBe(true); // host-writable
    expect(bit(v, 58)).toBe(true); // MMU-writable
    expect(bit(v, 63)).toBe(true); // SUPPRESS_VE
    expect((v >> 12n) & ((1n << 40n) - 1n)).toBe(0x12345600n);
    // nothing else
    const known = [0, 1, 2, 7, 8, 9, 11, 57, 58, 63];
    const other = v & ~(((1n << 40n) - 1n) << 12n);
    for (let b = 0; b < 64; b++) if (!known.includes(b)) expect(bit(other, b)).toBe(false);
  });

  it('round-trips makeSpte through the decoders', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 3 }),
        fc.integer({ min: 0, max: MAX_PFN }),
        fc.integer({ min: 0, max: 7 }),
        fc.boolean(),
        fc.boolean(),
        (level, pfn, access, hostWritable, prefetch) => {
          const x = makeSpte(s(), level, pfn, access, hostWritable, prefetch);
          expect(x.lo).toBe(x.lo | 0);
          expect(x.hi).toBe(x.hi | 0);
          expect(spteIsPresent(x.lo)).toBe(true);
          expect(sptePfn(x.lo, x.hi)).toBe(pfn);
          expect(isLargePte(x.lo)).toBe(level > 1);
          expect(isLastSpte(x.lo, level)).toBe(true);
          const w = hostWritable && (access & ACC_WRITE_MASK) !== 0;
          expect(isWritable(x.lo)).toBe(w);
          expect(isMmuWritable(x.hi)).toBe(w);
          expect(isDirty(x.lo)).toBe(w);
          expect(isHostWritable(x.hi)).toBe(hostWritable);
          expect(isExecutable(x.lo)).toBe((access & ACC_EXEC_MASK) !== 0);
          expect(isReadable(x.lo)).toBe(true);
          expect(isAccessed(x.lo)).toBe(!prefetch);
          expect(isSuppressVe(x.hi)).toBe(true);
          expect(isMmioSpte(x.lo, x.hi)).toBe(false);
          expect(isFrozenSpte(x.lo, x.hi)).toBe(false);
          expect(spteWritableInvariantViolation(x.lo, x.hi)).toBeNull();
          // the 64-bit view agrees with the halves
          const back = spteFromBigInt(s(), spteToBigInt(x.lo, x.hi));
          expect(back).toEqual({ lo: x.lo, hi: x.hi });
          expect(BigInt(spteToHex(x.lo, x.hi))).toBe(spteToBigInt(x.lo, x.hi));
        },
      ),
    );
  });

  it('non-leaf SPTEs are present, not large, RWX + A, and point at the child', () => {
    const x = makeNonleafSpte(s(), 123456);
    expect(spteIsPresent(x.lo)).toBe(true);
    expect(isLargePte(x.lo)).toBe(false);
    expect(isLastSpte(x.lo, 2)).toBe(false);
    expect(isLastSpte(x.lo, 1)).toBe(true);
    expect(x.lo & 7).toBe(7);
    expect(isAccessed(x.lo)).toBe(true);
    expect(sptePfn(x.lo, x.hi)).toBe(123456);
  });

  it('FROZEN_SPTE and SHADOW_NONPRESENT_VALUE are what spte.h defines', () => {
    expect(spteToBigInt(FROZEN_SPTE_LO, FROZEN_SPTE_HI)).toBe((1n << 63n) | 0x5a0n);
    expect(spteToBigInt(SHADOW_NONPRESENT_LO, SHADOW_NONPRESENT_HI)).toBe(1n << 63n);
    expect(isFrozenSpte(FROZEN_SPTE_LO, FROZEN_SPTE_HI)).toBe(true);
    expect(spteIsPresent(FROZEN_SPTE_LO)).toBe(false);
    expect(isMmioSpte(FROZEN_SPTE_LO, FROZEN_SPTE_HI)).toBe(false);
    expect(isMmioSpte(FROZEN_SPTE_LO, FROZEN_SPTE_HI, TDX_MMIO_VALUE)).toBe(false);
    expect(isMmioSpte(SHADOW_NONPRESENT_LO, SHADOW_NONPRESENT_HI, TDX_MMIO_VALUE)).toBe(false);
    expect(sptePfn(FROZEN_SPTE_LO, FROZEN_SPTE_HI)).toBe(0);
  });

  it('MMIO SPTEs round-trip gfn and generation (bits 3-10 and 52-62)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: MAX_PFN }),
        fc.integer({ min: 0, max: 2 ** 31 - 1 }),
        fc.constantFrom(EPT_MMIO_VALUE, TDX_MMIO_VALUE),
        (gfn, gen, value) => {
          const x = makeMmioSpte(s(), gfn, gen, value);
          expect(isMmioSpte(x.lo, x.hi, value)).toBe(true);
          expect(spteIsPresent(x.lo)).toBe(false);
          expect(getMmioSpteGeneration(x.lo, x.hi)).toBe(gen & MMIO_SPTE_GEN_MASK);
          expect(getMmioSpteGfn(x.lo, x.hi)).toBe(gfn);
          const v = spteToBigInt(x.lo, x.hi);
          const g = BigInt(gen & MMIO_SPTE_GEN_MASK);
          expect((v >> 3n) & 0xffn).toBe(g & 0xffn);
          expect((v >> 52n) & 0x7ffn).toBe(g >> 8n);
          expect(bit(v, 63)).toBe(false);
          expect(Number(v & 7n)).toBe(value);
        },
      ),
    );
    expect(MMIO_SPTE_GEN_MASK).toBe(2 ** 19 - 1);
    // W|X without R is the EPT misconfiguration value
    expect(EPT_MMIO_VALUE).toBe(0b110);
    const normal = makeSpte(s(), 1, 5, ACC_ALL, true, false);
    expect(isMmioSpte(normal.lo, normal.hi, TDX_MMIO_VALUE)).toBe(false);
  });

  it('makeSmallSpte splits a huge SPTE into children with consecutive pfns', () => {
    for (const level of [2, 3]) {
      const per = 512 ** (level - 2);
      const hugePfn = 512 ** (level - 1) * 7777;
      const huge = makeSpte(s(), level, hugePfn, ACC_ALL, true, false);
      for (const i of [0, 1, 255, 511]) {
        const c = makeSmallSpte(s(), huge.lo, huge.hi, level, i);
        expect(sptePfn(c.lo, c.hi)).toBe(hugePfn + i * per);
        expect(isLargePte(c.lo)).toBe(level - 1 > 1);
        // every other bit carries over
        const diff = spteToBigInt(c.lo, c.hi) ^ spteToBigInt(huge.lo, huge.hi);
        const expected =
          (BigInt(i * per) << 12n) | (level === 2 ? 0x80n : 0n);
        expect(diff).toBe(expected);
      }
    }
  });

  it('leafSpteChangeNeedsTlbFlush is about dropping MMU-writable', () => {
    const w = makeSpte(s(), 1, 1, ACC_ALL, true, false);
    const ro = makeSpte(s(), 1, 1, ACC_USER_MASK | ACC_EXEC_MASK, true, false);
    expect(leafSpteChangeNeedsTlbFlush(w.hi, ro.hi)).toBe(true);
    expect(leafSpteChangeNeedsTlbFlush(ro.hi, w.hi)).toBe(false);
    expect(leafSpteChangeNeedsTlbFlush(w.hi, w.hi)).toBe(false);
  });

  it('detects writable-invariant violations', () => {
    const w = makeSpte(s(), 1, 1, ACC_ALL, true, false);
    expect(spteWritableInvariantViolation(w.lo, w.hi & ~(1 << 26))).toMatch(/not MMU-writable/);
    expect(spteWritableInvariantViolation(w.lo, w.hi & ~(1 << 25))).toMatch(/not Host-writable/);
  });
});
