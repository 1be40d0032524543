import { describe, expect, it } from 'vitest';
import { errnoOf } from '../testing/errno-of.js';
import type { FileMappingBacking } from '../backend.js';
import { AddressSpace, HostSignal, MMAP_BASE, TASK_SIZE_MAX } from './address-space.js';
import { PhysMem, ZERO_PFN } from './phys-mem.js';

const RW = { read: true, write: true };
const RO = { read: true, write: false };

function fileBacking(phys: PhysMem, npages: number, opts: { noMmap?: boolean; sigbusFrom?: number } = {}) {
  const pfns: number[] = [];
  for (let i = 0; i < npages; i++) pfns.push(phys.allocPage());
  const faults: [number, boolean][] = [];
  const b: FileMappingBacking = {
    checkMmap: () => (opts.noMmap ? 'ENODEV' : null),
    faultPage: (pgoff, write) => {
      faults.push([pgoff, write]);
      if (pgoff >= (opts.sigbusFrom ?? npages)) return 'SIGBUS';
      return pfns[pgoff]!;
    },
  };
  return { b, pfns, faults };
}

describe('AddressSpace', () => {
  it('places mappings top-down from MMAP_BASE and honours MAP_FIXED', () => {
    const mm = new AddressSpace(new PhysMem());
    const a = mm.mmap({ length: 0x3000, prot: RW, shared: false });
    expect(a).toBe(MMAP_BASE - 0x3000);
    const b = mm.mmap({ length: 100, prot: RW, shared: false });
    expect(b).toBe(a - 0x1000);
    const f = mm.mmap({ addr: 0x10000000, length: 0x2000, prot: RO, shared: true });
    expect(f).toBe(0x10000000);
    expect(mm.mappings().map((v) => v.start)).toEqual([0x10000000, b, a]);
    expect(errnoOf(() => mm.mmap({ length: 0, prot: RW, shared: false }))).toBe('EINVAL');
    expect(errnoOf(() => mm.mmap({ addr: 0x1001, length: 4096, prot: RW, shared: false }))).toBe('EINVAL');
    expect(errnoOf(() => mm.mmap({ addr: TASK_SIZE_MAX, length: 4096, prot: RW, shared: false }))).toBe('ENOMEM');
    expect(errnoOf(() => mm.mmap({ length: 2 ** 48, prot: RW, shared: false }))).toBe('ENOMEM');
  });

  it('GUP on anonymous memory: zero page on read, allocation on write, EFAULT without permission', () => {
    const phys = new PhysMem();
    const mm = new AddressSpace(phys);
    const a = mm.mmap({ length: 0x4000, prot: RW, shared: false });
    expect(mm.hvaToPfn(a, false)).toEqual({ pfn: ZERO_PFN, writable: false });
    expect(phys.allocatedPages).toBe(0);
    const w = mm.hvaToPfn(a + 10, true);
    expect(w).toMatchObject({ writable: true });
    expect(mm.hvaToPfn(a, false)).toEqual(w);
    expect(phys.allocatedPages).toBe(1);
    const ro = mm.mmap({ length: 0x1000, prot: RO, shared: false });
    expect(mm.hvaToPfn(ro, true)).toEqual({ fault: 'EFAULT' });
    expect(mm.hvaToPfn(0x5000, false)).toEqual({ fault: 'EFAULT' });
  });

  it('VMM reads and writes span pages, and unmapped or read-only pages raise SIGSEGV', () => {
    const mm = new AddressSpace(new PhysMem());
    const a = mm.mmap({ length: 0x2000, prot: RW, shared: false });
    mm.write(a + 0xffc, 8, 0x1122334455667788n);
    expect(mm.read(a + 0xffc, 8)).toBe(0x1122334455667788n);
    expect(mm.read(a + 0x1000, 4)).toBe(0x11223344n);
    expect(mm.readBytes(a + 0x1fff, 1)).toEqual(new Uint8Array([0]));
    let sig: unknown;
    try {
      mm.readBytes(a + 0x1ff0, 0x20);
    } catch (e) {
      sig = e;
    }
    expect(sig).toBeInstanceOf(HostSignal);
    expect(sig).toMatchObject({ signal: 'SIGSEGV', addr: a + 0x2000 });
    const ro = mm.mmap({ length: 0x1000, prot: RO, shared: false });
    expect(() => mm.write(ro, 1, 1n)).toThrow(HostSignal);
    expect(mm.read(ro, 8)).toBe(0n);
  });

  it('file mappings fault through the backing with pgoff; SIGBUS and mmap refusal propagate', () => {
    const phys = new PhysMem();
    const mm = new AddressSpace(phys);
    const f = fileBacking(phys, 4, { sigbusFrom: 3 });
    const a = mm.mmap({ length: 0x3000, prot: RW, shared: true, backing: { ...f.b, pgoffBase: 0 }, fileOffset: 0x1000 });
    expect(mm.hvaToPfn(a, false)).toEqual({ pfn: f.pfns[1], writable: true });
    expect(mm.hvaToPfn(a + 0x1000, true)).toEqual({ pfn: f.pfns[2], writable: true });
    expect(mm.hvaToPfn(a + 0x2000, false)).toEqual({ fault: 'SIGBUS' });
    expect(() => mm.read(a + 0x2000, 1)).toThrow(expect.objectContaining({ signal: 'SIGBUS' }));
    mm.write(a, 4, 0xdeadbeefn);
    expect(phys.readValue(f.pfns[1]!, 0, 4)).toBe(0xdeadbeefn);
    const g = fileBacking(phys, 1, { noMmap: true });
    expect(errnoOf(() => mm.mmap({ length: 0x1000, prot: RW, shared: true, backing: g.b }))).toBe('ENODEV');
    expect(errnoOf(() => mm.mmap({ length: 0x1000, prot: RW, shared: true, backing: f.b, fileOffset: 10 }))).toBe('EINVAL');
  });

  it('partial munmap splits mappings, frees anonymous pages, and notifies invalidations first', () => {
    const phys = new PhysMem();
    const mm = new AddressSpace(phys);
    const f = fileBacking(phys, 8);
    const a = mm.mmap({ length: 0x4000, prot: RW, shared: false });
    for (let i = 0; i < 4; i++) mm.write(a + i * 0x1000, 1, BigInt(i + 1));
    const allocated = phys.allocatedPages;
    const seen: [number, number, number][] = [];
    const off = mm.onInvalidateRange((s, e) => seen.push([s, e, phys.allocatedPages]));
    mm.munmap(a + 0x1000, 0x2000);
    expect(seen).toEqual([[a + 0x1000, a + 0x3000, allocated]]);
    expect(phys.allocatedPages).toBe(allocated - 2);
    expect(mm.mappings().filter((v) => v.backing === null).map((v) => [v.start, v.end])).toEqual([
      [a, a + 0x1000],
      [a + 0x3000, a + 0x4000],
    ]);
    expect(mm.read(a + 0x3000, 1)).toBe(4n);
    expect(() => mm.read(a + 0x1000, 1)).toThrow(HostSignal);
    // file mapping split keeps the right pgoff
    const fm = mm.mmap({ length: 0x4000, prot: RW, shared: true, backing: f.b });
    mm.munmap(fm, 0x1000);
    expect(mm.hvaToPfn(fm + 0x2000, false)).toEqual({ pfn: f.pfns[2], writable: true });
    // MAP_FIXED over an existing mapping invalidates it
    seen.length = 0;
    mm.mmap({ addr: a, length: 0x1000, prot: RW, shared: false });
    expect(seen.map(([s, e]) => [s, e])).toEqual([[a, a + 0x1000]]);
    expect(mm.read(a, 1)).toBe(0n);
    off();
    mm.munmap(a, 0x4000);
    expect(seen).toHaveLength(1);
    expect(mm.mappings().some((v) => v.start < a + 0x4000 && v.end > a)).toBe(false);
    expect(errnoOf(() => mm.munmap(a + 1, 0x1000))).toBe('EINVAL');
  });

  it('a PTE page goes away once the last page it maps is unmapped, whatever mapped them', () => {
    const phys = new PhysMem();
    const mm = new AddressSpace(phys);
    const a = mm.mmap({ length: 0x400000, prot: RW, shared: false }); // two 2 MiB PTE pages at most
    const page = (i: number) => a + i * 0x1000;
    mm.read(page(3), 1); // zero page
    mm.read(page(7), 1);
    mm.write(page(7), 1, 9n); // CoW of the zero page
    mm.write(page(9), 1, 5n); // first write
    mm.read(page(9), 1); // already present: no new entry
    mm.read(page(600), 1); // the next PTE page, if `a` is 2 MiB aligned; else the same one
    const pages = mm.ptePageCount;
    expect(pages).toBeGreaterThanOrEqual(1);
    mm.munmap(page(3), 0x1000);
    mm.munmap(page(7), 0x1000);
    expect(mm.ptePageCount).toBe(pages);
    expect(mm.anonPageCount).toBe(1);
    mm.munmap(page(8), 0x2000); // page 8 was never touched, page 9 goes
    expect(mm.anonPageCount).toBe(0);
    mm.munmap(page(600), 0x1000);
    expect(mm.ptePageCount).toBe(0);
    // a page touched again after its PTE page went away gets a fresh, counted PTE page
    mm.write(page(100), 1, 1n);
    expect(mm.ptePageCount).toBe(1);
    mm.munmap(a, 0x400000);
    expect(mm.ptePageCount).toBe(0);
    expect(mm.anonPageCount).toBe(0);
  });

  it('a write over a zero-page mapping is a CoW that notifies; a first write to an untouched page is not', () => {
    const mm = new AddressSpace(new PhysMem());
    const a = mm.mmap({ length: 0x2000, prot: RW, shared: false });
    const seen: [number, number][] = [];
    mm.onInvalidateRange((s, e) => seen.push([s, e]));
    mm.write(a + 0x1000, 1, 1n); // never mapped: no notifier
    expect(seen).toEqual([]);
    expect(mm.hvaToPfn(a, false)).toEqual({ pfn: ZERO_PFN, writable: false });
    expect(mm.peekPfn(a)).toBe(ZERO_PFN);
    const w = mm.hvaToPfn(a + 8, true);
    expect(seen).toEqual([[a, a + 0x1000]]);
    expect(mm.peekPfn(a)).toBe((w as { pfn: number }).pfn);
    expect(mm.peekPfn(0x1000)).toBe(-1);
  });

  it('hugetlb 2M mappings: aligned, allocated whole and contiguous, GUP reports level 2', () => {
    const phys = new PhysMem();
    const mm = new AddressSpace(phys);
    phys.allocPage(); // make the bump pointer unaligned
    const h = mm.mmap({ length: 3 * 1024 * 1024, prot: RW, shared: false, hugepage: '2M' });
    expect(h % (2 * 1024 * 1024)).toBe(0);
    expect(mm.peekPfn(h)).toBe(-1);
    const r = mm.hvaToPfn(h + 0x3000, false) as { pfn: number; level: number };
    expect(r.level).toBe(2);
    expect(r.pfn % 512).toBe(3);
    expect(mm.peekPfn(h)).toBe(r.pfn - 3);
    expect(phys.allocatedPages).toBe(1 + 512);
    expect(errnoOf(() => mm.munmap(h + 0x1000, 0x1000))).toBe('EINVAL');
    expect(errnoOf(() => mm.mmap({ addr: 0x1000, length: 0x200000, prot: RW, shared: false, hugepage: '2M' }))).toBe('EINVAL');
    mm.munmap(h, 4 * 1024 * 1024);
    expect(phys.allocatedPages).toBe(1);
    // the alignment gap went to the free list: 255 gap frames (0x101..0x1ff) + 512 freed huge frames are reused
    // before the bump pointer moves on
    const reused = new Set<number>();
    for (let i = 0; i < 255 + 512; i++) reused.add(phys.allocPage());
    expect(Math.max(...reused)).toBe(r.pfn - 3 + 511);
    expect(reused.has(0x101)).toBe(true);
  });
});
