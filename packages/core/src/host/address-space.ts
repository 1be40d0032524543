/**
 * The VMM process's address space (its `mm_struct`): the mappings (VMAs) it created with
 * mmap(2), the anonymous pages it touched, and the host-side view KVM's GUP
 * (get_user_pages / hva_to_pfn) has of it.
 *
 * Mappings live in an ordered map by start address (the kernel's maple tree; here a
 * BTreeMap whose values index a VMA table), so find_vma(), mmap() and a munmap() that splits
 * a mapping cost O(log n) in the number of mappings. Anonymous pages are allocated on first write (a read of a never-touched page
 * maps the shared zero page), and are kept per virtual page number, so a huge sparse mapping
 * costs memory only for the pages that were written.
 */
import { fail } from '../errno.js';
import type { ErrnoName } from '../errno.js';
import type { FileMappingBacking } from '../backend.js';
import { PAGE_SIZE } from '../uapi.js';
import { PhysMem, ZERO_PFN } from './phys-mem.js';
import { BTreeMap } from '../btree-map.js';
import { checkMbindArgs, DEFAULT_POLICY, mpolNew, policyNode, sanitizeMpolMode, SharedPolicy, type MemPolicy } from './numa.js';

/** x86-64 TASK_SIZE_MAX: the end of the user address range (2^47 - one guard page). */
export const TASK_SIZE_MAX = 2 ** 47 - PAGE_SIZE;
/** Where mmap() without an address starts placing mappings, downward (mmap_base). */
export const MMAP_BASE = 0x7f0000000000;

/** madvise(2) advice (include/uapi/asm-generic/mman-common.h) */
export const MADV_NORMAL = 0;
export const MADV_RANDOM = 1;
export const MADV_SEQUENTIAL = 2;
export const MADV_WILLNEED = 3;
export const MADV_DONTNEED = 4;
export const MADV_REMOVE = 9;
export const MADV_HUGEPAGE = 14;
export const MADV_NOHUGEPAGE = 15;
export const MADV_COLLAPSE = 25;
const MADV_KNOWN = new Set([MADV_NORMAL, MADV_RANDOM, MADV_SEQUENTIAL, MADV_WILLNEED, MADV_DONTNEED, MADV_REMOVE, MADV_HUGEPAGE, MADV_NOHUGEPAGE, MADV_COLLAPSE]);

export interface MmapProt {
  read: boolean;
  write: boolean;
}

/** A file backing a mapping; `pgoffBase` is added to every page index the mapping passes. */
export type MappingBacking = FileMappingBacking & { pgoffBase?: number };

export interface MmapArgs {
  /** MAP_FIXED address; omitted = the kernel picks one (top-down from MMAP_BASE) */
  addr?: number;
  length: number;
  prot: MmapProt;
  /** MAP_SHARED (true) or MAP_PRIVATE */
  shared: boolean;
  /** the mapped file; omitted = MAP_ANONYMOUS */
  backing?: MappingBacking;
  /** byte offset in the file (page aligned) */
  fileOffset?: number;
  /**
   * MAP_HUGETLB with 2 MiB pages (anonymous only): address and length 2M-aligned, each 2M
   * page allocated whole and physically contiguous on first touch (no zero page), and GUP
   * reports a 2M host mapping level.
   */
  hugepage?: '2M';
}

/** One VMA: [start, end) with its protection and backing. */
export interface Vma {
  readonly start: number;
  readonly end: number;
  readonly prot: Readonly<MmapProt>;
  readonly shared: boolean;
  readonly backing: MappingBacking | null;
  /** file page index of `start` (vm_pgoff), including the backing's pgoffBase */
  readonly pgoff: number;
  /** hugetlb 2M mapping */
  readonly huge: boolean;
}

/** hva_to_pfn() result: the pfn and whether it may be mapped writable, or the fault. */
export type HvaToPfnResult =
  | { pfn: number; writable: boolean; /** host mapping level (PG_LEVEL_2M for hugetlb) */ level?: number }
  | { fault: 'EFAULT' | 'SIGBUS' };

const HUGE_PAGES = 512;
const HUGE_SIZE = HUGE_PAGES * PAGE_SIZE;
const PG_LEVEL_2M = 2;
const PG_LEVEL_4K = 1;
/** an anonymous PTE that maps nothing (pfn 0 is never handed out: FIRST_ALLOC_PFN is 0x100) */
const PTE_NONE = 0;
/** index of a PTE page's count of entries that are not PTE_NONE (after its 512 entries) */
const PTE_PRESENT = HUGE_PAGES;

/** GUP's answer in a caller-owned object (the allocation-free form of hvaToPfn()) */
export interface HvaToPfnOut {
  pfn: number;
  writable: boolean;
  /** host mapping level: PG_LEVEL_4K, or PG_LEVEL_2M for hugetlb */
  level: number;
}

/** A VMM access that the host kernel answers with a signal (SIGSEGV / SIGBUS). */
export class HostSignal extends Error {
  readonly signal: 'SIGSEGV' | 'SIGBUS';
  readonly addr: number;

  constructor(signal: 'SIGSEGV' | 'SIGBUS', addr: number) {
    super(`${signal} at 0x${addr.toString(16)}`);
    this.name = 'HostSignal';
    this.signal = signal;
    this.addr = addr;
  }
}

export type InvalidateRangeListener = (start: number, end: number) => void;

/**
 * PTE pages of disposed address spaces, handed out again zeroed (PTE_NONE, as a fresh array)
 * by later ones: a program that builds and drops many small VMMs (the explorer) then
 * allocates none. At most MAX_CACHED_PTE_PAGES are kept.
 */
const cachedPtePages: Float64Array[] = [];
const MAX_CACHED_PTE_PAGES = 64;

export class AddressSpace {
  readonly phys: PhysMem;
  /** VMAs by start (non-overlapping): start -> index into vmaTable */
  private vmaTree = new BTreeMap();
  private vmaTable: (Vma | null)[] = [];
  private vmaFree: number[] = [];
  /**
   * Anonymous 4K PTEs, like the host's own page tables: one Float64Array(513) "PTE page" per
   * 2 MiB of virtual address space that was touched, keyed by vpn / 512. An entry is
   * PTE_NONE, ZERO_PFN (a read mapped the shared zero page; a later write is a CoW that
   * notifies) or the pfn of a page that was written. A sparse mapping costs 4 KiB (and
   * 8 bytes) per touched 2 MiB and nothing elsewhere. The entry after the last (index
   * PTE_PRESENT) counts the entries that are not PTE_NONE, so a PTE page that empties is
   * seen in O(1).
   */
  private readonly ptePages = new Map<number, Float64Array>();
  /** hugetlb 2M pages: the first vpn of each 2M page -> its first pfn */
  private readonly hugePages = new Map<number, number>();
  /** anonymous 4K pages backed by a real frame */
  private anonCount = 0;
  /* last PTE page looked up (the fault path walks memory in order) */
  private lastPteKey = -1;
  private lastPte: Float64Array | null = null;
  /* last VMA found (find_vma's vmacache) */
  private lastVma: Vma | undefined = undefined;
  private readonly scratchOut: HvaToPfnOut = { pfn: 0, writable: false, level: PG_LEVEL_4K };
  private listeners: InvalidateRangeListener[] = [];
  private disposed = false;
  /** online NUMA memory nodes of the host (node 0 .. numaNodes-1) */
  numaNodes = 1;
  /** mbind() policies of anonymous memory, by virtual page number */
  private readonly anonPolicy = new SharedPolicy();

  constructor(phys: PhysMem) {
    this.phys = phys;
  }

  /** The current mappings, sorted (a copy). */
  mappings(): readonly Vma[] {
    const out: Vma[] = [];
    this.vmaTree.forRange(-Infinity, Infinity, (_start, i) => {
      out.push(this.vmaTable[i]!);
    });
    return out;
  }

  private insertVma(v: Vma): void {
    const i = this.vmaFree.pop() ?? this.vmaTable.length;
    this.vmaTable[i] = v;
    this.vmaTree.set(v.start, i);
  }

  private removeVma(v: Vma): void {
    const i = this.vmaTree.get(v.start, -1);
    if (i < 0 || this.vmaTable[i] !== v) throw new Error('AddressSpace: VMA not in the tree');
    this.vmaTree.delete(v.start);
    this.vmaTable[i] = null;
    this.vmaFree.push(i);
  }

  /** the VMA with the greatest start <= addr, or undefined */
  private vmaFloor(addr: number): Vma | undefined {
    const i = this.vmaTree.floorValueOf(addr, -1);
    return i < 0 ? undefined : this.vmaTable[i]!;
  }

  /** Number of PTE pages (one per touched 2 MiB of anonymous memory that still maps something). */
  get ptePageCount(): number {
    return this.ptePages.size;
  }

  /** Number of anonymous pages backed by a real frame. */
  get anonPageCount(): number {
    return this.anonCount;
  }

  /** the PTE page covering `vpn`, optionally created */
  private ptePage(vpn: number, create: boolean): Float64Array | null {
    const key = Math.floor(vpn / HUGE_PAGES);
    if (key === this.lastPteKey) return this.lastPte;
    if (this.disposed) throw new Error('AddressSpace: disposed');
    let t = this.ptePages.get(key);
    if (t === undefined) {
      if (!create) return null;
      t = cachedPtePages.pop();
      if (t === undefined) t = new Float64Array(HUGE_PAGES + 1);
      else t.fill(PTE_NONE);
      this.ptePages.set(key, t);
    }
    this.lastPteKey = key;
    this.lastPte = t;
    return t;
  }

  /** the pfn of the written anonymous page at `vpn`, or PTE_NONE / ZERO_PFN */
  private anonPte(vpn: number): number {
    const t = this.ptePage(vpn, false);
    return t === null ? PTE_NONE : t[(vpn >>> 0) & (HUGE_PAGES - 1)]!;
  }

  /**
   * mmu_notifier registration: `cb(start, end)` runs before the pages of [start, end) go away
   * (munmap, MAP_FIXED over an old mapping). Returns the unregister function.
   */
  onInvalidateRange(cb: InvalidateRangeListener): () => void {
    this.listeners.push(cb);
    return () => {
      this.listeners = this.listeners.filter((l) => l !== cb);
    };
  }

  /** mmap(2). Returns the address; throws KvmError(EINVAL | ENOMEM | the file's errno). */
  mmap(args: MmapArgs): number {
    if (this.disposed) throw new Error('AddressSpace.mmap: disposed');
    const { length, prot, shared } = args;
    if (!Number.isInteger(length) || length <= 0) fail('EINVAL', 'mmap: length is 0');
    const huge = args.hugepage === '2M';
    if (huge && args.backing) fail('EINVAL', 'mmap: MAP_HUGETLB of a file that is not hugetlbfs');
    const len = huge ? Math.ceil(length / HUGE_SIZE) * HUGE_SIZE : alignUp(length);
    const fileOffset = args.fileOffset ?? 0;
    if (!Number.isInteger(fileOffset) || fileOffset < 0 || fileOffset % PAGE_SIZE !== 0) {
      fail('EINVAL', 'mmap: offset not page aligned');
    }
    if (args.addr !== undefined) {
      const a = args.addr;
      if (!Number.isInteger(a) || a < 0 || a % (huge ? HUGE_SIZE : PAGE_SIZE) !== 0) {
        fail('EINVAL', 'mmap: MAP_FIXED address not (huge) page aligned');
      }
      if (a + len > TASK_SIZE_MAX) fail('ENOMEM', 'mmap: MAP_FIXED range beyond TASK_SIZE');
    }
    if (args.backing) {
      const e: ErrnoName | null = args.backing.checkMmap(shared);
      if (e) fail(e, 'mmap: file refused the mapping');
    }
    let start: number;
    if (args.addr !== undefined) {
      start = args.addr;
      this.unmapRange(start, start + len); // MAP_FIXED replaces what was there
    } else {
      start = this.findFreeTopDown(len, huge ? HUGE_SIZE : PAGE_SIZE);
    }
    const vma: Vma = {
      start,
      end: start + len,
      prot: { read: prot.read, write: prot.write },
      shared,
      backing: args.backing ?? null,
      pgoff: args.backing ? (args.backing.pgoffBase ?? 0) + fileOffset / PAGE_SIZE : 0,
      huge,
    };
    this.insertVma(vma);
    this.lastVma = undefined;
    vma.backing?.vmaOpen?.();
    return start;
  }

  /** munmap(2): unmaps every page of [addr, addr+length); partial unmaps split mappings. */
  munmap(addr: number, length: number): void {
    if (this.disposed) throw new Error('AddressSpace.munmap: disposed');
    if (!Number.isInteger(addr) || addr % PAGE_SIZE !== 0 || addr < 0) fail('EINVAL', 'munmap: address not page aligned');
    if (!Number.isInteger(length) || length <= 0) fail('EINVAL', 'munmap: length is 0');
    const end = addr + alignUp(length);
    if (end > TASK_SIZE_MAX) fail('EINVAL', 'munmap: range beyond TASK_SIZE');
    this.unmapRange(addr, end);
  }

  /**
   * madvise(2) (mm/madvise.c do_madvise()): `start` page aligned and a known advice, else
   * EINVAL; every VMA of [start, start+len) gets the advice, and a hole in the range is ENOMEM
   * (after the mapped parts got it, as the kernel does).
   *
   * - MADV_DONTNEED: zap_page_range_single(): the PTEs go (the mmu notifier runs, so KVM zaps
   *   its SPTEs); anonymous private pages are freed (a later touch reads zeroes), shared
   *   memory keeps its contents in the page cache (anonymous shared = shmem, or the file);
   *   hugetlb needs 2M-aligned ends (EINVAL otherwise);
   * - MADV_REMOVE: madvise_remove(): a private anonymous mapping has no file (EINVAL); a
   *   mapping that is not shared-writable is EACCES; else the file's hole is punched
   *   (vfs_fallocate(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE)), shmem's too;
   * - MADV_COLLAPSE: madvise_collapse(): a file mapping the model has (guest_memfd, a device
   *   fd) is not THP-eligible (thp_vma_allowable_order() fails): EINVAL; anonymous memory
   *   collapses (nothing the model keeps changes);
   * - MADV_NORMAL, MADV_RANDOM, MADV_SEQUENTIAL, MADV_WILLNEED, MADV_HUGEPAGE,
   *   MADV_NOHUGEPAGE: hints that change nothing the model keeps.
   */
  madvise(start: number, len: number, advice: number): void {
    if (this.disposed) throw new Error('AddressSpace.madvise: disposed');
    if (!MADV_KNOWN.has(advice)) fail('EINVAL', `madvise: advice ${advice} is not one the kernel knows (madvise_behavior_valid)`);
    if (!Number.isInteger(start) || start < 0 || start % PAGE_SIZE !== 0) fail('EINVAL', 'madvise: start not page aligned');
    if (!Number.isInteger(len) || len < 0) fail('EINVAL', 'madvise: bad length');
    const end = start + alignUp(len);
    if (end === start) return;
    if (end > TASK_SIZE_MAX) fail('ENOMEM', 'madvise: range beyond TASK_SIZE');
    const { parts, hole } = this.vmaParts(start, end);
    for (const [v, s, e] of parts) this.adviseVma(v, s, e, advice);
    if (hole) fail('ENOMEM', 'madvise: part of the range is not mapped');
  }

  /**
   * mprotect(2) (mm/mprotect.c do_mprotect_pkey()): `start` page aligned (EINVAL), every page
   * of the range mapped (ENOMEM, nothing changed), the VMAs split at the ends. The mmu notifier
   * runs for the range (change_protection() with MMU_NOTIFY_PROTECTION_VMA), so KVM zaps its
   * SPTEs and a later guest write faults through hva_to_pfn() again (EFAULT without PROT_WRITE).
   */
  mprotect(start: number, len: number, prot: MmapProt): void {
    if (this.disposed) throw new Error('AddressSpace.mprotect: disposed');
    if (!Number.isInteger(start) || start < 0 || start % PAGE_SIZE !== 0) fail('EINVAL', 'mprotect: start not page aligned');
    if (!Number.isInteger(len) || len < 0) fail('EINVAL', 'mprotect: bad length');
    if (len === 0) return;
    const end = start + alignUp(len);
    if (end > TASK_SIZE_MAX) fail('ENOMEM', 'mprotect: range beyond TASK_SIZE');
    const { parts, hole } = this.vmaParts(start, end);
    if (hole || parts.length === 0) fail('ENOMEM', 'mprotect: part of the range is not mapped');
    for (const [v] of parts) {
      if (v.huge && ((start > v.start && start % HUGE_SIZE !== 0) || (end < v.end && end % HUGE_SIZE !== 0))) {
        fail('EINVAL', 'mprotect: hugetlb range not 2M aligned');
      }
    }
    for (const l of this.listeners) l(start, end);
    for (const [v, s, e] of parts) {
      this.removeVma(v);
      const off = (a: number) => (v.backing ? v.pgoff + (a - v.start) / PAGE_SIZE : 0);
      if (v.start < s) this.insertVma({ ...v, end: s });
      this.insertVma({ ...v, start: s, end: e, pgoff: off(s), prot: { read: prot.read, write: prot.write } });
      if (e < v.end) this.insertVma({ ...v, start: e, pgoff: off(e) });
      // the split VMAs each hold the file (vm_ops->open), the old one lets it go
      const pieces = (v.start < s ? 1 : 0) + 1 + (e < v.end ? 1 : 0);
      for (let i = 0; i < pieces; i++) v.backing?.vmaOpen?.();
      v.backing?.vmaClose?.();
    }
    this.lastVma = undefined;
  }

  /** the VMAs meeting [start, end) with the part of each inside it, and whether a gap is left */
  private vmaParts(start: number, end: number): { parts: [Vma, number, number][]; hole: boolean } {
    const parts: [Vma, number, number][] = [];
    let at = start;
    let hole = false;
    while (at < end) {
      let v = this.vmaFloor(at);
      if (v === undefined || v.end <= at) {
        // the next VMA above `at`
        const next = this.vmaTree.nextKeyAfter(at);
        if (!(next < end)) {
          hole = true;
          break;
        }
        hole = true;
        v = this.vmaFloor(next)!;
        at = next;
      }
      const e = Math.min(v.end, end);
      parts.push([v, at, e]);
      at = e;
    }
    return { parts, hole };
  }

  private adviseVma(v: Vma, s: number, e: number, advice: number): void {
    switch (advice) {
      case MADV_DONTNEED:
        if (v.huge) {
          if (s % HUGE_SIZE !== 0 || e % HUGE_SIZE !== 0) fail('EINVAL', 'madvise(MADV_DONTNEED): hugetlb range not 2M aligned');
        }
        for (const l of this.listeners) l(s, e);
        // private anonymous memory is gone; shared memory stays in its page cache
        if (!v.backing && !v.shared) {
          if (v.huge) this.freeHuge(s, e);
          else this.freeAnon(s, e);
        }
        return;
      case MADV_REMOVE: {
        if (!v.backing && !v.shared) fail('EINVAL', 'madvise(MADV_REMOVE): a private anonymous mapping has no file (madvise_remove)');
        if (!v.shared || !v.prot.write) fail('EACCES', 'madvise(MADV_REMOVE): the mapping is not shared and writable (vma_is_shared_maywrite)');
        for (const l of this.listeners) l(s, e);
        if (!v.backing) {
          // shmem_fallocate(PUNCH_HOLE): the pages go, later touches read zeroes
          if (v.huge) this.freeHuge(s, e);
          else this.freeAnon(s, e);
          return;
        }
        if (typeof v.backing.punchHole !== 'function') fail('EOPNOTSUPP', 'madvise(MADV_REMOVE): the file has no fallocate (vfs_fallocate)');
        v.backing.punchHole(v.pgoff + (s - v.start) / PAGE_SIZE, (e - s) / PAGE_SIZE);
        return;
      }
      case MADV_COLLAPSE:
        if (v.backing) fail('EINVAL', 'madvise(MADV_COLLAPSE): the file mapping is not THP-eligible (madvise_collapse: thp_vma_allowable_order)');
        return;
      default:
        return;
    }
  }

  /**
   * mbind(2) (mm/mempolicy.c kernel_mbind() / do_mbind()): the flag and alignment checks, the
   * new policy (mpol_new(): EINVAL for a bad mode or nodemask), a hole in the range is EFAULT
   * (queue_pages_range() without MPOL_MF_DISCONTIG_OK), then each VMA gets the policy: a file
   * with a shared policy (guest_memfd, memfd) by page index, anonymous memory by page.
   */
  mbind(start: number, len: number, mode: number, nodes: number, flags: number): void {
    if (this.disposed) throw new Error('AddressSpace.mbind: disposed');
    sanitizeMpolMode(mode); // kernel_mbind(): before anything else
    checkMbindArgs(start, flags);
    if (!Number.isInteger(len) || len < 0) fail('EINVAL', 'do_mbind: bad length');
    const end = start + alignUp(len);
    if (end === start) return;
    const pol = mpolNew(mode, nodes, (2 ** this.numaNodes - 1) | 0);
    const { parts, hole } = this.vmaParts(start, end);
    if (hole || parts.length === 0) fail('EFAULT', 'do_mbind: the range has an unmapped hole (queue_pages_range)');
    for (const [v, s, e] of parts) {
      const policy = v.backing?.sharedPolicy;
      if (policy) policy.set(v.pgoff + (s - v.start) / PAGE_SIZE, v.pgoff + (e - v.start) / PAGE_SIZE, pol);
      else this.anonPolicy.set(s / PAGE_SIZE, e / PAGE_SIZE, pol);
    }
  }

  /** get_mempolicy(2) with MPOL_F_ADDR: the policy at `addr` (EFAULT without a VMA) */
  getMempolicy(addr: number): MemPolicy {
    const v = this.findVma(addr);
    if (v === undefined) fail('EFAULT', 'do_get_mempolicy: no VMA at the address');
    const vpn = Math.floor(addr / PAGE_SIZE);
    const policy = v.backing?.sharedPolicy;
    const pol = policy ? policy.lookup(v.pgoff + vpn - v.start / PAGE_SIZE) : this.anonPolicy.lookup(vpn);
    return pol ?? DEFAULT_POLICY;
  }

  /**
   * move_pages(2) with nodes == NULL (do_pages_stat()): the node of the page mapped at `addr`,
   * -EFAULT without a VMA or for the zero page, -ENOENT when no page is there. A file page
   * counts as mapped once the file has it (the model keeps no PTEs for file mappings).
   */
  pageNode(addr: number): number {
    const v = this.findVma(addr);
    if (v === undefined) return -14; // -EFAULT
    const vpn = Math.floor(addr / PAGE_SIZE);
    if (v.backing) {
      const pgoff = v.pgoff + vpn - v.start / PAGE_SIZE;
      const pfn = v.backing.pageAt ? v.backing.pageAt(pgoff) : (v.backing.peekPage?.(pgoff) ?? -1);
      return pfn < 0 ? -2 : this.phys.nodeOf(pfn);
    }
    if (v.huge) {
      const head = vpn - ((vpn >>> 0) & (HUGE_PAGES - 1));
      const first = this.hugePages.get(head);
      return first === undefined ? -2 : this.phys.nodeOf(first);
    }
    const pte = this.anonPte(vpn);
    if (pte === PTE_NONE) return -2; // -ENOENT
    if (pte === ZERO_PFN) return -14; // the zero page: -EFAULT
    return this.phys.nodeOf(pte);
  }

  /** find_vma() restricted to containment: the VMA holding `hva`, or undefined. */
  findVma(hva: number): Vma | undefined {
    const c = this.lastVma;
    if (c !== undefined && hva >= c.start && hva < c.end) return c;
    if (this.disposed) throw new Error('AddressSpace: disposed');
    const v = this.vmaFloor(hva);
    if (v === undefined || hva >= v.end) return undefined;
    this.lastVma = v;
    return v;
  }

  /**
   * hva_to_pfn() with GUP semantics: a never-touched anonymous page read maps the shared zero
   * page read-only; a write allocates the page; a file mapping asks its backing. No VMA, or a
   * VMA without the needed permission, is EFAULT.
   */
  hvaToPfn(hva: number, write: boolean): HvaToPfnResult {
    const out = this.scratchOut;
    const r = this.hvaToPfnInto(hva, write, out);
    if (r !== null) return { fault: r };
    if (out.level !== PG_LEVEL_4K) return { pfn: out.pfn, writable: out.writable, level: out.level };
    return { pfn: out.pfn, writable: out.writable };
  }

  /**
   * hvaToPfn() without allocating: fills `out` and returns null, or returns the fault
   * (the fault path's form).
   */
  hvaToPfnInto(hva: number, write: boolean, out: HvaToPfnOut): 'EFAULT' | 'SIGBUS' | null {
    const vma = this.findVma(hva);
    if (vma === undefined) return 'EFAULT';
    if (write ? !vma.prot.write : !vma.prot.read) return 'EFAULT';
    const vpn = Math.floor(hva / PAGE_SIZE);
    if (vma.huge) {
      const head = vpn - ((vpn >>> 0) & (HUGE_PAGES - 1));
      let first = this.hugePages.get(head);
      if (first === undefined) {
        first = this.phys.allocContiguous(HUGE_PAGES); // hugetlb faults allocate even on read
        this.hugePages.set(head, first);
      }
      out.pfn = first + (vpn - head);
      out.writable = vma.prot.write;
      out.level = PG_LEVEL_2M;
      return null;
    }
    out.level = PG_LEVEL_4K;
    if (vma.backing === null) {
      const t = this.ptePage(vpn, true)!;
      const i = (vpn >>> 0) & (HUGE_PAGES - 1); // vpn % 512 without a float modulo
      const pte = t[i]!;
      if (pte !== PTE_NONE && pte !== ZERO_PFN) {
        out.pfn = pte;
        out.writable = vma.prot.write;
        return null;
      }
      if (!write) {
        if (pte === PTE_NONE) t[PTE_PRESENT]!++;
        t[i] = ZERO_PFN;
        out.pfn = ZERO_PFN;
        out.writable = false;
        return null;
      }
      if (pte === ZERO_PFN) {
        // wp_page_copy(): the PTE changes from the zero page to a new page, with a notifier
        t[i] = PTE_NONE;
        t[PTE_PRESENT]!--;
        const page = vpn * PAGE_SIZE;
        for (const l of this.listeners) l(page, page + PAGE_SIZE);
      }
      const fresh = this.phys.allocPage();
      if (!this.anonPolicy.empty) this.phys.setNode(fresh, policyNode(this.anonPolicy.lookup(vpn), vpn));
      t[i] = fresh;
      t[PTE_PRESENT]!++;
      this.anonCount++;
      out.pfn = fresh;
      out.writable = true;
      return null;
    }
    const r = vma.backing.faultPage(vma.pgoff + Math.floor((hva - vma.start) / PAGE_SIZE), write);
    if (r === 'SIGBUS') return 'SIGBUS';
    out.pfn = r;
    out.writable = vma.prot.write;
    return null;
  }

  /**
   * Side-effect-free lookup for invariant checks: the pfn `hva` maps now (the zero page for
   * a never-written anonymous page), or -1 (unmapped, a hugetlb page not yet faulted, or a
   * file page the backing cannot report without faulting).
   */
  peekPfn(hva: number): number {
    const vma = this.findVma(hva);
    if (vma === undefined) return -1;
    const vpn = Math.floor(hva / PAGE_SIZE);
    if (vma.huge) {
      const head = vpn - ((vpn >>> 0) & (HUGE_PAGES - 1));
      const first = this.hugePages.get(head);
      return first === undefined ? -1 : first + (vpn - head);
    }
    if (vma.backing === null) {
      const pte = this.anonPte(vpn);
      return pte === PTE_NONE ? ZERO_PFN : pte;
    }
    const peek = vma.backing.peekPage;
    if (typeof peek !== 'function') return -1;
    return peek.call(vma.backing, vma.pgoff + Math.floor((hva - vma.start) / PAGE_SIZE));
  }

  /** A VMM load of 1, 2, 4 or 8 bytes (may span pages). Throws HostSignal. */
  read(hva: number, size: number): bigint {
    const bytes = this.readBytes(hva, size);
    let v = 0n;
    for (let i = size - 1; i >= 0; i--) v = (v << 8n) | BigInt(bytes[i]!);
    return v;
  }

  /** A VMM store of 1, 2, 4 or 8 bytes, little-endian (may span pages). Throws HostSignal. */
  write(hva: number, size: number, value: bigint): void {
    const bytes = new Uint8Array(size);
    let v = BigInt.asUintN(size * 8, value);
    for (let i = 0; i < size; i++) {
      bytes[i] = Number(v & 0xffn);
      v >>= 8n;
    }
    this.writeBytes(hva, bytes);
  }

  /** copy from the VMM's memory; throws HostSignal on an unmapped / unreadable / SIGBUS page */
  readBytes(hva: number, length: number): Uint8Array {
    const out = new Uint8Array(length);
    let done = 0;
    while (done < length) {
      const addr = hva + done;
      const off = addr % PAGE_SIZE;
      const n = Math.min(length - done, PAGE_SIZE - off);
      const pfn = this.userPage(addr, false);
      if (pfn !== ZERO_PFN) out.set(this.phys.readBytes(pfn, off, n), done);
      done += n;
    }
    return out;
  }

  /** copy into the VMM's memory; throws HostSignal. Pages before the faulting one are written. */
  writeBytes(hva: number, data: Uint8Array): void {
    let done = 0;
    while (done < data.length) {
      const addr = hva + done;
      const off = addr % PAGE_SIZE;
      const n = Math.min(data.length - done, PAGE_SIZE - off);
      const pfn = this.userPage(addr, true);
      this.phys.writeBytes(pfn, off, data.subarray(done, done + n));
      done += n;
    }
  }

  /** the pfn a user access to `addr` touches, or the signal it raises */
  private userPage(addr: number, write: boolean): number {
    const r = this.hvaToPfn(addr, write);
    if ('fault' in r) throw new HostSignal(r.fault === 'SIGBUS' ? 'SIGBUS' : 'SIGSEGV', addr);
    return r.pfn;
  }

  private findFreeTopDown(len: number, align: number): number {
    let top = MMAP_BASE;
    const place = (t: number) => Math.floor((t - len) / align) * align;
    // walk the mappings below `top` downwards until a gap fits
    for (let v = this.vmaFloor(top - 1); v !== undefined; v = this.vmaFloor(top - 1)) {
      if (v.end <= place(top)) return place(top);
      top = v.start;
    }
    if (place(top) >= PAGE_SIZE * 16) return place(top); // keep the low 64 KiB (mmap_min_addr) free
    fail('ENOMEM', 'mmap: no free address range');
  }

  private unmapRange(start: number, end: number): void {
    // the VMAs intersecting [start, end), in order: the one holding start (if any), then
    // those starting before end
    const t = this.vmaTree;
    let key: number;
    if (t.seek(start)) key = this.vmaTable[t.floorValue]!.end > start ? t.floorKey : t.nextKey;
    else key = t.nextKey;
    if (!(key < end)) return; // nothing mapped there
    const hit: Vma[] = [];
    /** each hit VMA's index into vmaTable */
    const hitIdx: number[] = [];
    while (key < end) {
      t.seek(key);
      hit.push(this.vmaTable[t.floorValue]!);
      hitIdx.push(t.floorValue);
      key = t.nextKey;
    }
    for (const v of hit) {
      if (v.huge && ((start > v.start && start % HUGE_SIZE !== 0) || (end < v.end && end % HUGE_SIZE !== 0))) {
        fail('EINVAL', 'munmap: hugetlb range not 2M aligned');
      }
    }
    // each hit VMA loses [max(v.start, start), min(v.end, end)); what is left of it on
    // either side is kept as a VMA of its own (__split_vma()). The part below `start` keeps
    // the VMA's start, so it takes the VMA's place in the tree (its vmaTable entry is
    // replaced); only the part above `end` is inserted.
    const kept: Vma[] = [];
    const below: (Vma | null)[] = [];
    for (const v of hit) {
      const lo = v.start < start ? { ...v, end: start } : null;
      below.push(lo);
      if (lo !== null) kept.push(lo);
      if (end < v.end) kept.push({ ...v, start: end, pgoff: v.backing ? v.pgoff + (end - v.start) / PAGE_SIZE : 0 });
    }
    // mmu_notifier_invalidate_range_start(): secondary MMUs drop their mappings first
    const listeners = this.listeners;
    for (const v of hit) {
      const s = v.start > start ? v.start : start;
      const e = v.end < end ? v.end : end;
      for (let k = 0; k < listeners.length; k++) listeners[k]!(s, e);
    }
    for (let h = 0; h < hit.length; h++) {
      const lo = below[h]!;
      if (lo !== null) this.vmaTable[hitIdx[h]!] = lo;
      else this.removeVma(hit[h]!);
    }
    for (const v of kept) if (v.start >= end) this.insertVma(v);
    this.lastVma = undefined;
    // a file mapping holds a reference on its file per VMA (vm_ops->open / ->close)
    for (const v of kept) v.backing?.vmaOpen?.();
    for (const v of hit) v.backing?.vmaClose?.();
    for (const v of hit) if (v.huge) this.freeHuge(v.start > start ? v.start : start, v.end < end ? v.end : end);
    for (const v of hit) this.freeAnon(v.start > start ? v.start : start, v.end < end ? v.end : end);
  }

  private freeHuge(start: number, end: number): void {
    for (let vpn = start / PAGE_SIZE; vpn < end / PAGE_SIZE; vpn += HUGE_PAGES) {
      const first = this.hugePages.get(vpn);
      if (first === undefined) continue;
      this.hugePages.delete(vpn);
      this.phys.freeContiguous(first, HUGE_PAGES);
    }
  }

  /** zap_pte_range(): drop the anonymous PTEs of [start, end), freeing written pages */
  private freeAnon(start: number, end: number): void {
    const first = start / PAGE_SIZE;
    const last = end / PAGE_SIZE;
    const k0 = Math.floor(first / HUGE_PAGES);
    const k1 = Math.floor((last - 1) / HUGE_PAGES);
    if (k1 - k0 + 1 > this.ptePages.size) {
      for (const [key, t] of [...this.ptePages]) if (key >= k0 && key <= k1) this.clearPtes(key, t, first, last);
    } else {
      for (let key = k0; key <= k1; key++) {
        const t = this.ptePages.get(key);
        if (t !== undefined) this.clearPtes(key, t, first, last);
      }
    }
  }

  /** the part of freeAnon() in PTE page `key`: clears vpns [first, last) in it */
  private clearPtes(key: number, t: Float64Array, first: number, last: number): void {
    const lo = Math.max(first, key * HUGE_PAGES) - key * HUGE_PAGES;
    const hi = Math.min(last, (key + 1) * HUGE_PAGES) - key * HUGE_PAGES;
    for (let i = lo; i < hi; i++) {
      const pte = t[i]!;
      if (pte === PTE_NONE) continue;
      if (pte !== ZERO_PFN) {
        this.phys.freePage(pte);
        this.anonCount--;
      }
      t[i] = PTE_NONE;
      t[PTE_PRESENT]!--;
    }
    if (t[PTE_PRESENT] === 0) this.dropPtePage(key);
  }

  /**
   * Gives the PTE pages back for reuse by later address spaces (the process is being torn
   * down with the physical memory behind it: no frame is freed here). Every use throws
   * afterwards.
   */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const t of this.ptePages.values()) if (cachedPtePages.length < MAX_CACHED_PTE_PAGES) cachedPtePages.push(t);
    this.ptePages.clear();
    this.hugePages.clear();
    this.lastPteKey = -1;
    this.lastPte = null;
    this.lastVma = undefined;
    this.vmaTree = new BTreeMap();
    this.vmaTable = [];
    this.vmaFree = [];
    this.listeners = [];
  }

  /** free_pte_range(): a PTE page whose whole 2 MiB was unmapped goes away */
  private dropPtePage(key: number): void {
    this.ptePages.delete(key);
    if (this.lastPteKey === key) {
      this.lastPteKey = -1;
      this.lastPte = null;
    }
  }
}

function alignUp(n: number): number {
  return Math.ceil(n / PAGE_SIZE) * PAGE_SIZE;
}

