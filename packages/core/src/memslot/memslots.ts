/**
 * `struct kvm_memslots` (one set per address space) and the per-VM memslot state of
 * `struct kvm` (all address spaces, nr_memslot_pages, dirty-log settings).
 *
 * The kernel keeps two sets per address space and swaps them; the model keeps one set and
 * performs each swap as one step (generation |= UPDATE_IN_PROGRESS, publish, then
 * generation += nr_as_ids), which is what readers observe between the model's steps.
 *
 * Structures: a B+ tree keyed by base_gfn (ordered insert/delete and overlap scans, like the
 * kernel's gfn rb-tree), a Map id -> slot (the id hash), and for lookups a flat index
 * (Float64Array of bases and ends + a parallel slot array) rebuilt lazily after a change, so a
 * gfn -> slot lookup is a binary search over typed arrays, fronted by a last-used-slot cache.
 */
import * as btreeModule from 'sorted-btree';
import { KVM_MEM_GUEST_MEMFD, KVM_MEM_LOG_DIRTY_PAGES, KVM_MEM_PCI_HOLE, KVM_MEMSLOT_INVALID, PAGE_SIZE } from '../uapi.js';
import { KvmMemorySlot } from './memslot.js';

type BTree<K, V> = InstanceType<typeof btreeModule.default.default<K, V>>;
// sorted-btree is CommonJS with `exports.default`; depending on the loader the class is the
// namespace's default or the default's default.
const BTreeCtor = ((btreeModule as unknown as { default: { default?: unknown } }).default.default ??
  (btreeModule as unknown as { default: unknown }).default) as new <K, V>(
  entries?: [K, V][],
  compare?: (a: K, b: K) => number,
  maxNodeSize?: number,
) => BTree<K, V>;

/** gfns are plain integers: a subtraction orders them (the default comparator handles any type) */
const compareGfn = (a: number, b: number): number => a - b;

/** KVM_MEMSLOT_GEN_UPDATE_IN_PROGRESS is bit 63; the model keeps it as `updateInProgress`. */
/**
 * kvm->slots_lock is held by an unfinished memslot change (MemslotChangeOp). The kernel would
 * sleep on the mutex; in a single-threaded model the caller would wait forever, so it gets this
 * error instead and may retry once the change is done (the explorer counts it as a spin).
 */
export class SlotsLockBusyError extends Error {
  constructor() {
    super('kvm->slots_lock is held by an unfinished memslot change');
    this.name = 'SlotsLockBusyError';
  }
}

export class KvmMemslots {
  readonly asId: number;
  /** slots->generation without bit 63 */
  generation: number;
  /** bit 63 of slots->generation: a swap is being published */
  updateInProgress = false;
  /** gfn tree: base_gfn -> slot */
  private readonly gfnTree: BTree<number, KvmMemorySlot> = new BTreeCtor<number, KvmMemorySlot>(undefined, compareGfn, 64);
  /** id hash: id -> slot */
  private readonly idHash = new Map<number, KvmMemorySlot>();
  /** slots->last_used_slot */
  private lastUsedSlot: KvmMemorySlot | null = null;
  /* lazily rebuilt lookup index */
  private indexValid = true;
  private bases = new Float64Array(0);
  private ends = new Float64Array(0);
  private indexSlots: KvmMemorySlot[] = [];
  private readonly pairScratch = [0, null] as unknown as [number, KvmMemorySlot];
  private minGfn = 0;
  private maxGfn = 0;
  private invBucketWidth = 1;
  private bucketFirst = new Int32Array(1);

  constructor(asId: number) {
    this.asId = asId;
    this.generation = asId;
  }

  get size(): number {
    return this.idHash.size;
  }

  /** kvm_memslots_empty() */
  isEmpty(): boolean {
    return this.idHash.size === 0;
  }

  /** id_to_memslot() */
  idToMemslot(id: number): KvmMemorySlot | null {
    return this.idHash.get(id) ?? null;
  }

  /**
   * __gfn_to_memslot() / search_memslots(): the slot containing `gfn`, INVALID ones included
   * (callers test KVM_MEMSLOT_INVALID), or null.
   */
  gfnToMemslot(gfn: number): KvmMemorySlot | null {
    const last = this.lastUsedSlot;
    if (last !== null && gfn >= last.baseGfn && gfn < last.baseGfn + last.npages) return last;
    if (!this.indexValid) this.rebuildIndex();
    if (!(gfn >= this.minGfn && gfn < this.maxGfn)) return null;
    // bucket -> first slot whose end lies beyond the bucket start; then the first slot
    // ending after gfn (usually that one), by a short scan or a binary search
    const b = Math.floor((gfn - this.minGfn) * this.invBucketWidth);
    let i = this.bucketFirst[b]!;
    const ends = this.ends;
    const hi = this.bucketFirst[b + 1]!;
    if (hi - i > 8) {
      let h = hi;
      while (i < h) {
        const mid = (i + h) >>> 1;
        if (ends[mid]! <= gfn) i = mid + 1;
        else h = mid;
      }
    } else {
      while (ends[i]! <= gfn) i++;
    }
    if (this.bases[i]! > gfn) return null;
    const slot = this.indexSlots[i]!;
    this.lastUsedSlot = slot;
    return slot;
  }

  /**
   * kvm_for_each_memslot_in_gfn_range(): every slot intersecting [start, end), by base_gfn.
   * `cb` returning true stops the walk.
   */
  forEachMemslotInGfnRange(start: number, end: number, cb: (slot: KvmMemorySlot) => boolean | void): void {
    if (start >= end) return;
    const first = this.gfnTree.getPairOrNextLower(start);
    let from = start;
    if (first !== undefined && first[1].baseGfn + first[1].npages > start) from = first[0];
    this.gfnTree.editRange(from, end, false, (_k, slot) => {
      if (cb(slot) === true) return { break: true };
      return undefined;
    });
  }

  /**
   * kvm_for_each_memslot_in_hva_range(): every slot (PCI hole slots have no hva and are
   * skipped) whose [userspace_addr, +npages*4096) intersects [hvaStart, hvaEnd). Slots may
   * share hvas, so this is a scan; `cb` returning true stops.
   */
  forEachMemslotInHvaRange(hvaStart: number, hvaEnd: number, cb: (slot: KvmMemorySlot) => boolean | void): void {
    if (hvaStart >= hvaEnd) return;
    for (const slot of this.idHash.values()) {
      if (slot.flags & KVM_MEM_PCI_HOLE) continue;
      const s = slot.userspaceAddr;
      if (s < hvaEnd && s + slot.npages * PAGE_SIZE > hvaStart && cb(slot) === true) return;
    }
  }

  /**
   * kvm_check_memslot_overlap(): does a slot other than `id` intersect [start, end)? Slots
   * never overlap each other, so only the slots just below `end` can (at most two are looked
   * at: the one below end, and when that is `id` itself, the one below it).
   */
  checkMemslotOverlap(id: number, start: number, end: number): boolean {
    let pair = this.gfnTree.getPairOrNextLower(end - 1, this.pairScratch);
    while (pair !== undefined) {
      const slot = pair[1];
      if (slot.baseGfn + slot.npages <= start) return false;
      if (slot.id !== id) return true;
      pair = this.gfnTree.nextLowerPair(slot.baseGfn, this.pairScratch);
    }
    return false;
  }

  /** the slots in base_gfn order */
  slots(): KvmMemorySlot[] {
    return this.gfnTree.valuesArray();
  }

  /** kvm_replace_memslot(): old -> new (either may be null), in one set */
  replace(old: KvmMemorySlot | null, next: KvmMemorySlot | null): void {
    if (old !== null) {
      if (next === null || next.id !== old.id) this.idHash.delete(old.id);
      if (this.lastUsedSlot === old) this.lastUsedSlot = next;
      if (next === null || next.baseGfn !== old.baseGfn) this.gfnTree.delete(old.baseGfn);
    }
    if (next !== null) {
      this.idHash.set(next.id, next);
      this.gfnTree.set(next.baseGfn, next, true);
    }
    this.indexValid = false;
  }

  /**
   * The lookup index: slots sorted by base_gfn as (bases, ends, slots), plus a bucket table
   * splitting [first base, last end) into a power-of-two number of equal power-of-two-wide
   * buckets, each holding the index of the first slot that ends after the bucket's start.
   * A lookup is then one bucket read and a scan of (usually) one slot; a bucket crowded by
   * a skewed layout falls back to a binary search inside the bucket.
   */
  private rebuildIndex(): void {
    const slots = this.gfnTree.valuesArray();
    const n = slots.length;
    if (this.bases.length !== n) {
      this.bases = new Float64Array(n);
      this.ends = new Float64Array(n);
    }
    for (let i = 0; i < n; i++) {
      const s = slots[i]!;
      this.bases[i] = s.baseGfn;
      this.ends[i] = s.baseGfn + s.npages;
    }
    this.indexSlots = slots;
    this.indexValid = true;
    if (n === 0) {
      this.minGfn = 0;
      this.maxGfn = 0;
      return;
    }
    this.minGfn = this.bases[0]!;
    this.maxGfn = this.ends[n - 1]!;
    let nb = 1;
    while (nb < n) nb *= 2;
    let width = 1;
    while (width * nb < this.maxGfn - this.minGfn) width *= 2;
    this.invBucketWidth = 1 / width;
    if (this.bucketFirst.length !== nb + 1) this.bucketFirst = new Int32Array(nb + 1);
    let i = 0;
    for (let b = 0; b <= nb; b++) {
      const bucketStart = this.minGfn + b * width;
      while (i < n - 1 && this.ends[i]! <= bucketStart) i++;
      this.bucketFirst[b] = i;
    }
  }
}

/** The memslot-related fields of `struct kvm`. */
export class KvmVmMemslots {
  /** kvm->__memslots[as_id] (the active set) */
  readonly spaces: KvmMemslots[];
  /** kvm->nr_memslot_pages */
  nrMemslotPages = 0;
  /** kvm->nr_memslots_dirty_logging */
  nrMemslotsDirtyLogging = 0;
  /** kvm->manual_dirty_log_protect (KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 args[0]) */
  manualDirtyLogProtect = 0;
  /** dirty ring without "ring + bitmap": !kvm_use_dirty_bitmap() (the model has no ring: false) */
  dirtyRingOnly = false;
  /** kvm->slots_lock is held by an in-flight memslot change */
  slotsLockHeld = false;

  constructor(nrAsIds: number) {
    this.spaces = [];
    for (let i = 0; i < nrAsIds; i++) this.spaces.push(new KvmMemslots(i));
  }

  get nrAsIds(): number {
    return this.spaces.length;
  }

  /** __kvm_memslots(kvm, as_id) */
  memslots(asId = 0): KvmMemslots {
    const s = this.spaces[asId];
    if (s === undefined) throw new RangeError(`address space ${asId} does not exist`);
    return s;
  }

  /** gfn_to_memslot() in address space `asId` (default 0) */
  gfnToMemslot(gfn: number, asId = 0): KvmMemorySlot | null {
    return this.memslots(asId).gfnToMemslot(gfn);
  }

  /** kvm_are_all_memslots_empty() */
  areAllMemslotsEmpty(): boolean {
    return this.spaces.every((s) => s.isEmpty());
  }

  /** Rules that hold between any two steps; each violation is a sentence naming the rule. */
  checkInvariants(): string[] {
    const out: string[] = [];
    let pages = 0;
    let logging = 0;
    for (const sp of this.spaces) {
      if (sp.updateInProgress) out.push(`address space ${sp.asId}: memslot generation still has UPDATE_IN_PROGRESS set`);
      if (sp.generation % this.nrAsIds !== sp.asId) {
        out.push(`address space ${sp.asId}: generation ${sp.generation} is not as_id modulo nr_as_ids`);
      }
      let prevEnd = -1;
      for (const slot of sp.slots()) {
        const name = `memslot ${sp.asId}:${slot.id}`;
        if (slot.asId !== sp.asId) out.push(`${name} sits in address space ${sp.asId} but says ${slot.asId}`);
        if (sp.idToMemslot(slot.id) !== slot) out.push(`${name} is in the gfn tree but not (or another copy) in the id hash`);
        if (slot.baseGfn < prevEnd) out.push(`${name} overlaps the slot below it`);
        prevEnd = slot.baseGfn + slot.npages;
        if (slot.npages <= 0) out.push(`${name} has no pages`);
        if (sp.gfnToMemslot(slot.baseGfn) !== slot || sp.gfnToMemslot(prevEnd - 1) !== slot) {
          out.push(`${name} is not found by gfn lookups of its own first and last gfn`);
        }
        if (slot.flags & KVM_MEMSLOT_INVALID && !this.slotsLockHeld) {
          out.push(`${name} is still KVM_MEMSLOT_INVALID after its change finished`);
        }
        if ((slot.flags & KVM_MEM_GUEST_MEMFD) !== 0 !== (slot.gmemFile !== null)) {
          out.push(`${name}: KVM_MEM_GUEST_MEMFD and the guest_memfd binding disagree`);
        }
        const logs = (slot.flags & KVM_MEM_LOG_DIRTY_PAGES) !== 0;
        if (logs && !(slot.flags & KVM_MEMSLOT_INVALID)) logging++;
        if (logs !== (slot.dirtyBitmap !== null) && !this.dirtyRingOnly) {
          out.push(`${name}: dirty bitmap ${slot.dirtyBitmap ? 'present without' : 'missing with'} KVM_MEM_LOG_DIRTY_PAGES`);
        }
        const b = slot.dirtyBitmap;
        if (b !== null) {
          if (b.length !== Math.ceil(slot.npages / 64) * 2) out.push(`${name}: dirty bitmap is not ALIGN(npages, 64) bits`);
          else if (slot.npages % 32 !== 0 && b[slot.npages >>> 5]! >>> (slot.npages % 32) !== 0) {
            out.push(`${name}: dirty bits set beyond the last page`);
          }
        }
        if (!(slot.flags & KVM_MEMSLOT_INVALID)) pages += slot.npages;
      }
      if (sp.size !== sp.slots().length) out.push(`address space ${sp.asId}: id hash and gfn tree hold different slot counts`);
    }
    if (!this.slotsLockHeld) {
      if (pages !== this.nrMemslotPages) out.push(`nr_memslot_pages is ${this.nrMemslotPages}, the slots hold ${pages} pages`);
      if (logging !== this.nrMemslotsDirtyLogging) {
        out.push(`nr_memslots_dirty_logging is ${this.nrMemslotsDirtyLogging}, ${logging} slots log dirty pages`);
      }
    }
    return out;
  }
}

/** Plain description of all memslot state (for tests, asserts and `ccmem explain`). */
export interface MemslotsSnapshot {
  nrMemslotPages: number;
  nrMemslotsDirtyLogging: number;
  manualDirtyLogProtect: number;
  spaces: {
    asId: number;
    generation: number;
    updateInProgress: boolean;
    slots: {
      id: number;
      baseGfn: number;
      npages: number;
      userspaceAddr: number;
      flags: number;
      gmemPgoff: number;
      hasGmemFile: boolean;
      dirtyBitmap: number[] | null;
    }[];
  }[];
}

export function memslotsSnapshot(vm: KvmVmMemslots): MemslotsSnapshot {
  return {
    nrMemslotPages: vm.nrMemslotPages,
    nrMemslotsDirtyLogging: vm.nrMemslotsDirtyLogging,
    manualDirtyLogProtect: vm.manualDirtyLogProtect,
    spaces: vm.spaces.map((sp) => ({
      asId: sp.asId,
      generation: sp.generation,
      updateInProgress: sp.updateInProgress,
      slots: sp.slots().map((s) => ({
        id: s.id,
        baseGfn: s.baseGfn,
        npages: s.npages,
        userspaceAddr: s.userspaceAddr,
        flags: s.flags,
        gmemPgoff: s.gmemPgoff,
        hasGmemFile: s.gmemFile !== null,
        dirtyBitmap: s.dirtyBitmap ? Array.from(s.dirtyBitmap) : null,
      })),
    })),
  };
}
