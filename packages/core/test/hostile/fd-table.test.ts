/**
 * The VMM's fd table hands out the lowest free descriptor (alloc_fd()) without scanning the
 * table: 100,000 open files cost no more per open than ten (a table scanned per open would take
 * minutes here and fail by the test timeout; the speed itself is for benchmarks).
 */
import { describe, expect, it } from 'vitest';
import { Process } from '../../src/host/process.js';
import type { KvmFile } from '../../src/backend.js';

const file = (): KvmFile & { released: number } => {
  const f = { kind: 'test', released: 0, release: () => void f.released++ };
  return f as unknown as KvmFile & { released: number };
};

describe('fd table', () => {
  it('always takes the lowest free fd', () => {
    const p = new Process();
    const fds = Array.from({ length: 6 }, () => p.installFd(file()));
    expect(fds).toEqual([3, 4, 5, 6, 7, 8]);
    p.close(6);
    p.close(4);
    expect(p.installFd(file())).toBe(4);
    expect(p.installFd(file())).toBe(6);
    expect(p.installFd(file())).toBe(9);
    expect(p.openFds()).toEqual([3, 4, 5, 6, 7, 8, 9]);
  });

  it('100,000 files open and close, and every reopen takes the lowest hole', () => {
    const p = new Process();
    const n = 100_000;
    for (let i = 0; i < n; i++) p.installFd(file());
    for (let fd = 3; fd < n + 3; fd += 2) p.close(fd);
    for (let i = 0; i < n / 2; i++) expect(p.installFd(file())).toBe(3 + 2 * i);
    expect(p.openFds().length).toBe(n);
    expect(p.openFds().at(-1)).toBe(n + 2);
  });
});
