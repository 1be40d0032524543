/**
 * KVM_SET_USER_MEMORY_REGION / KVM_SET_USER_MEMORY_REGION2 (virt/kvm/kvm_main.c:
 * kvm_vm_ioctl(), kvm_vm_ioctl_set_memory_region(), kvm_set_memory_region(),
 * check_memory_region_flags(), kvm_set_memslot(), kvm_prepare_memory_region(),
 * kvm_commit_memory_region(); virt/kvm/guest_memfd.c: kvm_gmem_bind()).
 *
 * Checks run in the kernel's order with the kernel's errno (research kvm-uapi.md §2). The
 * change then runs in the phases the kernel runs under different locks:
 *   DELETE / MOVE: 'invalidate' (install a copy of the old slot marked KVM_MEMSLOT_INVALID,
 *                  swap #1) -> 'zap' (kvm_arch_flush_shadow_memslot) -> 'commit' (remove or
 *                  replace by the moved slot, swap #2, commit hooks);
 *   CREATE / FLAGS_ONLY: 'commit' (one swap).
 * `beginSetUserMemoryRegion()` runs every check and returns the change as an op whose
 * `step()` runs one phase, so other model activity (vCPU faults, MMU notifiers) can be
 * interleaved between phases; `setUserMemoryRegion()` runs all phases at once.
 *
 * Model difference: the kernel runs kvm_arch_prepare_memory_region() (and allocates the dirty
 * bitmap) after the invalidate+zap of a DELETE / MOVE, and a failure there reverts the INVALID
 * slot after the zap. The model runs it in `begin` with the other checks, so a failed call
 * changes nothing at all.
 *
 * KVM_MEM_PCI_HOLE follows Vitaly Kuznetsov's RFC "[PATCH 2/3] KVM: x86: introduce
 * KVM_MEM_PCI_HOLE memory" (2020, never merged; kvm-uapi.md §10): valid only when the host
 * offers it, mutually exclusive with READONLY / LOG_DIRTY_PAGES (checked right after the gpa
 * alignment check) and, in this model, GUEST_MEMFD; userspace_addr must be 0 (replacing the
 * access_ok check); the flag can never change on an existing slot. The RFC predates
 * KVM_SET_USER_MEMORY_REGION2 and needs none of its fields, so the legacy ioctl accepts it.
 */
import { fail } from '../errno.js';
import type { ErrnoName } from '../errno.js';
import type { GuestMemoryFile, KvmFile } from '../backend.js';
import type { Tracer } from '../trace.js';
import {
  KVM_DIRTY_LOG_INITIALLY_SET,
  KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE,
  KVM_MEM_GUEST_MEMFD,
  KVM_MEM_LOG_DIRTY_PAGES,
  KVM_MEM_MAX_NR_PAGES,
  KVM_MEM_PCI_HOLE,
  KVM_MEM_READONLY,
  KVM_MEM_SLOTS_NUM,
  KVM_MEMSLOT_GMEM_ONLY,
  KVM_MEMSLOT_INVALID,
  KVM_USER_MEM_SLOTS,
  PAGE_SIZE,
} from '../uapi.js';
import { TASK_SIZE_MAX } from '../host/address-space.js';
import { KvmMemorySlot, allocDirtyBitmap } from './memslot.js';
import { KvmMemslots, KvmVmMemslots, SlotsLockBusyError } from './memslots.js';
import { u64AddWraps, u64PageAligned, u64SafeNumber, u64Value, type U64 } from '../u64.js';

/**
 * `struct kvm_userspace_memory_region2` with the uAPI field names. u64 fields are numbers
 * (exact below 2^53) or bigints (exact everywhere); the checks run on the exact values.
 */
export interface KvmUserspaceMemoryRegion2 {
  /** bits 0-15: slot id, bits 16-31: address space id */
  slot: number;
  flags: number;
  guest_phys_addr: U64;
  memory_size: U64;
  userspace_addr: U64;
  guest_memfd_offset?: U64;
  guest_memfd?: number;
}

/** enum kvm_mr_change, without the KVM_MR_ prefix */
export type MemslotChange = 'CREATE' | 'DELETE' | 'MOVE' | 'FLAGS_ONLY';
/** alias of MemslotChange */
export type KvmMrChange = MemslotChange;

/** The phase a memslot change runs next. */
export type MemslotChangePhase = 'invalidate' | 'zap' | 'commit' | 'done';

/** What the VM provides to the memslot engine (the arch hooks and the VM's environment). */
export interface MemslotHooks {
  /** kvm_arch_nr_memslot_as_ids() */
  nrAsIds(): number;
  /** kvm_arch_has_readonly_mem() */
  hasReadonlyMem(): boolean;
  /** KVM_CAP_PCI_HOLE_MEM is offered (model-only RFC flag) */
  pciHoleSupported(): boolean;
  /** IS_ENABLED(CONFIG_KVM_GUEST_MEMFD); absent means true */
  guestMemfdSupported?(): boolean;
  /** fget() in the VMM's fd table */
  getFile(fd: number): KvmFile | undefined;
  /** this VM, compared with a guest_memfd's `ownerVm` (file->kvm != kvm) */
  ownerVm: unknown;
  /** kvm_arch_prepare_memory_region(): null, or the errno that fails the call */
  archPrepareMemoryRegion(change: KvmMrChange, old: KvmMemorySlot | null, next: KvmMemorySlot | null): ErrnoName | null;
  /** kvm_arch_flush_shadow_memslot(): zap every SPTE of the slot (DELETE / MOVE) */
  flushShadowMemslot(slot: KvmMemorySlot): void;
  /** kvm_arch_commit_memory_region() (x86: kvm_mmu_slot_apply_flags, ...) */
  archCommitMemoryRegion(change: KvmMrChange, old: KvmMemorySlot | null, next: KvmMemorySlot | null): void;
  /** kvm_arch_mmu_enable_log_dirty_pt_masked(): re-arm write tracking of `mask`'s pages */
  enableDirtyLogPtMasked(slot: KvmMemorySlot, gfnOffset: number, mask: number): void;
  /** kvm_flush_remote_tlbs() */
  flushRemoteTlbs(): void;
  tracer: Tracer;
}

/** Flags that fit the legacy struct kvm_userspace_memory_region. */
export const KVM_SET_USER_MEMORY_REGION_V1_FLAGS = KVM_MEM_LOG_DIRTY_PAGES | KVM_MEM_READONLY;

const U64_LIMIT = 2 ** 64;

/**
 * A memslot change in progress (a KernelOp, steps.ts); `step()` runs the next phase and
 * returns true when done.
 */
export class MemslotChangeOp {
  readonly name = 'kvm_set_memory_region';
  /** null for a request that changes nothing (same slot, same flags) */
  readonly change: KvmMrChange | null;
  readonly old: KvmMemorySlot | null;
  readonly new: KvmMemorySlot | null;
  private _phase: MemslotChangePhase;
  private invalidSlot: KvmMemorySlot | null = null;
  private readonly engine: MemslotEngine;

  /** @internal created by MemslotEngine.beginSetUserMemoryRegion */
  constructor(engine: MemslotEngine, change: KvmMrChange | null, old: KvmMemorySlot | null, next: KvmMemorySlot | null) {
    this.engine = engine;
    this.change = change;
    this.old = old;
    this.new = next;
    this._phase =
      change === null ? 'done' : change === 'DELETE' || change === 'MOVE' ? 'invalidate' : 'commit';
  }

  /** the phase `step()` runs next ('done' once finished) */
  get phase(): MemslotChangePhase {
    return this._phase;
  }

  /** the KVM_MEMSLOT_INVALID copy installed by 'invalidate' (DELETE / MOVE) */
  get invalid(): KvmMemorySlot | null {
    return this.invalidSlot;
  }

  /** nothing to return: the ioctl returns 0 */
  result(): void {
    if (this._phase !== 'done') throw new Error('kvm_set_memory_region: result() before the change finished');
  }

  step(): boolean {
    const e = this.engine;
    switch (this._phase) {
      case 'done':
        return true;
      case 'invalidate': {
        // kvm_invalidate_memslot(): a copy marked INVALID replaces old, swap #1
        const old = this.old!;
        const invalid = old.withChanges({ flags: old.flags | KVM_MEMSLOT_INVALID });
        this.invalidSlot = invalid;
        const space = e.slots.memslots(old.asId);
        space.replace(old, invalid);
        e.swapActiveMemslots(space);
        e.traceChange(this, 'invalidate');
        this._phase = 'zap';
        return false;
      }
      case 'zap':
        // kvm_arch_flush_shadow_memslot(kvm, old): no SPTE of the slot survives
        e.hooks.flushShadowMemslot(this.old!);
        e.traceChange(this, 'zap');
        this._phase = 'commit';
        return false;
      case 'commit': {
        const asId = (this.new ?? this.old)!.asId;
        const space = e.slots.memslots(asId);
        if (this.change === 'CREATE') space.replace(null, this.new);
        else if (this.change === 'FLAGS_ONLY') space.replace(this.old, this.new);
        else space.replace(this.invalidSlot, this.new); // DELETE: new is null
        e.swapActiveMemslots(space);
        e.commitMemoryRegion(this.change!, this.old, this.new);
        e.traceChange(this, 'commit');
        this._phase = 'done';
        e.slots.slotsLockHeld = false;
        return true;
      }
    }
  }
}

export interface SetMemoryRegionOptions {
  /** KVM_SET_USER_MEMORY_REGION2 (true) or the legacy KVM_SET_USER_MEMORY_REGION */
  v2: boolean;
}

/**
 * The memslot half of `struct kvm`: its state (`slots`) and the ioctl that changes it.
 * The VM creates one, passing itself as the hooks.
 */
export class MemslotEngine {
  readonly hooks: MemslotHooks;
  readonly slots: KvmVmMemslots;

  constructor(hooks: MemslotHooks, slots: KvmVmMemslots = new KvmVmMemslots(hooks.nrAsIds())) {
    this.hooks = hooks;
    this.slots = slots;
  }

  /** memslot invariants (KvmVmMemslots.checkInvariants) */
  checkInvariants(): string[] {
    return this.slots.checkInvariants();
  }

  /** id_to_memslot() in address space `asId` */
  idToMemslot(asId: number, id: number): KvmMemorySlot | null {
    return this.slots.memslots(asId).idToMemslot(id);
  }

  /** __gfn_to_memslot() in address space `asId` (INVALID slots included) */
  gfnToMemslot(asId: number, gfn: number): KvmMemorySlot | null {
    return this.slots.memslots(asId).gfnToMemslot(gfn);
  }

  /** kvm_for_each_memslot_in_gfn_range() in address space `asId`; `cb` returning true stops */
  forEachMemslotInGfnRange(asId: number, start: number, end: number, cb: (slot: KvmMemorySlot) => boolean | void): void {
    this.slots.memslots(asId).forEachMemslotInGfnRange(start, end, cb);
  }

  /**
   * kvm_for_each_memslot_in_hva_range(): every slot whose userspace range intersects
   * [hvaStart, hvaEnd) (the mmu-notifier walk); `cb` returning true stops.
   */
  forEachMemslotInHvaRange(asId: number, hvaStart: number, hvaEnd: number, cb: (slot: KvmMemorySlot) => boolean | void): void {
    this.slots.memslots(asId).forEachMemslotInHvaRange(hvaStart, hvaEnd, cb);
  }

  /** The whole ioctl at once. Throws KvmError; a failed call changes nothing. */
  setUserMemoryRegion(region: KvmUserspaceMemoryRegion2, opts: SetMemoryRegionOptions): MemslotChangeOp {
    const op = this.beginSetUserMemoryRegion(region, opts);
    while (!op.step());
    return op;
  }

  /**
   * Every check of the ioctl, in the kernel's order; on success the change, ready to `step()`.
   * Throws KvmError and changes nothing on failure. `kvm->slots_lock` stays held until the
   * op is done: starting another change (or a dirty-log ioctl) before then is a caller bug.
   */
  beginSetUserMemoryRegion(region: KvmUserspaceMemoryRegion2, opts: SetMemoryRegionOptions): MemslotChangeOp {
    if (this.slots.slotsLockHeld) throw new SlotsLockBusyError();
    const hooks = this.hooks;
    const slot = region.slot >>> 0;
    const flags = region.flags >>> 0;
    // the exact u64 values for the checks: numbers below 2^53 are checked as numbers (exact,
    // and no sum of two wraps), anything else as bigints; as numbers the values are exact
    // once page aligned
    const gmemOffsetField = opts.v2 ? (region.guest_memfd_offset ?? 0) : 0;
    let gpa = u64SafeNumber(region.guest_phys_addr);
    let size = u64SafeNumber(region.memory_size);
    let hva = u64SafeNumber(region.userspace_addr);
    let gmemOffset = u64SafeNumber(gmemOffsetField);
    let sizeAligned: boolean, gpaAligned: boolean, hvaAligned: boolean, gmemOffsetAligned: boolean;
    let gpaSizeWraps: boolean, gmemSizeWraps: boolean, hvaIsZero: boolean;
    if (gpa >= 0 && size >= 0 && hva >= 0 && gmemOffset >= 0) {
      sizeAligned = size % PAGE_SIZE === 0;
      gpaAligned = gpa % PAGE_SIZE === 0;
      hvaAligned = hva % PAGE_SIZE === 0;
      gmemOffsetAligned = gmemOffset % PAGE_SIZE === 0;
      gpaSizeWraps = gmemSizeWraps = false;
      hvaIsZero = hva === 0;
    } else {
      const gpaB = u64Value(region.guest_phys_addr, 'guest_phys_addr');
      const sizeB = u64Value(region.memory_size, 'memory_size');
      const hvaB = u64Value(region.userspace_addr, 'userspace_addr');
      const gmemOffsetB = u64Value(gmemOffsetField, 'guest_memfd_offset');
      sizeAligned = u64PageAligned(sizeB);
      gpaAligned = u64PageAligned(gpaB);
      hvaAligned = u64PageAligned(hvaB);
      gmemOffsetAligned = u64PageAligned(gmemOffsetB);
      gpaSizeWraps = u64AddWraps(gpaB, sizeB);
      gmemSizeWraps = u64AddWraps(gmemOffsetB, sizeB);
      hvaIsZero = hvaB === 0n;
      gpa = Number(gpaB);
      size = Number(sizeB);
      hva = Number(hvaB);
      gmemOffset = Number(gmemOffsetB);
    }
    const gmemFd = opts.v2 ? (region.guest_memfd ?? 0) >>> 0 : 0;
    const pciHole = hooks.pciHoleSupported();

    // kvm_vm_ioctl(): the legacy struct has no room for the v2 flags
    const v1Flags = KVM_SET_USER_MEMORY_REGION_V1_FLAGS | (pciHole ? KVM_MEM_PCI_HOLE : 0);
    if (!opts.v2 && flags & ~v1Flags) fail('EINVAL', 'kvm_vm_ioctl: KVM_SET_USER_MEMORY_REGION flag beyond v1 flags');
    // kvm_vm_ioctl_set_memory_region()
    if ((slot & 0xffff) >= KVM_USER_MEM_SLOTS) fail('EINVAL', 'kvm_vm_ioctl_set_memory_region: slot id >= KVM_USER_MEM_SLOTS');

    // check_memory_region_flags()
    let validFlags = KVM_MEM_LOG_DIRTY_PAGES;
    if (hooks.guestMemfdSupported?.() ?? true) validFlags |= KVM_MEM_GUEST_MEMFD;
    if (flags & KVM_MEM_GUEST_MEMFD) validFlags &= ~KVM_MEM_LOG_DIRTY_PAGES;
    if (hooks.hasReadonlyMem() && !(flags & KVM_MEM_GUEST_MEMFD)) validFlags |= KVM_MEM_READONLY;
    if (pciHole) validFlags |= KVM_MEM_PCI_HOLE;
    if (flags & ~validFlags) fail('EINVAL', 'check_memory_region_flags: invalid flags');

    const asId = slot >>> 16;
    const id = slot & 0xffff;

    // general sanity checks
    if (!sizeAligned) fail('EINVAL', 'kvm_set_memory_region: memory_size not page aligned');
    if (!gpaAligned) fail('EINVAL', 'kvm_set_memory_region: guest_phys_addr not page aligned');
    if (flags & KVM_MEM_PCI_HOLE) {
      if (flags & (KVM_MEM_READONLY | KVM_MEM_LOG_DIRTY_PAGES | KVM_MEM_GUEST_MEMFD)) {
        fail('EINVAL', 'kvm_set_memory_region: KVM_MEM_PCI_HOLE with READONLY/LOG_DIRTY_PAGES/GUEST_MEMFD');
      }
      if (!hvaIsZero) fail('EINVAL', 'kvm_set_memory_region: KVM_MEM_PCI_HOLE needs userspace_addr == 0');
    } else if (!hvaAligned || !accessOk(hva, size)) {
      fail('EINVAL', 'kvm_set_memory_region: userspace_addr not aligned or not a user range (access_ok)');
    }
    if (flags & KVM_MEM_GUEST_MEMFD && (!gmemOffsetAligned || gmemSizeWraps)) {
      fail('EINVAL', 'kvm_set_memory_region: guest_memfd_offset not aligned or offset+size wraps');
    }
    if (asId >= hooks.nrAsIds() || asId >= this.slots.nrAsIds || id >= KVM_MEM_SLOTS_NUM) {
      fail('EINVAL', 'kvm_set_memory_region: as_id >= nr_memslot_as_ids');
    }
    if (gpaSizeWraps) fail('EINVAL', 'kvm_set_memory_region: guest_phys_addr + memory_size wraps');
    const npages = size / PAGE_SIZE;
    if (id < KVM_USER_MEM_SLOTS && npages > KVM_MEM_MAX_NR_PAGES) {
      fail('EINVAL', 'kvm_set_memory_region: more than KVM_MEM_MAX_NR_PAGES pages');
    }

    const space = this.slots.memslots(asId);
    const old = space.idToMemslot(id);

    if (size === 0) {
      if (old === null || old.npages === 0) fail('EINVAL', 'kvm_set_memory_region: DELETE of a slot that does not exist');
      if (this.slots.nrMemslotPages < old.npages) fail('EIO', 'kvm_set_memory_region: nr_memslot_pages underflow');
      return this.prepare('DELETE', old, null, region, flags);
    }

    const baseGfn = gpa / PAGE_SIZE;
    let change: KvmMrChange;
    if (old === null || old.npages === 0) {
      change = 'CREATE';
      if (this.slots.nrMemslotPages + npages >= U64_LIMIT) fail('EINVAL', 'kvm_set_memory_region: nr_memslot_pages overflow');
    } else {
      if (flags & KVM_MEM_GUEST_MEMFD) fail('EINVAL', 'kvm_set_memory_region: guest_memfd memslots are immutable');
      if (
        hva !== old.userspaceAddr ||
        npages !== old.npages ||
        (flags ^ old.flags) & (KVM_MEM_READONLY | KVM_MEM_GUEST_MEMFD | KVM_MEM_PCI_HOLE)
      ) {
        fail('EINVAL', 'kvm_set_memory_region: userspace_addr, size, READONLY, GUEST_MEMFD or PCI_HOLE differ from the slot');
      }
      if (baseGfn !== old.baseGfn) change = 'MOVE';
      else if (flags !== old.flags) change = 'FLAGS_ONLY';
      else {
        this.traceRegion(region, flags, 'none');
        return new MemslotChangeOp(this, null, old, old);
      }
    }

    if (change === 'CREATE' || change === 'MOVE') {
      if (space.checkMemslotOverlap(id, baseGfn, baseGfn + npages)) fail('EEXIST', 'kvm_set_memory_region: gfn range overlaps another memslot');
    }

    let newFlags = flags;
    let gmemFile: GuestMemoryFile | null = null;
    if (flags & KVM_MEM_GUEST_MEMFD) {
      // kvm_gmem_bind(): checks a-c here, d-e in the file's bind()
      const file = hooks.getFile(gmemFd);
      if (file === undefined) fail('EBADF', 'kvm_gmem_bind: guest_memfd is not an open fd');
      if (!isGuestMemoryFile(file)) fail('EINVAL', 'kvm_gmem_bind: fd is not a guest_memfd');
      if (file.ownerVm !== hooks.ownerVm) fail('EINVAL', 'kvm_gmem_bind: guest_memfd belongs to another VM');
      gmemFile = file;
      if (file.gmemOnly) newFlags |= KVM_MEMSLOT_GMEM_ONLY;
    }
    const next = new KvmMemorySlot(asId, id, baseGfn, npages, hva, newFlags);
    if (gmemFile !== null) {
      gmemFile.bind(next, gmemOffset); // throws for bad offset / already-bound pages
      next.gmemFile = gmemFile;
      next.gmemPgoff = gmemOffset / PAGE_SIZE;
    }
    try {
      return this.prepare(change, old, next, region, flags);
    } catch (err) {
      if (gmemFile !== null) {
        gmemFile.unbind(next);
        next.gmemFile = null;
      }
      throw err;
    }
  }

  /** kvm_prepare_memory_region(): dirty bitmap, then the arch hook; returns the op */
  private prepare(
    change: KvmMrChange,
    old: KvmMemorySlot | null,
    next: KvmMemorySlot | null,
    region: KvmUserspaceMemoryRegion2,
    flags: number,
  ): MemslotChangeOp {
    if (next !== null) {
      if (!(next.flags & KVM_MEM_LOG_DIRTY_PAGES)) next.dirtyBitmap = null;
      else if (old !== null && old.dirtyBitmap !== null) next.dirtyBitmap = old.dirtyBitmap;
      else if (!this.slots.dirtyRingOnly) {
        // kvm_alloc_dirty_bitmap(), then bitmap_set() with KVM_DIRTY_LOG_INITIALLY_SET
        const mdlp = this.slots.manualDirtyLogProtect;
        next.dirtyBitmap = allocDirtyBitmap(next.npages, (mdlp & KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE) !== 0 && (mdlp & KVM_DIRTY_LOG_INITIALLY_SET) !== 0);
      }
    }
    const err = this.hooks.archPrepareMemoryRegion(change, old, next);
    if (err !== null) {
      if (next !== null) next.dirtyBitmap = null;
      fail(err, 'kvm_arch_prepare_memory_region');
    }
    this.traceRegion(region, flags, change);
    this.slots.slotsLockHeld = true;
    return new MemslotChangeOp(this, change, old, next);
  }

  /** kvm_swap_active_memslots(): publish with bit 63 set, then gen += nr_as_ids */
  swapActiveMemslots(space: KvmMemslots): void {
    space.updateInProgress = true;
    // (rcu_assign_pointer + synchronize_srcu: the set is already in place in the model)
    space.updateInProgress = false;
    space.generation += this.slots.nrAsIds;
  }

  /** kvm_commit_memory_region() */
  commitMemoryRegion(change: KvmMrChange, old: KvmMemorySlot | null, next: KvmMemorySlot | null): void {
    const s = this.slots;
    if (change === 'DELETE') s.nrMemslotPages -= old!.npages;
    else if (change === 'CREATE') s.nrMemslotPages += next!.npages;
    const oldFlags = old?.flags ?? 0;
    const newFlags = next?.flags ?? 0;
    if ((oldFlags ^ newFlags) & KVM_MEM_LOG_DIRTY_PAGES) {
      s.nrMemslotsDirtyLogging += newFlags & KVM_MEM_LOG_DIRTY_PAGES ? 1 : -1;
    }
    this.hooks.archCommitMemoryRegion(change, old, next);
    if (change === 'DELETE') {
      // kvm_free_memslot(): gmem unbind, dirty bitmap
      if (old!.gmemFile !== null) old!.gmemFile.unbind(old!);
      old!.dirtyBitmap = null;
    } else if (change === 'MOVE' || change === 'FLAGS_ONLY') {
      if (old!.dirtyBitmap !== null && next!.dirtyBitmap === null) old!.dirtyBitmap = null;
    }
  }

  /**
   * kvm_free_memslots() from kvm_destroy_vm(), for every address space: each slot's
   * guest_memfd binding (kvm_gmem_unbind()) and dirty bitmap go with it (kvm_free_memslot()).
   */
  freeMemslots(): void {
    for (let asId = 0; asId < this.slots.nrAsIds; asId++) {
      for (const slot of this.slots.memslots(asId).slots()) {
        if (slot.gmemFile !== null) slot.gmemFile.unbind(slot);
        slot.dirtyBitmap = null;
      }
    }
  }

  /** @internal */
  traceChange(op: MemslotChangeOp, phase: MemslotChangePhase): void {
    const t = this.hooks.tracer;
    if (!t.enabled) return;
    const slot = (op.new ?? op.old)!;
    t.emit('kvm_memslot_change', {
      as_id: slot.asId,
      slot: slot.id,
      change: op.change === null ? 'none' : `KVM_MR_${op.change}`,
      phase,
      generation: this.slots.memslots(slot.asId).generation,
      base_gfn: slot.baseGfn,
      npages: slot.npages,
    });
  }

  private traceRegion(region: KvmUserspaceMemoryRegion2, flags: number, change: KvmMrChange | 'none'): void {
    const t = this.hooks.tracer;
    if (!t.enabled) return;
    t.emit('kvm_userspace_memory_region', {
      slot: region.slot >>> 0,
      flags,
      guest_phys_addr: Number(region.guest_phys_addr),
      memory_size: Number(region.memory_size),
      userspace_addr: Number(region.userspace_addr),
      change: change === 'none' ? change : `KVM_MR_${change}`,
    });
  }
}

/** access_ok(addr, size) on x86-64: the range lies below TASK_SIZE_MAX */
function accessOk(addr: number, size: number): boolean {
  return size <= TASK_SIZE_MAX && addr <= TASK_SIZE_MAX - size;
}

/** A file is a guest-memory provider iff it can hand out pfns (kvm_gmem_get_pfn). */
export function isGuestMemoryFile(file: KvmFile): file is GuestMemoryFile {
  return typeof (file as Partial<GuestMemoryFile>).getPfn === 'function';
}


