import { describe, expect, it } from 'vitest';
import { errnoOf } from '../testing/errno-of.js';
import { AddressSpace, MADV_COLLAPSE, MADV_DONTNEED, MADV_HUGEPAGE, MADV_REMOVE } from './address-space.js';
import { DevKvmFile, MemfdFile } from './files.js';
import { MPOL_BIND, MPOL_DEFAULT, MPOL_INTERLEAVE, MPOL_PREFERRED, MPOL_LOCAL, mpolNew, policyNode, SharedPolicy } from './numa.js';
import { PhysMem } from './phys-mem.js';

const RW = { read: true, write: true };
const RO = { read: true, write: false };

function mm(): { phys: PhysMem; as: AddressSpace; notified: [number, number][] } {
  const phys = new PhysMem();
  const as = new AddressSpace(phys);
  const notified: [number, number][] = [];
  as.onInvalidateRange((s, e) => notified.push([s, e]));
  return { phys, as, notified };
}

describe('madvise', () => {
  it('MADV_DONTNEED zaps: private anonymous memory reads zero after, shared keeps its data; the notifier runs', () => {
    const { as, notified } = mm();
    const priv = as.mmap({ length: 8192, prot: RW, shared: false });
    const shared = as.mmap({ length: 8192, prot: RW, shared: true });
    as.write(priv, 8, 0x11n);
    as.write(shared, 8, 0x22n);
    as.madvise(priv, 8192, MADV_DONTNEED);
    as.madvise(shared, 8192, MADV_DONTNEED);
    expect(as.read(priv, 8)).toBe(0n);
    expect(as.read(shared, 8)).toBe(0x22n);
    expect(notified).toEqual([
      [priv, priv + 8192],
      [shared, shared + 8192],
    ]);
  });

  it('checks the advice and the alignment first, and reports a hole as ENOMEM after advising the mapped part', () => {
    const { as } = mm();
    const a = as.mmap({ length: 8192, prot: RW, shared: false });
    expect(errnoOf(() => as.madvise(a, 4096, 999))).toBe('EINVAL');
    expect(errnoOf(() => as.madvise(a + 1, 4096, MADV_DONTNEED))).toBe('EINVAL');
    as.write(a, 8, 5n);
    expect(errnoOf(() => as.madvise(a, 4 * 4096, MADV_DONTNEED))).toBe('ENOMEM');
    expect(as.read(a, 8)).toBe(0n);
    expect(errnoOf(() => as.madvise(a, 0, MADV_DONTNEED))).toBeUndefined();
  });

  it('MADV_REMOVE: EINVAL on private anonymous memory, punches shared memory and files', () => {
    const { phys, as } = mm();
    const priv = as.mmap({ length: 4096, prot: RW, shared: false });
    expect(errnoOf(() => as.madvise(priv, 4096, MADV_REMOVE))).toBe('EINVAL');
    const shm = as.mmap({ length: 4096, prot: RW, shared: true });
    as.write(shm, 8, 7n);
    as.madvise(shm, 4096, MADV_REMOVE);
    expect(as.read(shm, 8)).toBe(0n);
    const memfd = new MemfdFile(phys, 8192);
    const f = as.mmap({ length: 8192, prot: RW, shared: true, backing: memfd });
    as.write(f + 4096, 8, 9n);
    expect(memfd.pageAt(1)).toBeGreaterThan(0);
    as.madvise(f + 4096, 4096, MADV_REMOVE);
    expect(memfd.pageAt(1)).toBe(-1);
    expect(as.read(f + 4096, 8)).toBe(0n);
    const ro = as.mmap({ length: 4096, prot: RO, shared: true, backing: memfd });
    expect(errnoOf(() => as.madvise(ro, 4096, MADV_REMOVE))).toBe('EACCES');
  });

  it('a memfd keeps its pages past close() while mapped; evict() (the last reference gone) frees them', () => {
    const phys = new PhysMem();
    const as = new AddressSpace(phys);
    const memfd = new MemfdFile(phys, 3 * 4096);
    const m = as.mmap({ length: 3 * 4096, prot: RW, shared: true, backing: memfd });
    as.write(m, 8, 1n);
    as.write(m + 8192, 8, 2n);
    expect(() => memfd.evict()).toThrow(/fd is still open/);
    memfd.release();
    expect(as.read(m + 8192, 8)).toBe(2n); // the mapping still holds the file
    as.munmap(m, 3 * 4096);
    expect(phys.allocatedPages).toBe(2);
    memfd.evict();
    expect(phys.allocatedPages).toBe(0);
    expect(memfd.pageAt(0)).toBe(-1);
  });

  it('MADV_COLLAPSE of a file mapping is EINVAL, of anonymous memory fine; MADV_HUGEPAGE is a hint', () => {
    const { phys, as } = mm();
    const f = as.mmap({ length: 2 << 20, prot: RW, shared: true, backing: new MemfdFile(phys, 2 << 20) });
    expect(errnoOf(() => as.madvise(f, 2 << 20, MADV_HUGEPAGE))).toBeUndefined();
    expect(errnoOf(() => as.madvise(f, 2 << 20, MADV_COLLAPSE))).toBe('EINVAL');
    const a = as.mmap({ length: 2 << 20, prot: RW, shared: false });
    expect(errnoOf(() => as.madvise(a, 2 << 20, MADV_COLLAPSE))).toBeUndefined();
  });
});

describe('mprotect', () => {
  it('splits the VMA, notifies, and a write fault then finds no PROT_WRITE (EFAULT for GUP)', () => {
    const { as, notified } = mm();
    const a = as.mmap({ length: 3 * 4096, prot: RW, shared: true });
    as.write(a + 4096, 8, 3n);
    as.mprotect(a + 4096, 4096, RO);
    expect(notified).toEqual([[a + 4096, a + 8192]]);
    expect(as.mappings().map((v) => [v.start - a, v.end - a, v.prot.write])).toEqual([
      [0, 4096, true],
      [4096, 8192, false],
      [8192, 12288, true],
    ]);
    expect(as.hvaToPfn(a + 4096, true)).toEqual({ fault: 'EFAULT' });
    expect('pfn' in as.hvaToPfn(a + 4096, false)).toBe(true);
    expect(as.read(a + 4096, 8)).toBe(3n);
    as.mprotect(a, 3 * 4096, RW);
    expect('pfn' in as.hvaToPfn(a + 4096, true)).toBe(true);
  });

  it('EINVAL for an unaligned start, ENOMEM for a hole (nothing changes)', () => {
    const { as } = mm();
    const a = as.mmap({ length: 4096, prot: RW, shared: false });
    expect(errnoOf(() => as.mprotect(a + 1, 4096, RO))).toBe('EINVAL');
    expect(errnoOf(() => as.mprotect(a, 8192, RO))).toBe('ENOMEM');
    expect(as.mappings()[0]!.prot.write).toBe(true);
  });
});

describe('NUMA memory policy', () => {
  it('mpol_new(): modes, empty and offline nodemasks', () => {
    expect(mpolNew(MPOL_DEFAULT, 0, 3)).toBeNull();
    expect(() => mpolNew(MPOL_DEFAULT, 1, 3)).toThrow(/MPOL_DEFAULT/);
    expect(() => mpolNew(MPOL_BIND, 0, 3)).toThrow(/empty/);
    expect(() => mpolNew(MPOL_BIND, 4, 3)).toThrow(/online/);
    expect(() => mpolNew(999, 1, 3)).toThrow(/MPOL_MAX/);
    expect(mpolNew(MPOL_PREFERRED, 0, 3)).toEqual({ mode: MPOL_LOCAL, nodes: 0 });
    expect(mpolNew(MPOL_PREFERRED, 6, 3)).toEqual({ mode: MPOL_PREFERRED, nodes: 2 });
    expect(mpolNew(MPOL_BIND, 7, 3)).toEqual({ mode: MPOL_BIND, nodes: 3 });
  });

  it('policyNode(): bind takes the first node, interleave goes round by index', () => {
    expect(policyNode(undefined, 5)).toBe(0);
    expect(policyNode({ mode: MPOL_BIND, nodes: 2 }, 5)).toBe(1);
    expect([0, 1, 2, 3].map((i) => policyNode({ mode: MPOL_INTERLEAVE, nodes: 3 }, i))).toEqual([0, 1, 0, 1]);
  });

  it('a shared policy replaces the ranges it covers', () => {
    const p = new SharedPolicy();
    p.set(0, 4, { mode: MPOL_BIND, nodes: 1 });
    p.set(1, 2, { mode: MPOL_INTERLEAVE, nodes: 3 });
    expect([0, 1, 2, 3, 4].map((i) => p.lookup(i)?.mode)).toEqual([MPOL_BIND, MPOL_INTERLEAVE, MPOL_BIND, MPOL_BIND, undefined]);
    p.set(0, 4, null);
    expect(p.empty).toBe(true);
  });

  it('mbind on a memfd mapping places its pages; move_pages reports node, ENOENT, EFAULT', () => {
    const { phys, as } = mm();
    as.numaNodes = 2;
    const memfd = new MemfdFile(phys, 4 * 4096);
    const f = as.mmap({ length: 4 * 4096, prot: RW, shared: true, backing: memfd });
    as.mbind(f, 2 * 4096, MPOL_BIND, 2, 0);
    expect(as.getMempolicy(f)).toEqual({ mode: MPOL_BIND, nodes: 2 });
    expect(as.getMempolicy(f + 3 * 4096)).toEqual({ mode: MPOL_DEFAULT, nodes: 0 });
    as.write(f, 1, 1n);
    as.write(f + 3 * 4096, 1, 1n);
    expect([0, 1, 2, 3].map((i) => as.pageNode(f + i * 4096))).toEqual([1, -2, -2, 0]);
    expect(as.pageNode(0x1000)).toBe(-14);
    expect(errnoOf(() => as.mbind(f, 8 * 4096, MPOL_BIND, 1, 0))).toBe('EFAULT');
    expect(errnoOf(() => as.mbind(f, 4096, MPOL_BIND, 4, 0))).toBe('EINVAL');
  });

  it('anonymous memory: the zero page is EFAULT for move_pages, a written page has a node', () => {
    const { as } = mm();
    as.numaNodes = 2;
    const a = as.mmap({ length: 2 * 4096, prot: RW, shared: false });
    as.mbind(a + 4096, 4096, MPOL_BIND, 2, 0);
    as.read(a, 1);
    as.write(a + 4096, 1, 1n);
    expect([as.pageNode(a), as.pageNode(a + 4096)]).toEqual([-14, 1]);
  });
});

describe('files', () => {
  it('a memfd reads and writes; /dev/kvm has no read or write; fstat gives distinct inodes', () => {
    const phys = new PhysMem();
    const m = new MemfdFile(phys, 4096);
    expect(m.fileRead(64)).toBe(64);
    expect(m.fileRead(64, 4090)).toBe(6);
    expect(m.fileWrite(8, 8192)).toBe(8);
    expect(m.fstat().st_size).toBe(8200);
    const k = new DevKvmFile();
    expect(errnoOf(() => k.fileRead(8))).toBe('EINVAL');
    expect(errnoOf(() => k.fileWrite(8, 0))).toBe('EINVAL');
    expect(new MemfdFile(phys, 0).fstat().st_ino).not.toBe(m.fstat().st_ino);
  });
});
