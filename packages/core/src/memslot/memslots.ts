/**
 * `struct kvm_memslots` (one set per address space) and the per-VM memslot state of
 * `struct kvm` (all address spaces, nr_memslot_pages, dirty-log settings).
 *
 * The kernel keeps two sets per address space and swaps them; the model keeps one set and
 * performs each swap as one step (generation |= UPDATE_IN_PROGRESS, publish, then
 * generation += nr_as_ids), which is what readers observe between the model's steps.
 *
 * Structures, as in include/linux/kvm_host.h `struct kvm_memslots`: a gfn tree (base_gfn ->
 * slot, the kernel's gfn_tree rbtree; here a BTreeMap whose values index a slot table), an
 * hva interval tree (the kernel's hva_tree, walked by kvm_for_each_memslot_in_hva_range();
 * here an augmented AVL IntervalTree over the same slot table) and the id hash. Each change
 * updates all three in O(log n); a gfn -> slot lookup is the last-used-slot cache, then
 * search_memslots(): one B+ tree descent, or, once the set has served as many lookups as it has
 * slots without a change, a search of a flat sorted copy of the gfn ranges (MemslotGfnIndex,
 * dropped by every change and rebuilt in O(n) only after that many lookups).
 */
import { BTreeMap } from '../btree-map.js';
import { IntervalTree } from '../interval-tree.js';
import { KVM_MEM_GUEST_MEMFD, KVM_MEM_LOG_DIRTY_PAGES, KVM_MEM_PCI_HOLE, KVM_MEMSLOT_INVALID, PAGE_SIZE } from '../uapi.js';
import { KvmMemorySlot } from './memslot.js';
import { MemslotGfnIndex } from './gfn-index.js';
import type { DirtyBitmap } from './dirty-bitmap.js';

/** PCI hole slots have no hva and stay out of the hva tree */
function hasHva(slot: KvmMemorySlot): boolean {
  return (slot.flags & KVM_MEM_PCI_HOLE) === 0;
}

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
  /** gfn tree: base_gfn -> index into `table` */
  private readonly gfnTree = new BTreeMap();
  /** the slots the gfn tree points at, by index; freed indexes are reused */
  private readonly table: (KvmMemorySlot | null)[] = [];
  private readonly freeIndexes: number[] = [];
  /** hva tree: [userspace_addr, +npages*4096) -> index into `table` (PCI hole slots have no hva) */
  private readonly hvaTree = new IntervalTree();
  /**
   * id hash: id -> slot. The kernel hashes ids into 128 buckets (kvm_memslots::id_hash);
   * ids are below KVM_MEM_SLOTS_NUM, so here the slot sits at index `id` of an array that
   * grows to the highest id used: O(1) without hashing, and a run of creations or lookups
   * by increasing id walks memory in order.
   */
  private readonly byId: (KvmMemorySlot | null)[] = [];
  private nrSlots = 0;
  /**
   * base_gfn and base_gfn + npages of each slot of `table`, by the same index: a lookup
   * checks the slot the tree found (and the last used one) against these numbers and reads
   * the slot object only once it is the answer, so a lookup does not wait on the previous
   * answer's object.
   */
  private slotBase = new Float64Array(64);
  private slotEnd = new Float64Array(64);
  /** slots->last_used_slot, and its gfn range [lastBase, lastEnd) (empty when null) */
  private lastUsedSlot: KvmMemorySlot | null = null;
  private lastBase = 0;
  private lastEnd = 0;
  /** flat sorted copy of the gfn ranges for lookups between changes */
  private readonly gfnIndex = new MemslotGfnIndex();
  /** lookups that used the tree since the last change (the index is rebuilt when this reaches the slot count) */
  private treeLookups = 0;

  constructor(asId: number) {
    this.asId = asId;
    this.generation = asId;
  }

  get size(): number {
    return this.nrSlots;
  }

  /** kvm_memslots_empty() */
  isEmpty(): boolean {
    return this.nrSlots === 0;
  }

  /** id_to_memslot() */
  idToMemslot(id: number): KvmMemorySlot | null {
    return this.byId[id] ?? null;
  }

  /**
   * __gfn_to_memslot() / search_memslots(): the slot containing `gfn`, INVALID ones included
   * (callers test KVM_MEMSLOT_INVALID), or null.
   */
  gfnToMemslot(gfn: number): KvmMemorySlot | null {
    if (gfn >= this.lastBase && gfn < this.lastEnd) return this.lastUsedSlot;
    const ix = this.gfnIndex;
    if (ix.valid || (++this.treeLookups >= this.nrSlots + 16 && this.rebuildGfnIndex())) {
      const slot = ix.findSlot(gfn);
      if (slot === null) return null;
      this.lastUsedSlot = slot;
      this.lastBase = slot.baseGfn;
      this.lastEnd = slot.baseGfn + slot.npages;
      return slot;
    }
    const i = this.gfnTree.floorValueOf(gfn, -1);
    if (i < 0) return null;
    const end = this.slotEnd[i]!;
    if (gfn >= end) return null;
    const slot = this.table[i]!;
    this.lastUsedSlot = slot;
    this.lastBase = this.slotBase[i]!;
    this.lastEnd = end;
    return slot;
  }

  /** build the flat index from the gfn tree (O(n)); true */
  private rebuildGfnIndex(): boolean {
    this.gfnIndex.rebuild(this.gfnTree.size, (add) => {
      this.gfnTree.forRange(-Infinity, Infinity, (_k, i) => {
        add(this.slotBase[i]!, this.slotEnd[i]!, i, this.table[i]!);
      });
    });
    return true;
  }

  /** the set changed: the flat index no longer describes it */
  private changed(): void {
    this.gfnIndex.invalidate();
    this.treeLookups = 0;
  }

  /** the flat gfn index is in use (for tests) */
  get gfnIndexValid(): boolean {
    return this.gfnIndex.valid;
  }

  /** slots->last_used_slot = slot */
  private setLastUsed(slot: KvmMemorySlot | null): void {
    this.lastUsedSlot = slot;
    this.lastBase = slot === null ? 0 : slot.baseGfn;
    this.lastEnd = slot === null ? 0 : slot.baseGfn + slot.npages;
  }

  /** table[i] = slot, with its gfn range */
  private tableSet(i: number, slot: KvmMemorySlot): void {
    this.table[i] = slot;
    if (i >= this.slotBase.length) {
      const base = new Float64Array(this.slotBase.length * 2);
      base.set(this.slotBase);
      const end = new Float64Array(this.slotEnd.length * 2);
      end.set(this.slotEnd);
      this.slotBase = base;
      this.slotEnd = end;
    }
    this.slotBase[i] = slot.baseGfn;
    this.slotEnd[i] = slot.baseGfn + slot.npages;
  }

  /**
   * kvm_for_each_memslot_in_gfn_range(): every slot intersecting [start, end), by base_gfn.
   * `cb` returning true stops the walk.
   */
  forEachMemslotInGfnRange(start: number, end: number, cb: (slot: KvmMemorySlot) => boolean | void): void {
    if (start >= end) return;
    const t = this.gfnTree;
    const found = t.seek(start);
    let key = t.nextKey;
    if (found) {
      // the slot holding `start` comes first: the seek that found it gave its successor too
      const below = this.table[t.floorValue]!;
      if (below.baseGfn + below.npages > start && cb(below) === true) return;
    }
    while (key < end) {
      t.seek(key);
      const slot = this.table[t.floorValue]!;
      const next = t.nextKey;
      if (cb(slot) === true) return;
      key = next;
    }
  }

  /**
   * kvm_for_each_memslot_in_hva_range(): every slot (PCI hole slots have no hva and are
   * skipped) whose [userspace_addr, +npages*4096) intersects [hvaStart, hvaEnd), found
   * through the hva interval tree in O(log n + matches), by userspace_addr. `cb` returning
   * true stops.
   */
  forEachMemslotInHvaRange(hvaStart: number, hvaEnd: number, cb: (slot: KvmMemorySlot) => boolean | void): void {
    this.hvaTree.forEachOverlap(hvaStart, hvaEnd, (i) => cb(this.table[i]!) === true);
  }

  /**
   * kvm_check_memslot_overlap(): does a slot other than `id` intersect [start, end)? Slots
   * never overlap each other, so only the slots just below `end` can (at most two are looked
   * at: the one below end, and when that is `id` itself, the one below it).
   */
  checkMemslotOverlap(id: number, start: number, end: number): boolean {
    const t = this.gfnTree;
    let key = end - 1;
    while (t.seek(key)) {
      const slot = this.table[t.floorValue]!;
      if (slot.baseGfn + slot.npages <= start) return false;
      if (slot.id !== id) return true;
      key = slot.baseGfn - 1;
    }
    return false;
  }

  /** the slots in base_gfn order */
  slots(): KvmMemorySlot[] {
    const out: KvmMemorySlot[] = [];
    this.gfnTree.forRange(-Infinity, Infinity, (_k, i) => {
      out.push(this.table[i]!);
    });
    return out;
  }

  /** the slots held by the hva tree, by userspace_addr (for invariant checks) */
  hvaTreeSlots(): KvmMemorySlot[] {
    return this.hvaTree.entries().map(([, , i]) => this.table[i]!);
  }

  /** hash_add() into the id hash (replacing the slot with the same id) */
  private idSet(slot: KvmMemorySlot): void {
    const a = this.byId;
    const id = slot.id;
    while (a.length <= id) a.push(null);
    if (a[id] === null) this.nrSlots++;
    a[id] = slot;
  }

  /** hash_del() from the id hash */
  private idDelete(id: number): void {
    const a = this.byId;
    if (id < a.length && a[id] !== null) {
      a[id] = null;
      this.nrSlots--;
    }
  }

  /** kvm_replace_memslot(): old -> new (either may be null), in one set */
  replace(old: KvmMemorySlot | null, next: KvmMemorySlot | null): void {
    this.changed();
    if (old !== null && next !== null && old.baseGfn === next.baseGfn && old.npages === next.npages && hasHva(old) === hasHva(next) && old.userspaceAddr === next.userspaceAddr) {
      // same gfn and hva ranges (the INVALID copy of a DELETE / MOVE, a FLAGS_ONLY change):
      // the slot table entry is swapped in place, both trees stay as they are
      const i = this.gfnTree.get(old.baseGfn, -1);
      if (i >= 0 && this.table[i] === old) {
        this.tableSet(i, next);
        if (next.id !== old.id) this.idDelete(old.id);
        this.idSet(next);
        if (this.lastUsedSlot === old) this.setLastUsed(next);
        return;
      }
    }
    if (old !== null) {
      if (next === null || next.id !== old.id) this.idDelete(old.id);
      if (this.lastUsedSlot === old) this.setLastUsed(next);
      const i = this.gfnTree.get(old.baseGfn, -1);
      if (i >= 0 && this.table[i] === old) {
        this.gfnTree.delete(old.baseGfn);
        if (hasHva(old)) this.hvaTree.remove(old.userspaceAddr, i);
        this.table[i] = null;
        this.freeIndexes.push(i);
      }
    }
    if (next !== null) {
      this.idSet(next);
      const i = this.freeIndexes.pop() ?? this.table.length;
      this.tableSet(i, next);
      const prev = this.gfnTree.get(next.baseGfn, -1);
      if (prev >= 0) {
        // a slot at the same base_gfn that `old` did not name: it leaves both trees
        const gone = this.table[prev]!;
        if (hasHva(gone)) this.hvaTree.remove(gone.userspaceAddr, prev);
        this.table[prev] = null;
        this.freeIndexes.push(prev);
      }
      this.gfnTree.set(next.baseGfn, i);
      if (hasHva(next)) this.hvaTree.insert(next.userspaceAddr, next.userspaceAddr + next.npages * PAGE_SIZE, i);
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
  /** dirty ring without "ring + bitmap": !kvm_use_dirty_bitmap() (set by Vm when a ring is enabled) */
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
          if (b.nwords !== Math.ceil(slot.npages / 64) * 2 || b.npages !== slot.npages) out.push(`${name}: dirty bitmap is not ALIGN(npages, 64) bits`);
          else if (slot.npages % 32 !== 0 && b.word(slot.npages >>> 5) >>> (slot.npages % 32) !== 0) {
            out.push(`${name}: dirty bits set beyond the last page`);
          }
        }
        if (!(slot.flags & KVM_MEMSLOT_INVALID)) pages += slot.npages;
      }
      if (sp.size !== sp.slots().length) out.push(`address space ${sp.asId}: id hash and gfn tree hold different slot counts`);
      const withHva = sp.slots().filter((s) => !(s.flags & KVM_MEM_PCI_HOLE));
      const inHvaTree = new Set(sp.hvaTreeSlots());
      if (inHvaTree.size !== withHva.length || withHva.some((s) => !inHvaTree.has(s))) {
        out.push(`address space ${sp.asId}: hva tree and gfn tree hold different slots`);
      }
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
      /** the dirty pages as [start, end) runs (bounded by what is dirty, not by npages) */
      dirtyRuns: [number, number][] | null;
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
        dirtyRuns: s.dirtyBitmap ? dirtyRuns(s.dirtyBitmap) : null,
      })),
    })),
  };
}

/** a bitmap's set bits as [start, end) runs, adjacent runs merged */
function dirtyRuns(b: DirtyBitmap): [number, number][] {
  const out: [number, number][] = [];
  b.forEachSetRun((start, end) => {
    const last = out[out.length - 1];
    if (last !== undefined && last[1] === start) last[1] = end;
    else out.push([start, end]);
  });
  return out;
}
