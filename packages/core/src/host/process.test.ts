import { describe, expect, it } from 'vitest';
import { KvmError } from '../errno.js';
import { errnoOf } from '../testing/errno-of.js';
import type { KvmFile } from '../backend.js';
import { MemfdFile } from './files.js';
import { Process } from './process.js';

function file(kind = 'memfd') {
  const f = { kind, releases: 0, release() { f.releases++; } };
  return f satisfies KvmFile;
}

describe('Process', () => {
  it('exit(): every mapping goes, every fd closes in order, and a memfd referenced only by a mapping is evicted', () => {
    const p = new Process();
    const order: number[] = [];
    const a = { kind: 'a', release: () => void order.push(1) };
    const b = { kind: 'b', release: () => void order.push(2) };
    p.installFd(a);
    p.installFd(b);
    const memfd = new MemfdFile(p.phys, 2 * 4096);
    const fd = p.installFd(memfd);
    const hva = p.mm.mmap({ length: 2 * 4096, prot: { read: true, write: true }, shared: true, backing: memfd });
    p.mm.write(hva, 8, 1n);
    p.close(fd); // the mapping keeps the memfd's page
    const anon = p.mm.mmap({ length: 4096, prot: { read: true, write: true }, shared: false });
    p.mm.write(anon, 8, 2n);
    expect(p.phys.allocatedPages).toBe(2);
    p.exit();
    expect(order).toEqual([1, 2]);
    expect(p.openFds()).toEqual([]);
    expect(p.mm.mappings()).toEqual([]);
    expect(p.phys.allocatedPages).toBe(0);
  });

  it('installs at the lowest free fd >= 3 and releases a file with its last descriptor', () => {
    const p = new Process();
    const a = file();
    const b = file();
    expect(p.installFd(a)).toBe(3);
    expect(p.installFd(b)).toBe(4);
    expect(p.installFd(a)).toBe(5);
    p.close(3);
    expect(a.releases).toBe(0);
    expect(p.installFd(b)).toBe(3);
    expect(p.getFile(3)).toBe(b);
    p.close(5);
    expect(a.releases).toBe(1);
    expect(p.getFile(5)).toBeUndefined();
    p.close(3);
    expect(b.releases).toBe(0);
    p.close(4);
    expect(b.releases).toBe(1);
    expect(p.openFds()).toEqual([]);
  });

  it('close of a descriptor that is not open is EBADF', () => {
    const p = new Process();
    expect(() => p.close(3)).toThrow(KvmError);
    expect(errnoOf(() => p.close(0))).toBe('EBADF');
    expect(p.mm.phys).toBe(p.phys);
  });
});
