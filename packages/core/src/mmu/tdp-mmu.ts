/**
 * The TDP MMU (arch/x86/kvm/mmu/tdp_mmu.c): EPT-format page tables that map gfns to pfns,
 * with a direct root and, for VMs with mirrored TDP (TDX), a mirror root whose changes are
 * propagated to the external (S-EPT) tables through vendor hooks.
 * Facts: mmu-and-vendors.md §A.9–A.12, §C.1–C.2, §C.8.
 *
 * The model runs single-threaded, so the kernel's "atomic" updates (cmpxchg under the read
 * lock) always succeed; what stays observable is the ordering: a mirror entry is frozen
 * (FROZEN_SPTE) while its vendor hook runs and restored when the hook fails.
 *
 * Addresses: the direct root maps gfn | gfnDirectBits (the TDX shared alias); the mirror
 * root maps the plain gfn. Callers pass plain gfns; callbacks report plain gfns.
 */

import { ERRNO } from '../errno.js';
import { KVM_FILTER_PRIVATE, KVM_FILTER_SHARED, type HostPhysMem, type VendorBackend } from '../backend.js';
import type { TraceEvent } from '../trace.js';
import {
  ACC_EXEC_MASK,
  ACC_USER_MASK,
  ACC_WRITE_MASK,
  KVM_DIRECT_ROOTS,
  KVM_MIRROR_ROOTS,
  PT64_ROOT_4LEVEL,
  PT64_ROOT_5LEVEL,
  RET_PF_EMULATE,
  RET_PF_FIXED,
  RET_PF_RETRY,
  RET_PF_SPURIOUS,
} from './mmu-internal.js';
import { SptPool } from './spt-pool.js';
import {
  EPT_ACCESSED_LO,
  EPT_DIRTY_LO,
  EPT_EXECUTABLE_LO,
  EPT_MMIO_VALUE,
  EPT_SPTE_MMU_WRITABLE_HI,
  FROZEN_SPTE_HI,
  FROZEN_SPTE_LO,
  PT_PAGE_SIZE_LO,
  PT_WRITABLE_LO,
  SHADOW_NONPRESENT_HI,
  SHADOW_NONPRESENT_LO,
  SPTE_MMU_PRESENT_LO,
  type Spte,
  leafSpteChangeNeedsTlbFlush,
  makeMmioSpte,
  makeNonleafSpte,
  makeSpte,
  sptePfn,
  isMmioSpte,
  getMmioSpteGeneration,
  spteToBigInt,
} from './spte.js';
import { PAGES_PER_LEVEL, TdpIter } from './tdp-iter.js';

/** The vendor hooks a mirror root calls (struct kvm_x86_ops, §C.1). */
export type ExternalSptHooks = Pick<
  VendorBackend,
  'linkExternalSpt' | 'setExternalSpte' | 'removeExternalSpte' | 'freeExternalSpt' | 'splitExternalSpt'
>;

/** Where the MMU sends its events; `Tracer` fits. */
export interface MmuTracer {
  readonly enabled: boolean;
  emit(name: string, fields: TraceEvent['fields']): void;
}

export interface TdpMmuOptions {
  /** EPT page-walk length: 4 (default) or 5 */
  rootLevel?: number;
  /** allocate a mirror root for private gfns (kvm_has_mirrored_tdp) */
  mirror?: boolean;
  /** hooks the mirror root calls; required when `mirror` is set */
  external?: ExternalSptHooks;
  /** kvm_gfn_direct_bits(): direct-root SPTEs live at gfn | gfnDirectBits */
  gfnDirectBits?: number;
  tracer?: MmuTracer;
  /** kvm->arch.shadow_mmio_value (EPT_MMIO_VALUE; 0 for TDX) */
  mmioValue?: number;
  /** address space of the roots (kvm_mmu_page_as_id), for traces */
  asId?: number;
  /**
   * Host frames for external (S-EPT) table pages: kvm_mmu_alloc_external_spt() takes a real
   * page, freed after free_external_spt succeeds and leaked when it fails. Without it the
   * MMU numbers the pages itself (unit tests with fake hooks).
   */
  externalSptPages?: Pick<HostPhysMem, 'allocPage' | 'freePage' | 'leakPage'>;
}

/** One mapping request, the part of `struct kvm_page_fault` kvm_tdp_mmu_map() uses. */
export interface TdpMapRequest {
  /** gfn without direct bits; rounded down to `level` */
  gfn: number;
  /** pfn; rounded down to `level` (kvm_mmu_hugepage_adjust aligns it) */
  pfn: number;
  /** goal level, PG_LEVEL_4K..PG_LEVEL_1G */
  level: number;
  /** PFERR_PRIVATE_ACCESS: use the mirror root when there is one */
  isPrivate: boolean;
  /** ACC_WRITE in the mapping (the slot is writable) */
  writable: boolean;
  /** ACC_EXEC in the mapping */
  exec: boolean;
  /** fault->map_writable: the host mapping is writable */
  hostWritable: boolean;
  /** prefetch: no access is waiting; a present SPTE is left alone and A stays clear */
  prefetch: boolean;
  /** the access is a write: a present SPTE without W is not "spurious" */
  write: boolean;
}

/** Result of `walk()` (kvm_tdp_mmu_get_walk for one gfn). */
export interface TdpWalkResult {
  /** the last SPTE read: the leaf when present, else the non-present entry that ended the walk */
  lo: number;
  hi: number;
  level: number;
  present: boolean;
  /** pfn of the gfn itself (leaf pfn + offset inside a huge page), -1 when not present */
  pfn: number;
}

export interface TdpLeaf {
  gfn: number;
  level: number;
  pfn: number;
  writable: boolean;
  dirty: boolean;
  accessed: boolean;
  mmuWritable: boolean;
  isMirror: boolean;
}

export type LeafCallback = (
  gfn: number,
  level: number,
  pfn: number,
  writable: boolean,
  dirty: boolean,
  isMirror: boolean,
) => void;

/** KVM page stats (kvm->stat.pages_*) plus model counters. */
export interface TdpMmuStats {
  pages_4k: number;
  pages_2m: number;
  pages_1g: number;
  /** kvm_flush_remote_tlbs*() requests made by the MMU or through flushRemoteTlbs() */
  tlb_flushes: number;
  /** mirror tables whose free_external_spt failed: leaked on purpose */
  external_spt_leaked: number;
}

/** kvm_gfn_range_filter_to_root_types() */
export function filterToRootTypes(hasMirroredTdp: boolean, filter: number): number {
  if (!hasMirroredTdp) return KVM_DIRECT_ROOTS;
  let ret = 0;
  if (filter & KVM_FILTER_PRIVATE) ret |= KVM_MIRROR_ROOTS;
  if (filter & KVM_FILTER_SHARED) ret |= KVM_DIRECT_ROOTS;
  return ret;
}

const TWO_32 = 2 ** 32;

/**
 * SPTE_INDEX(gfn, level) from the gfn's low and high 32-bit halves: shifts instead of a float
 * division per level (a gfn with the TDX shared bit, or under a 5-level root, is above 2^32).
 */
function spteIndex(lo32: number, hi32: number, level: number): number {
  switch (level) {
    case 1:
      return lo32 & 511;
    case 2:
      return (lo32 >>> 9) & 511;
    case 3:
      return (lo32 >>> 18) & 511;
    case 4:
      return ((lo32 >>> 27) | (hi32 << 5)) & 511;
    default:
      return (hi32 >>> 4) & 511;
  }
}

/** the high half of a non-negative integer below 2^53 */
function high32(x: number): number {
  return x > 0xffffffff ? Math.floor(x / TWO_32) : 0;
}

/** x % PAGES_PER_LEVEL[level] for level 1..3 without a float modulo */
function offsetInLevel(x: number, level: number): number {
  return level === 1 ? 0 : level === 2 ? (x >>> 0) & 511 : (x >>> 0) & 0x3ffff;
}
/** a | b for non-negative integers below 2^53 */
function or53(a: number, b: number): number {
  if (b === 0) return a;
  return ((Math.floor(a / TWO_32) | Math.floor(b / TWO_32)) >>> 0) * TWO_32 + (((a >>> 0) | (b >>> 0)) >>> 0);
}
/** a & ~b for non-negative integers below 2^53 */
function andNot53(a: number, b: number): number {
  if (b === 0) return a;
  return ((Math.floor(a / TWO_32) & ~Math.floor(b / TWO_32)) >>> 0) * TWO_32 + (((a >>> 0) & ~(b >>> 0)) >>> 0);
}

export class TdpMmu {
  readonly rootLevel: number;
  readonly hasMirror: boolean;
  readonly gfnDirectBits: number;
  readonly mmioValue: number;
  readonly asId: number;
  readonly stats: TdpMmuStats = { pages_4k: 0, pages_2m: 0, pages_1g: 0, tlb_flushes: 0, external_spt_leaked: 0 };

  /** W of the leaf the last `walk()` found (false when it found none) */
  lastWalkWritable = false;

  /**
   * The leaf the last successful `map()` (RET_PF_FIXED) installed: its SPTE halves and level.
   * A caller that runs nothing between the map and the guest's retry knows the retry's walk
   * finds exactly this leaf.
   */
  lastMapLo = 0;
  lastMapHi = 0;
  lastMapLevel = 0;

  /*
   * The last 4K table a walk reached (a paging-structure cache, like the CPU's): the root gfn
   * of its first entry, which root, and its table id. A walk or map for a gfn in the same
   * 2 MiB skips the upper levels. It is dropped whenever a table leaves the paging structure
   * (handleRemovedPt, destroy): every change to an upper-level entry that leads to a table
   * goes through there, so while it is set the upper entries still lead to this table.
   */
  private pdeGfn = -1;
  private pdeMirror = false;
  private pdeTable = -1;

  /** root tables; -1 when absent or destroyed */
  directRoot: number;
  mirrorRoot: number;

  private readonly pool = new SptPool();
  private readonly ext: ExternalSptHooks | null;
  private readonly tracer: MmuTracer | null;
  private readonly iter = new TdpIter();
  private readonly spte: Spte = { lo: 0, hi: 0 };
  private nextExternalSpt = 1;
  private readonly externalPages: Pick<HostPhysMem, 'allocPage' | 'freePage' | 'leakPage'> | null;
  private destroyed = false;

  constructor(opts: TdpMmuOptions = {}) {
    const rootLevel = opts.rootLevel ?? PT64_ROOT_4LEVEL;
    if (rootLevel !== PT64_ROOT_4LEVEL && rootLevel !== PT64_ROOT_5LEVEL) {
      throw new RangeError(`TdpMmu: root level must be 4 or 5, not ${rootLevel}`);
    }
    this.rootLevel = rootLevel;
    this.hasMirror = opts.mirror === true;
    if (this.hasMirror && !opts.external) throw new TypeError('TdpMmu: a mirror root needs external hooks');
    this.ext = opts.external ?? null;
    this.gfnDirectBits = opts.gfnDirectBits ?? 0;
    this.tracer = opts.tracer ?? null;
    this.mmioValue = opts.mmioValue ?? EPT_MMIO_VALUE;
    this.asId = opts.asId ?? 0;
    this.externalPages = opts.externalSptPages ?? null;
    // mmu_alloc_direct_roots(): the mirror root first, then the direct root
    this.mirrorRoot = this.hasMirror ? this.pool.alloc(0, rootLevel, -1, 0, true, true) : -1;
    this.directRoot = this.pool.alloc(0, rootLevel, -1, 0, false, true);
  }

  /* ---------------------------------------------------------------------------------------- */
  /* Bookkeeping                                                                              */
  /* ---------------------------------------------------------------------------------------- */

  /** Table memory plus per-table bookkeeping, in bytes (page contents excluded). */
  metadataBytes(): number {
    return this.pool.metadataBytes();
  }

  /** Page tables in use, roots included. */
  get tableCount(): number {
    return this.pool.liveTables;
  }

  /** kvm_flush_remote_tlbs(): counts a flush request. */
  flushRemoteTlbs(): void {
    this.stats.tlb_flushes++;
  }

  /** kvm_mmu_alloc_external_spt(): a host page for the vendor's copy of a mirror table */
  private allocExternalSpt(): number {
    return this.externalPages ? this.externalPages.allocPage() : this.nextExternalSpt++;
  }

  /** kvm_update_page_stats() */
  private accountLeaf(level: number, delta: number): void {
    if (level === 1) this.stats.pages_4k += delta;
    else if (level === 2) this.stats.pages_2m += delta;
    else if (level === 3) this.stats.pages_1g += delta;
  }

  private traceChanged(gfn: number, level: number, oldLo: number, oldHi: number, newLo: number, newHi: number): void {
    this.tracer!.emit('kvm_tdp_mmu_spte_changed', {
      as_id: this.asId,
      gfn,
      level,
      old_spte: spteToBigInt(oldLo, oldHi),
      new_spte: spteToBigInt(newLo, newHi),
    });
  }

  private rootOf(mirror: boolean): number {
    return mirror ? this.mirrorRoot : this.directRoot;
  }

  /** The root a private/shared access uses (tdp_mmu_get_root_for_fault). */
  private useMirror(isPrivate: boolean): boolean {
    return isPrivate && this.hasMirror;
  }

  /** gfn as the root's iterator sees it (kvm_gfn_root_iter_mask) */
  private rootGfn(gfn: number, mirror: boolean): number {
    return mirror ? gfn : or53(gfn, this.gfnDirectBits);
  }

  private plainGfn(gfn: number, mirror: boolean): number {
    return mirror ? gfn : andNot53(gfn, this.gfnDirectBits);
  }

  private checkAlive(): void {
    if (this.destroyed) throw new Error('TdpMmu: used after destroy()');
  }

  /* ---------------------------------------------------------------------------------------- */
  /* Map (kvm_tdp_mmu_map)                                                                     */
  /* ---------------------------------------------------------------------------------------- */

  /**
   * kvm_tdp_mmu_map(): install a leaf for `req` at `req.level`, allocating and linking
   * missing tables, splitting a huge leaf in the way, or replacing a table with a huge leaf.
   * Returns RET_PF_FIXED, RET_PF_SPURIOUS, RET_PF_RETRY or a negative errno.
   */
  map(req: TdpMapRequest): number {
    this.checkAlive();
    const goal = req.level;
    if (!(goal >= 1 && goal <= 3)) throw new RangeError(`TdpMmu.map: bad level ${goal}`);
    const mirror = this.useMirror(req.isPrivate);
    const gfn = this.rootGfn(req.gfn - offsetInLevel(req.gfn, goal), mirror);
    const pfn = req.pfn - offsetInLevel(req.pfn, goal);
    const lo32 = gfn >>> 0;
    const hi32 = high32(gfn);
    const pool = this.pool;
    let t = this.rootOf(mirror);
    let level = this.rootLevel;
    if (goal === 1 && gfn - (lo32 & 511) === this.pdeGfn && mirror === this.pdeMirror) {
      t = this.pdeTable; // the 4K table of this 2 MiB (see pdeGfn)
      level = 1;
    }

    for (; ; level--) {
      const idx = spteIndex(lo32, hi32, level);
      const words = pool.chunks[t >>> 6]!;
      const off = SptPool.base(t) + (idx << 1);
      const lo = words[off]!;
      const hi = words[off + 1]!;
      if (level === 1) {
        this.pdeGfn = gfn - (lo32 & 511);
        this.pdeMirror = mirror;
        this.pdeTable = t;
      }
      // another task froze the SPTE: give up and retry
      if (lo === FROZEN_SPTE_LO && hi === FROZEN_SPTE_HI) return RET_PF_RETRY;
      if (level === goal) return this.mapTargetLevel(req, mirror, t, words, off, gfn, level, pfn, lo, hi);
      // step down into an existing lower-level table
      if ((lo & SPTE_MMU_PRESENT_LO) !== 0 && (lo & PT_PAGE_SIZE_LO) === 0) {
        t = sptePfn(lo, hi);
        continue;
      }
      // non-present, or a huge leaf that must be split: allocate a child table
      const entryGfn = gfn - (gfn % PAGES_PER_LEVEL[level]!);
      const present = (lo & SPTE_MMU_PRESENT_LO) !== 0;
      const child = pool.alloc(entryGfn, level - 1, t, idx, mirror, !present);
      if (mirror) pool.externalSpt[child] = this.allocExternalSpt(); // kvm_mmu_alloc_external_spt
      const r = present
        ? this.splitHugePage(words, off, entryGfn, level, lo, hi, child, mirror)
        : this.linkSp(words, off, t, entryGfn, level, lo, hi, child, mirror);
      if (r !== 0) {
        if (mirror) this.externalPages?.freePage(pool.externalSpt[child]!); // never given to the vendor
        pool.release(child); // tdp_mmu_free_sp
        return r === -ERRNO.EBUSY ? RET_PF_RETRY : r;
      }
      t = child;
    }
  }

  /** tdp_mmu_map_handle_target_level() */
  private mapTargetLevel(
    req: TdpMapRequest,
    mirror: boolean,
    t: number,
    words: Int32Array,
    off: number,
    gfn: number,
    level: number,
    pfn: number,
    lo: number,
    hi: number,
  ): number {
    const wasPresent = (lo & SPTE_MMU_PRESENT_LO) !== 0;
    const wasLeaf = wasPresent && (level === 1 || (lo & PT_PAGE_SIZE_LO) !== 0);
    if (wasLeaf && (req.prefetch || this.isAccessAllowed(req, lo))) return RET_PF_SPURIOUS;

    const access = ACC_USER_MASK | (req.writable ? ACC_WRITE_MASK : 0) | (req.exec ? ACC_EXEC_MASK : 0);
    const s = makeSpte(this.spte, level, pfn, access, req.hostWritable, req.prefetch);
    const newLo = s.lo;
    const newHi = s.hi;
    if (newLo === lo && newHi === hi) return RET_PF_SPURIOUS;
    // handle_changed_spte(): a present leaf never changes pfn in place (the kernel BUG()s)
    if (wasLeaf && sptePfn(lo, hi) !== pfn) return -ERRNO.EIO;

    if (mirror) {
      // set_external_spte_present(): KVM_BUG_ON(was_present); freeze, call the hook, then
      // write the new value or restore the old one
      if (wasPresent) return -ERRNO.EIO;
      words[off] = FROZEN_SPTE_LO;
      words[off + 1] = FROZEN_SPTE_HI;
      const rc = this.ext!.setExternalSpte?.(this.plainGfn(gfn, true), level, pfn) ?? 0;
      if (rc !== 0) {
        words[off] = lo;
        words[off + 1] = hi;
        return rc === -ERRNO.EBUSY ? RET_PF_RETRY : rc;
      }
    }
    words[off] = newLo;
    words[off + 1] = newHi;
    this.lastMapLo = newLo;
    this.lastMapHi = newHi;
    this.lastMapLevel = level;
    if (this.tracer?.enabled) this.traceChanged(gfn, level, lo, hi, newLo, newHi);
    if (!wasPresent) this.pool.presentCount[t]!++;
    if (!wasLeaf) this.accountLeaf(level, 1);
    if (wasPresent && !wasLeaf) {
      // a table replaced by a huge leaf: tear the subtree down, then flush the range
      this.handleRemovedPt(sptePfn(lo, hi), false);
      this.stats.tlb_flushes++;
    } else if (wasLeaf && leafSpteChangeNeedsTlbFlush(hi, newHi)) {
      this.stats.tlb_flushes++;
    }
    if (this.tracer?.enabled) {
      this.tracer.emit('kvm_mmu_set_spte', {
        gfn,
        level,
        old_spte: spteToBigInt(lo, hi),
        new_spte: spteToBigInt(newLo, newHi),
      });
    }
    return RET_PF_FIXED;
  }

  /** is_access_allowed(): the present SPTE already permits the access */
  private isAccessAllowed(req: TdpMapRequest, lo: number): boolean {
    if (req.write && (lo & PT_WRITABLE_LO) === 0) return false;
    if (req.exec && (lo & EPT_EXECUTABLE_LO) === 0) return false;
    return true;
  }

  /**
   * tdp_mmu_link_sp(): point a non-present entry at a new table. Mirror entries are frozen
   * around link_external_spt (TDH.MEM.SEPT.ADD) and restored if it fails.
   */
  private linkSp(
    words: Int32Array,
    off: number,
    t: number,
    gfn: number,
    level: number,
    lo: number,
    hi: number,
    child: number,
    mirror: boolean,
  ): number {
    const s = makeNonleafSpte(this.spte, child);
    if (mirror) {
      words[off] = FROZEN_SPTE_LO;
      words[off + 1] = FROZEN_SPTE_HI;
      const rc = this.ext!.linkExternalSpt?.(gfn, level, this.pool.externalSpt[child]!) ?? 0;
      if (rc !== 0) {
        words[off] = lo;
        words[off + 1] = hi;
        return rc;
      }
    }
    words[off] = s.lo;
    words[off + 1] = s.hi;
    this.pool.presentCount[t]!++;
    if (this.tracer?.enabled) this.traceChanged(gfn, level, lo, hi, s.lo, s.hi);
    return 0;
  }

  /**
   * tdp_mmu_split_huge_page(): fill `child` with make_small_spte() of the huge leaf, then
   * link it in place of the leaf. No flush: both translations agree. Mirror roots split the
   * external table through split_external_spt (TDX huge-page series, not upstream); without
   * that hook, -EIO (upstream KVM_BUGs).
   */
  private splitHugePage(
    words: Int32Array,
    off: number,
    gfn: number,
    level: number,
    lo: number,
    hi: number,
    child: number,
    mirror: boolean,
  ): number {
    if (mirror && !this.ext!.splitExternalSpt) return -ERRNO.EIO;
    this.fillSmallSptes(child, lo, hi, level);
    const s = makeNonleafSpte(this.spte, child);
    if (mirror) {
      words[off] = FROZEN_SPTE_LO;
      words[off + 1] = FROZEN_SPTE_HI;
      const rc = this.ext!.splitExternalSpt!(this.plainGfn(gfn, true), level, this.pool.externalSpt[child]!);
      if (rc !== 0) {
        words[off] = lo;
        words[off + 1] = hi;
        if (this.tracer?.enabled) this.traceSplit(gfn, lo, hi, level, rc);
        return rc;
      }
    }
    words[off] = s.lo;
    words[off + 1] = s.hi;
    this.accountLeaf(level, -1);
    this.accountLeaf(level - 1, 512);
    if (this.tracer?.enabled) {
      this.traceChanged(gfn, level, lo, hi, s.lo, s.hi);
      this.traceSplit(gfn, lo, hi, level, 0);
    }
    return 0;
  }

  private traceSplit(gfn: number, lo: number, hi: number, level: number, errno: number): void {
    this.tracer!.emit('kvm_mmu_split_huge_page', { gfn, spte: spteToBigInt(lo, hi), level, errno });
  }

  /** make_small_spte() for all 512 children, in one tight loop */
  private fillSmallSptes(child: number, hugeLo: number, hugeHi: number, hugeLevel: number): void {
    const words = this.pool.words(child);
    const base = SptPool.base(child);
    const shift = 12 + 9 * (hugeLevel - 2);
    const lo0 = hugeLevel === 2 ? hugeLo & ~PT_PAGE_SIZE_LO : hugeLo;
    for (let i = 0, o = base; i < 512; i++, o += 2) {
      words[o] = lo0 | (i << shift);
      words[o + 1] = hugeHi;
    }
    this.pool.presentCount[child] = 512;
  }

  /**
   * Install an MMIO SPTE for a gfn with no memslot (make_mmio_spte in
   * tdp_mmu_map_handle_target_level). Shared (direct root) only. Returns RET_PF_EMULATE,
   * RET_PF_RETRY on a frozen entry, or -EIO when a present SPTE is in the way.
   */
  installMmioSpte(gfn: number, generation: number): number {
    this.checkAlive();
    const g = this.rootGfn(gfn, false);
    const pool = this.pool;
    let t = this.directRoot;
    for (let level = this.rootLevel; ; level--) {
      const idx = (g / PAGES_PER_LEVEL[level]!) & 511;
      const words = pool.chunks[t >>> 6]!;
      const off = SptPool.base(t) + (idx << 1);
      const lo = words[off]!;
      const hi = words[off + 1]!;
      if (lo === FROZEN_SPTE_LO && hi === FROZEN_SPTE_HI) return RET_PF_RETRY;
      const present = (lo & SPTE_MMU_PRESENT_LO) !== 0;
      if (level === 1) {
        if (present) return -ERRNO.EIO;
        const s = makeMmioSpte(this.spte, g, generation, this.mmioValue);
        words[off] = s.lo;
        words[off + 1] = s.hi;
        if (this.tracer?.enabled) {
          this.traceChanged(g, level, lo, hi, s.lo, s.hi);
          this.tracer.emit('mark_mmio_spte', { gfn: g, spte: spteToBigInt(s.lo, s.hi), generation });
        }
        return RET_PF_EMULATE;
      }
      if (present && (lo & PT_PAGE_SIZE_LO) !== 0) return -ERRNO.EIO;
      if (present) {
        t = sptePfn(lo, hi);
        continue;
      }
      const entryGfn = g - (g % PAGES_PER_LEVEL[level]!);
      const child = pool.alloc(entryGfn, level - 1, t, idx, false, true);
      this.linkSp(words, off, t, entryGfn, level, lo, hi, child, false);
      t = child;
    }
  }

  /**
   * The memslot generation an MMIO SPTE (as `walk()` left it in `out`) was made with
   * (get_mmio_spte_generation(), masked to MMIO_SPTE_GEN_MASK), or -1 if it is no MMIO SPTE.
   */
  mmioSpteGeneration(lo: number, hi: number): number {
    if ((lo & SPTE_MMU_PRESENT_LO) !== 0 || (lo === FROZEN_SPTE_LO && hi === FROZEN_SPTE_HI)) return -1;
    if ((lo === SHADOW_NONPRESENT_LO && hi === SHADOW_NONPRESENT_HI) || !isMmioSpte(lo, hi, this.mmioValue)) return -1;
    return getMmioSpteGeneration(lo, hi);
  }

  /* ---------------------------------------------------------------------------------------- */
  /* Lookups                                                                                   */
  /* ---------------------------------------------------------------------------------------- */

  /**
   * kvm_tdp_mmu_get_walk() for one gfn: the leaf translating an access, without side
   * effects. Returns `out.present`.
   */
  walk(gfn: number, isPrivate: boolean, out: TdpWalkResult): boolean {
    const mirror = isPrivate && this.hasMirror;
    const g = mirror ? gfn : this.gfnDirectBits === 0 ? gfn : or53(gfn, this.gfnDirectBits);
    const chunks = this.pool.chunks;
    let t = mirror ? this.mirrorRoot : this.directRoot;
    if (t < 0) {
      this.lastWalkWritable = false;
      out.present = false;
      out.lo = SHADOW_NONPRESENT_LO;
      out.hi = SHADOW_NONPRESENT_HI;
      out.level = this.rootLevel;
      out.pfn = -1;
      return false;
    }
    const lo32 = g >>> 0;
    const hi32 = high32(g);
    let level = this.rootLevel;
    const g2m = g - (lo32 & 511);
    if (g2m === this.pdeGfn && mirror === this.pdeMirror) {
      t = this.pdeTable;
      level = 1;
    }
    for (; ; level--) {
      const words = chunks[t >>> 6]!;
      const off = ((t & 63) << 10) | (spteIndex(lo32, hi32, level) << 1);
      if (level === 1) {
        this.pdeGfn = g2m;
        this.pdeMirror = mirror;
        this.pdeTable = t;
      }
      const lo = words[off]!;
      const hi = words[off + 1]!;
      if ((lo & SPTE_MMU_PRESENT_LO) === 0) {
        out.lo = lo;
        out.hi = hi;
        out.level = level;
        out.present = false;
        out.pfn = -1;
        this.lastWalkWritable = false;
        return false;
      }
      if (level === 1 || (lo & PT_PAGE_SIZE_LO) !== 0) {
        this.lastWalkWritable = (lo & PT_WRITABLE_LO) !== 0;
        out.lo = lo;
        out.hi = hi;
        out.level = level;
        out.present = true;
        out.pfn = sptePfn(lo, hi) + offsetInLevel(g, level);
        return true;
      }
      t = sptePfn(lo, hi);
    }
  }

  /**
   * `walk()`'s answer for `gfn` right after a `map()` for it returned RET_PF_FIXED, with nothing
   * run in between: the leaf that map installed (no table walk). Returns true.
   */
  walkAfterMap(gfn: number, isPrivate: boolean, out: TdpWalkResult): boolean {
    const mirror = isPrivate && this.hasMirror;
    const g = mirror || this.gfnDirectBits === 0 ? gfn : or53(gfn, this.gfnDirectBits);
    const lo = this.lastMapLo;
    const hi = this.lastMapHi;
    const level = this.lastMapLevel;
    this.lastWalkWritable = (lo & PT_WRITABLE_LO) !== 0;
    out.lo = lo;
    out.hi = hi;
    out.level = level;
    out.present = true;
    out.pfn = sptePfn(lo, hi) + offsetInLevel(g, level);
    return true;
  }

  /** Level of the leaf mapping `gfn`, or 0 when none does. */
  leafLevel(gfn: number, isPrivate: boolean): number {
    return this.walk(gfn, isPrivate, this.scratchWalk) ? this.scratchWalk.level : 0;
  }
  private readonly scratchWalk: TdpWalkResult = { lo: 0, hi: 0, level: 0, present: false, pfn: -1 };

  /** The leaf mapping `gfn`, or null (for inspection; allocates). */
  leafAt(gfn: number, isPrivate: boolean): TdpLeaf | null {
    const out: TdpWalkResult = { lo: 0, hi: 0, level: 0, present: false, pfn: -1 };
    if (!this.walk(gfn, isPrivate, out)) return null;
    const mirror = isPrivate && this.hasMirror;
    const n = PAGES_PER_LEVEL[out.level]!;
    return {
      gfn: gfn - (gfn % n),
      level: out.level,
      pfn: sptePfn(out.lo, out.hi),
      writable: (out.lo & PT_WRITABLE_LO) !== 0,
      dirty: (out.lo & EPT_DIRTY_LO) !== 0,
      accessed: (out.lo & EPT_ACCESSED_LO) !== 0,
      mmuWritable: (out.hi & EPT_SPTE_MMU_WRITABLE_HI) !== 0,
      isMirror: mirror,
    };
  }

  /** Calls `cb` for every present leaf overlapping [start, end) in the roots `filter` selects. */
  forEachLeaf(start: number, end: number, filter: number, cb: LeafCallback): void {
    this.checkAlive();
    const types = filterToRootTypes(this.hasMirror, filter);
    if (types & KVM_DIRECT_ROOTS) this.leafWalk(false, start, end, cb);
    if (types & KVM_MIRROR_ROOTS && this.mirrorRoot >= 0) this.leafWalk(true, start, end, cb);
  }

  /**
   * Inspection walk (invariant checks, `forEachLeaf`): visits only present entries of tables
   * whose range overlaps [start, end), and leaves a table as soon as all of its present entries
   * were seen, so a sparse MMU costs what is mapped. Side-effect free; callbacks may re-enter
   * the MMU (nothing here is shared with the modifying iterator).
   */
  private leafWalk(mirror: boolean, start: number, end: number, cb: LeafCallback): void {
    const root = this.rootOf(mirror);
    if (root < 0) return;
    this.leafWalkTable(mirror, root, this.rootLevel, 0, this.rootGfn(start, mirror), this.rootGfn(end, mirror), cb);
  }

  private leafWalkTable(mirror: boolean, t: number, level: number, base: number, s: number, e: number, cb: LeafCallback): void {
    const pool = this.pool;
    let left = pool.presentCount[t]!;
    if (left === 0) return;
    const words = pool.words(t);
    const o0 = SptPool.base(t);
    const span = PAGES_PER_LEVEL[level]!;
    for (let i = s > base ? Math.floor((s - base) / span) : 0; i < 512; i++) {
      const g = base + i * span;
      if (g >= e) return;
      const lo = words[o0 + 2 * i]!;
      if ((lo & SPTE_MMU_PRESENT_LO) === 0) continue;
      const hi = words[o0 + 2 * i + 1]!;
      left--;
      if (level === 1 || (lo & PT_PAGE_SIZE_LO) !== 0) {
        cb(this.plainGfn(g, mirror), level, sptePfn(lo, hi), (lo & PT_WRITABLE_LO) !== 0, (lo & EPT_DIRTY_LO) !== 0, mirror);
      } else {
        this.leafWalkTable(mirror, sptePfn(lo, hi), level - 1, g, s, e, cb);
      }
      if (left === 0) return;
    }
  }

  /* ---------------------------------------------------------------------------------------- */
  /* Accessed / dirty / write protection                                                       */
  /* ---------------------------------------------------------------------------------------- */

  /** Locate the leaf of `gfn`; returns the chunk offset or -1 (uses this.iter-free walk). */
  private leafOffset(gfn: number, mirror: boolean): { words: Int32Array; off: number; level: number } | null {
    const g = this.rootGfn(gfn, mirror);
    let t = this.rootOf(mirror);
    if (t < 0) return null;
    for (let level = this.rootLevel; ; level--) {
      const words = this.pool.chunks[t >>> 6]!;
      const off = SptPool.base(t) + (((g / PAGES_PER_LEVEL[level]!) & 511) << 1);
      const lo = words[off]!;
      if ((lo & SPTE_MMU_PRESENT_LO) === 0) return null;
      if (level === 1 || (lo & PT_PAGE_SIZE_LO) !== 0) {
        this.found.words = words;
        this.found.off = off;
        this.found.level = level;
        return this.found;
      }
      t = sptePfn(lo, words[off + 1]!);
    }
  }
  private readonly found: { words: Int32Array; off: number; level: number } = { words: new Int32Array(0), off: 0, level: 0 };

  /**
   * The CPU's A/D assist on an access that the leaf permits: sets Accessed, and Dirty for a
   * write through a writable SPTE. Returns false if no present leaf maps `gfn`.
   */
  setAccessedDirty(gfn: number, isPrivate: boolean, write: boolean): boolean {
    const f = this.leafOffset(gfn, isPrivate && this.hasMirror);
    if (!f) return false;
    const lo = f.words[f.off]!;
    let nlo = lo | EPT_ACCESSED_LO;
    if (write && (lo & PT_WRITABLE_LO) !== 0) nlo |= EPT_DIRTY_LO;
    f.words[f.off] = nlo;
    return true;
  }

  /**
   * fast_page_fault() / fast_pf_fix_direct_spte(): make a write-protected leaf writable
   * without the slow path, allowed only when MMU-writable is set. Returns true if the leaf
   * is now writable. Mirror (private) SPTEs never take the fast path.
   */
  makeWritable(gfn: number, isPrivate: boolean): boolean {
    const mirror = isPrivate && this.hasMirror;
    if (mirror) return false;
    const f = this.leafOffset(gfn, false);
    if (!f) return false;
    const lo = f.words[f.off]!;
    const hi = f.words[f.off + 1]!;
    if (lo & PT_WRITABLE_LO) return true;
    if ((hi & EPT_SPTE_MMU_WRITABLE_HI) === 0) return false;
    const nlo = lo | PT_WRITABLE_LO;
    f.words[f.off] = nlo;
    if (this.tracer?.enabled) {
      const n = PAGES_PER_LEVEL[f.level]!;
      const g = this.rootGfn(gfn, false);
      this.traceChanged(g - (g % n), f.level, lo, hi, nlo, hi);
    }
    return true;
  }

  /**
   * wrprot_gfn_range() (kvm_tdp_mmu_wrprot_slot): clear W on leaves at or above `minLevel`
   * mapping [start, end) in the direct root. MMU-writable stays set, so the next write
   * faults and the fast path can restore W. Returns whether an SPTE changed (flush needed).
   * Mirror roots are not walked: dirty logging is refused for guest_memfd slots.
   */
  writeProtectGfnRange(start: number, end: number, minLevel = 1): boolean {
    return this.clearLeafLoBits(start, end, minLevel, PT_WRITABLE_LO);
  }

  /**
   * writeProtectGfnMask() with every bit set, for each 32-gfn word of [start, end): clear W on
   * the 4K leaves of the range, visiting only what is mapped there.
   */
  writeProtect4kRange(start: number, end: number): boolean {
    return this.clearLeafLoBits(start, end, 1, PT_WRITABLE_LO, 1);
  }

  /** Clears `mask` (bits of the low half) in every present leaf of the direct root in [start, end). */
  private clearLeafLoBits(start: number, end: number, minLevel: number, mask: number, maxLevel = Infinity): boolean {
    this.checkAlive();
    const it = this.iter.start(this.pool, this.directRoot, this.rootLevel, minLevel, this.rootGfn(start, false), this.rootGfn(end, false));
    let changed = false;
    while (it.next()) {
      const lo = it.lo;
      if ((lo & SPTE_MMU_PRESENT_LO) === 0 || (it.level !== 1 && (lo & PT_PAGE_SIZE_LO) === 0)) continue;
      if (it.level > maxLevel) continue;
      if ((lo & mask) === 0) continue;
      const hi = it.hi;
      it.write((lo & ~mask) | 0, hi);
      if (this.tracer?.enabled) this.traceChanged(it.gfn, it.level, lo, hi, it.lo, hi);
      changed = true;
    }
    return changed;
  }

  /**
   * clear_dirty_pt_masked(wrprot = true) (kvm_arch_mmu_enable_log_dirty_pt_masked): clear W
   * on the 4K leaves of gfnBase + i for each bit i set in `mask32`. Returns whether an
   * SPTE changed.
   */
  writeProtectGfnMask(gfnBase: number, mask32: number): boolean {
    return this.clearBitsMasked(gfnBase, mask32 >>> 0, PT_WRITABLE_LO);
  }

  /** clear_dirty_pt_masked(wrprot = false): clear D on the masked 4K leaves (A/D enabled). */
  clearDirtyGfnMask(gfnBase: number, mask32: number): boolean {
    return this.clearBitsMasked(gfnBase, mask32 >>> 0, EPT_DIRTY_LO);
  }

  private clearBitsMasked(gfnBase: number, mask: number, bit: number): boolean {
    this.checkAlive();
    if (mask === 0) return false;
    const first = 31 - Math.clz32(mask & -mask); // __ffs(mask)
    const base = this.rootGfn(gfnBase, false);
    const it = this.iter.start(this.pool, this.directRoot, this.rootLevel, 1, base + first, base + 32);
    let changed = false;
    while (it.next()) {
      if (mask === 0) break;
      const lo = it.lo;
      if ((lo & SPTE_MMU_PRESENT_LO) === 0 || (it.level !== 1 && (lo & PT_PAGE_SIZE_LO) === 0)) continue;
      if (it.level > 1) continue;
      const b = it.gfn - base;
      if (b < 0 || b > 31 || ((mask >>> b) & 1) === 0) continue;
      mask = (mask & ~(1 << b)) >>> 0;
      if ((lo & bit) === 0) continue;
      const hi = it.hi;
      it.write((lo & ~bit) | 0, hi);
      if (this.tracer?.enabled) this.traceChanged(it.gfn, 1, lo, hi, it.lo, hi);
      changed = true;
    }
    return changed;
  }

  /**
   * clear_dirty_gfn_range() (kvm_tdp_mmu_clear_dirty_slot) with A/D bits: clear D on every
   * leaf mapping [start, end) in the direct root. Returns whether an SPTE changed.
   */
  clearDirtyGfnRange(start: number, end: number): boolean {
    return this.clearLeafLoBits(start, end, 1, EPT_DIRTY_LO);
  }

  /* ---------------------------------------------------------------------------------------- */
  /* Zap                                                                                       */
  /* ---------------------------------------------------------------------------------------- */

  /**
   * kvm_tdp_mmu_unmap_gfn_range() / tdp_mmu_zap_leafs(): zap the leaves mapping
   * [start, end) in the roots `filter` selects (KVM_FILTER_SHARED → direct,
   * KVM_FILTER_PRIVATE → mirror; everything is direct without a mirror root). A huge leaf
   * overlapping the range is zapped whole. Tables are kept. Mirror leaves call
   * remove_external_spte. Returns whether a TLB flush is needed; the caller flushes
   * (flushRemoteTlbs()).
   */
  zapGfnRange(start: number, end: number, filter: number, flush = false): boolean {
    this.checkAlive();
    if (start >= end) return flush;
    const types = filterToRootTypes(this.hasMirror, filter);
    if (types & KVM_DIRECT_ROOTS) flush = this.zapLeafs(false, start, end) || flush;
    if (types & KVM_MIRROR_ROOTS && this.mirrorRoot >= 0) flush = this.zapLeafs(true, start, end) || flush;
    return flush;
  }

  private zapLeafs(mirror: boolean, start: number, end: number): boolean {
    const it = this.iter.start(this.pool, this.rootOf(mirror), this.rootLevel, 1, this.rootGfn(start, mirror), this.rootGfn(end, mirror));
    const splitMirror = mirror && this.ext!.splitExternalSpt !== undefined;
    if (!splitMirror) return this.zapLeafsIn(it.table, this.rootLevel, it.nextLastLevelGfn, it.endGfn, mirror);
    let flush = false;
    while (it.next()) {
      const lo = it.lo;
      if ((lo & SPTE_MMU_PRESENT_LO) === 0 || (it.level !== 1 && (lo & PT_PAGE_SIZE_LO) === 0)) continue;
      if (splitMirror && it.level !== 1 && (it.gfn < start || it.gfn + PAGES_PER_LEVEL[it.level]! > end) && this.splitBoundaryLeaf(it)) {
        continue; // the walk steps down into the new table and zaps only the leaves in range
      }
      this.zapEntry(it, mirror);
      flush = true;
    }
    return flush;
  }

  /**
   * The pre-order walk of tdp_mmu_zap_leafs() (for_each_tdp_pte_min_level(PG_LEVEL_4K)) over
   * table `t` for root gfns [start, end), in gfn order, visiting only what can hold a leaf: a
   * table without present entries is skipped, and a table's scan starts at the range's first
   * entry (as the kernel's iterator does) and stops at its end or once as many present
   * entries were seen as the table holds. The kernel's iterator visits every entry of the
   * range; the leaves zapped, their order and the hooks called are the same, but a sparse
   * 1 TiB range costs O(present entries) instead of O(table entries), and a 4 KiB range
   * looks at one entry per level.
   */
  private zapLeafsIn(t: number, level: number, start: number, end: number, mirror: boolean): boolean {
    const pool = this.pool;
    let remaining = pool.presentCount[t]!;
    if (remaining === 0) return false;
    const per = PAGES_PER_LEVEL[level]!;
    const base = pool.gfnBase[t]!;
    const i0 = start > base ? Math.floor((start - base) / per) : 0;
    const i1 = Math.min(511, Math.ceil((end - base) / per) - 1);
    const words = pool.words(t);
    const o0 = SptPool.base(t);
    let flush = false;
    for (let i = i0; i <= i1 && remaining > 0; i++) {
      const off = o0 + (i << 1);
      const lo = words[off]!;
      if ((lo & SPTE_MMU_PRESENT_LO) === 0) continue;
      remaining--;
      const gfn = base + i * per;
      if (level === 1 || (lo & PT_PAGE_SIZE_LO) !== 0) {
        this.zapEntryAt(words, off, t, gfn, level, mirror);
        flush = true;
      } else if (this.zapLeafsIn(sptePfn(lo, words[off + 1]!), level - 1, start > gfn ? start : gfn, end < gfn + per ? end : gfn + per, mirror)) {
        flush = true;
      }
    }
    return flush;
  }

  /**
   * A huge mirror leaf that straddles the edge of a zap range is split first, so private memory
   * outside the range survives (kvm_split_cross_boundary_leafs() of the TDX huge-page series,
   * not upstream; only with a split_external_spt hook). False when the split failed: the caller
   * zaps the whole leaf.
   */
  private splitBoundaryLeaf(it: TdpIter): boolean {
    const pool = this.pool;
    const child = pool.alloc(it.gfn, it.level - 1, it.table, it.index, true, false);
    pool.externalSpt[child] = this.allocExternalSpt();
    const rc = this.splitHugePage(it.words, it.off, it.gfn, it.level, it.lo, it.hi, child, true);
    if (rc !== 0) {
      this.externalPages?.freePage(pool.externalSpt[child]!);
      pool.release(child);
      return false;
    }
    it.reread();
    return true;
  }

  /**
   * tdp_mmu_iter_set_spte(iter, SHADOW_NONPRESENT_VALUE) under the write lock, with
   * handle_changed_spte() and, for mirror leaves, remove_external_spte().
   */
  private zapEntry(it: TdpIter, mirror: boolean): void {
    this.zapEntryAt(it.words, it.off, it.table, it.gfn, it.level, mirror);
    it.reread();
  }

  /** zapEntry() for the entry at `off` of table `table` (gfn and level of that entry) */
  private zapEntryAt(words: Int32Array, off: number, table: number, gfn: number, level: number, mirror: boolean): void {
    const lo = words[off]!;
    const hi = words[off + 1]!;
    words[off] = SHADOW_NONPRESENT_LO;
    words[off + 1] = SHADOW_NONPRESENT_HI;
    this.pool.presentCount[table]!--;
    if (this.tracer?.enabled) this.traceChanged(gfn, level, lo, hi, SHADOW_NONPRESENT_LO, SHADOW_NONPRESENT_HI);
    const leaf = level === 1 || (lo & PT_PAGE_SIZE_LO) !== 0;
    if (leaf) {
      this.accountLeaf(level, -1);
      if (mirror) this.ext!.removeExternalSpte?.(gfn, level, sptePfn(lo, hi));
    } else {
      this.handleRemovedPt(sptePfn(lo, hi), mirror);
    }
  }

  /**
   * handle_removed_pt(): a table left the paging structure. Each present entry is frozen,
   * its change handled (child tables recursively, leaf stats), mirror leaves removed from
   * the external table; then free_external_spt for a mirror table (a failure leaks the
   * external page on purpose: the TDX module may still own it) and the table is freed.
   */
  private handleRemovedPt(t: number, mirror: boolean): void {
    this.pdeGfn = -1; // the cached 4K table may be this one or below it
    this.pdeTable = -1;
    const pool = this.pool;
    const level = pool.level[t]!;
    const base = pool.gfnBase[t]!;
    const per = PAGES_PER_LEVEL[level]!;
    const words = pool.words(t);
    const o0 = SptPool.base(t);
    const tracing = this.tracer?.enabled === true;
    for (let i = 0; i < 512; i++) {
      const off = o0 + (i << 1);
      const lo = words[off]!;
      if ((lo & SPTE_MMU_PRESENT_LO) === 0) continue;
      const hi = words[off + 1]!;
      words[off] = FROZEN_SPTE_LO;
      words[off + 1] = FROZEN_SPTE_HI;
      const gfn = base + i * per;
      if (tracing) this.traceChanged(gfn, level, lo, hi, FROZEN_SPTE_LO, FROZEN_SPTE_HI);
      if (level === 1 || (lo & PT_PAGE_SIZE_LO) !== 0) {
        this.accountLeaf(level, -1);
        if (mirror) this.ext!.removeExternalSpte?.(gfn, level, sptePfn(lo, hi));
      } else {
        this.handleRemovedPt(sptePfn(lo, hi), mirror);
      }
    }
    if (mirror) {
      const spt = pool.externalSpt[t]!;
      const rc = this.ext!.freeExternalSpt?.(base, level, spt) ?? 0;
      if (rc !== 0) {
        // the vendor could not take the page back (tdx_sept_free_private_spt): leaked
        this.stats.external_spt_leaked++;
        this.externalPages?.leakPage(spt);
      } else {
        this.externalPages?.freePage(spt);
      }
    }
    if (tracing) this.tracer!.emit('kvm_mmu_prepare_zap_page', { gfn: base, level, mirror });
    pool.release(t);
  }

  /**
   * tdp_mmu_zap_root(): zap everything under a root in passes of growing granularity,
   * 4K → 2M → 1G → root level (each pass zaps entries at that level; a table zapped in a
   * later pass is already empty of leaves).
   */
  private zapRoot(mirror: boolean): boolean {
    const root = this.rootOf(mirror);
    if (root < 0) return false;
    // nothing present under the root: nothing to zap (a root holds only its own entries)
    if (this.pool.presentCount[root] === 0) return false;
    const end = PAGES_PER_LEVEL[this.rootLevel]! * 512;
    let zapped = false;
    for (const zapLevel of [1, 2, 3, this.rootLevel]) {
      const it = this.iter.start(this.pool, root, this.rootLevel, zapLevel, 0, end);
      while (it.next()) {
        if ((it.lo & SPTE_MMU_PRESENT_LO) === 0) continue;
        if (it.level > zapLevel) continue;
        this.zapEntry(it, mirror);
        zapped = true;
      }
    }
    return zapped;
  }

  /**
   * Release the page-table pool's buffers for reuse by later MMUs (explorer runs). Not a kernel
   * operation: nothing is zapped and no hook runs; the MMU must not be used afterwards.
   */
  dispose(): void {
    this.pool.dispose();
  }

  /** Tables in the pool (for tests of buffer reuse). */
  get poolChunkCount(): number {
    return this.pool.chunks.length;
  }

  /**
   * kvm_tdp_mmu_zap_all(): zap every SPTE of the direct root (the mmu-notifier release
   * path). Mirror roots are left alone: private memory is not reached through the HVA.
   * No flush: vCPUs can no longer run. Returns whether anything was zapped.
   */
  zapAllDirect(): boolean {
    this.checkAlive();
    return this.zapRoot(false);
  }

  /**
   * kvm_mmu_uninit_tdp_mmu(): invalidate and zap every root, the mirror root included, then
   * free the roots. For the mirror root this calls remove_external_spte for leaves and
   * free_external_spt for every table, bottom-up. The MMU cannot be used afterwards.
   */
  destroy(): void {
    if (this.destroyed) return;
    this.pdeGfn = -1;
    this.pdeTable = -1;
    this.zapRoot(false);
    this.zapRoot(true);
    this.pool.release(this.directRoot);
    if (this.mirrorRoot >= 0) this.pool.release(this.mirrorRoot);
    this.directRoot = -1;
    this.mirrorRoot = -1;
    this.destroyed = true;
  }

  /* ---------------------------------------------------------------------------------------- */
  /* Huge page recovery                                                                        */
  /* ---------------------------------------------------------------------------------------- */

  /**
   * kvm_tdp_mmu_recover_huge_pages() / recover_huge_pages_range() (arch/x86/kvm/mmu/tdp_mmu.c),
   * when dirty logging is turned off: every present non-leaf SPTE at 2M (KVM_MAX_HUGEPAGE_LEVEL
   * is 1G, which the model's hosts never back) whose range starts inside [start, end) and may be
   * mapped huge (`canMap(gfn, level)`: kvm_mmu_max_mapping_level()) is replaced in place by a
   * huge leaf built from its first present small leaf (make_huge_spte(): same permissions and
   * A/D bits, the address rounded down); the table below is freed. Direct root only. Returns
   * whether an SPTE changed (the caller flushes).
   */
  recoverHugePages(start: number, end: number, canMap: (gfn: number, level: number) => boolean): boolean {
    this.checkAlive();
    const pool = this.pool;
    const it = this.iter.start(pool, this.directRoot, this.rootLevel, 2, this.rootGfn(start, false), this.rootGfn(end, false));
    let changed = false;
    while (it.next()) {
      const lo = it.lo;
      if (it.level !== 2 || (lo & SPTE_MMU_PRESENT_LO) === 0 || (lo & PT_PAGE_SIZE_LO) !== 0) continue;
      const gfn = this.plainGfn(it.gfn, false);
      if (gfn < start || gfn >= end || !canMap(gfn, 2)) continue;
      // tdp_mmu_make_huge_spte(): the first present leaf below
      const child = sptePfn(lo, it.hi);
      const words = pool.words(child);
      const o0 = SptPool.base(child);
      let o = -1;
      for (let i = 0; i < 512; i++) {
        if ((words[o0 + (i << 1)]! & SPTE_MMU_PRESENT_LO) !== 0) {
          o = o0 + (i << 1);
          break;
        }
      }
      if (o < 0) continue;
      const hugeLo = (words[o]! | PT_PAGE_SIZE_LO) & ~(511 << 12);
      const hugeHi = words[o + 1]!;
      const oldHi = it.hi;
      it.write(hugeLo, hugeHi);
      if (this.tracer?.enabled) this.traceChanged(it.gfn, 2, lo, oldHi, hugeLo, hugeHi);
      this.handleRemovedPt(child, false);
      this.accountLeaf(2, 1);
      changed = true;
    }
    return changed;
  }

  /* ---------------------------------------------------------------------------------------- */
  /* Eager page splitting                                                                      */
  /* ---------------------------------------------------------------------------------------- */

  /**
   * kvm_tdp_mmu_try_split_huge_pages(): split every huge leaf overlapping [start, end) in
   * the direct root down to `targetLevel` (pre-order, so a 1G page becomes 2M pages which
   * are split in turn). Returns the number of 4K SPTEs created.
   */
  /**
   * Split every huge mirror leaf overlapping [start, end) (private gfns) down to `targetLevel`
   * through split_external_spt, as the TDX huge-page series does before it maps at the level a
   * guest's TDG.MEM.PAGE.ACCEPT asked for (tdx_check_accept_level() → kvm_split_boundary_leafs();
   * not upstream). Returns 0, or the first hook's -errno (the leaf then stays whole); -EIO
   * without a split_external_spt hook.
   */
  splitMirrorHugePages(start: number, end: number, targetLevel: number): number {
    this.checkAlive();
    if (!(targetLevel >= 1 && targetLevel <= 2)) throw new RangeError(`TdpMmu.splitMirrorHugePages: bad target level ${targetLevel}`);
    if (this.mirrorRoot < 0 || start >= end) return 0;
    const it = this.iter.start(this.pool, this.mirrorRoot, this.rootLevel, targetLevel + 1, this.rootGfn(start, true), this.rootGfn(end, true));
    while (it.next()) {
      const lo = it.lo;
      if ((lo & SPTE_MMU_PRESENT_LO) === 0 || (lo & PT_PAGE_SIZE_LO) === 0) continue;
      if (!this.ext!.splitExternalSpt) return -ERRNO.EIO;
      if (!this.splitBoundaryLeaf(it)) return -ERRNO.EIO;
    }
    return 0;
  }

  splitHugePages(start: number, end: number, targetLevel: number): number {
    this.checkAlive();
    if (!(targetLevel >= 1 && targetLevel <= 2)) throw new RangeError(`TdpMmu.splitHugePages: bad target level ${targetLevel}`);
    const pool = this.pool;
    const it = this.iter.start(pool, this.directRoot, this.rootLevel, targetLevel + 1, this.rootGfn(start, false), this.rootGfn(end, false));
    let created = 0;
    while (it.next()) {
      const lo = it.lo;
      if ((lo & SPTE_MMU_PRESENT_LO) === 0 || (lo & PT_PAGE_SIZE_LO) === 0) continue;
      const child = pool.alloc(it.gfn, it.level - 1, it.table, it.index, false, false);
      this.splitHugePage(it.words, it.off, it.gfn, it.level, lo, it.hi, child, false);
      it.reread();
      if (it.level === 2) created += 512;
    }
    return created;
  }
}
