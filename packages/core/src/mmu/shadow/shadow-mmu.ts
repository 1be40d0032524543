/**
 * The shadow MMU (arch/x86/kvm/mmu/mmu.c, paging_tmpl.h, mmu_internal.h): shadow pages keyed
 * by the guest translation they shadow (gfn + role) in the gfn hash, parent pointers and
 * rmaps, the per-SPTE `shadowed_translation` cache of (gfn, guest access) ("KVM: x86/mmu:
 * Cache the access bits of shadowed translations"), write-tracking of guest page-table pages,
 * unsync leaf pages, the emulated-write path, zapping and `kvm_mmu_zap_all_fast`'s
 * generation, rmap write-protection for dirty logging, and eager splitting of huge SPTEs
 * (`kvm_shadow_mmu_try_split_huge_pages`) from the cached access bits.
 *
 * Storage: `sp->spt` tables come from an `SptPool` (512 SPTEs as int32 halves per table; a
 * table id is what a non-leaf SPTE stores as its pfn); the rest of `struct kvm_mmu_page` is
 * parallel typed arrays indexed by table id. An `sptep` is `table * 512 + index`.
 * `shadowed_translation` is one Float64Array(512) per indirect page holding
 * `gfn * 4096 + access` (exact below 2^53: gfns below 2^41), as `gfn << PAGE_SHIFT | access`.
 *
 * The model is single-threaded under one mmu_lock: prepare-zap and commit-zap run back to
 * back, and the memory caches never run dry.
 */
import { kvmSlotDirtyTrackEnabled, type KvmMemorySlot } from '../../memslot/memslot.js';
import { KVM_MEMSLOT_INVALID, PAGE_SIZE } from '../../uapi.js';
import { ACC_ALL, ACC_EXEC_MASK, ACC_USER_MASK, ACC_WRITE_MASK, RET_PF_EMULATE, RET_PF_FIXED, RET_PF_RETRY, RET_PF_SPURIOUS, RET_PF_WRITE_PROTECTED } from '../mmu-internal.js';
import { SptPool, CHUNK_SHIFT } from '../spt-pool.js';
import { gfnRoundForLevel } from '../tdp-iter.js';
import { PT_PAGE_SIZE_LO, PT_WRITABLE_LO, SHADOW_NONPRESENT_HI, SHADOW_NONPRESENT_LO, SPTE_MMU_PRESENT_LO, pfnHi, pfnLo, sptePfn } from '../spte.js';
import type { KvmPageFault } from '../page-fault.js';
import type { MmuTracer } from '../tdp-mmu.js';
import { type GuestWalker, type GpteHalves, gpteAccess64, eptGpteAccess, gpteToGfn, PT_ACCESSED_MASK, PT_DIRTY_MASK, PT_PRESENT_MASK, PT64_NX_HI, VMX_EPT_ACCESS_BIT, VMX_EPT_DIRTY_BIT, VMX_EPT_RWX_MASK, isRsvdBitsSet, pt64Index, pt64IndexOf } from '../paging-tmpl.js';
import type { CpuRole } from '../guest-paging.js';
import { Rmap } from './rmap.js';
import {
  ROLE_DIRECT,
  ROLE_INVALID,
  ROLE_LEVEL_MASK,
  ROLE_PASSTHROUGH,
  type SpteFormat,
  childRole,
  roleAccess,
  roleDirect,
  roleGuestMode,
  roleLevel,
} from './mmu-page.js';

/** KVM_MMU_HASH_SHIFT: 4096 buckets */
export const KVM_MMU_HASH_SHIFT = 12;
/** KVM_MIN_FREE_MMU_PAGES / KVM_REFILL_PAGES (mmu.c) */
export const KVM_MIN_FREE_MMU_PAGES = 5;
export const KVM_REFILL_PAGES = 25;
/** KVM_MIN_ALLOC_MMU_PAGES and KVM_PERMILLE_MMU_PAGES (kvm_mmu_calculate_default_mmu_pages) */
export const KVM_MIN_ALLOC_MMU_PAGES = 64;
export const KVM_PERMILLE_MMU_PAGES = 20;
/** PTE_PREFETCH_NUM */
export const PTE_PREFETCH_NUM = 8;

/* GOLDEN_RATIO_64 (include/linux/hash.h) = 0x61C8864680B583EB, as 32-bit halves */
const GOLDEN_HI = 0x61c88646;
const GOLDEN_LO = 0x80b583eb;

/** kvm_page_table_hashfn(): hash_64(gfn, KVM_MMU_HASH_SHIFT) */
export function kvmPageTableHashfn(gfn: number): number {
  // hash_64(): the top bits of the low 64 bits of gfn * GOLDEN_RATIO_64, from 32-bit halves
  // (no BigInt): those top 32 bits are hi32(gl * GOLDEN_LO) + gl * GOLDEN_HI + gh * GOLDEN_LO
  // (mod 2^32), gfn = gh * 2^32 + gl
  const gl = gfn >>> 0;
  const gh = gfn > 0xffffffff ? (gfn / 2 ** 32) >>> 0 : 0;
  const top = (mulHi32(gl, GOLDEN_LO) + Math.imul(gl, GOLDEN_HI) + Math.imul(gh, GOLDEN_LO)) >>> 0;
  return top >>> (32 - KVM_MMU_HASH_SHIFT);
}

/** the high 32 bits of the 64-bit product of two u32s (16-bit pieces: every sum exact in a double) */
function mulHi32(a: number, b: number): number {
  const a0 = a & 0xffff;
  const a1 = a >>> 16;
  const b0 = b & 0xffff;
  const b1 = b >>> 16;
  const mid = a1 * b0 + a0 * b1;
  const midHi = Math.floor(mid / 65536);
  const low = a0 * b0 + (mid - midHi * 65536) * 65536;
  return a1 * b1 + midHi + Math.floor(low / 2 ** 32);
}

/** kvm_vcpu_read_guest_atomic() of guest page-table entries */
export interface GuestPteReader {
  /** one gpte (sync, gpte_changed, prefetch); false when the gfn cannot be read */
  readGpte(gpa: number, out: GpteHalves): boolean;
  /** `n` consecutive gptes of one page */
  readGptes(gpa: number, n: number, lo: Int32Array, hi: Int32Array): boolean;
}

/** What the shadow MMU needs from the VM. */
export interface ShadowMmuHost {
  /** __gfn_to_memslot() in address space 0 */
  gfnToMemslot(gfn: number): KvmMemorySlot | null;
  /** mark_page_dirty_in_slot() */
  markPageDirty(slot: KvmMemorySlot, gfn: number): void;
  /** kvm_flush_remote_tlbs() (the VM counts it too) */
  flushRemoteTlbs(): void;
  /** gfn_to_pfn_memslot_atomic(): a host page already present for the gfn (prefetch), or -1 */
  prefetchPfn(slot: KvmMemorySlot, gfn: number): number;
  /** kvm->mmu_invalidate_in_progress (prefetch is skipped while it is non-zero) */
  readonly mmuInvalidateInProgress: number;
  /** guest page-table reads (kvm_vcpu_read_guest_atomic()) */
  readonly guestPtes: GuestPteReader;
  /** the TDP MMU's part of kvm_mmu_slot_gfn_write_protect(): true when an SPTE changed */
  writeProtectTdpGfn?(gfn: number): boolean;
  /** where the MMU's trace events go (arch/x86/kvm/mmu/mmutrace.h names) */
  readonly tracer?: MmuTracer;
}

/** kvm_mmu_hugepage_adjust() for FNAME(fetch) / direct_map(): sets fault.goalLevel */
export interface HugepageAdjuster {
  hugepageAdjust(fault: KvmPageFault): void;
}

/** kvm->stat: the shadow MMU's counters under the kernel's names (x86.c kvm_vm_stats_desc) */
export interface ShadowMmuStats {
  pages_4k: number;
  pages_2m: number;
  pages_1g: number;
  mmu_shadow_zapped: number;
  mmu_pte_write: number;
  mmu_pde_zapped: number;
  mmu_flooded: number;
  mmu_recycled: number;
  mmu_cache_miss: number;
  /** an instantaneous counter: pages currently unsync */
  mmu_unsync: number;
  max_mmu_rmap_size: number;
  max_mmu_page_hash_collisions: number;
  /** KVM_GENERIC_VM_STATS: remote TLB flushes the shadow MMU asked for */
  remote_tlb_flush: number;
}

/** A violated rule the kernel WARNs about (e.g. the shadowed_translation mismatches). */
export interface ShadowWarning {
  readonly rule: string;
  readonly message: string;
}

export interface ShadowMmuOptions {
  format: SpteFormat;
  /** kvm->arch.n_max_mmu_pages (default: KVM_MIN_ALLOC_MMU_PAGES until setMaxMmuPages) */
  maxMmuPages?: number;
  /**
   * TEST ONLY: split huge SPTEs into child pages whose role.access is ACC_ALL instead of the
   * cached guest access (what eager splitting would do without shadowed_translation).
   */
  splitWithAccAll?: boolean;
}

const NONE = -1;

export class ShadowMmu {
  readonly pool = new SptPool();
  readonly rmap = new Rmap();
  readonly stats: ShadowMmuStats = {
    pages_4k: 0,
    pages_2m: 0,
    pages_1g: 0,
    mmu_shadow_zapped: 0,
    mmu_pte_write: 0,
    mmu_pde_zapped: 0,
    mmu_flooded: 0,
    mmu_recycled: 0,
    mmu_cache_miss: 0,
    mmu_unsync: 0,
    max_mmu_rmap_size: 0,
    max_mmu_page_hash_collisions: 0,
    remote_tlb_flush: 0,
  };
  /** WARN()s the kernel would print (the invariant checker reports them) */
  readonly warnings: ShadowWarning[] = [];
  readonly format: SpteFormat;
  /** kvm->arch.mmu_valid_gen (kvm_mmu_zap_all_fast flips it) */
  mmuValidGen = 0;
  /** kvm->arch.indirect_shadow_pages */
  indirectShadowPages = 0;
  /** kvm->arch.n_used_mmu_pages / n_max_mmu_pages */
  nUsedMmuPages = 0;
  nMaxMmuPages: number;
  splitWithAccAll: boolean;

  /* struct kvm_mmu_page fields by table id */
  private role = new Int32Array(64);
  private unsync = new Uint8Array(64);
  private unsyncChildren = new Uint16Array(64);
  private unsyncChildBitmap = new Uint32Array(64 * 16);
  private writeFloodingCount = new Uint8Array(64);
  private rootCount = new Int32Array(64);
  private validGen = new Uint8Array(64);
  private hashNext = new Int32Array(64);
  /** active_mmu_pages: newest at the head */
  private activePrev = new Int32Array(64);
  private activeNext = new Int32Array(64);
  private activeHead = NONE;
  private activeTail = NONE;
  /** first parent sptep + 1 (0: none); more parents in extraParents */
  private parent0 = new Float64Array(64);
  private readonly extraParents = new Map<number, number[]>();
  /** sp->shadowed_translation (null for direct pages) */
  private readonly shadowedTranslation: (Float64Array | null)[] = [];
  private readonly freeSt: Float64Array[] = [];
  private readonly hashHeads = new Int32Array(1 << KVM_MMU_HASH_SHIFT).fill(NONE);
  /** kvm_write_track: gfn → count (slot->arch.gfn_write_track) */
  private readonly writeTrack = new Map<number, number>();
  /** kvm_mmu_gfn_disallow_lpage() counts for gfns of shadowed 4K guest page tables, per 2M / 1G index */
  private readonly lpageDisallow2m = new Map<number, number>();
  private readonly lpageDisallow1g = new Map<number, number>();
  private readonly tmp: GpteHalves = { lo: 0, hi: 0 };
  private readonly prefetchPtesLo = new Int32Array(PTE_PREFETCH_NUM);
  private readonly prefetchPtesHi = new Int32Array(PTE_PREFETCH_NUM);
  /** the host's guest page-table reader (a field, so the reads are direct method calls) */
  private readonly ptes: GuestPteReader;

  constructor(
    private readonly host: ShadowMmuHost,
    opts: ShadowMmuOptions,
  ) {
    this.format = opts.format;
    this.ptes = host.guestPtes;
    this.nMaxMmuPages = opts.maxMmuPages ?? KVM_MIN_ALLOC_MMU_PAGES;
    this.splitWithAccAll = opts.splitWithAccAll ?? false;
  }

  /* ------------------------------------------------------------ SPTE access ------------ */

  spteLo(sptep: number): number {
    const t = sptep >>> 9;
    return this.pool.chunks[t >>> CHUNK_SHIFT]![SptPool.base(t) + 2 * (sptep & 511)]!;
  }
  spteHi(sptep: number): number {
    const t = sptep >>> 9;
    return this.pool.chunks[t >>> CHUNK_SHIFT]![SptPool.base(t) + 2 * (sptep & 511) + 1]!;
  }
  private setSpte(sptep: number, lo: number, hi: number): void {
    const t = sptep >>> 9;
    const w = this.pool.chunks[t >>> CHUNK_SHIFT]!;
    const o = SptPool.base(t) + 2 * (sptep & 511);
    const wasPresent = (w[o]! & SPTE_MMU_PRESENT_LO) !== 0;
    const present = (lo & SPTE_MMU_PRESENT_LO) !== 0;
    w[o] = lo;
    w[o + 1] = hi;
    if (wasPresent !== present) this.pool.presentCount[t] = this.pool.presentCount[t]! + (present ? 1 : -1);
  }
  private clearSpte(sptep: number): void {
    this.setSpte(sptep, SHADOW_NONPRESENT_LO, SHADOW_NONPRESENT_HI);
  }
  static isPresent(lo: number): boolean {
    return (lo & SPTE_MMU_PRESENT_LO) !== 0;
  }
  static isLarge(lo: number): boolean {
    return (lo & PT_PAGE_SIZE_LO) !== 0;
  }
  /** is_last_spte() */
  static isLast(lo: number, level: number): boolean {
    return level === 1 || (lo & PT_PAGE_SIZE_LO) !== 0;
  }
  isMmuWritable(lo: number, hi: number): boolean {
    return ((lo & this.format.mmuWritableLo) | (hi & this.format.mmuWritableHi)) !== 0;
  }
  /** the table a non-leaf SPTE points at (spte_to_child_sp) */
  static childOf(lo: number, hi: number): number {
    return sptePfn(lo, hi);
  }

  /* --------------------------------------------------------- kvm_mmu_page -------------- */

  spRole(sp: number): number {
    return this.role[sp]!;
  }
  spGfn(sp: number): number {
    return this.pool.gfnBase[sp]!;
  }
  spLevel(sp: number): number {
    return this.role[sp]! & ROLE_LEVEL_MASK;
  }
  spUnsync(sp: number): boolean {
    return this.unsync[sp] === 1;
  }
  spRootCount(sp: number): number {
    return this.rootCount[sp]!;
  }
  /** is_obsolete_sp(): invalid, or from before the last kvm_mmu_zap_all_fast */
  isObsolete(sp: number): boolean {
    return (this.role[sp]! & ROLE_INVALID) !== 0 || this.validGen[sp] !== this.mmuValidGen;
  }
  /** sp_has_gptes(): indirect and not passthrough */
  spHasGptes(sp: number): boolean {
    const r = this.role[sp]!;
    return (r & (ROLE_DIRECT | ROLE_PASSTHROUGH)) === 0;
  }

  /** kvm_mmu_page_get_gfn() */
  getGfn(sp: number, index: number): number {
    const st = this.shadowedTranslation[sp];
    if (st) return Math.floor(st[index]! / PAGE_SIZE);
    return this.pool.gfnBase[sp]! + index * 2 ** (9 * (this.spLevel(sp) - 1));
  }

  /** kvm_mmu_page_get_access(): the *guest* access being shadowed (direct: role.access) */
  getAccess(sp: number, index: number): number {
    const st = this.shadowedTranslation[sp];
    if (st) return st[index]! % PAGE_SIZE & ACC_ALL;
    return roleAccess(this.role[sp]!);
  }

  /** kvm_mmu_page_set_translation() */
  private setTranslation(sp: number, index: number, gfn: number, access: number): void {
    const st = this.shadowedTranslation[sp];
    if (st) {
      st[index] = gfn * PAGE_SIZE + access;
      return;
    }
    const ra = roleAccess(this.role[sp]!);
    if (access !== ra) this.warn('access mismatch under direct page', `access mismatch under direct page ${hex(this.spGfn(sp))} (expected ${ra}, got ${access})`);
    const expect = this.getGfn(sp, index);
    if (gfn !== expect) this.warn('gfn mismatch under direct page', `gfn mismatch under direct page ${hex(this.spGfn(sp))} (expected ${hex(expect)}, got ${hex(gfn)})`);
  }

  /** kvm_mmu_page_set_access() */
  private setAccess(sp: number, index: number, access: number): void {
    const st = this.shadowedTranslation[sp];
    if (st) {
      st[index] = Math.floor(st[index]! / PAGE_SIZE) * PAGE_SIZE + access;
      return;
    }
    const ra = roleAccess(this.role[sp]!);
    if (access !== ra) this.warn('access mismatch under direct page', `access mismatch under direct page ${hex(this.spGfn(sp))} (expected ${ra}, got ${access})`);
  }

  private warn(rule: string, message: string): void {
    this.warnings.push({ rule, message });
  }

  private ensureCap(t: number): void {
    if (t < this.role.length) return;
    let n = this.role.length;
    while (n <= t) n *= 2;
    this.role = grow(this.role, n);
    this.unsync = grow(this.unsync, n);
    this.unsyncChildren = grow(this.unsyncChildren, n);
    this.unsyncChildBitmap = grow(this.unsyncChildBitmap, n * 16);
    this.writeFloodingCount = grow(this.writeFloodingCount, n);
    this.rootCount = grow(this.rootCount, n);
    this.validGen = grow(this.validGen, n);
    this.hashNext = grow(this.hashNext, n);
    this.activePrev = grow(this.activePrev, n);
    this.activeNext = grow(this.activeNext, n);
    this.parent0 = grow(this.parent0, n);
  }

  /** kvm_mmu_available_pages() */
  availablePages(): number {
    return this.nMaxMmuPages > this.nUsedMmuPages ? this.nMaxMmuPages - this.nUsedMmuPages : 0;
  }

  /** kvm_mmu_change_mmu_pages(): the limit, zapping the oldest pages above it */
  setMaxMmuPages(n: number): void {
    if (this.nUsedMmuPages > n) this.zapOldestMmuPages(this.nUsedMmuPages - n);
    this.nMaxMmuPages = n;
  }

  /**
   * kvm_mmu_find_shadow_page(): a valid page with the gfn and role. An unsync indirect page
   * is synced first (kvm_sync_page; zapped if that fails); a different-role unsync 4K page
   * for the gfn is zapped when an upper-level page is wanted.
   */
  private findShadowPage(ctx: ShadowVcpuContext | null, gfn: number, role: number): number {
    const bucket = kvmPageTableHashfn(gfn);
    let collisions = 0;
    let found = NONE;
    const invalid: number[] = [];
    for (let sp = this.hashHeads[bucket]!; sp !== NONE; sp = this.hashNext[sp]!) {
      if (this.isObsolete(sp)) continue; // for_each_valid_sp
      if (this.pool.gfnBase[sp] !== gfn) {
        collisions++;
        continue;
      }
      if (this.role[sp] !== role) {
        // a new upper-level page for this gfn: the guest stopped using it as a leaf table
        if (roleLevel(role) > 1 && this.unsync[sp]) this.prepareZapPage(sp, invalid);
        continue;
      }
      if (roleDirect(this.role[sp]!)) {
        found = sp;
        break;
      }
      if (this.unsync[sp]) {
        if (ctx === null) break; // KVM_BUG_ON(!vcpu)
        const ret = this.syncPage(ctx, sp, invalid);
        if (ret < 0) break;
        if (ret > 0) this.flushRemoteTlbs();
      }
      this.writeFloodingCount[sp] = 0; // __clear_sp_write_flooding_count
      found = sp;
      break;
    }
    if (found === NONE) this.stats.mmu_cache_miss++;
    this.commitZapPage(invalid);
    if (collisions > this.stats.max_mmu_page_hash_collisions) this.stats.max_mmu_page_hash_collisions = collisions;
    return found;
  }

  /** kvm_mmu_alloc_shadow_page() */
  private allocShadowPage(gfn: number, role: number): number {
    const sp = this.pool.alloc(gfn, roleLevel(role), -1, 0, false, true);
    this.ensureCap(sp);
    this.role[sp] = role;
    this.unsync[sp] = 0;
    this.unsyncChildren[sp] = 0;
    this.unsyncChildBitmap.fill(0, sp * 16, sp * 16 + 16);
    this.writeFloodingCount[sp] = 0;
    this.rootCount[sp] = 0;
    this.validGen[sp] = this.mmuValidGen;
    this.parent0[sp] = 0;
    this.extraParents.delete(sp);
    if (!roleDirect(role)) this.shadowedTranslation[sp] = this.freeSt.pop() ?? new Float64Array(512);
    else this.shadowedTranslation[sp] = null;
    // list_add(&sp->link, &kvm->arch.active_mmu_pages)
    this.activePrev[sp] = NONE;
    this.activeNext[sp] = this.activeHead;
    if (this.activeHead !== NONE) this.activePrev[this.activeHead] = sp;
    this.activeHead = sp;
    if (this.activeTail === NONE) this.activeTail = sp;
    this.nUsedMmuPages++; // kvm_account_mmu_page
    const bucket = kvmPageTableHashfn(gfn);
    this.hashNext[sp] = this.hashHeads[bucket]!;
    this.hashHeads[bucket] = sp;
    if (this.spHasGptes(sp)) this.accountShadowed(sp);
    return sp;
  }

  /** __kvm_mmu_get_shadow_page() */
  getShadowPage(ctx: ShadowVcpuContext | null, gfn: number, role: number): number {
    let sp = this.findShadowPage(ctx, gfn, role);
    const created = sp === NONE;
    if (created) sp = this.allocShadowPage(gfn, role);
    const t = this.host.tracer;
    if (t?.enabled) t.emit('kvm_mmu_get_page', { sp, gfn, role: role >>> 0, created });
    return sp;
  }

  /**
   * kvm_mmu_get_child_sp(): -1 (-EEXIST) when `sptep` already points at a table, else the
   * page for (gfn, kvm_mmu_child_role(sptep, direct, access)).
   */
  getChildSp(ctx: ShadowVcpuContext | null, sptep: number, gfn: number, direct: boolean, access: number): number {
    const lo = this.spteLo(sptep);
    if (ShadowMmu.isPresent(lo) && !ShadowMmu.isLarge(lo)) return NONE;
    const role = childRole(this.role[sptep >>> 9]!, direct, access);
    return this.getShadowPage(ctx, gfn, role);
  }

  /** account_shadowed(): upper-level guest tables are write-tracked; 4K ones write-protected */
  private accountShadowed(sp: number): void {
    this.indirectShadowPages++;
    const gfn = this.pool.gfnBase[sp]!;
    if (this.spLevel(sp) > 1) {
      this.writeTrackAdd(gfn);
      return;
    }
    this.lpageAdjust(gfn, 1);
    if (this.gfnWriteProtect(gfn, 1, true) || this.host.writeProtectTdpGfn?.(gfn)) this.flushRemoteTlbs();
  }

  /** unaccount_shadowed() */
  private unaccountShadowed(sp: number): void {
    this.indirectShadowPages--;
    const gfn = this.pool.gfnBase[sp]!;
    if (this.spLevel(sp) > 1) {
      this.writeTrackRemove(gfn);
      return;
    }
    this.lpageAdjust(gfn, -1);
  }

  private lpageAdjust(gfn: number, d: number): void {
    for (const [m, pages] of [
      [this.lpageDisallow2m, 512],
      [this.lpageDisallow1g, 512 * 512],
    ] as const) {
      const k = Math.floor(gfn / pages);
      const n = (m.get(k) ?? 0) + d;
      if (n === 0) m.delete(k);
      else m.set(k, n);
    }
  }

  /** kvm_mmu_gfn_disallow_lpage()'s part of lpage_info: a shadowed guest table inside the huge page */
  lpageDisallowed(gfn: number, level: number): boolean {
    if (level === 2) return this.lpageDisallow2m.has(Math.floor(gfn / 512));
    if (level === 3) return this.lpageDisallow1g.has(Math.floor(gfn / (512 * 512)));
    return false;
  }

  /** __kvm_write_track_add_gfn() */
  private writeTrackAdd(gfn: number): void {
    const n = this.writeTrack.get(gfn) ?? 0;
    this.writeTrack.set(gfn, n + 1);
    if (n === 0) {
      // the first tracker write-protects the gfn (kvm_mmu_gfn_disallow_lpage + slot write-protect)
      this.lpageAdjust(gfn, 1);
      if (this.gfnWriteProtect(gfn, 1, true) || this.host.writeProtectTdpGfn?.(gfn)) this.flushRemoteTlbs();
    }
  }
  private writeTrackRemove(gfn: number): void {
    const n = (this.writeTrack.get(gfn) ?? 0) - 1;
    if (n <= 0) {
      this.writeTrack.delete(gfn);
      this.lpageAdjust(gfn, -1);
    } else this.writeTrack.set(gfn, n);
  }

  /** kvm_gfn_is_write_tracked() */
  gfnIsWriteTracked(gfn: number): boolean {
    return this.writeTrack.has(gfn);
  }

  /** the write-tracked gfns (for the invariant checker) */
  writeTrackedGfns(): IterableIterator<number> {
    return this.writeTrack.keys();
  }

  /* ------------------------------------------------------- parents / unsync ------------- */

  private addParent(sp: number, sptep: number): void {
    if (this.parent0[sp] === 0) {
      this.parent0[sp] = sptep + 1;
      return;
    }
    const l = this.extraParents.get(sp);
    if (l) l.push(sptep);
    else this.extraParents.set(sp, [sptep]);
  }

  private removeParent(sp: number, sptep: number): void {
    if (this.parent0[sp] === sptep + 1) {
      const l = this.extraParents.get(sp);
      if (l && l.length > 0) {
        this.parent0[sp] = l.pop()! + 1;
        if (l.length === 0) this.extraParents.delete(sp);
      } else this.parent0[sp] = 0;
      return;
    }
    const l = this.extraParents.get(sp);
    const i = l ? l.indexOf(sptep) : -1;
    if (!l || i < 0) {
      this.warn('parent pte', `sp ${sp}: parent sptep ${sptep} not found`);
      return;
    }
    l.splice(i, 1);
    if (l.length === 0) this.extraParents.delete(sp);
  }

  /** the parent SPTEs of a page */
  parents(sp: number): number[] {
    const out: number[] = [];
    if (this.parent0[sp] !== 0) out.push(this.parent0[sp]! - 1);
    const l = this.extraParents.get(sp);
    if (l) out.push(...l);
    return out;
  }

  /** mark_unsync(): set the child bit in the parent page, propagating up on the first one */
  private markUnsync(sptep: number): void {
    const sp = sptep >>> 9;
    const i = sptep & 511;
    const w = sp * 16 + (i >>> 5);
    const bit = 1 << (i & 31);
    if (this.unsyncChildBitmap[w]! & bit) return;
    this.unsyncChildBitmap[w] = this.unsyncChildBitmap[w]! | bit;
    if (this.unsyncChildren[sp]!++) return;
    this.markParentsUnsync(sp);
  }
  /** kvm_mmu_mark_parents_unsync() */
  private markParentsUnsync(sp: number): void {
    for (const p of this.parents(sp)) this.markUnsync(p);
  }
  /** clear_unsync_child_bit() */
  private clearUnsyncChildBit(sp: number, i: number): void {
    const w = sp * 16 + (i >>> 5);
    const bit = 1 << (i & 31);
    if (!(this.unsyncChildBitmap[w]! & bit)) return;
    this.unsyncChildBitmap[w] = this.unsyncChildBitmap[w]! & ~bit;
    this.unsyncChildren[sp] = this.unsyncChildren[sp]! - 1;
  }

  /** kvm_unsync_page() */
  private unsyncPage(sp: number): void {
    const t = this.host.tracer;
    if (t?.enabled) t.emit('kvm_mmu_unsync_page', { sp, gfn: this.pool.gfnBase[sp]!, role: this.role[sp]! >>> 0 });
    this.stats.mmu_unsync++;
    this.unsync[sp] = 1;
    this.markParentsUnsync(sp);
  }
  /** kvm_unlink_unsync_page() */
  private unlinkUnsyncPage(sp: number): void {
    if (!this.unsync[sp]) return;
    this.unsync[sp] = 0;
    this.stats.mmu_unsync--;
  }

  /**
   * mmu_try_to_unsync_pages(): 0 when the gfn may be mapped writable (its 4K shadow pages are
   * unsynced), non-zero (-EPERM / -EEXIST) when the SPTE must stay read-only.
   */
  mmuTryToUnsyncPages(gfn: number, synchronizing: boolean, prefetch: boolean): number {
    if (this.gfnIsWriteTracked(gfn)) return -1;
    let r = 0;
    this.forEachGfnValidSpWithGptes(gfn, (sp) => {
      if (r) return;
      if (synchronizing) {
        r = -1;
        return;
      }
      if (this.unsync[sp]) return;
      if (prefetch) {
        r = -17;
        return;
      }
      if (this.spLevel(sp) !== 1) this.warn('unsync of a non-4K page', `sp ${sp} level ${this.spLevel(sp)} would be unsynced`);
      this.unsyncPage(sp);
    });
    return r;
  }

  /** for_each_gfn_valid_sp_with_gptes() */
  forEachGfnValidSpWithGptes(gfn: number, cb: (sp: number) => void): void {
    const list: number[] = [];
    for (let sp = this.hashHeads[kvmPageTableHashfn(gfn)]!; sp !== NONE; sp = this.hashNext[sp]!) {
      if (this.pool.gfnBase[sp] === gfn && !this.isObsolete(sp) && this.spHasGptes(sp)) list.push(sp);
    }
    for (const sp of list) cb(sp);
  }

  /* ------------------------------------------------------------ SPTE updates ------------ */

  private levelStat(level: number, d: number): void {
    if (level === 1) this.stats.pages_4k += d;
    else if (level === 2) this.stats.pages_2m += d;
    else this.stats.pages_1g += d;
  }

  /** __rmap_add(): record the translation, count the page, add to the gfn's rmap */
  private rmapAdd(sptep: number, gfn: number, access: number): void {
    const sp = sptep >>> 9;
    this.setTranslation(sp, sptep & 511, gfn, access);
    const level = this.spLevel(sp);
    this.levelStat(level, 1);
    this.rmap.add(gfn, level, sptep);
    if (this.rmap.maxRmapSize > this.stats.max_mmu_rmap_size) this.stats.max_mmu_rmap_size = this.rmap.maxRmapSize;
  }

  /** rmap_remove() */
  private rmapRemove(sptep: number): void {
    const sp = sptep >>> 9;
    const gfn = this.getGfn(sp, sptep & 511);
    if (!this.rmap.remove(gfn, this.spLevel(sp), sptep)) this.warn('rmap', `sptep ${sptep} (gfn ${hex(gfn)}) not in its rmap`);
  }

  /** drop_spte(): clear a leaf and take it out of its rmap (mmu_spte_clear_track_bits) */
  dropSpte(sptep: number): void {
    const lo = this.spteLo(sptep);
    this.clearSpte(sptep);
    if (ShadowMmu.isPresent(lo)) {
      this.levelStat(this.spLevel(sptep >>> 9), -1);
      this.rmapRemove(sptep);
    }
  }

  /** drop_parent_pte(): unlink a child table from one parent SPTE */
  private dropParentPte(child: number, sptep: number): void {
    this.removeParent(child, sptep);
    this.clearSpte(sptep);
  }

  /** drop_large_spte() */
  private dropLargeSpte(sptep: number, flush: boolean): void {
    const lo = this.spteLo(sptep);
    if (!ShadowMmu.isPresent(lo) || !ShadowMmu.isLarge(lo)) return;
    this.dropSpte(sptep);
    if (flush) this.flushRemoteTlbs();
  }

  /** make_nonleaf_spte() */
  private makeNonleafSpte(child: number): [number, number] {
    const f = this.format;
    const lo = SPTE_MMU_PRESENT_LO | f.presentLo | PT_WRITABLE_LO | f.userLo | f.xLo | f.accessedLo | pfnLo(child);
    return [lo | 0, (f.alwaysHi | pfnHi(child)) | 0];
  }

  /** __link_shadow_page() */
  private linkShadowPage(sptep: number, sp: number, flush: boolean): void {
    const lo = this.spteLo(sptep);
    if (ShadowMmu.isPresent(lo)) this.dropLargeSpte(sptep, flush);
    const [nlo, nhi] = this.makeNonleafSpte(sp);
    this.setSpte(sptep, nlo, nhi);
    this.addParent(sp, sptep);
    if (this.unsyncChildren[sp] || this.unsync[sp]) this.markUnsync(sptep);
  }

  /**
   * make_spte() for the shadow MMU: writable only when the host page is writable and
   * mmu_try_to_unsync_pages() allows it (else `wrprot`); A unless prefetched; D with W; a
   * writable SPTE in a dirty-logging slot marks the page dirty.
   */
  private readonly made = { lo: 0, hi: 0, wrprot: false };
  makeSpte(sp: number, slot: KvmMemorySlot | null, pteAccess: number, gfn: number, pfn: number, oldLo: number, prefetch: boolean, synchronizing: boolean, hostWritable: boolean): typeof this.made {
    const f = this.format;
    const level = this.spLevel(sp);
    let wrprot = false;
    let lo = SPTE_MMU_PRESENT_LO | f.presentLo;
    let hi = f.alwaysHi;
    if (!prefetch || synchronizing) lo |= f.accessedLo;
    if (pteAccess & ACC_EXEC_MASK) lo |= f.xLo;
    else hi |= f.nxHi;
    if (pteAccess & ACC_USER_MASK) lo |= f.userLo;
    if (level > 1) lo |= PT_PAGE_SIZE_LO;
    if (hostWritable) {
      lo |= f.hostWritableLo;
      hi |= f.hostWritableHi;
    } else pteAccess &= ~ACC_WRITE_MASK;
    lo |= pfnLo(pfn);
    hi |= pfnHi(pfn);
    if (pteAccess & ACC_WRITE_MASK) {
      lo |= PT_WRITABLE_LO | f.mmuWritableLo;
      hi |= f.mmuWritableHi;
      // an SPTE that was writable already went through the unsync check
      if (!(oldLo & PT_WRITABLE_LO) || !ShadowMmu.isPresent(oldLo)) {
        if (this.mmuTryToUnsyncPages(gfn, synchronizing, prefetch)) {
          wrprot = true;
          pteAccess &= ~ACC_WRITE_MASK;
          lo &= ~(PT_WRITABLE_LO | f.mmuWritableLo);
          hi &= ~f.mmuWritableHi;
        }
      }
    }
    if (pteAccess & ACC_WRITE_MASK) lo |= f.dirtyLo;
    if (lo & PT_WRITABLE_LO && slot && kvmSlotDirtyTrackEnabled(slot)) {
      if (level > 1) this.warn('huge writable SPTE in a dirty-logging slot', `gfn ${hex(gfn)} level ${level}`);
      this.host.markPageDirty(slot, gfn);
    }
    this.made.lo = lo | 0;
    this.made.hi = hi | 0;
    this.made.wrprot = wrprot;
    return this.made;
  }

  /**
   * mmu_set_spte(): install a leaf, replacing a child table or a different pfn; rmap_add for
   * a new mapping, kvm_mmu_page_set_access for an existing one (the patch's cache update).
   * `fault` null: prefetch.
   */
  mmuSetSpte(slot: KvmMemorySlot | null, sptep: number, pteAccess: number, gfn: number, pfn: number, fault: KvmPageFault | null): number {
    const sp = sptep >>> 9;
    const level = this.spLevel(sp);
    // the SPTE's halves in its table's chunk (spteLo / spteHi; a chunk never moves)
    const w = this.pool.chunks[sp >>> CHUNK_SHIFT]!;
    const o = SptPool.base(sp) + 2 * (sptep & 511);
    const lo0 = w[o]!;
    const hi0 = w[o + 1]!;
    const writeFault = fault !== null && fault.write;
    const hostWritable = fault !== null ? fault.mapWritable : true;
    const prefetch = fault === null || fault.prefetch;
    let wasRmapped = false;
    let flush = false;
    let ret = RET_PF_FIXED;
    if (slot === null) return RET_PF_EMULATE; // is_noslot_pfn: MMIO (not cached as an MMIO SPTE here)
    if (ShadowMmu.isPresent(lo0)) {
      if (level > 1 && !ShadowMmu.isLarge(lo0)) {
        this.dropParentPte(ShadowMmu.childOf(lo0, hi0), sptep);
        flush = true;
      } else if (pfn !== sptePfn(lo0, hi0)) {
        this.dropSpte(sptep);
        flush = true;
      } else wasRmapped = true;
    }
    const cur = w[o]!;
    const m = this.makeSpte(sp, slot, pteAccess, gfn, pfn, cur, prefetch, false, hostWritable);
    if (w[o] === m.lo && w[o + 1] === m.hi) ret = RET_PF_SPURIOUS;
    else {
      // mmu_spte_update(): losing MMU-writable needs a flush
      if (ShadowMmu.isPresent(cur) && this.isMmuWritable(cur, w[o + 1]!) && !this.isMmuWritable(m.lo, m.hi)) flush = true;
      this.setSpte(sptep, m.lo, m.hi);
    }
    if (m.wrprot && writeFault) ret = RET_PF_WRITE_PROTECTED;
    if (flush) this.flushRemoteTlbs();
    if (!wasRmapped) {
      if (ret === RET_PF_SPURIOUS) this.warn('spurious new mapping', `sptep ${sptep}`);
      this.rmapAdd(sptep, gfn, pteAccess);
    } else {
      // Already rmapped but the pte_access bits may have changed.
      this.setAccess(sp, sptep & 511, pteAccess);
    }
    return ret;
  }

  flushRemoteTlbs(): void {
    this.stats.remote_tlb_flush++;
    this.host.flushRemoteTlbs();
  }

  /* ------------------------------------------------------------------ zapping ----------- */

  /** mmu_page_zap_pte(): 1 when a parentless nested child was zapped with it */
  private mmuPageZapPte(sp: number, sptep: number, invalid: number[] | null): number {
    const lo = this.spteLo(sptep);
    if (!ShadowMmu.isPresent(lo)) return 0;
    if (ShadowMmu.isLast(lo, this.spLevel(sp))) {
      this.dropSpte(sptep);
      return 0;
    }
    const child = ShadowMmu.childOf(lo, this.spteHi(sptep));
    this.dropParentPte(child, sptep);
    // Recursively zap nested TDP SPs: parentless SPs are unlikely to be used again soon.
    if (invalid !== null && roleGuestMode(this.role[child]!) && this.parent0[child] === 0 && this.format.name === 'ept') {
      return this.prepareZapPage(child, invalid);
    }
    return 0;
  }

  /** mmu_zap_unsync_children(): zap the unsync pages below a non-4K page */
  private zapUnsyncChildren(parent: number, invalid: number[]): number {
    if (this.spLevel(parent) === 1) return 0;
    let zapped = 0;
    for (const sp of this.unsyncWalk(parent)) {
      this.prepareZapPage(sp, invalid);
      zapped++;
    }
    return zapped;
  }

  /** mmu_unsync_walk(): the unsync 4K pages reachable through unsync_child_bitmap */
  private unsyncWalk(parent: number): number[] {
    const out: number[] = [];
    const visit = (sp: number): void => {
      if (!this.unsyncChildren[sp]) return;
      for (let w = 0; w < 16; w++) {
        let bits = this.unsyncChildBitmap[sp * 16 + w]!;
        while (bits) {
          const b = 31 - Math.clz32(bits & -bits);
          bits &= bits - 1;
          const i = w * 32 + b;
          const sptep = sp * 512 + i;
          const lo = this.spteLo(sptep);
          if (!ShadowMmu.isPresent(lo) || ShadowMmu.isLast(lo, this.spLevel(sp))) {
            this.clearUnsyncChildBit(sp, i);
            continue;
          }
          const child = ShadowMmu.childOf(lo, this.spteHi(sptep));
          if (this.unsyncChildren[child]) visit(child);
          if (this.unsync[child]) out.push(child);
          else if (!this.unsyncChildren[child]) this.clearUnsyncChildBit(sp, i);
          if (this.unsync[child] && this.spLevel(child) === 1) this.clearUnsyncChildBit(sp, i);
        }
      }
    };
    visit(parent);
    return out;
  }

  /**
   * __kvm_mmu_prepare_zap_page(): unlink children and parents, unaccount, mark invalid; a
   * page that is no root goes on `invalid` to be freed. Returns the pages zapped.
   */
  prepareZapPage(sp: number, invalid: number[]): number {
    if (this.role[sp]! & ROLE_INVALID && invalid.includes(sp)) return 0;
    this.stats.mmu_shadow_zapped++;
    const t = this.host.tracer;
    if (t?.enabled) t.emit('kvm_mmu_prepare_zap_page', { sp, gfn: this.pool.gfnBase[sp]!, role: this.role[sp]! >>> 0, root_count: this.rootCount[sp]! });
    let zapped = this.zapUnsyncChildren(sp, invalid);
    // kvm_mmu_page_unlink_children()
    for (let i = 0; i < 512; i++) zapped += this.mmuPageZapPte(sp, sp * 512 + i, invalid);
    // kvm_mmu_unlink_parents()
    for (const p of this.parents(sp)) this.dropParentPte(sp, p);
    if (!(this.role[sp]! & ROLE_INVALID) && this.spHasGptes(sp)) this.unaccountShadowed(sp);
    if (this.unsync[sp]) this.unlinkUnsyncPage(sp);
    if (!this.rootCount[sp]) {
      zapped++;
      if (!invalid.includes(sp)) invalid.push(sp);
      this.activeUnlink(sp);
      this.nUsedMmuPages--; // kvm_unaccount_mmu_page
    } else {
      // an active root: off the active list, freed when its last user puts it
      this.activeUnlink(sp);
    }
    this.role[sp] = this.role[sp]! | ROLE_INVALID;
    return zapped;
  }

  private activeUnlink(sp: number): void {
    const p = this.activePrev[sp]!;
    const n = this.activeNext[sp]!;
    if (p === -2) return; // not on the list
    if (p !== NONE) this.activeNext[p] = n;
    else if (this.activeHead === sp) this.activeHead = n;
    if (n !== NONE) this.activePrev[n] = p;
    else if (this.activeTail === sp) this.activeTail = p;
    this.activePrev[sp] = -2;
    this.activeNext[sp] = -2;
  }

  /** kvm_mmu_commit_zap_page(): flush once, then free the pages */
  commitZapPage(invalid: number[]): void {
    if (invalid.length === 0) return;
    this.flushRemoteTlbs();
    for (const sp of invalid) this.freeShadowPage(sp);
    invalid.length = 0;
  }

  /** kvm_mmu_free_shadow_page(): off the hash, table and shadowed_translation freed */
  private freeShadowPage(sp: number): void {
    const bucket = kvmPageTableHashfn(this.pool.gfnBase[sp]!);
    if (this.hashHeads[bucket] === sp) this.hashHeads[bucket] = this.hashNext[sp]!;
    else {
      for (let x = this.hashHeads[bucket]!; x !== NONE; x = this.hashNext[x]!) {
        if (this.hashNext[x] === sp) {
          this.hashNext[x] = this.hashNext[sp]!;
          break;
        }
      }
    }
    const st = this.shadowedTranslation[sp];
    if (st) this.freeSt.push(st);
    this.shadowedTranslation[sp] = null;
    this.role[sp] = 0;
    this.pool.release(sp);
  }

  /** kvm_mmu_zap_page: prepare + commit */
  zapPage(sp: number): void {
    const invalid: number[] = [];
    this.prepareZapPage(sp, invalid);
    this.commitZapPage(invalid);
  }

  /** a vCPU drops its reference to a root (kvm_mmu_free_root → mmu_free_root_page) */
  /**
   * mmu_free_root_page(): `if (!--sp->root_count && sp->role.invalid)
   * kvm_mmu_prepare_zap_page()`: the last user of a root zapped while in use zaps it again,
   * now off the accounting (kvm_unaccount_mmu_page) and counted in mmu_shadow_zapped a
   * second time, then kvm_mmu_commit_zap_page() frees it.
   */
  putRoot(sp: number): void {
    if (this.rootCount[sp]! <= 0) return;
    this.rootCount[sp] = this.rootCount[sp]! - 1;
    if (this.rootCount[sp] === 0 && this.role[sp]! & ROLE_INVALID) {
      const invalid: number[] = [];
      this.prepareZapPage(sp, invalid);
      this.commitZapPage(invalid);
    }
  }
  getRoot(sp: number): void {
    this.rootCount[sp] = this.rootCount[sp]! + 1;
  }

  /** kvm_mmu_zap_oldest_mmu_pages(): recycle from the tail of active_mmu_pages, skipping roots */
  private zapOldestMmuPages(n: number): number {
    const invalid: number[] = [];
    let total = 0;
    for (let sp = this.activeTail; sp !== NONE && total < n; ) {
      const prev = this.activePrev[sp]!;
      if (!this.rootCount[sp]) total += this.prepareZapPage(sp, invalid);
      sp = prev === -2 ? this.activeTail : prev;
      if (invalid.length === 0 && total === 0 && sp === NONE) break;
    }
    this.commitZapPage(invalid);
    this.stats.mmu_recycled += total;
    return total;
  }

  /** make_mmu_pages_available() */
  makeMmuPagesAvailable(): number {
    const avail = this.availablePages();
    if (avail >= KVM_MIN_FREE_MMU_PAGES) return 0;
    this.zapOldestMmuPages(KVM_REFILL_PAGES - avail);
    return this.availablePages() > 0 ? 0 : -28; // -ENOSPC
  }

  /**
   * kvm_mmu_zap_all_fast(): flip mmu_valid_gen, so every existing page is obsolete (no
   * lookup finds it and vCPUs reload their roots), then zap the obsolete pages
   * (kvm_zap_obsolete_pages).
   */
  zapAllFast(): void {
    this.mmuValidGen = this.mmuValidGen ? 0 : 1;
    const invalid: number[] = [];
    for (let sp = this.activeTail; sp !== NONE; ) {
      const prev = this.activePrev[sp]!;
      // an invalid root (still referenced) was already zapped
      if (this.isObsolete(sp) && !(this.role[sp]! & ROLE_INVALID)) this.prepareZapPage(sp, invalid);
      sp = prev === -2 ? this.activeTail : prev;
    }
    this.commitZapPage(invalid);
  }

  /** every live page (for inspection and the invariant checker) */
  forEachPage(cb: (sp: number) => void): void {
    const out: number[] = [];
    for (let sp = this.activeHead; sp !== NONE; sp = this.activeNext[sp]!) out.push(sp);
    for (const sp of out) cb(sp);
  }

  /** the present leaf SPTEs of every live page: (sptep, sp, level, gfn, access, lo, hi) */
  forEachLeaf(cb: (sptep: number, sp: number, level: number, gfn: number, access: number, lo: number, hi: number) => void): void {
    this.forEachPage((sp) => {
      const level = this.spLevel(sp);
      if (!this.pool.presentCount[sp]) return;
      for (let i = 0; i < 512; i++) {
        const sptep = sp * 512 + i;
        const lo = this.spteLo(sptep);
        if (!ShadowMmu.isPresent(lo) || !ShadowMmu.isLast(lo, level)) continue;
        cb(sptep, sp, level, this.getGfn(sp, i), this.getAccess(sp, i), lo, this.spteHi(sptep));
      }
    });
  }

  /* ------------------------------------------------------------ rmap walkers ------------ */

  /** rmap_write_protect() / spte_write_protect() at (gfn, level); pt_protect clears MMU-writable too */
  private rmapWriteProtect(gfn: number, level: number, ptProtect: boolean): boolean {
    let flush = false;
    const f = this.format;
    this.rmap.forEach(gfn, level, (sptep) => {
      const lo = this.spteLo(sptep);
      const hi = this.spteHi(sptep);
      if (!(lo & PT_WRITABLE_LO) && !(ptProtect && this.isMmuWritable(lo, hi))) return;
      let nlo = lo & ~PT_WRITABLE_LO;
      let nhi = hi;
      if (ptProtect) {
        nlo &= ~f.mmuWritableLo;
        nhi &= ~f.mmuWritableHi;
      }
      this.setSpte(sptep, nlo | 0, nhi | 0);
      flush = true;
    });
    return flush;
  }

  /** kvm_mmu_slot_gfn_write_protect(): every level from `minLevel` up to 1G */
  gfnWriteProtect(gfn: number, minLevel: number, ptProtect: boolean): boolean {
    let flush = false;
    for (let level = minLevel; level <= 3; level++) flush = this.rmapWriteProtect(gfn, level, ptProtect) || flush;
    return flush;
  }

  /**
   * kvm_mmu_slot_remove_write_access() for [start, end): clear W (keeping MMU-writable, so
   * the next write only needs to log the page) on every leaf from `startLevel` up.
   */
  slotRemoveWriteAccess(start: number, end: number, startLevel: number): boolean {
    if (end - start > 4096 * 512) return this.removeWriteAccessLeaves(start, end, startLevel);
    let flush = false;
    for (let level = startLevel; level <= 3; level++) {
      this.forEachRmapInRange(start, end, level, (gfn) => {
        flush = this.rmapWriteProtect(gfn, level, false) || flush;
      });
    }
    return flush;
  }

  /**
   * writeProtectGfnMask() with every bit set, for each 32-gfn word of [start, end): the 4K
   * rmaps of the range (a large range by the live pages' leaves, not gfn by gfn)
   */
  writeProtect4kRange(start: number, end: number): boolean {
    let flush = false;
    this.forEachRmapInRange(start, end, 1, (gfn) => {
      flush = this.rmapWriteProtect(gfn, 1, false) || flush;
    });
    return flush;
  }

  /** kvm_mmu_write_protect_pt_masked(): the 4K rmaps of the gfns in `mask` from `base` */
  writeProtectGfnMask(base: number, mask: number): boolean {
    let flush = false;
    let m = mask >>> 0;
    while (m) {
      const b = 31 - Math.clz32(m & -m);
      m = (m & (m - 1)) >>> 0;
      flush = this.rmapWriteProtect(base + b, 1, false) || flush;
    }
    return flush;
  }

  /** kvm_zap_rmap() over [start, end) at every level: the mmu-notifier's unmap */
  unmapGfnRange(start: number, end: number): boolean {
    let flush = false;
    if (end - start > 4096 * 512) {
      // a whole slot: every leaf mapping a gfn of the range, page by page (the SPTEs the
      // rmap walk would visit)
      this.forEachPage((sp) => {
        const level = this.spLevel(sp);
        if (!this.pool.presentCount[sp]) return;
        const pages = 2 ** (9 * (level - 1));
        for (let i = 0; i < 512; i++) {
          const lo = this.spteLo(sp * 512 + i);
          if (!ShadowMmu.isPresent(lo) || !ShadowMmu.isLast(lo, level)) continue;
          const g = this.getGfn(sp, i);
          if (g + pages <= start || g >= end) continue;
          this.dropSpte(sp * 512 + i);
          flush = true;
        }
      });
      if (flush) this.flushRemoteTlbs();
      return flush;
    }
    for (let level = 1; level <= 3; level++) {
      this.forEachRmapInRange(start, end, level, (gfn) => {
        this.rmap.forEach(gfn, level, (sptep) => {
          this.dropSpte(sptep);
          flush = true;
        });
      });
    }
    if (flush) this.flushRemoteTlbs();
    return flush;
  }

  /**
   * The rmap heads at `level` overlapping [start, end) (walk_slot_rmaps). A small range is
   * walked head by head; a large one (a whole slot) by walking the live pages' leaves, which
   * visits the same SPTEs without touching every gfn of the range.
   */
  private forEachRmapInRange(start: number, end: number, level: number, cb: (gfn: number) => void): void {
    const pages = 2 ** (9 * (level - 1));
    const first = Math.floor(start / pages);
    const last = Math.floor((end - 1) / pages);
    if (last - first < 4096) {
      for (let i = first; i <= last; i++) cb(i * pages);
      return;
    }
    const heads = new Set<number>();
    this.forEachPage((sp) => {
      if (this.spLevel(sp) !== level || !this.pool.presentCount[sp]) return;
      for (let i = 0; i < 512; i++) {
        const lo = this.spteLo(sp * 512 + i);
        if (!ShadowMmu.isPresent(lo) || !ShadowMmu.isLast(lo, level)) continue;
        const g = this.getGfn(sp, i);
        if (g + pages > start && g < end) heads.add(g - (g % pages));
      }
    });
    for (const g of heads) cb(g);
  }

  /**
   * kvm_mmu_slot_remove_write_access() over a whole slot, leaf by leaf: the same SPTEs the
   * rmap walk visits, with W cleared and MMU-writable kept.
   */
  private removeWriteAccessLeaves(start: number, end: number, startLevel: number): boolean {
    let flush = false;
    const f = this.format;
    void f;
    this.forEachPage((sp) => {
      const level = this.spLevel(sp);
      if (level < startLevel || !this.pool.presentCount[sp]) return;
      const pages = 2 ** (9 * (level - 1));
      const w = this.pool.words(sp);
      const base = SptPool.base(sp);
      const direct = roleDirect(this.role[sp]!);
      if (direct) {
        const g0 = this.pool.gfnBase[sp]!;
        if (g0 >= end || g0 + pages * 512 <= start) return;
      }
      for (let i = 0; i < 512; i++) {
        const lo = w[base + 2 * i]!;
        if (!(lo & PT_WRITABLE_LO) || !(lo & SPTE_MMU_PRESENT_LO) || !ShadowMmu.isLast(lo, level)) continue;
        const g = this.getGfn(sp, i);
        if (g + pages <= start || g >= end) continue;
        w[base + 2 * i] = lo & ~PT_WRITABLE_LO;
        flush = true;
      }
    });
    return flush;
  }

  /* ------------------------------------------------------------ sync (unsync) ----------- */

  /**
   * FNAME(sync_spte)(vcpu, sp, i): re-read the gpte and bring the SPTE in line, using the
   * cached gfn and access bits: drop it when the gpte is gone or points elsewhere, leave it
   * when the access is unchanged, else record the new access and rebuild the SPTE (which
   * can only lose permissions). 0 nothing to flush, 1 flush, -1 the page must be zapped.
   */
  syncSpte(ctx: ShadowVcpuContext, sp: number, i: number): number {
    const sptep = sp * 512 + i;
    const lo0 = this.spteLo(sptep);
    if (!ShadowMmu.isPresent(lo0)) return 0;
    const st = this.shadowedTranslation[sp];
    if (!st) return 0;
    const pteGpa = this.pool.gfnBase[sp]! * PAGE_SIZE + i * 8;
    const g = this.tmp;
    if (!this.ptes.readGpte(pteGpa, g)) return -1;
    if (this.prefetchInvalidGpte(ctx.role, sptep, g.lo, g.hi)) return 1;
    const gfn = gpteToGfn(g.lo, g.hi);
    let pteAccess = roleAccess(this.role[sp]!) & gpteAccessOf(ctx.role, g.lo, g.hi);
    pteAccess = protectCleanGpte(ctx.role, pteAccess, g.lo);
    if (gfn !== this.getGfn(sp, i)) {
      this.dropSpte(sptep);
      return 1;
    }
    if (this.getAccess(sp, i) === pteAccess) return 0;
    this.setAccess(sp, i, pteAccess);
    const hi0 = this.spteHi(sptep);
    const hostWritable = ((lo0 & this.format.hostWritableLo) | (hi0 & this.format.hostWritableHi)) !== 0;
    const slot = this.host.gfnToMemslot(gfn);
    const m = this.makeSpte(sp, slot, pteAccess, gfn, sptePfn(lo0, hi0), lo0, true, true, hostWritable);
    const flush = this.isMmuWritable(lo0, hi0) && !this.isMmuWritable(m.lo, m.hi);
    this.setSpte(sptep, m.lo, m.hi);
    return flush ? 1 : 0;
  }

  /** FNAME(prefetch_invalid_gpte): not present, not accessed, or reserved bits → drop the SPTE */
  private prefetchInvalidGpte(role: CpuRole, sptep: number, lo: number, hi: number): boolean {
    const present = role.ept ? (lo & VMX_EPT_RWX_MASK) !== 0 : (lo & PT_PRESENT_MASK) !== 0;
    const aMask = role.ept ? VMX_EPT_ACCESS_BIT : PT_ACCESSED_MASK;
    if (present && !(role.haveAd && !(lo & aMask)) && !isRsvdBitsSet(role, lo, hi, 1)) return false;
    this.dropSpte(sptep);
    return true;
  }

  /** __kvm_sync_page() + kvm_sync_page(): sync every SPTE; zap the page when that fails */
  private syncPage(ctx: ShadowVcpuContext, sp: number, invalid: number[]): number {
    const t = this.host.tracer;
    if (t?.enabled) t.emit('kvm_mmu_sync_page', { sp, gfn: this.pool.gfnBase[sp]!, role: this.role[sp]! >>> 0 });
    let flush = 0;
    for (let i = 0; i < 512; i++) {
      const r = this.syncSpte(ctx, sp, i);
      if (r < 0) {
        this.prepareZapPage(sp, invalid);
        return -1;
      }
      flush |= r;
    }
    return flush;
  }

  /**
   * mmu_sync_children(): write-protect and sync every unsync page below `parent`
   * (kvm_mmu_sync_roots runs it on each root at CR3 load).
   */
  syncChildren(ctx: ShadowVcpuContext, parent: number): void {
    const invalid: number[] = [];
    let flush = false;
    for (;;) {
      const pages = this.unsyncWalk(parent);
      if (pages.length === 0) break;
      let prot = false;
      for (const sp of pages) prot = this.gfnWriteProtect(this.pool.gfnBase[sp]!, 1, true) || prot;
      if (prot) {
        this.flushRemoteTlbs();
        flush = false;
      }
      for (const sp of pages) {
        this.unlinkUnsyncPage(sp);
        flush = this.syncPage(ctx, sp, invalid) > 0 || flush;
        for (const p of this.parents(sp)) this.clearUnsyncChildBit(p >>> 9, p & 511);
      }
      this.commitZapPage(invalid);
    }
    if (flush) this.flushRemoteTlbs();
  }

  /**
   * __kvm_mmu_invalidate_addr() for INVLPG: walk the shadow tables for `addr`; sync the one
   * SPTE of an unsync page it reaches, zapping it when the sync fails.
   */
  invalidateAddr(ctx: ShadowVcpuContext, root: number, addr: number): void {
    let sp = root;
    let flush = false;
    for (let level = this.spLevel(root); level >= 1; level--) {
      const i = pt64Index(addr, level);
      const sptep = sp * 512 + i;
      if (this.unsync[sp]) {
        const ret = this.syncSpte(ctx, sp, i);
        if (ret < 0) this.mmuPageZapPte(sp, sptep, null);
        if (ret) flush = true;
      }
      if (!this.unsyncChildren[sp]) break;
      const lo = this.spteLo(sptep);
      if (!ShadowMmu.isPresent(lo) || ShadowMmu.isLast(lo, level)) break;
      sp = ShadowMmu.childOf(lo, this.spteHi(sptep));
    }
    if (flush) this.flushRemoteTlbs();
  }

  /* ---------------------------------------------------------------- fetch --------------- */

  /** FNAME(gpte_changed)(): the gpte the walk used is no longer in guest memory */
  private gpteChanged(gw: GuestWalker, level: number): boolean {
    const g = this.tmp;
    if (level === 1) {
      // read the PTE_PREFETCH_NUM-aligned group for pte_prefetch
      const gpa = gw.pteGpa[0]!;
      // the group's offset from the low 32 bits (gpa is a non-negative integer): no float modulo
      const inGroup = (gpa >>> 0) & (PTE_PREFETCH_NUM * 8 - 1);
      const base = gpa - inGroup;
      if (!this.ptes.readGptes(base, PTE_PREFETCH_NUM, this.prefetchPtesLo, this.prefetchPtesHi)) return true;
      const idx = inGroup >>> 3;
      return this.prefetchPtesLo[idx] !== gw.ptesLo[0] || this.prefetchPtesHi[idx] !== gw.ptesHi[0];
    }
    if (!this.ptes.readGpte(gw.pteGpa[level - 1]!, g)) return true;
    return (g.lo | 0) !== gw.ptesLo[level - 1] || (g.hi | 0) !== gw.ptesHi[level - 1];
  }

  /**
   * FNAME(fetch)(vcpu, fault, gw): link (or find) the indirect pages that shadow the guest's
   * tables down to the guest's leaf level, then the direct pages that shadow a guest huge
   * page with smaller mappings, then install the leaf with mmu_set_spte and prefetch.
   * `adjuster.hugepageAdjust` is kvm_mmu_hugepage_adjust (sets fault.goalLevel).
   */
  fetch(ctx: ShadowVcpuContext, fault: KvmPageFault, gw: GuestWalker, adjuster: HugepageAdjuster): number {
    const directAccess = gw.pteAccess;
    const topLevel = ctx.role.level;
    if (this.gpteChanged(gw, topLevel)) return RET_PF_RETRY;
    const root = ctx.root;
    if (root < 0 || this.isObsolete(root)) return RET_PF_RETRY;
    const addr = fault.addr;
    const aLo = addr >>> 0;
    const aHi = addr > 0xffffffff ? (addr / 2 ** 32) >>> 0 : 0;
    let sp = root;
    let level = this.spLevel(root);
    let sptep = sp * 512 + pt64IndexOf(aLo, aHi, level);
    const chunks = this.pool.chunks;
    for (; level > gw.level; ) {
      this.writeFloodingCount[sp] = 0; // clear_sp_write_flooding_count
      // the SPTE's halves in its table's chunk (spteLo / spteHi)
      let w = chunks[sp >>> CHUNK_SHIFT]!;
      let o = SptPool.base(sp) + 2 * (sptep & 511);
      let lo = w[o]!;
      // kvm_mmu_get_child_sp(): -EEXIST when the SPTE already points at a table
      const child = ShadowMmu.isPresent(lo) && !ShadowMmu.isLarge(lo) ? NONE : this.getShadowPage(ctx, gw.tableGfn[level - 2]!, childRole(this.role[sp]!, false, gw.ptAccess[level - 2]!));
      if (child !== NONE) {
        if (this.unsyncChildren[child]) {
          this.syncChildren(ctx, child);
        }
      }
      if (this.gpteChanged(gw, level - 1)) return RET_PF_RETRY;
      if (child !== NONE) {
        this.linkShadowPage(sptep, child, true);
        // a new chunk may have been added for the child; the parent's chunk never moves
        w = chunks[sp >>> CHUNK_SHIFT]!;
        o = SptPool.base(sp) + 2 * (sptep & 511);
        lo = w[o]!;
      }
      sp = ShadowMmu.childOf(lo, w[o + 1]!);
      level--;
      sptep = sp * 512 + pt64IndexOf(aLo, aHi, level);
    }
    adjuster.hugepageAdjust(fault);
    let baseGfn = fault.gfn;
    for (;;) {
      this.writeFloodingCount[sp] = 0;
      baseGfn = gfnRoundForLevel(fault.gfn, level);
      if (level === fault.goalLevel) break;
      this.validateDirectSpte(sptep, directAccess);
      const child = this.getChildSp(ctx, sptep, baseGfn, true, directAccess);
      if (child !== NONE) this.linkShadowPage(sptep, child, true);
      const lo = this.spteLo(sptep);
      sp = ShadowMmu.childOf(lo, this.spteHi(sptep));
      level--;
      sptep = sp * 512 + pt64IndexOf(aLo, aHi, level);
    }
    const ret = this.mmuSetSpte(fault.slot, sptep, gw.pteAccess, baseGfn, fault.pfn, fault);
    if (ret === RET_PF_SPURIOUS) return ret;
    this.ptePrefetch(ctx, gw, sptep);
    return ret;
  }

  /**
   * direct_map() for a direct (non-paging) root: direct pages down to the goal level with
   * ACC_ALL, then the leaf.
   */
  directMap(ctx: ShadowVcpuContext, fault: KvmPageFault, adjuster: HugepageAdjuster): number {
    const root = ctx.root;
    if (root < 0 || this.isObsolete(root)) return RET_PF_RETRY;
    adjuster.hugepageAdjust(fault);
    let sp = root;
    let level = this.spLevel(root);
    const addr = fault.gfn * PAGE_SIZE;
    let sptep = sp * 512 + pt64Index(addr, level);
    let baseGfn = fault.gfn;
    for (;;) {
      baseGfn = gfnRoundForLevel(fault.gfn, level);
      if (level === fault.goalLevel) break;
      const child = this.getChildSp(ctx, sptep, baseGfn, true, ACC_ALL);
      if (child !== NONE) this.linkShadowPage(sptep, child, true);
      const lo = this.spteLo(sptep);
      sp = ShadowMmu.childOf(lo, this.spteHi(sptep));
      level--;
      sptep = sp * 512 + pt64Index(addr, level);
    }
    const ret = this.mmuSetSpte(fault.slot, sptep, ACC_ALL, baseGfn, fault.pfn, fault);
    if (ret === RET_PF_SPURIOUS) return ret;
    this.directPtePrefetch(sptep);
    return ret;
  }

  /**
   * validate_direct_spte(): a direct child whose role.access differs from the guest's
   * current access for the huge page (e.g. the gpte became dirty) is unlinked so a page with
   * the right access is used.
   */
  private validateDirectSpte(sptep: number, directAccess: number): void {
    const lo = this.spteLo(sptep);
    if (!ShadowMmu.isPresent(lo) || ShadowMmu.isLarge(lo)) return;
    const child = ShadowMmu.childOf(lo, this.spteHi(sptep));
    if (roleAccess(this.role[child]!) === directAccess) return;
    this.dropParentPte(child, sptep);
    this.flushRemoteTlbs();
  }

  /** FNAME(pte_prefetch): the other gptes of the aligned group (4K leaves only) */
  private ptePrefetch(ctx: ShadowVcpuContext, gw: GuestWalker, sptep: number): void {
    const sp = sptep >>> 9;
    if (this.spLevel(sp) > 1) return;
    if (this.host.mmuInvalidateInProgress) return;
    if (roleDirect(this.role[sp]!)) {
      this.directPtePrefetch(sptep);
      return;
    }
    const first = sptep - (sptep & (PTE_PREFETCH_NUM - 1));
    // the group's SPTEs in the table's chunk (lo words at even offsets)
    const w = this.pool.chunks[sp >>> CHUNK_SHIFT]!;
    const o = SptPool.base(sp) + 2 * (first & 511);
    for (let k = 0; k < PTE_PREFETCH_NUM; k++) {
      const s = first + k;
      if (s === sptep) continue;
      if (ShadowMmu.isPresent(w[o + 2 * k]!)) continue;
      if (!this.prefetchGpte(ctx, sp, s, this.prefetchPtesLo[k]!, this.prefetchPtesHi[k]!)) break;
    }
    void gw;
  }

  /** FNAME(prefetch_gpte)(): map an accessed gpte's page if the host already has it */
  private prefetchGpte(ctx: ShadowVcpuContext, sp: number, sptep: number, lo: number, hi: number): boolean {
    if (this.prefetchInvalidGpte(ctx.role, sptep, lo, hi)) return false;
    const gfn = gpteToGfn(lo, hi);
    let pteAccess = roleAccess(this.role[sp]!) & gpteAccessOf(ctx.role, lo, hi);
    pteAccess = protectCleanGpte(ctx.role, pteAccess, lo);
    const slot = this.gfnToMemslotDirtyBitmap(gfn, (pteAccess & ACC_WRITE_MASK) !== 0);
    if (!slot) return false;
    const pfn = this.host.prefetchPfn(slot, gfn);
    if (pfn < 0) return false;
    this.mmuSetSpte(slot, sptep, pteAccess, gfn, pfn, null);
    return true;
  }

  /** gfn_to_memslot_dirty_bitmap(): no prefetch of writable SPTEs into a dirty-logging slot */
  private gfnToMemslotDirtyBitmap(gfn: number, noDirtyLog: boolean): KvmMemorySlot | null {
    const slot = this.host.gfnToMemslot(gfn);
    if (!slot || slot.flags & KVM_MEMSLOT_INVALID) return null;
    if (noDirtyLog && kvmSlotDirtyTrackEnabled(slot)) return null;
    return slot;
  }

  /**
   * __direct_pte_prefetch() / direct_pte_prefetch_many(): the other SPTEs of the aligned
   * group of a direct page, with sp->role.access — the access eager splitting must get right.
   */
  private directPtePrefetch(sptep: number): void {
    const sp = sptep >>> 9;
    if (this.spLevel(sp) > 1 || this.host.mmuInvalidateInProgress) return;
    const access = roleAccess(this.role[sp]!);
    const first = sptep - (sptep % PTE_PREFETCH_NUM);
    for (let k = 0; k < PTE_PREFETCH_NUM; k++) {
      const s = first + k;
      if (s === sptep || ShadowMmu.isPresent(this.spteLo(s))) continue;
      const gfn = this.getGfn(sp, s & 511);
      const slot = this.gfnToMemslotDirtyBitmap(gfn, (access & ACC_WRITE_MASK) !== 0);
      if (!slot) return;
      const pfn = this.host.prefetchPfn(slot, gfn);
      if (pfn < 0) return;
      this.mmuSetSpte(slot, s, access, gfn, pfn, null);
    }
  }

  /* ------------------------------------------------------- emulated writes -------------- */

  /**
   * kvm_mmu_track_write(): a write KVM emulated into a gfn that shadow pages shadow. Pages
   * written misaligned or flooded (3 writes without a fault through them) are zapped; else
   * the SPTEs that shadow the written gptes are zapped (the next fault rebuilds them).
   */
  trackWrite(gpa: number, bytes: number, gentryNonZero: boolean): void {
    if (!this.indirectShadowPages) return;
    const gfn = Math.floor(gpa / PAGE_SIZE);
    this.stats.mmu_pte_write++;
    const invalid: number[] = [];
    let flush = false;
    this.forEachGfnValidSpWithGptes(gfn, (sp) => {
      if (this.role[sp]! & ROLE_INVALID) return;
      if (detectWriteMisaligned(gpa, bytes) || this.detectWriteFlooding(sp)) {
        this.prepareZapPage(sp, invalid);
        this.stats.mmu_flooded++;
        return;
      }
      // get_written_sptes(): one 8-byte gpte
      const i = Math.floor((gpa % PAGE_SIZE) / 8);
      const sptep = sp * 512 + i;
      const lo = this.spteLo(sptep);
      this.mmuPageZapPte(sp, sptep, null);
      if (gentryNonZero && this.spLevel(sp) !== 1) this.stats.mmu_pde_zapped++;
      if (ShadowMmu.isPresent(lo)) flush = true;
    });
    // kvm_mmu_remote_flush_or_zap()
    if (invalid.length) this.commitZapPage(invalid);
    else if (flush) this.flushRemoteTlbs();
  }

  /** detect_write_flooding(): 4K pages can go unsync instead, so they never flood */
  private detectWriteFlooding(sp: number): boolean {
    if (this.spLevel(sp) === 1) return false;
    this.writeFloodingCount[sp] = Math.min(255, this.writeFloodingCount[sp]! + 1);
    return this.writeFloodingCount[sp]! >= 3;
  }

  /** clear_sp_write_flooding_count for every page on the walk (shadow_page_table_clear_flood) */
  clearFlood(root: number, addr: number): void {
    let sp = root;
    for (let level = this.spLevel(root); level >= 1; level--) {
      this.writeFloodingCount[sp] = 0;
      const sptep = sp * 512 + pt64Index(addr, level);
      const lo = this.spteLo(sptep);
      if (!ShadowMmu.isPresent(lo) || ShadowMmu.isLast(lo, level)) break;
      sp = ShadowMmu.childOf(lo, this.spteHi(sptep));
    }
  }

  /* ------------------------------------------------------ eager page splitting ---------- */

  /**
   * kvm_shadow_mmu_try_split_huge_pages() for [start, end) down to `targetLevel`: each huge
   * SPTE of a nested (guest_mode) page becomes a direct child page whose role.access is the
   * *cached* guest access of the huge SPTE (kvm_mmu_page_get_access), filled with
   * make_small_spte() and rmapped. Returns the number of SPTEs created.
   */
  trySplitHugePages(start: number, end: number, targetLevel: number): number {
    let created = 0;
    for (let level = 3; level > targetLevel; level--) {
      const huge: number[] = [];
      this.forEachPage((sp) => {
        if (this.spLevel(sp) !== level || !this.pool.presentCount[sp]) return;
        const pages = 2 ** (9 * (level - 1));
        for (let i = 0; i < 512; i++) {
          const sptep = sp * 512 + i;
          const lo = this.spteLo(sptep);
          if (!ShadowMmu.isPresent(lo) || !ShadowMmu.isLarge(lo)) continue;
          const g = this.getGfn(sp, i);
          if (g + pages > start && g < end) huge.push(sptep);
        }
      });
      for (const sptep of huge) {
        const sp = sptep >>> 9;
        // TDP MMU is enabled, so rmap only contains nested MMU SPs.
        if (!roleGuestMode(this.role[sp]!)) {
          this.warn('split of a non-nested huge SPTE', `sptep ${sptep}`);
          continue;
        }
        if (this.unsync[sp] || this.role[sp]! & ROLE_INVALID) continue;
        const lo = this.spteLo(sptep);
        if (!ShadowMmu.isPresent(lo) || !ShadowMmu.isLarge(lo)) continue;
        if (this.availablePages() <= KVM_MIN_FREE_MMU_PAGES) break; // -ENOSPC
        created += this.splitHugePage(sptep);
      }
    }
    return created;
  }

  /** shadow_mmu_split_huge_page() + shadow_mmu_get_sp_for_split() */
  private splitHugePage(hugeSptep: number): number {
    const hugeSp = hugeSptep >>> 9;
    const index = hugeSptep & 511;
    const gfn = this.getGfn(hugeSp, index);
    const access = this.splitWithAccAll ? ACC_ALL : this.getAccess(hugeSp, index);
    const t = this.host.tracer;
    if (t?.enabled) t.emit('kvm_mmu_split_huge_page', { gfn, level: this.spLevel(hugeSp), access });
    const role = childRole(this.role[hugeSp]!, true, access);
    const sp = this.getShadowPage(null, gfn, role);
    const hugeLo = this.spteLo(hugeSptep);
    const hugeHi = this.spteHi(hugeSptep);
    const level = this.spLevel(sp);
    let flush = false;
    let created = 0;
    const w = this.pool.words(sp);
    const base = SptPool.base(sp);
    const stride = 2 ** (9 * (level - 1));
    // __rmap_add()'s kvm_mmu_page_set_translation() on a direct page only WARNs when the
    // access or gfn disagree with the role; both come from the role here, so check once
    this.setTranslation(sp, 0, gfn, roleAccess(role));
    const hugePfn = sptePfn(hugeLo, hugeHi);
    const loFlags = (hugeLo & 0xfff & (level === 1 ? ~PT_PAGE_SIZE_LO : -1)) | 0;
    const hiFlags = hugeHi & ~0xfffff;
    let runStart = -1;
    for (let i = 0; i <= 512; i++) {
      const lo0 = i < 512 ? w[base + 2 * i]! : SPTE_MMU_PRESENT_LO;
      if (ShadowMmu.isPresent(lo0)) {
        // an SPTE the page already had (the page is shared by aliases of this huge page)
        if (i < 512) flush = flush || !ShadowMmu.isLast(lo0, level);
        if (runStart >= 0) {
          const n = i - runStart;
          this.rmap.addRun(gfn + runStart * stride, level, sp * 512 + runStart, n);
          created += n;
          runStart = -1;
        }
        continue;
      }
      // make_small_spte(): the huge SPTE's bits, pfn + i * pages of the child level
      const pfn = hugePfn + i * stride;
      w[base + 2 * i] = loFlags | pfnLo(pfn);
      w[base + 2 * i + 1] = hiFlags | pfnHi(pfn);
      if (runStart < 0) runStart = i;
    }
    this.pool.presentCount[sp] = this.pool.presentCount[sp]! + created;
    this.levelStat(level, created);
    if (this.rmap.maxRmapSize > this.stats.max_mmu_rmap_size) this.stats.max_mmu_rmap_size = this.rmap.maxRmapSize;
    // __link_shadow_page(): replaces the huge SPTE (drop_large_spte) with the table
    this.linkShadowPage(hugeSptep, sp, flush);
    return created;
  }

  /** bytes of shadow-MMU metadata: tables, per-page fields, shadowed_translation, rmaps */
  metadataBytes(): number {
    let b = this.pool.metadataBytes();
    b += this.role.byteLength + this.unsync.byteLength + this.unsyncChildren.byteLength + this.unsyncChildBitmap.byteLength;
    b += this.writeFloodingCount.byteLength + this.rootCount.byteLength + this.validGen.byteLength + this.hashNext.byteLength;
    b += this.activePrev.byteLength + this.activeNext.byteLength + this.parent0.byteLength + this.hashHeads.byteLength;
    for (const st of this.shadowedTranslation) if (st) b += st.byteLength;
    b += this.rmap.metadataBytes();
    return b;
  }
}

/** The per-vCPU part of the shadow MMU a fault needs (struct kvm_mmu: cpu_role, root) */
export interface ShadowVcpuContext {
  role: CpuRole;
  /** root page id (-1: none loaded) */
  root: number;
}

/** FNAME(gpte_access) of either format */
export function gpteAccessOf(role: CpuRole, lo: number, hi: number): number {
  if (role.ept) return eptGpteAccess(lo & VMX_EPT_RWX_MASK);
  return gpteAccess64(lo, hi & PT64_NX_HI ? 0 : 1);
}

/** FNAME(protect_clean_gpte) */
export function protectCleanGpte(role: CpuRole, access: number, lo: number): number {
  if (!role.haveAd) return access;
  const d = role.ept ? VMX_EPT_DIRTY_BIT : PT_DIRTY_MASK;
  return lo & d ? access : access & ~ACC_WRITE_MASK;
}

/** detect_write_misaligned() for 8-byte gptes: a 1-byte write of a gpte's first byte is fine */
export function detectWriteMisaligned(gpa: number, bytes: number): boolean {
  const offset = gpa % PAGE_SIZE;
  if (!(offset & 7) && bytes === 1) return false;
  let misaligned = ((offset ^ (offset + bytes - 1)) & ~7) !== 0;
  misaligned = misaligned || bytes < 4;
  return misaligned;
}

function hex(n: number): string {
  return '0x' + n.toString(16);
}

type AnyTyped = Float64Array | Uint8Array | Int32Array | Uint16Array | Uint32Array;
function grow<T extends AnyTyped>(a: T, n: number): T {
  const b = new (a.constructor as new (n: number) => T)(n);
  b.set(a as never);
  return b;
}
