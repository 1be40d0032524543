/**
 * Files of the VMM process other than KVM's own: a memfd (shmem) and a second open of
 * /dev/kvm. They matter to KVM where userspace may hand any fd to it (KVM_SET_USER_MEMORY_REGION2's
 * `guest_memfd`: kvm_gmem_bind() refuses every file that is not a guest_memfd), and as
 * ordinary shared memory a slot may map.
 *
 * The file ops follow fs/read_write.c: read(2)/write(2) need FMODE_CAN_READ / FMODE_CAN_WRITE
 * (a file without ->read_iter / ->write_iter: EINVAL, vfs_read()), pread(2)/pwrite(2) need
 * FMODE_PREAD / FMODE_PWRITE (else ESPIPE, ksys_pread64()). fstat(2) reports i_size, the
 * block size and the inode number (generic_fillattr()).
 */
import { fail } from '../errno.js';
import type { ErrnoName } from '../errno.js';
import type { FileMappingBacking, KvmFile } from '../backend.js';
import { PAGE_SIZE } from '../uapi.js';
import type { PhysMem } from './phys-mem.js';
import { policyNode, SharedPolicy } from './numa.js';

/** what fstat(2) reports of a file (struct stat) */
export interface FileStat {
  st_size: number;
  st_blksize: number;
  st_ino: number;
}

/** The file operations of read_write.c a scenario may call on any fd. */
export interface FileIo {
  /** read(2) / pread(2) (`offset` given) of `count` bytes: the bytes transferred. Throws KvmError. */
  fileRead(count: number, offset?: number): number;
  /** write(2) / pwrite(2) (`offset` given) of `count` bytes: the bytes transferred. Throws KvmError. */
  fileWrite(count: number, offset?: number): number;
  fstat(): FileStat;
}

let nextIno = 0x10000;
/** a fresh inode number (new_inode() / get_next_ino()) */
export function nextInodeNumber(): number {
  return nextIno++;
}

/**
 * read(2) / pread(2) of a file by its f_mode: no FMODE_PREAD is ESPIPE (ksys_pread64), no
 * FMODE_CAN_READ is EINVAL (vfs_read). A file whose fops lack ->read_iter and that was made by
 * alloc_file_pseudo() (guest_memfd, KVM's anon inodes) has neither.
 */
export function pseudoFileRead(what: string, offset?: number): never {
  if (offset !== undefined) {
    if (offset < 0) fail('EINVAL', 'ksys_pread64: pos < 0');
    fail('ESPIPE', `ksys_pread64: ${what} has no FMODE_PREAD`);
  }
  fail('EINVAL', `vfs_read: ${what} has no ->read_iter (no FMODE_CAN_READ)`);
}

/** write(2) / pwrite(2) of a pseudo file: ESPIPE without FMODE_PWRITE, else EINVAL (vfs_write) */
export function pseudoFileWrite(what: string, offset?: number): never {
  if (offset !== undefined) {
    if (offset < 0) fail('EINVAL', 'ksys_pwrite64: pos < 0');
    fail('ESPIPE', `ksys_pwrite64: ${what} has no FMODE_PWRITE`);
  }
  fail('EINVAL', `vfs_write: ${what} has no ->write_iter (no FMODE_CAN_WRITE)`);
}

/**
 * memfd_create(2) + ftruncate(2): a shmem file (mm/memfd.c sets FMODE_LSEEK | FMODE_PREAD |
 * FMODE_PWRITE). Pages are allocated on first touch and zero; a shared mapping of it is
 * ordinary host memory KVM maps through GUP.
 */
export class MemfdFile implements KvmFile, FileIo, FileMappingBacking {
  readonly kind = 'memfd';
  readonly ino = nextInodeNumber();
  /** shmem's shared policy (shmem_set_policy()) */
  readonly sharedPolicy = new SharedPolicy();
  private readonly pages = new Map<number, number>();
  private released = false;

  constructor(
    private readonly phys: PhysMem,
    public size: number,
  ) {
    if (!Number.isInteger(size) || size < 0) fail('EINVAL', 'ftruncate: bad length');
  }

  fileRead(count: number, offset?: number): number {
    if (offset !== undefined && offset < 0) fail('EINVAL', 'ksys_pread64: pos < 0');
    // shmem_file_read_iter(): reads stop at i_size (the file position is 0 for read(2) here)
    const pos = offset ?? 0;
    return Math.max(0, Math.min(count, this.size - pos));
  }

  fileWrite(count: number, offset?: number): number {
    if (offset !== undefined && offset < 0) fail('EINVAL', 'ksys_pwrite64: pos < 0');
    const end = (offset ?? 0) + count;
    if (end > this.size) this.size = end; // a write past EOF extends the file
    return count;
  }

  fstat(): FileStat {
    return { st_size: this.size, st_blksize: PAGE_SIZE, st_ino: this.ino };
  }

  checkMmap(_shared: boolean): ErrnoName | null {
    return null;
  }

  faultPage(pgoff: number, _write: boolean): number | 'SIGBUS' {
    if (pgoff * PAGE_SIZE >= this.size) return 'SIGBUS'; // shmem_fault beyond EOF
    let pfn = this.pages.get(pgoff);
    if (pfn === undefined) {
      pfn = this.phys.allocPage();
      if (!this.sharedPolicy.empty) this.phys.setNode(pfn, policyNode(this.sharedPolicy.lookup(pgoff), pgoff));
      this.pages.set(pgoff, pfn);
    }
    return pfn;
  }

  peekPage(pgoff: number): number {
    return this.pages.get(pgoff) ?? -1;
  }

  pageAt(pgoff: number): number {
    return this.pages.get(pgoff) ?? -1;
  }

  punchHole(pgoff: number, npages: number): void {
    for (let i = pgoff; i < pgoff + npages; i++) {
      const pfn = this.pages.get(i);
      if (pfn === undefined) continue;
      this.pages.delete(i);
      this.phys.freePage(pfn);
    }
  }

  release(): void {
    if (this.released) return;
    this.released = true;
    // (a mapping keeps the file; its pages go with evict())
  }

  /**
   * shmem_evict_inode(): the last reference (every fd and every mapping) is gone, so the page
   * cache is truncated and its pages go back to the host. The process's exit calls it once it
   * has dropped its mappings and closed its fds.
   */
  evict(): void {
    if (!this.released) throw new Error('MemfdFile.evict() while an fd is still open');
    for (const pfn of this.pages.values()) this.phys.freePage(pfn);
    this.pages.clear();
  }
}

/** A second open(2) of /dev/kvm (its fops: kvm_chardev_ops, no read or write). */
export class DevKvmFile implements KvmFile, FileIo {
  readonly kind = 'kvm';
  /** the misc device's inode: every open of /dev/kvm shares it */
  static readonly INO = 0x3f;

  fileRead(_count: number, offset?: number): number {
    // a character device opened through do_dentry_open() has FMODE_PREAD: vfs_read() then
    // finds no ->read / ->read_iter (EINVAL)
    if (offset !== undefined && offset < 0) fail('EINVAL', 'ksys_pread64: pos < 0');
    fail('EINVAL', 'vfs_read: /dev/kvm has no ->read (no FMODE_CAN_READ)');
  }

  fileWrite(_count: number, offset?: number): number {
    if (offset !== undefined && offset < 0) fail('EINVAL', 'ksys_pwrite64: pos < 0');
    fail('EINVAL', 'vfs_write: /dev/kvm has no ->write (no FMODE_CAN_WRITE)');
  }

  fstat(): FileStat {
    return { st_size: 0, st_blksize: PAGE_SIZE, st_ino: DevKvmFile.INO };
  }

  release(): void {}
}
