import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { AddressSpace } from './address-space.js';
import { PhysMem } from './phys-mem.js';

const PAGE = 4096;
/** the window the operations work in: 64 pages from 1 GiB */
const BASE = 0x4000_0000;
const PAGES = 64;

type Op =
  | { kind: 'mmap'; page: number; npages: number; write: boolean }
  | { kind: 'munmap'; page: number; npages: number }
  | { kind: 'mprotect'; page: number; npages: number; write: boolean };

const op: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ kind: fc.constant('mmap' as const), page: fc.nat(PAGES - 1), npages: fc.integer({ min: 1, max: 16 }), write: fc.boolean() }),
  fc.record({ kind: fc.constant('munmap' as const), page: fc.nat(PAGES - 1), npages: fc.integer({ min: 1, max: 16 }) }),
  fc.record({ kind: fc.constant('mprotect' as const), page: fc.nat(PAGES - 1), npages: fc.integer({ min: 1, max: 16 }), write: fc.boolean() }),
);

/**
 * The reference: per page, the id of the mmap() that mapped it (a VMA never merges with
 * another in the model), its protection and its file-free page offset; null when unmapped.
 */
type RefPage = { id: number; write: boolean } | null;

describe('AddressSpace VMAs against a per-page reference', () => {
  it('mmap(MAP_FIXED), munmap and mprotect leave sorted, disjoint VMAs covering exactly the mapped pages', () => {
    fc.assert(
      fc.property(fc.array(op, { minLength: 1, maxLength: 40 }), (ops) => {
        const mm = new AddressSpace(new PhysMem());
        const ref: RefPage[] = new Array<RefPage>(PAGES + 16).fill(null);
        let nextId = 0;
        for (const o of ops) {
          const addr = BASE + o.page * PAGE;
          const len = o.npages * PAGE;
          if (o.kind === 'mmap') {
            mm.mmap({ addr, length: len, prot: { read: true, write: o.write }, shared: false });
            const id = nextId++;
            for (let p = o.page; p < o.page + o.npages; p++) ref[p] = { id, write: o.write };
          } else if (o.kind === 'munmap') {
            mm.munmap(addr, len);
            for (let p = o.page; p < o.page + o.npages; p++) ref[p] = null;
          } else {
            let mapped = true;
            for (let p = o.page; p < o.page + o.npages; p++) if (ref[p] === null) mapped = false;
            let threw = false;
            try {
              mm.mprotect(addr, len, { read: true, write: o.write });
            } catch {
              threw = true;
            }
            // a hole is ENOMEM and changes nothing (do_mprotect_pkey())
            expect(threw).toBe(!mapped);
            if (mapped) for (let p = o.page; p < o.page + o.npages; p++) ref[p] = { id: ref[p]!.id, write: o.write };
          }
          const vmas = mm.mappings();
          for (let i = 1; i < vmas.length; i++) expect(vmas[i]!.start).toBeGreaterThanOrEqual(vmas[i - 1]!.end);
          // every page: mapped exactly when the reference says so, with its protection
          const seen: (boolean | null)[] = new Array<boolean | null>(PAGES + 16).fill(null);
          for (const v of vmas) {
            expect(v.start).toBeLessThan(v.end);
            for (let a = v.start; a < v.end; a += PAGE) seen[(a - BASE) / PAGE] = v.prot.write;
          }
          for (let p = 0; p < PAGES + 16; p++) expect(seen[p]).toBe(ref[p] === null ? null : ref[p]!.write);
          // pages of one mmap() that are still adjacent and equally protected may sit in one
          // VMA or in split ones, but pages of two mmap()s never share a VMA
          for (const v of vmas) {
            const id = ref[(v.start - BASE) / PAGE]!.id;
            for (let a = v.start; a < v.end; a += PAGE) expect(ref[(a - BASE) / PAGE]!.id).toBe(id);
          }
        }
      }),
      { numRuns: 300 },
    );
  });
});
