import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { LINE_SIZE, PageContents } from './page-contents.js';

const PAGE = 4096;

describe('PageContents', () => {
  it('matches a plain byte array for random value and byte accesses, and stores only touched lines', () => {
    const op = fc.oneof(
      fc.record({ kind: fc.constant('wv' as const), pfn: fc.integer({ min: 0, max: 3 }), size: fc.constantFrom(1, 2, 3, 4, 5, 6, 7, 8), off: fc.integer({ min: 0, max: PAGE - 8 }), v: fc.bigInt({ min: -(2n ** 64n), max: 2n ** 64n }) }),
      fc.record({ kind: fc.constant('wb' as const), pfn: fc.integer({ min: 0, max: 3 }), off: fc.integer({ min: 0, max: PAGE - 1 }), data: fc.uint8Array({ maxLength: 1200 }) }),
      fc.record({ kind: fc.constant('clear' as const), pfn: fc.integer({ min: 0, max: 3 }) }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 40 }), (ops) => {
        const c = new PageContents();
        const ref = [0, 1, 2, 3].map(() => new Uint8Array(PAGE));
        const pfnOf = (i: number) => 0x100 + i * 5000; // different index leaves
        for (const o of ops) {
          if (o.kind === 'wv') {
            c.writeValue(pfnOf(o.pfn), o.off, o.size, o.v);
            let v = BigInt.asUintN(o.size * 8, o.v);
            for (let i = 0; i < o.size; i++, v >>= 8n) ref[o.pfn]![o.off + i] = Number(v & 0xffn);
          } else if (o.kind === 'wb') {
            const data = o.data.subarray(0, PAGE - o.off);
            c.write(pfnOf(o.pfn), o.off, data);
            ref[o.pfn]!.set(data, o.off);
          } else {
            c.clear(pfnOf(o.pfn));
            ref[o.pfn]!.fill(0);
          }
          const p = o.pfn;
          const out = new Uint8Array(PAGE);
          c.readInto(pfnOf(p), 0, out);
          if (Buffer.compare(out, ref[p]!) !== 0) throw new Error(`page ${p} differs after ${o.kind}`);
        }
        for (let p = 0; p < 4; p++) {
          const part = new Uint8Array(700);
          c.readInto(pfnOf(p), 300, part);
          expect(Buffer.compare(part, ref[p]!.subarray(300, 1000))).toBe(0);
        }
        // values read back little-endian at every size
        for (let p = 0; p < 4; p++) {
          for (const off of [0, 8, 511, 1020, 4088]) {
            let want = 0n;
            for (let i = 7; i >= 0; i--) want = (want << 8n) | BigInt(ref[p]![off + i]!);
            expect(c.readValue(pfnOf(p), off, 8)).toBe(want);
            expect(c.readValue(pfnOf(p), off, 2)).toBe(want & 0xffffn);
            // the odd sizes of a page-crossing access's fragments
            for (const n of [3, 5, 6, 7]) expect(c.readValue(pfnOf(p), off, n)).toBe(want & ((1n << BigInt(8 * n)) - 1n));
          }
          for (const n of [3, 5, 6, 7]) {
            let want = 0n;
            for (let i = n - 1; i >= 0; i--) want = (want << 8n) | BigInt(ref[p]![PAGE - n + i]!);
            expect(c.readValue(pfnOf(p), PAGE - n, n)).toBe(want);
          }
        }
      }),
      { numRuns: 100 },
    );
  });

  it('reads and writes through a page slot see what the pfn-addressed accesses see, while slotGeneration is unchanged', () => {
    const op = fc.oneof(
      fc.record({ kind: fc.constant('w' as const), pfn: fc.integer({ min: 0, max: 2 }), off: fc.integer({ min: 0, max: PAGE / 4 - 1 }), v: fc.integer() }),
      fc.record({ kind: fc.constant('ws' as const), pfn: fc.integer({ min: 0, max: 2 }), off: fc.integer({ min: 0, max: PAGE / 4 - 1 }), v: fc.integer() }),
      fc.record({ kind: fc.constant('clear' as const), pfn: fc.integer({ min: 0, max: 2 }) }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 50 }), fc.integer({ min: 0, max: PAGE / 8 - 1 }), fc.integer({ min: 1, max: 64 }), (ops, at, n) => {
        const c = new PageContents();
        const ref = [0, 1, 2].map(() => new Int32Array(PAGE / 4));
        const pfnOf = (i: number) => 0x100 + i * 700;
        for (const o of ops) {
          const pfn = pfnOf(o.pfn);
          if (o.kind === 'clear') {
            const gen = c.slotGeneration;
            const had = c.pageSlot(pfn) !== 0;
            c.clear(pfn);
            expect(c.pageSlot(pfn)).toBe(0);
            // dropping a page's slot is what invalidates cached slots
            expect(c.slotGeneration !== gen).toBe(had);
            ref[o.pfn]!.fill(0);
            continue;
          }
          const s1 = c.pageSlot(pfn);
          if (o.kind === 'ws' && s1 !== 0) {
            // a store through the slot lands when the line has storage, else it reports false
            const lineStored = c.writeI32InSlot(s1, o.off * 4, o.v);
            if (!lineStored) c.writeI32(pfn, o.off * 4, o.v);
          } else c.writeI32(pfn, o.off * 4, o.v);
          ref[o.pfn]![o.off] = o.v;
        }
        const lo = new Int32Array(64);
        const hi = new Int32Array(64);
        for (let p = 0; p < 3; p++) {
          const pfn = pfnOf(p);
          const s1 = c.pageSlot(pfn);
          const m = Math.min(n, PAGE / 8 - at);
          if (s1 === 0) {
            expect(ref[p]!.every((v) => v === 0)).toBe(true);
            continue;
          }
          for (let w = 0; w < PAGE / 4; w += 97) expect(c.readI32InSlot(s1, w * 4)).toBe(ref[p]![w]);
          c.readI64HalvesInSlot(s1, at * 8, m, lo, hi);
          for (let k = 0; k < m; k++) {
            expect(lo[k]).toBe(ref[p]![2 * (at + k)]);
            expect(hi[k]).toBe(ref[p]![2 * (at + k) + 1]);
          }
          // one 64-bit entry: both halves from one line
          const e = { lo: -1, hi: -1 };
          c.readI64InSlot(s1, at * 8, e);
          expect(e).toEqual({ lo: ref[p]![2 * at], hi: ref[p]![2 * at + 1] });
        }
      }),
      { numRuns: 200 },
    );
  });

  it('one word written per page costs one line, and a clear recycles it zeroed', () => {
    const c = new PageContents();
    for (let p = 0; p < 1000; p++) c.writeValue(0x100 + p, 8, 8, BigInt(p + 1));
    expect(c.storedPages).toBe(1000);
    const before = c.byteLength();
    expect(before).toBeLessThan(1000 * LINE_SIZE + (1 << 20) + 200_000);
    for (let p = 0; p < 1000; p++) c.clear(0x100 + p);
    expect(c.storedPages).toBe(0);
    c.writeValue(0x100, 16, 8, 5n);
    expect(c.readValue(0x100, 8, 8)).toBe(0n); // the recycled line was zeroed
    expect(c.readValue(0x100, 16, 8)).toBe(5n);
    c.writeValue(0x200, 0, 8, 0n);
    expect(c.storedPages).toBe(1); // zeros over zeros store nothing
  });

  it('pages that share a 2 MiB block (one index entry, then a per-block table) keep their own contents', () => {
    const pfns = [0x200, 0x201, 0x3ff, 0x400, 0x200 + 511 * 7];
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.integer({ min: 0, max: pfns.length - 1 }), fc.boolean(), fc.bigInt({ min: 0n, max: 2n ** 64n - 1n })), { maxLength: 60 }), (ops) => {
        const c = new PageContents();
        const ref = new Map<number, bigint>();
        // frames with stored contents: a non-zero write starts storing, clear() stops it;
        // zeros over earlier data keep the frame stored, zeros over zeros store nothing
        const stored = new Set<number>();
        for (const [k, write, v] of ops) {
          const pfn = pfns[k]!;
          if (write) {
            c.writeValue(pfn, 64, 8, v);
            ref.set(pfn, v);
            if (v !== 0n) stored.add(pfn);
          } else {
            c.clear(pfn);
            ref.delete(pfn);
            stored.delete(pfn);
          }
          for (const p of pfns) expect(c.readValue(p, 64, 8)).toBe(ref.get(p) ?? 0n);
          expect(c.storedPages).toBe(stored.size);
        }
      }),
      { numRuns: 200 },
    );
  });
});
