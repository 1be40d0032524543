/**
 * The VMM process: its address space (`mm`), the host's physical memory it draws from, and its
 * file-descriptor table. A file is released (its `release()` runs, like f_op->release) when the
 * last descriptor referring to it is closed.
 */
import { fail } from '../errno.js';
import type { KvmFile } from '../backend.js';
import { AddressSpace } from './address-space.js';
import { PhysMem } from './phys-mem.js';

/** fds 0-2 are stdin, stdout and stderr */
const FIRST_FD = 3;

export class Process {
  readonly phys: PhysMem;
  readonly mm: AddressSpace;
  private readonly fds = new Map<number, KvmFile>();
  /** descriptors per open file (file refcount held by the fd table) */
  private readonly fileRefs = new Map<KvmFile, number>();

  constructor(phys: PhysMem = new PhysMem()) {
    this.phys = phys;
    this.mm = new AddressSpace(phys);
  }

  /** fd_install() at the lowest free descriptor >= 3; returns the fd */
  installFd(file: KvmFile): number {
    let fd = FIRST_FD;
    while (this.fds.has(fd)) fd++;
    this.fds.set(fd, file);
    this.fileRefs.set(file, (this.fileRefs.get(file) ?? 0) + 1);
    return fd;
  }

  /** fget(): the open file behind `fd`, or undefined */
  getFile(fd: number): KvmFile | undefined {
    return this.fds.get(fd);
  }

  /** close(2): EBADF when `fd` is not open; the file is released with its last descriptor */
  close(fd: number): void {
    const file = this.fds.get(fd);
    if (file === undefined) fail('EBADF', 'close: fd not open');
    this.fds.delete(fd);
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
    return [...this.fds.keys()].sort((a, b) => a - b);
  }
}
