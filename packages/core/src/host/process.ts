/**
 * The VMM process: its address space (`mm`), the host's physical memory it draws from, and its
 * file-descriptor table. A file is released (its `release()` runs, like f_op->release) when the
 * last descriptor referring to it is closed.
 */
import { fail } from '../errno.js';
import type { KvmFile } from '../backend.js';
import { AddressSpace } from './address-space.js';
import { MemfdFile } from './files.js';
import { PhysMem } from './phys-mem.js';

/** fds 0-2 are stdin, stdout and stderr */
const FIRST_FD = 3;

export class Process {
  readonly phys: PhysMem;
  readonly mm: AddressSpace;
  private readonly fds = new Map<number, KvmFile>();
  /** every fd below this was handed out at some point (open now, or in `freed`) */
  private highWater = FIRST_FD;
  /** closed fds below highWater, as a binary min-heap: the lowest free fd is freed[0] */
  private readonly freed: number[] = [];
  /** descriptors per open file (file refcount held by the fd table) */
  private readonly fileRefs = new Map<KvmFile, number>();
  private disposed = false;

  constructor(phys: PhysMem = new PhysMem(), opts: { numaNodes?: number } = {}) {
    this.phys = phys;
    this.mm = new AddressSpace(phys);
    const n = opts.numaNodes ?? 1;
    if (!Number.isInteger(n) || n < 1 || n > 30) throw new Error(`Process: numaNodes must be 1..30, got ${n}`);
    this.mm.numaNodes = n;
  }

  /** fd_install() at the lowest free descriptor >= 3; returns the fd */
  installFd(file: KvmFile): number {
    this.assertLive();
    // the lowest free descriptor (alloc_fd()), in O(log n) rather than a scan of the table
    const fd = this.freed.length > 0 ? heapPop(this.freed) : this.highWater++;
    this.fds.set(fd, file);
    this.fileRefs.set(file, (this.fileRefs.get(file) ?? 0) + 1);
    return fd;
  }

  /** fget(): the open file behind `fd`, or undefined */
  getFile(fd: number): KvmFile | undefined {
    this.assertLive();
    return this.fds.get(fd);
  }

  /** close(2): EBADF when `fd` is not open; the file is released with its last descriptor */
  close(fd: number): void {
    this.assertLive();
    const file = this.fds.get(fd);
    if (file === undefined) fail('EBADF', 'close: fd not open');
    this.fds.delete(fd);
    heapPush(this.freed, fd);
    const refs = this.fileRefs.get(file)! - 1;
    if (refs > 0) {
      this.fileRefs.set(file, refs);
      return;
    }
    this.fileRefs.delete(file);
    file.release();
  }

  /** open descriptors, ascending */
  openFds(): number[] {
    this.assertLive();
    return [...this.fds.keys()].sort((a, b) => a - b);
  }

  /**
   * The open files, in fd order (a file with several descriptors once); for tearing the
   * process down.
   */
  openFiles(): KvmFile[] {
    this.assertLive();
    return [...new Set(this.openFds().map((fd) => this.fds.get(fd)!))];
  }

  /**
   * do_exit(): exit_mm() drops every mapping, then exit_files() closes every fd in ascending
   * order, so each file is released with its last descriptor (a VM goes through
   * kvm_destroy_vm() once its guest_memfd files are gone too). A memfd whose last fd and mapping
   * are gone is evicted (shmem_evict_inode()). The process stays usable for inspection.
   */
  exit(): void {
    this.assertLive();
    const memfds = new Set<MemfdFile>();
    for (const f of this.openFiles()) if (f instanceof MemfdFile) memfds.add(f);
    for (const v of this.mm.mappings()) if (v.backing instanceof MemfdFile) memfds.add(v.backing);
    for (const v of [...this.mm.mappings()]) this.mm.munmap(v.start, v.end - v.start);
    for (const fd of this.openFds()) this.close(fd);
    for (const f of memfds) f.evict();
  }

  /**
   * Tears the process down for good, without running any file's release (nothing of it runs
   * again): the address space and the physical memory give their buffers back for reuse by
   * later processes. Every method throws afterwards.
   */
  dispose(): void {
    if (this.disposed) return;
    this.mm.dispose();
    this.phys.dispose();
    this.fds.clear();
    this.fileRefs.clear();
    this.freed.length = 0;
    this.disposed = true;
  }

  private assertLive(): void {
    if (this.disposed) throw new Error('Process: disposed');
  }
}

function heapPush(h: number[], v: number): void {
  let i = h.push(v) - 1;
  while (i > 0) {
    const p = (i - 1) >> 1;
    if (h[p]! <= v) break;
    h[i] = h[p]!;
    i = p;
  }
  h[i] = v;
}

function heapPop(h: number[]): number {
  const top = h[0]!;
  const last = h.pop()!;
  if (h.length > 0) {
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= h.length) break;
      const c = l + 1 < h.length && h[l + 1]! < h[l]! ? l + 1 : l;
      if (h[c]! >= last) break;
      h[i] = h[c]!;
      i = c;
    }
    h[i] = last;
  }
  return top;
}
