/**
 * The dirty ring (virt/kvm/dirty_ring.c, include/linux/kvm_dirty_ring.h,
 * include/uapi/linux/kvm.h): one ring of `struct kvm_dirty_gfn` per vCPU, shared with the VMM
 * through an mmap of the vCPU fd at KVM_DIRTY_LOG_PAGE_OFFSET.
 *
 * The kernel pushes (slot, offset) with flags = KVM_DIRTY_GFN_F_DIRTY; the VMM harvests an
 * entry by setting KVM_DIRTY_GFN_F_RESET; KVM_RESET_DIRTY_RINGS walks each ring from its
 * reset_index while entries are harvested, marks them invalid (flags = 0), and write-protects
 * their gfns again (kvm_reset_dirty_gfn() → kvm_arch_mmu_enable_log_dirty_pt_masked()), with
 * runs of nearby offsets in one slot coalesced into one 64-bit mask.
 *
 * The entries live in a typed array with the kernel's layout (16 bytes each: u32 flags,
 * u32 slot, u64 offset), allocated a page (256 entries) at a time when first written: memory
 * follows what is touched, not the size the VMM asked for.
 */
import { KVM_USER_MEM_SLOTS, PAGE_SIZE } from '../uapi.js';
import type { KvmMemorySlot } from './memslot.js';
import type { KvmRunExit } from '../backend.js';

/** KVM_EXIT_DIRTY_RING_FULL: the vCPU's dirty ring is soft-full; KVM_RUN refuses to enter */
export const DIRTY_RING_FULL_EXIT: KvmRunExit = Object.freeze({ reason: 'KVM_EXIT_DIRTY_RING_FULL' });

/** struct kvm_dirty_gfn flags (include/uapi/linux/kvm.h) */
export const KVM_DIRTY_GFN_F_DIRTY = 1 << 0;
export const KVM_DIRTY_GFN_F_RESET = 1 << 1;
export const KVM_DIRTY_GFN_F_MASK = 0x3;
/** sizeof(struct kvm_dirty_gfn) */
export const KVM_DIRTY_GFN_SIZE = 16;
/** x86: the ring's pages start at this page offset of the vCPU fd (arch/x86/include/uapi/asm/kvm.h) */
export const KVM_DIRTY_LOG_PAGE_OFFSET = 64;
/** include/linux/kvm_dirty_ring.h: entries kept free so a vCPU can always finish what it started */
export const KVM_DIRTY_RING_RSVD_ENTRIES = 64;
/** include/linux/kvm_host.h: the largest ring (64K entries, 1 MiB) */
export const KVM_DIRTY_RING_MAX_ENTRIES = 65536;

/** entries per 4 KiB page of the ring */
const ENTRIES_PER_PAGE = PAGE_SIZE / KVM_DIRTY_GFN_SIZE;
/** u32 words per entry: flags, slot, offset lo, offset hi */
const WORDS = KVM_DIRTY_GFN_SIZE / 4;

/** One harvested entry as the VMM reads it. */
export interface KvmDirtyGfn {
  flags: number;
  /** as_id << 16 | slot id */
  slot: number;
  /** page offset within the slot */
  offset: number;
}

/** What a reset does to the MMU: kvm_arch_mmu_enable_log_dirty_pt_masked() on a slot. */
export interface DirtyRingResetHooks {
  /** kvm_arch_nr_memslot_as_ids() */
  nrAsIds(): number;
  /** id_to_memslot(__kvm_memslots(kvm, as_id), id) */
  idToMemslot(asId: number, id: number): KvmMemorySlot | null;
  /** write-protect the pages of `mask` (32 bits) from `gfnOffset` within the slot */
  enableDirtyLogPtMasked(slot: KvmMemorySlot, gfnOffset: number, mask: number): void;
}

/** struct kvm_dirty_ring */
export class KvmDirtyRing {
  /** entries (a power of two) */
  readonly size: number;
  /** size - kvm_dirty_ring_get_rsvd_entries() */
  readonly softLimit: number;
  /** the vCPU index (ring->index) */
  readonly index: number;
  /** u32: the next entry the kernel fills */
  dirtyIndex = 0;
  /** u32: the next entry a reset looks at */
  resetIndex = 0;
  /** KVM_REQ_DIRTY_RING_SOFT_FULL is pending on the vCPU */
  softFullRequest = false;
  /** the ring's pages, allocated when first written (vzalloc reads as zero) */
  private readonly pages: (Uint32Array | null)[];

  /** kvm_dirty_ring_alloc(): `bytes` is kvm->dirty_ring_size */
  constructor(index: number, bytes: number, rsvdEntries: number) {
    this.index = index;
    this.size = bytes / KVM_DIRTY_GFN_SIZE;
    this.softLimit = this.size - rsvdEntries;
    this.pages = new Array<Uint32Array | null>(Math.ceil(this.size / ENTRIES_PER_PAGE)).fill(null);
  }

  /** kvm_dirty_ring_used(): dirty_index - reset_index (u32) */
  get used(): number {
    return (this.dirtyIndex - this.resetIndex) >>> 0;
  }

  /** kvm_dirty_ring_soft_full() */
  get softFull(): boolean {
    return this.used >= this.softLimit;
  }

  /** kvm_dirty_ring_full() */
  get full(): boolean {
    return this.used >= this.size;
  }

  /** pages of the ring the model has allocated (for memory accounting) */
  get allocatedPages(): number {
    let n = 0;
    for (const p of this.pages) if (p !== null) n++;
    return n;
  }

  /**
   * kvm_dirty_ring_push(): fill the entry at dirty_index, publish it as DIRTY, and raise
   * KVM_REQ_DIRTY_RING_SOFT_FULL once the ring is soft-full. Returns false when the ring was
   * already completely full (the kernel's WARN_ON_ONCE; it overwrites the entry regardless).
   */
  push(slot: number, offset: number): boolean {
    const wasFull = this.full;
    const i = this.dirtyIndex & (this.size - 1);
    const page = this.page(i);
    const w = (i % ENTRIES_PER_PAGE) * WORDS;
    page[w + 1] = slot;
    page[w + 2] = offset >>> 0;
    page[w + 3] = Math.floor(offset / 2 ** 32);
    page[w] = KVM_DIRTY_GFN_F_DIRTY; // kvm_dirty_gfn_set_dirtied() after smp_wmb()
    this.dirtyIndex = (this.dirtyIndex + 1) >>> 0;
    if (this.softFull) this.softFullRequest = true;
    return !wasFull;
  }

  /**
   * kvm_dirty_ring_check_request() (vcpu_enter_guest()): with the request pending and the
   * ring still soft-full, the request stays and KVM_RUN exits with KVM_EXIT_DIRTY_RING_FULL;
   * a pending request on a ring that a reset drained is dropped.
   */
  checkRequest(): boolean {
    if (!this.softFullRequest) return false;
    if (this.softFull) return true;
    this.softFullRequest = false;
    return false;
  }

  /** entry `i` (ring position, any u32; masked) as the VMM's mapping shows it */
  entry(i: number): KvmDirtyGfn {
    const j = i & (this.size - 1);
    const page = this.pages[Math.floor(j / ENTRIES_PER_PAGE)];
    if (!page) return { flags: 0, slot: 0, offset: 0 };
    const w = (j % ENTRIES_PER_PAGE) * WORDS;
    return { flags: page[w]!, slot: page[w + 1]!, offset: page[w + 2]! + page[w + 3]! * 2 ** 32 };
  }

  /** the flags word of entry `i` */
  flagsAt(i: number): number {
    const j = i & (this.size - 1);
    const page = this.pages[Math.floor(j / ENTRIES_PER_PAGE)];
    return page ? page[(j % ENTRIES_PER_PAGE) * WORDS]! : 0;
  }

  /** the VMM stores `flags` into entry `i` through its shared mapping (e.g. F_RESET to harvest) */
  setFlags(i: number, flags: number): void {
    const j = i & (this.size - 1);
    this.page(j)[(j % ENTRIES_PER_PAGE) * WORDS] = flags >>> 0;
  }

  /**
   * kvm_dirty_ring_reset(): from reset_index, every harvested entry (F_RESET set) is made
   * invalid and its gfn re-protected; stops at the first entry not harvested. Returns the
   * number of entries reset.
   */
  reset(hooks: DirtyRingResetHooks): number {
    let count = 0;
    let curSlot = 0;
    let curOffset = 0;
    // the 64-bit `unsigned long mask` as two u32 halves; mask empty = no batch yet
    let lo = 0;
    let hi = 0;
    for (;;) {
      const j = this.resetIndex & (this.size - 1);
      const page = this.pages[Math.floor(j / ENTRIES_PER_PAGE)];
      const w = (j % ENTRIES_PER_PAGE) * WORDS;
      // kvm_dirty_gfn_harvested()
      if (!page || !(page[w]! & KVM_DIRTY_GFN_F_RESET)) break;
      const nextSlot = page[w + 1]!;
      const nextOffset = page[w + 2]! + page[w + 3]! * 2 ** 32;
      page[w] = 0; // kvm_dirty_gfn_set_invalid()
      this.resetIndex = (this.resetIndex + 1) >>> 0;
      count++;
      if (lo !== 0 || hi !== 0) {
        // try to coalesce with the current batch: same slot, within 64 pages
        if (nextSlot === curSlot) {
          const delta = nextOffset - curOffset;
          if (delta >= 0 && delta < 64) {
            if (delta < 32) lo = (lo | (1 << delta)) >>> 0;
            else hi = (hi | (1 << (delta - 32))) >>> 0;
            continue;
          }
          // a backwards visit: shift the mask up if no bit falls off the top
          if (delta > -64 && delta < 0 && fls64(lo, hi) + -delta <= 63) {
            const d = -delta;
            if (d >= 32) {
              hi = (lo << (d - 32)) >>> 0;
              lo = 0;
            } else {
              hi = ((hi << d) | (lo >>> (32 - d))) >>> 0;
              lo = (lo << d) >>> 0;
            }
            lo = (lo | 1) >>> 0;
            curOffset = nextOffset;
            continue;
          }
        }
        resetDirtyGfn(hooks, curSlot, curOffset, lo, hi);
      }
      curSlot = nextSlot;
      curOffset = nextOffset;
      lo = 1;
      hi = 0;
    }
    if (lo !== 0 || hi !== 0) resetDirtyGfn(hooks, curSlot, curOffset, lo, hi);
    return count;
  }

  private page(j: number): Uint32Array {
    const p = Math.floor((j & (this.size - 1)) / ENTRIES_PER_PAGE);
    let page = this.pages[p];
    if (!page) {
      page = new Uint32Array(ENTRIES_PER_PAGE * WORDS);
      this.pages[p] = page;
    }
    return page;
  }
}

/** __fls() of a non-zero 64-bit mask given as two u32 halves */
function fls64(lo: number, hi: number): number {
  return hi !== 0 ? 63 - Math.clz32(hi) : 31 - Math.clz32(lo);
}

/**
 * kvm_reset_dirty_gfn(): an entry naming a slot that no longer exists, or an offset past its
 * end, is dropped; otherwise the pages of the mask are write-protected again.
 */
function resetDirtyGfn(hooks: DirtyRingResetHooks, slot: number, offset: number, lo: number, hi: number): void {
  const asId = slot >>> 16;
  const id = slot & 0xffff;
  if (asId >= hooks.nrAsIds() || id >= KVM_USER_MEM_SLOTS) return;
  const memslot = hooks.idToMemslot(asId, id);
  if (memslot === null || offset + fls64(lo, hi) >= memslot.npages) return;
  if (lo !== 0) hooks.enableDirtyLogPtMasked(memslot, offset, lo);
  if (hi !== 0) hooks.enableDirtyLogPtMasked(memslot, offset + 32, hi);
}

/**
 * The checks of kvm_vm_ioctl_enable_dirty_log_ring() that depend on the size only, in the
 * kernel's order: a power of two; room for the reserved entries and at least a page; at most
 * KVM_DIRTY_RING_MAX_ENTRIES entries (E2BIG). Returns the errno name, or null.
 */
export function dirtyRingSizeError(size: number, rsvdEntries: number): 'EINVAL' | 'E2BIG' | null {
  if (size === 0 || (size & (size - 1)) !== 0) return 'EINVAL';
  if (size < rsvdEntries * KVM_DIRTY_GFN_SIZE || size < PAGE_SIZE) return 'EINVAL';
  if (size > KVM_DIRTY_RING_MAX_ENTRIES * KVM_DIRTY_GFN_SIZE) return 'E2BIG';
  return null;
}

/**
 * kvm_page_in_dirty_ring(): whether page `pgoff` of the vCPU fd is one of the ring's pages.
 */
export function kvmPageInDirtyRing(dirtyRingSize: number, pgoff: number): boolean {
  return pgoff >= KVM_DIRTY_LOG_PAGE_OFFSET && pgoff < KVM_DIRTY_LOG_PAGE_OFFSET + dirtyRingSize / PAGE_SIZE;
}
