/**
 * guest_memfd (virt/kvm/guest_memfd.c, torvalds @ 01f492e1, plus the EEXIST overlap change
 * of commit 7ea987a9 as a kernel profile). Rules: kvm-uapi.md §2.4 step 17 and §6.
 *
 * A GuestMemfd is both the file (one VM's view: its memslot bindings, the VM reference) and
 * the inode (the storage: the page cache of host frames). Upstream gives each inode exactly
 * one file, so the model keeps them in one object.
 */
import {
  ERRNO,
  FALLOC_FL_KEEP_SIZE,
  FALLOC_FL_PUNCH_HOLE,
  GUEST_MEMFD_FLAG_HUGETLB,
  GUEST_MEMFD_FLAG_INIT_SHARED,
  GUEST_MEMFD_FLAG_MMAP,
  GUESTMEM_HUGETLB_FLAG_2MB,
  GUESTMEM_HUGETLB_FLAG_MASK,
  KVM_CAP_GUEST_MEMFD,
  KVM_CAP_GUEST_MEMFD_FLAGS,
  KVM_FILTER_PRIVATE,
  KVM_FILTER_SHARED,
  KVM_X86_DEFAULT_VM,
  PAGE_SIZE,
  fail,
  nextInodeNumber,
  policyNode,
  SharedPolicy,
  pseudoFileRead,
  pseudoFileWrite,
} from '@ccmem/core';
import type {
  ErrnoName,
  FileMappingBacking,
  GmemPfn,
  GmemPopulateRequest,
  GuestMemfdFactory,
  GuestMemoryFile,
  KernelProfile,
  KvmCreateGuestMemfd,
  MemslotView,
  VmForProvider,
} from '@ccmem/core';
import { GmemBindings, bindingGfnRange, slotBytes } from './bindings.js';
import type { GmemBinding } from './bindings.js';
import { InvalidateLockBusyError } from './invalidate-lock.js';
import { GmemPageStore, PAGE_HWPOISON, PAGE_PREPARED, PAGE_UPTODATE } from './page-store.js';

/** loff_t is signed: a u64 value at or above 2^63 is negative to the kernel. */
const LOFF_NEGATIVE = 2 ** 63;
/* include/uapi/linux/falloc.h: the fallocate modes (FALLOC_FL_ALLOCATE_RANGE is 0) */
const FALLOC_FL_COLLAPSE_RANGE = 0x08;
const FALLOC_FL_ZERO_RANGE = 0x10;
const FALLOC_FL_INSERT_RANGE = 0x20;
const FALLOC_FL_UNSHARE_RANGE = 0x40;
const FALLOC_FL_WRITE_ZEROES = 0x80;
/** FALLOC_FL_MODE_MASK (include/linux/falloc.h) */
const FALLOC_FL_MODE_MASK =
  FALLOC_FL_PUNCH_HOLE | FALLOC_FL_COLLAPSE_RANGE | FALLOC_FL_ZERO_RANGE | FALLOC_FL_INSERT_RANGE | FALLOC_FL_UNSHARE_RANGE | FALLOC_FL_WRITE_ZEROES;

const isPageAligned = (n: number) => n % PAGE_SIZE === 0;

/** folio order of a GUEST_MEMFD_FLAG_HUGETLB | GUESTMEM_HUGETLB_FLAG_2MB file (2 MiB) */
export const GMEM_HUGETLB_2M_ORDER = 9;
const HPAGE_2M = PAGE_SIZE << GMEM_HUGETLB_2M_ORDER;

/** `x & ~mask` for u64 flag words held in a JS number (bit operators are 32-bit). */
export function hasBitsOutside(value: number, mask: number): boolean {
  if (!Number.isInteger(value) || value < 0) return true;
  if (value > 0xffffffff) return true; // every known flag is below bit 32
  return ((value >>> 0) & ~mask) >>> 0 !== 0;
}

/** Phases of a hole punch (kvm_gmem_punch_hole). */
export type PunchHolePhase = 'invalidate' | 'truncate' | 'end' | 'done';

/**
 * A hole punch that stops between its phases, so a caller can run guest faults in the
 * window between `kvm_mmu_invalidate_begin()` and `kvm_mmu_invalidate_end()`:
 *  - 'invalidate': kvm_gmem_invalidate_begin (begin once, unmap every bound gfn range)
 *  - 'truncate': truncate_inode_pages_range (free the frames; arch invalidate hook per frame)
 *  - 'end': kvm_gmem_invalidate_end, then the invalidate lock is dropped.
 * `step()` runs the current phase and returns true while another phase remains.
 */
export interface PunchHoleOp {
  readonly phase: PunchHolePhase;
  step(): boolean;
}

export interface GmemStat {
  st_size: number;
  st_blksize: number;
  st_ino: number;
}

export interface GmemStats {
  /** folios in the page cache */
  allocatedPages: number;
  poisonedPages: number;
  bindings: number;
  /** VMAs mapping the file */
  mappings: number;
}


export class GuestMemfd implements GuestMemoryFile, FileMappingBacking {
  readonly kind = 'kvm-gmem';
  readonly ownerVm: VmForProvider;
  readonly size: number;
  readonly flags: number;
  readonly gmemOnly: boolean;
  /** inode number ("[kvm-gmem]" anonymous inode) */
  readonly ino: number;
  /** GMEM_I(inode)->policy: mbind() of a mapping sets it (kvm_gmem_set_policy()) */
  readonly sharedPolicy = new SharedPolicy();
  /**
   * log2 of the pages per folio: 0 upstream (order-0 folios), 9 for a HugeTLB 2 MiB file
   * (GUEST_MEMFD_FLAG_HUGETLB | GUESTMEM_HUGETLB_FLAG_2MB, the in-flight series)
   */
  readonly folioOrder: number;

  private readonly vm: VmForProvider;
  private readonly pages = new GmemPageStore();
  private readonly bindings = new GmemBindings();
  /** the struct file is alive (descriptors or VMAs hold it); false once release ran */
  private fileLive = true;
  private fdOpen = true;
  private mapCount = 0;
  private inodeEvicted = false;
  /** the hole punch holding filemap_invalidate_lock exclusively, if any */
  private lockHolder: PunchHoleOp | null = null;

  /** Use `guestMemfdFactory.create()`, which runs KVM_CREATE_GUEST_MEMFD's checks. */
  constructor(vm: VmForProvider, size: number, flags: number) {
    this.vm = vm;
    this.ownerVm = vm;
    this.size = size;
    this.flags = flags;
    // kvm_gmem_bind() marks the slot KVM_MEMSLOT_GMEM_ONLY for an mmap-able file; a kernel
    // whose fault path ignores that flag (profile gmemOnlySharedFaults false) behaves as if the
    // slot were an ordinary one for shared faults
    this.gmemOnly = (flags & GUEST_MEMFD_FLAG_MMAP) !== 0 && vm.profile.gmemOnlySharedFaults !== false;
    this.ino = nextInodeNumber();
    this.folioOrder = flags & GUEST_MEMFD_FLAG_HUGETLB ? GMEM_HUGETLB_2M_ORDER : 0;
    vm.get(); // kvm_get_kvm(): the file keeps the VM alive
  }

  /** false once close() has released the file: faults on bound slots get -EFAULT */
  get live(): boolean {
    return this.fileLive;
  }

  /** i_size in pages */
  get npages(): number {
    return this.size / PAGE_SIZE;
  }

  /** kvm_gmem_get_invalidate_filter(): which roots a hole punch / close / error zaps */
  get invalidateFilter(): number {
    return this.flags & GUEST_MEMFD_FLAG_INIT_SHARED ? KVM_FILTER_SHARED : KVM_FILTER_PRIVATE;
  }

  /* ------------------------------------------------------------------ binding (§2.4 17) */

  bind(slot: MemslotView, offset: number): void {
    // a (fget), b (fops) and c (file->kvm) are the core's; a released file has no fd left
    if (!this.fileLive) fail('EBADF', 'kvm_gmem_bind: fget');
    const size = slotBytes(slot);
    // d
    if (offset < 0 || offset >= LOFF_NEGATIVE || !Number.isInteger(offset) || !isPageAligned(offset) || offset + size > this.size) {
      fail('EINVAL', 'kvm_gmem_bind: offset < 0, unaligned, or offset + size > i_size');
    }
    // model (HugeTLB series): a binding starts on a folio boundary of the file
    if (this.folioOrder !== 0 && offset % HPAGE_2M !== 0) fail('EINVAL', 'kvm_gmem_bind: offset not aligned to the 2 MiB folio size (GUEST_MEMFD_FLAG_HUGETLB)');
    this.assertLockFree('kvm_gmem_bind');
    const start = offset / PAGE_SIZE; // offset >> PAGE_SHIFT
    const end = start + slot.npages;
    // e: EINVAL in torvalds@01f492e1, EEXIST since 7ea987a9
    if (this.bindings.anyIn(start, end)) {
      fail(this.vm.profile.gmemBindOverlapErrno, 'kvm_gmem_bind: page already bound to another memslot');
    }
    this.bindings.add(slot, start, end);
    this.vm.tracer.emit('kvm_gmem_bind', { slot: slot.id, as_id: slot.asId, pgoff: start, npages: slot.npages, gmem_only: this.gmemOnly });
  }

  unbind(slot: MemslotView): void {
    // nothing to do if the file was already closed: release destroyed the bindings
    if (!this.fileLive) return;
    this.assertLockFree('kvm_gmem_unbind');
    const b = this.bindings.remove(slot);
    if (b) this.vm.tracer.emit('kvm_gmem_unbind', { slot: slot.id, as_id: slot.asId, pgoff: b.start, npages: b.end - b.start });
  }

  /** the bindings, in file-page order (for inspection) */
  boundRanges(): readonly GmemBinding[] {
    return this.bindings.all();
  }

  /* ------------------------------------------------------------------ fault path (§6.5) */

  /** side-effect-free: the pfn backing `gfn` of `slot`, or -1 (no allocation, no prepare) */
  peekPfn(slot: MemslotView, gfn: number): number {
    if (slot.gmemFile !== this) return -1;
    return this.pages.pfnAt(gfn - slot.baseGfn + slot.gmemPgoff);
  }

  getPfn(slot: MemslotView, gfn: number, out: GmemPfn): number {
    // 1. kvm_gmem_get_file(): the file is closed or being closed
    if (!this.fileLive) return -ERRNO.EFAULT;
    // 2. the slot is not bound to this file
    if (slot.gmemFile !== this) return -ERRNO.EFAULT;
    const index = gfn - slot.baseGfn + slot.gmemPgoff;
    // 3. the binding at index is not this slot
    if (!this.bindings.isBoundTo(index, slot)) return -ERRNO.EIO;
    // 4. get or create the folio: a hole is not an error
    const pfn = this.faultinFolio(index);
    if (pfn < 0) return pfn;
    const flags = this.pages.flagsAt(index);
    // 5.
    if (flags & PAGE_HWPOISON) return -ERRNO.EHWPOISON;
    // 6. folios are order-0 upstream; a HugeTLB file's folio is 2 MiB, mappable as one only
    // when the gfn and the file index are equally aligned
    out.pfn = pfn;
    out.maxOrder = this.folioOrder !== 0 && (gfn - index) % (1 << this.folioOrder) === 0 ? this.folioOrder : 0;
    // 7. never leak host data
    if (!(flags & PAGE_UPTODATE)) {
      this.vm.phys.zeroPage(pfn);
      this.pages.setFlags(index, PAGE_UPTODATE);
    }
    // 8. kvm_arch_gmem_prepare on every lookup (the hook must be idempotent)
    const prepare = this.vm.backend?.gmemPrepare;
    if (prepare) {
      const r = prepare.call(this.vm.backend, pfn, gfn, out.maxOrder);
      if (r !== 0) return r;
      if (!(flags & PAGE_PREPARED)) this.pages.setFlags(index, PAGE_PREPARED);
    }
    return 0;
  }

  /**
   * kvm_gmem_populate() from kvm_gmem_get_file() on (virt/kvm/guest_memfd.c, launch-time
   * population for SNP's KVM_SEV_SNP_LAUNCH_UPDATE and TDX's KVM_TDX_INIT_MEM_REGION; the
   * core checked the arguments and the slot). Each page is marked up to date without being
   * zeroed: its contents are what the vendor's post_populate put there, and no gmem_prepare
   * runs. Returns the pages populated if any, else the first -errno (`ret && !i ? ret : i`).
   * The range is clamped to the end of the slot; the caller loops for ranges that span slots.
   */
  populate(req: GmemPopulateRequest): number {
    const { slot, startGfn, src } = req;
    // kvm_gmem_get_file(): closed
    if (!this.live) return -ERRNO.EFAULT;
    const npages = Math.min(slot.npages - (startGfn - slot.baseGfn), req.npages);
    let ret = 0;
    let i = 0;
    for (; i < npages; i++) {
      // (no signals in the model) get_user_pages_fast() of the source page
      let srcPage: Uint8Array | null = null;
      if (src !== null) {
        const got = req.getSrcPage(src + i * PAGE_SIZE);
        if (typeof got === 'number') {
          ret = got < 0 ? got : -ERRNO.ENOMEM;
          break;
        }
        srcPage = got;
      }
      ret = this.populatePage(req, startGfn + i, srcPage);
      if (ret !== 0) break;
    }
    return ret !== 0 && i === 0 ? ret : i;
  }

  /** __kvm_gmem_populate() for one page under the invalidate lock: 0 or -errno */
  private populatePage(req: GmemPopulateRequest, gfn: number, srcPage: Uint8Array | null): number {
    this.assertLockFree('kvm_gmem_populate');
    const slot = req.slot;
    if (slot.gmemFile !== this) return -ERRNO.EFAULT;
    const index = gfn - slot.baseGfn + slot.gmemPgoff;
    if (!this.bindings.isBoundTo(index, slot)) return -ERRNO.EIO;
    const pfn = this.faultinFolio(index);
    if (pfn < 0) return pfn;
    if (this.pages.flagsAt(index) & PAGE_HWPOISON) return -ERRNO.EHWPOISON;
    if (!req.isPrivate(gfn)) return -ERRNO.EINVAL;
    const r = req.postPopulate(gfn, pfn, srcPage);
    if (r === 0) this.pages.setFlags(index, PAGE_UPTODATE);
    return r;
  }

  /* ------------------------------------------------------------------ file ops (§6.2) */

  /*
   * kvm_gmem_fops has no ->read_iter / ->write_iter and the file comes from
   * alloc_file_pseudo(), which sets neither FMODE_CAN_READ/WRITE nor FMODE_PREAD/PWRITE:
   * read(2)/write(2) are EINVAL (vfs_read / vfs_write), pread(2)/pwrite(2) ESPIPE
   * (ksys_pread64 / ksys_pwrite64).
   */
  read(): never {
    return pseudoFileRead('guest_memfd');
  }
  write(): never {
    return pseudoFileWrite('guest_memfd');
  }
  pread(offset = 0): never {
    return pseudoFileRead('guest_memfd', offset);
  }
  pwrite(offset = 0): never {
    return pseudoFileWrite('guest_memfd', offset);
  }
  /** FileIo: read(2) / pread(2) */
  fileRead(_count: number, offset?: number): never {
    return pseudoFileRead('guest_memfd', offset);
  }
  /** FileIo: write(2) / pwrite(2) */
  fileWrite(_count: number, offset?: number): never {
    return pseudoFileWrite('guest_memfd', offset);
  }

  /** FileMappingBacking: the folio's pfn at `pgoff` if the page cache has one (move_pages) */
  pageAt(pgoff: number): number {
    return this.pages.pfnAt(pgoff);
  }

  /** madvise(MADV_REMOVE) of a shared mapping: vfs_fallocate(PUNCH_HOLE | KEEP_SIZE) */
  punchHole(pgoff: number, npages: number): void {
    this.fallocate(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, pgoff * PAGE_SIZE, npages * PAGE_SIZE);
  }

  fstat(): GmemStat {
    return { st_size: this.size, st_blksize: PAGE_SIZE, st_ino: this.ino };
  }

  /** kvm_gmem_setattr(): the size is immutable */
  ftruncate(_length: number): never {
    fail('EINVAL', 'kvm_gmem_setattr: guest_memfd size is immutable');
  }

  /** fallocate(2): FALLOC_FL_KEEP_SIZE allocates, KEEP_SIZE|PUNCH_HOLE frees. Throws KvmError. */
  fallocate(mode: number, offset: number, len: number): 0 {
    this.checkFallocate(mode, offset, len);
    if (mode & FALLOC_FL_PUNCH_HOLE) {
      const op = this.startPunchHole(offset, len);
      while (op.step());
      return 0;
    }
    // kvm_gmem_allocate(): "dedicated guest memory is immutable by default"
    if (offset + len > this.size) fail('EINVAL', 'kvm_gmem_allocate: offset + len > i_size');
    this.assertLockFree('kvm_gmem_allocate');
    // the holes are allocated as a range; each page gets its frame on first use (not zeroed,
    // not prepared until then either), so 1 TiB costs no more than 4 KiB
    this.pages.reserve(offset / PAGE_SIZE, (offset + len) / PAGE_SIZE);
    return 0;
  }

  /** fallocate(KEEP_SIZE | PUNCH_HOLE, offset, len) as a resumable operation. Throws KvmError. */
  beginPunchHole(offset: number, len: number): PunchHoleOp {
    this.checkFallocate(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, offset, len);
    return this.startPunchHole(offset, len);
  }

  /* ------------------------------------------------------------------ mmap (§6.2) */

  checkMmap(shared: boolean): ErrnoName | null {
    if (!(this.flags & GUEST_MEMFD_FLAG_MMAP)) return 'ENODEV';
    if (!shared) return 'EINVAL'; // VM_SHARED | VM_MAYSHARE required: no CoW mappings
    return null;
  }

  /** a VMA now maps the file (it holds a file reference until vmaClose) */
  vmaOpen(): void {
    if (!this.fileLive) throw new Error('vmaOpen on a released guest_memfd');
    this.mapCount++;
  }

  /** munmap of a VMA; the last one after close() releases the file */
  vmaClose(): void {
    if (this.mapCount === 0) throw new Error('vmaClose without vmaOpen');
    this.mapCount--;
    if (this.mapCount === 0 && !this.fdOpen) this.doRelease();
  }

  /** kvm_gmem_fault_user_mapping(): a host access through a MAP_SHARED mapping */
  faultPage(pgoff: number, _write: boolean): number | 'SIGBUS' {
    if (pgoff * PAGE_SIZE >= this.size) return 'SIGBUS';
    // without INIT_SHARED every page is private: the host never sees private contents
    if (!(this.flags & GUEST_MEMFD_FLAG_INIT_SHARED)) return 'SIGBUS';
    if (this.inodeEvicted) return 'SIGBUS';
    const pfn = this.faultinFolio(pgoff);
    if (pfn < 0) return 'SIGBUS'; // vmf_error(-ENOMEM) is VM_FAULT_OOM; no better answer here
    const flags = this.pages.flagsAt(pgoff);
    if (flags & PAGE_HWPOISON) return 'SIGBUS'; // VM_FAULT_HWPOISON
    if (!(flags & PAGE_UPTODATE)) {
      this.vm.phys.zeroPage(pfn);
      this.pages.setFlags(pgoff, PAGE_UPTODATE);
    }
    return pfn;
  }

  /* ------------------------------------------------------------------ close (§6.4) */

  /**
   * close(2) of the last descriptor. A VMA mapping the file holds its own reference, so
   * kvm_gmem_release() runs at the last munmap in that case.
   */
  release(): void {
    if (!this.fdOpen) throw new Error('guest_memfd closed twice');
    if (this.mapCount === 0) this.assertLockFree('kvm_gmem_release');
    this.fdOpen = false;
    if (this.mapCount === 0) this.doRelease();
  }

  private doRelease(): void {
    this.assertLockFree('kvm_gmem_release');
    // slot->gmem.file = NULL for every bound slot: their faults now get -EFAULT
    this.fileLive = false;
    // zap every SPTE this file backs; the memory itself lives with the inode
    this.invalidateBegin(0, Infinity);
    this.invalidateEnd(0, Infinity);
    const nbound = this.bindings.size;
    this.bindings.clear();
    this.vm.tracer.emit('kvm_gmem_release', { ino: this.ino, bindings: nbound });
    const backend = this.vm.backend;
    this.vm.put(); // kvm_put_kvm()
    // the last reference to the inode is gone: evict it (truncate_inode_pages_final)
    this.inodeEvicted = true;
    this.truncate(0, Infinity, backend);
  }

  /* ------------------------------------------------------------------ memory failure */

  /**
   * memory_failure() on the frame at `pgoff` (kvm_gmem_error_folio): zap its mappings, do
   * not truncate; later lookups return -EHWPOISON. Returns false if no frame is there.
   */
  poison(pgoff: number): boolean {
    if (this.inodeEvicted) return false;
    // an allocated page has a frame for the failure to hit
    if (this.pages.isReserved(pgoff) && this.faultinFolio(pgoff) < 0) return false;
    if (this.pages.pfnAt(pgoff) < 0) return false;
    this.assertLockFree('kvm_gmem_error_folio');
    this.pages.setFlags(pgoff, PAGE_HWPOISON);
    this.invalidateBegin(pgoff, pgoff + 1);
    this.invalidateEnd(pgoff, pgoff + 1);
    this.vm.tracer.emit('kvm_gmem_error_folio', { ino: this.ino, pgoff });
    return true;
  }

  /* ------------------------------------------------------------------ inspection */

  get stats(): GmemStats {
    return {
      allocatedPages: this.pages.nrPages + this.pages.nrReserved,
      poisonedPages: this.pages.nrPoisoned,
      bindings: this.bindings.size,
      mappings: this.mapCount,
    };
  }

  /**
   * the frame at file page `pgoff`, or -1 for a hole (a hole is never allocated; a page
   * fallocate allocated gets its frame now if it has none yet)
   */
  pfnAt(pgoff: number): number {
    if (this.pages.isReserved(pgoff)) this.faultinFolio(pgoff);
    return this.pages.pfnAt(pgoff);
  }

  /** PAGE_UPTODATE | PAGE_HWPOISON | PAGE_PREPARED bits of the page at `pgoff` */
  pageFlags(pgoff: number): number {
    return this.pages.flagsAt(pgoff);
  }

  /**
   * Read-only walk of the allocated pages in file pages [start, end), in index order: `fn`
   * gets each page's index, frame and PAGE_* flags; holes cost nothing (for inspection, e.g.
   * `ccmem report`, which draws a file's allocation as runs).
   */
  forEachPage(start: number, end: number, fn: (pgoff: number, pfn: number, flags: number) => void): void {
    if (end > start) this.pages.forEachIn(start, end, fn);
  }

  /* ------------------------------------------------------------------ internals */

  /** vfs_fallocate() (fs/open.c) and kvm_gmem_fallocate() checks, in order */
  private checkFallocate(mode: number, offset: number, len: number): void {
    if (offset < 0 || offset >= LOFF_NEGATIVE || len <= 0 || len >= LOFF_NEGATIVE) {
      fail('EINVAL', 'vfs_fallocate: offset < 0 or len <= 0');
    }
    // vfs_fallocate(): unknown bits, then the modes are exclusive
    if (hasBitsOutside(mode, FALLOC_FL_MODE_MASK | FALLOC_FL_KEEP_SIZE)) fail('EOPNOTSUPP', 'vfs_fallocate: unknown mode bits');
    const m = mode & FALLOC_FL_MODE_MASK;
    if (m === FALLOC_FL_PUNCH_HOLE) {
      if (!(mode & FALLOC_FL_KEEP_SIZE)) fail('EOPNOTSUPP', 'vfs_fallocate: FALLOC_FL_PUNCH_HOLE without FALLOC_FL_KEEP_SIZE');
    } else if (m === FALLOC_FL_COLLAPSE_RANGE || m === FALLOC_FL_INSERT_RANGE || m === FALLOC_FL_WRITE_ZEROES) {
      if (mode & FALLOC_FL_KEEP_SIZE) fail('EOPNOTSUPP', 'vfs_fallocate: this mode with FALLOC_FL_KEEP_SIZE');
    } else if (m !== 0 && m !== FALLOC_FL_UNSHARE_RANGE && m !== FALLOC_FL_ZERO_RANGE) {
      fail('EOPNOTSUPP', 'vfs_fallocate: more than one mode');
    }
    // vfs_fallocate(): check_add_overflow(offset, len) or a sum beyond s_maxbytes
    // (MAX_LFS_FILESIZE = LLONG_MAX on guest_memfd's pseudo filesystem) → EFBIG, before the
    // filesystem's fallocate sees the call
    if (offset + len >= LOFF_NEGATIVE) fail('EFBIG', 'vfs_fallocate: offset + len overflows loff_t or exceeds s_maxbytes');
    if (!(mode & FALLOC_FL_KEEP_SIZE)) fail('EOPNOTSUPP', 'kvm_gmem_fallocate: FALLOC_FL_KEEP_SIZE required');
    if (hasBitsOutside(mode, FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE)) {
      fail('EOPNOTSUPP', 'kvm_gmem_fallocate: unsupported mode');
    }
    if (!Number.isInteger(offset) || !Number.isInteger(len) || !isPageAligned(offset) || !isPageAligned(len)) {
      fail('EINVAL', 'kvm_gmem_fallocate: offset or len not page aligned');
    }
    // model (HugeTLB series): allocation and hole punch work on whole 2 MiB folios
    if (this.folioOrder !== 0 && (offset % HPAGE_2M !== 0 || len % HPAGE_2M !== 0)) {
      fail('EINVAL', 'kvm_gmem_fallocate: offset or len not aligned to the 2 MiB folio size (GUEST_MEMFD_FLAG_HUGETLB)');
    }
  }

  private startPunchHole(offset: number, len: number): PunchHoleOp {
    this.assertLockFree('kvm_gmem_punch_hole');
    const start = offset / PAGE_SIZE;
    const end = (offset + len) / PAGE_SIZE;
    const self = this;
    let phase: PunchHolePhase = 'invalidate';
    const op: PunchHoleOp = {
      get phase() {
        return phase;
      },
      step(): boolean {
        switch (phase) {
          case 'invalidate':
            self.vm.tracer.emit('kvm_gmem_punch_hole', { ino: self.ino, start, end });
            self.invalidateBegin(start, end);
            phase = 'truncate';
            return true;
          case 'truncate': {
            self.truncate(start, end, self.vm.backend);
            phase = 'end';
            return true;
          }
          case 'end':
            self.invalidateEnd(start, end);
            self.lockHolder = null;
            phase = 'done';
            return false;
          case 'done':
            return false;
        }
      },
    };
    this.lockHolder = op;
    return op;
  }

  /** kvm_gmem_invalidate_begin(): begin once if any binding intersects, unmap each one */
  private invalidateBegin(start: number, end: number): void {
    const hit = this.bindings.in(start, end);
    if (hit.length === 0) return;
    const filter = this.invalidateFilter;
    this.vm.mmuInvalidateBegin();
    for (const b of hit) {
      const r = bindingGfnRange(b, start, end);
      this.vm.mmuUnmapGfnRange(r.start, r.end, filter);
    }
  }

  /** kvm_gmem_invalidate_end(): end if any binding intersects */
  private invalidateEnd(start: number, end: number): void {
    if (this.bindings.anyIn(start, end)) this.vm.mmuInvalidateEnd();
  }

  /**
   * The page at file index `index`, allocating its folio for a hole (filemap_grab_folio): an
   * order-0 frame, or for a HugeTLB file the whole 2 MiB folio around it (512 consecutive
   * frames, 2 MiB aligned), entered page by page. Returns the pfn or -ENOMEM.
   */
  private faultinFolio(index: number): number {
    let pfn = this.pages.pfnAt(index);
    if (pfn >= 0) return pfn;
    if (this.folioOrder === 0) {
      pfn = this.allocFolio(index);
      if (pfn < 0) return pfn;
      this.pages.insert(index, pfn);
      return pfn;
    }
    const n = 1 << this.folioOrder;
    const head = index - (index % n);
    const base = this.allocHugeFolio(n);
    if (base < 0) return base;
    for (let i = 0; i < n; i++) this.pages.insert(head + i, base + i);
    return base + (index - head);
  }

  /**
   * truncate_inode_pages_range() over [start, end): order-0 folios one by one; a HugeTLB
   * file's ranges are folio-aligned (fallocate checks it), so each 2 MiB folio goes at once:
   * kvm_gmem_free_folio() → the vendor's gmem_invalidate over its 512 pfns, then back to the
   * hugetlb pool (a poisoned huge folio is never reused).
   */
  private truncate(start: number, end: number, backend: VmForProvider['backend']): void {
    if (this.folioOrder === 0) {
      this.pages.removeRange(start, end, (_pgoff, pfn, flags) => this.freeFolio(pfn, flags, backend));
      return;
    }
    const n = 1 << this.folioOrder;
    let poisoned = false;
    this.pages.removeRange(start, end, (pgoff, pfn, flags) => {
      if (pgoff % n === 0) poisoned = false;
      if (flags & PAGE_HWPOISON) poisoned = true;
      if (pgoff % n !== n - 1) return;
      const head = pfn - (n - 1);
      backend?.gmemInvalidate?.(head, head + n);
      if (poisoned) return; // stays out of the pool
      const phys = this.vm.phys;
      let leaked = false;
      for (let p = head; p < head + n && !leaked; p++) leaked = phys.isLeaked?.(p) ?? false;
      if (leaked) {
        // snp_leak_pages()'s get_page() on one frame holds the whole folio: none of it is freed
        for (let p = head; p < head + n; p++) if (!phys.isLeaked!(p)) phys.leakPage(p);
      } else if (phys.freeContiguous) phys.freeContiguous(head, n);
      else for (let p = head; p < head + n; p++) phys.freePage(p);
    });
  }

  private allocHugeFolio(n: number): number {
    const phys = this.vm.phys;
    if (!phys.allocContiguous) return -ERRNO.ENOMEM;
    try {
      return phys.allocContiguous(n);
    } catch {
      return -ERRNO.ENOMEM;
    }
  }

  /**
   * free_folio: the arch invalidate hook, then back to the allocator; never, if poisoned, or if
   * the hook leaked the frame (snp_leak_pages() holds its own reference: the folio_put() here
   * is not the last one)
   */
  private freeFolio(pfn: number, flags: number, backend: VmForProvider['backend']): void {
    backend?.gmemInvalidate?.(pfn, pfn + 1);
    const phys = this.vm.phys;
    if (flags & PAGE_HWPOISON) phys.leakPage(pfn);
    else if (!phys.isLeaked?.(pfn)) phys.freePage(pfn);
  }

  /** filemap_alloc_folio() under the inode's policy (kvm_gmem_get_folio(): mpol for the index) */
  private allocFolio(index: number): number {
    let pfn: number;
    try {
      pfn = this.vm.phys.allocPage();
    } catch {
      return -ERRNO.ENOMEM;
    }
    if (!this.sharedPolicy.empty) this.vm.phys.setNode?.(pfn, policyNode(this.sharedPolicy.lookup(index), index));
    return pfn;
  }

  private assertLockFree(what: string): void {
    if (this.lockHolder !== null) throw new InvalidateLockBusyError(what);
  }
}

/* -------------------------------------------------------------------------------------- */
/* KVM_CREATE_GUEST_MEMFD and the capabilities (§6.1)                                     */
/* -------------------------------------------------------------------------------------- */

/** kvm_gmem_get_supported_flags() for a VM; KVM_CAP_GUEST_MEMFD_FLAGS reports it. */
function supportedFlags(vm: VmForProvider): number {
  const known = vm.profile.gmemFlagsDefaultVm;
  if (vm.vmType === KVM_X86_DEFAULT_VM) return known;
  // x86 kvm_arch_supports_gmem_init_shared(): only VMs without private memory
  const initShared = !vm.hasPrivateMem && (vm.backend?.supportsGmemInitShared ?? true);
  return (GUEST_MEMFD_FLAG_MMAP | (initShared ? GUEST_MEMFD_FLAG_INIT_SHARED : 0)) & known;
}

/** The GuestMemfdFactory handed to the core's `new Kvm({ guestMemfd })`. */
export interface GuestMemfdFactoryImpl extends GuestMemfdFactory {
  /** KVM_CREATE_GUEST_MEMFD: checks flags then size (§6.1), throws KvmError */
  create(vm: VmForProvider, args: KvmCreateGuestMemfd): GuestMemfd;
}

export const guestMemfdFactory: GuestMemfdFactoryImpl = {
  supportedFlags,
  create(vm: VmForProvider, args: KvmCreateGuestMemfd): GuestMemfd {
    const { size, flags } = args;
    // the HugeTLB flags (in-flight series, model option; not reported in KVM_CAP_GUEST_MEMFD_FLAGS)
    const hugetlb = vm.profile.gmemHugetlb !== false ? GUEST_MEMFD_FLAG_HUGETLB | GUESTMEM_HUGETLB_FLAG_MASK : 0;
    if (hasBitsOutside(flags, supportedFlags(vm) | hugetlb)) fail('EINVAL', 'kvm_gmem_create: unsupported flags');
    const huge = (flags & GUEST_MEMFD_FLAG_HUGETLB) !== 0;
    const hugeSize = flags & GUESTMEM_HUGETLB_FLAG_MASK;
    if (hugeSize !== 0 && (!huge || hugeSize !== GUESTMEM_HUGETLB_FLAG_2MB)) {
      fail('EINVAL', 'kvm_gmem_create: HugeTLB page size other than 2 MiB, or without GUEST_MEMFD_FLAG_HUGETLB');
    }
    if (huge && hugeSize === 0) fail('EINVAL', 'kvm_gmem_create: GUEST_MEMFD_FLAG_HUGETLB without a page size (GUESTMEM_HUGETLB_FLAG_2MB)');
    if (!Number.isInteger(size) || size <= 0 || size >= LOFF_NEGATIVE || !isPageAligned(size)) {
      fail('EINVAL', 'kvm_gmem_create: size <= 0 or not page aligned');
    }
    if (huge && size % HPAGE_2M !== 0) fail('EINVAL', 'kvm_gmem_create: size not a multiple of the 2 MiB HugeTLB page');
    const file = new GuestMemfd(vm, size, flags);
    vm.tracer.emit('kvm_gmem_create', { ino: file.ino, size, flags });
    return file;
  },
};

/**
 * KVM_CHECK_EXTENSION for the guest_memfd caps. `vm` null = asked on /dev/kvm: every flag
 * the kernel knows. Returns undefined for other caps.
 */
export function guestMemfdCapability(cap: number, vm: VmForProvider | null, profile: KernelProfile): number | undefined {
  if (cap === KVM_CAP_GUEST_MEMFD) return 1;
  if (cap === KVM_CAP_GUEST_MEMFD_FLAGS) return vm === null ? profile.gmemFlagsDefaultVm : supportedFlags(vm);
  return undefined;
}
