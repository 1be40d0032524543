/**
 * What every memory provider (guest_memfd, device fd) must do for the core's fault path:
 * binding rules, stable pfns, invalidation when pages go away, -EFAULT once the provider
 * is gone. Run from each provider's test file.
 */
import { ERRNO, KvmError, LINUX_6_18_PROFILE, UPSTREAM_PROFILE } from '@ccmem/core';
import type { GmemPfn, GuestMemoryFile, KernelProfile } from '@ccmem/core';
import { describe, expect, it } from 'vitest';
import { FakeVm, bindSlot, fakeSlot } from './fake-vm.js';
import type { ProviderCall } from './fake-vm.js';

export interface ProviderUnderTest {
  readonly vm: FakeVm;
  readonly file: GuestMemoryFile;
  /** file size in pages (at least 4) */
  readonly npages: number;
  /** the offsets bind() accepts besides 0 (empty if the provider only takes offset 0) */
  readonly extraOffsets: readonly number[];
  /** take pages [pgoff, pgoff + n) away from the guest (punch hole / revoke) */
  remove(pgoff: number, n: number): void;
  /** the provider goes away for good (close / revoke): faults then get -EFAULT */
  kill(): void;
}

export type MakeProvider = (vm: FakeVm) => ProviderUnderTest;

function errnoOf(fn: () => void): string | null {
  try {
    fn();
    return null;
  } catch (e) {
    if (e instanceof KvmError) return e.code;
    throw e;
  }
}

const zapped = (calls: readonly ProviderCall[], gfn: number) =>
  calls.some((c) => c.op === 'unmap' && c.start <= gfn && gfn < c.end);

export function runProviderConformance(name: string, makeProvider: MakeProvider): void {
  const fresh = (profile: KernelProfile = UPSTREAM_PROFILE) =>
    makeProvider(new FakeVm({ vmType: 4, hasPrivateMem: true, profile, withBackend: true }));

  describe(`provider conformance: ${name}`, () => {
    it('binds within the file and rejects offsets past the end with EINVAL', () => {
      const p = fresh();
      expect(errnoOf(() => p.file.bind(fakeSlot({ id: 1, baseGfn: 0x100, npages: p.npages + 1, file: p.file }), 0))).toBe('EINVAL');
      expect(errnoOf(() => p.file.bind(fakeSlot({ id: 1, baseGfn: 0x100, npages: 1, file: p.file }), 4095))).toBe('EINVAL');
      expect(errnoOf(() => p.file.bind(fakeSlot({ id: 1, baseGfn: 0x100, npages: 1, file: p.file }), -4096))).toBe('EINVAL');
      expect(errnoOf(() => p.file.bind(fakeSlot({ id: 1, baseGfn: 0x100, npages: p.npages, file: p.file }), 0))).toBeNull();
    });

    for (const profile of [UPSTREAM_PROFILE, LINUX_6_18_PROFILE]) {
      it(`an overlapping binding fails with ${profile.gmemBindOverlapErrno} (${profile.name}) and binds nothing`, () => {
        const p = fresh(profile);
        const a = bindSlot({ id: 1, baseGfn: 0x100, npages: 2, file: p.file });
        const b = fakeSlot({ id: 2, baseGfn: 0x200, npages: 1, file: p.file });
        expect(errnoOf(() => p.file.bind(b, 0))).toBe(profile.gmemBindOverlapErrno);
        const out: GmemPfn = { pfn: -1, maxOrder: -1 };
        expect(p.file.getPfn(b, 0x200, out)).toBe(-ERRNO.EIO);
        expect(p.file.getPfn(a, 0x100, out)).toBe(0);
      });
    }

    it('unbind frees the pages for another slot; the old slot then gets -EIO', () => {
      const p = fresh();
      const a = bindSlot({ id: 1, baseGfn: 0x100, npages: 2, file: p.file });
      p.file.unbind(a);
      const b = bindSlot({ id: 2, baseGfn: 0x400, npages: 2, file: p.file });
      const out: GmemPfn = { pfn: -1, maxOrder: -1 };
      expect(p.file.getPfn(a, 0x100, out)).toBe(-ERRNO.EIO);
      expect(p.file.getPfn(b, 0x401, out)).toBe(0);
    });

    it('non-zero offsets, where supported, bind disjoint ranges to different slots', () => {
      const p = fresh();
      for (const [i, off] of p.extraOffsets.entries()) {
        expect(errnoOf(() => bindSlot({ id: 10 + i, baseGfn: 0x1000 * (i + 1), npages: 1, file: p.file, offset: off }))).toBeNull();
      }
    });

    it('a slot not bound to this file gets -EFAULT', () => {
      const p = fresh();
      bindSlot({ id: 1, baseGfn: 0x100, npages: 1, file: p.file });
      const foreign = fakeSlot({ id: 1, baseGfn: 0x100, npages: 1, file: null });
      expect(p.file.getPfn(foreign, 0x100, { pfn: -1, maxOrder: -1 })).toBe(-ERRNO.EFAULT);
    });

    it('getPfn is stable: the same gfn gives the same pfn, different gfns different pfns', () => {
      const p = fresh();
      const s = bindSlot({ id: 1, baseGfn: 0x100, npages: p.npages, file: p.file });
      const seen = new Set<number>();
      for (let i = 0; i < p.npages; i++) {
        const o1: GmemPfn = { pfn: -1, maxOrder: -1 };
        const o2: GmemPfn = { pfn: -1, maxOrder: -1 };
        expect(p.file.getPfn(s, 0x100 + i, o1)).toBe(0);
        expect(p.file.getPfn(s, 0x100 + i, o2)).toBe(0);
        expect(o2.pfn).toBe(o1.pfn);
        expect(o1.maxOrder).toBeGreaterThanOrEqual(0);
        seen.add(o1.pfn);
      }
      expect(seen.size).toBe(p.npages);
    });

    it('removing pages zaps the bound gfns inside one invalidate begin/end', () => {
      const p = fresh();
      const s = bindSlot({ id: 1, baseGfn: 0x100, npages: p.npages, file: p.file });
      p.file.getPfn(s, 0x101, { pfn: -1, maxOrder: -1 });
      p.vm.clearCalls();
      const seq = p.vm.mmuInvalidateSeq;
      p.remove(1, 1);
      const mmu = p.vm.calls.filter((c) => c.op === 'begin' || c.op === 'unmap' || c.op === 'end');
      expect(mmu[0]?.op).toBe('begin');
      expect(mmu.at(-1)?.op).toBe('end');
      expect(zapped(mmu, 0x101)).toBe(true);
      expect(p.vm.mmuInvalidateInProgress).toBe(0);
      expect(p.vm.mmuInvalidateSeq).toBeGreaterThan(seq);
    });

    it('after the provider is gone every bound slot gets -EFAULT, and the mappings were zapped', () => {
      const p = fresh();
      const s = bindSlot({ id: 1, baseGfn: 0x100, npages: 2, file: p.file });
      expect(p.file.getPfn(s, 0x100, { pfn: -1, maxOrder: -1 })).toBe(0);
      p.vm.clearCalls();
      p.kill();
      expect(zapped(p.vm.calls, 0x100) && zapped(p.vm.calls, 0x101)).toBe(true);
      expect(p.vm.mmuInvalidateInProgress).toBe(0);
      expect(p.file.getPfn(s, 0x100, { pfn: -1, maxOrder: -1 })).toBe(-ERRNO.EFAULT);
    });
  });
}
