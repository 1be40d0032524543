/**
 * `struct kvm_memory_slot` and the small helpers include/linux/kvm_host.h and kvm_main.c
 * define on it.
 */
import type { GuestMemoryFile, MemslotView } from '../backend.js';
import { DirtyBitmap } from './dirty-bitmap.js';
import {
  KVM_MEM_LOG_DIRTY_PAGES,
  KVM_MEM_PCI_HOLE,
  KVM_MEM_READONLY,
  KVM_MEMSLOT_GMEM_ONLY,
  KVM_MEMSLOT_INVALID,
  PAGE_SIZE,
} from '../uapi.js';

/** KVM_HVA_ERR_BAD: no hva for this gfn (no slot, INVALID slot, PCI hole slot). */
export const KVM_HVA_ERR_BAD = -1;
/** KVM_HVA_ERR_RO_BAD: a write through a read-only slot. */
export const KVM_HVA_ERR_RO_BAD = -2;

/** kvm_is_error_hva() */
export function kvmIsErrorHva(hva: number): boolean {
  return hva < 0;
}

export class KvmMemorySlot implements MemslotView {
  readonly id: number;
  readonly asId: number;
  readonly baseGfn: number;
  readonly npages: number;
  readonly userspaceAddr: number;
  /** userspace flags | KVM_MEMSLOT_INVALID | KVM_MEMSLOT_GMEM_ONLY */
  readonly flags: number;
  /** slot->gmem.file */
  gmemFile: GuestMemoryFile | null;
  /** slot->gmem.pgoff: file page index of baseGfn */
  gmemPgoff: number;
  /**
   * slot->dirty_bitmap, one bit per page in the kernel's layout (ALIGN(npages, 64) bits),
   * chunked so that it costs memory by what is dirty (dirty-bitmap.ts). null when not logging.
   */
  dirtyBitmap: DirtyBitmap | null;

  constructor(
    asId: number,
    id: number,
    baseGfn: number,
    npages: number,
    userspaceAddr: number,
    flags: number,
    gmemFile: GuestMemoryFile | null = null,
    gmemPgoff = 0,
    dirtyBitmap: DirtyBitmap | null = null,
  ) {
    this.asId = asId;
    this.id = id;
    this.baseGfn = baseGfn;
    this.npages = npages;
    this.userspaceAddr = userspaceAddr;
    this.flags = flags;
    this.gmemFile = gmemFile;
    this.gmemPgoff = gmemPgoff;
    this.dirtyBitmap = dirtyBitmap;
  }

  /** one past the last gfn */
  get endGfn(): number {
    return this.baseGfn + this.npages;
  }

  /** kvm_copy_memslot() with other flags (the INVALID copy, FLAGS_ONLY / MOVE updates) */
  withChanges(changes: { baseGfn?: number; flags?: number }): KvmMemorySlot {
    return new KvmMemorySlot(
      this.asId,
      this.id,
      changes.baseGfn ?? this.baseGfn,
      this.npages,
      this.userspaceAddr,
      changes.flags ?? this.flags,
      this.gmemFile,
      this.gmemPgoff,
      this.dirtyBitmap,
    );
  }
}

/** kvm_dirty_bitmap_bytes(): ALIGN(npages, BITS_PER_LONG) / 8 */
export function kvmDirtyBitmapBytes(npages: number): number {
  return Math.ceil(npages / 64) * 8;
}

/**
 * kvm_alloc_dirty_bitmap() (the model keeps no second bitmap: snapshots are copies), with
 * bitmap_set(dirty_bitmap, 0, npages) when `allSet` (KVM_DIRTY_LOG_INITIALLY_SET); nothing is
 * allocated until a page's bit changes a chunk (dirty-bitmap.ts)
 */
export function allocDirtyBitmap(npages: number, allSet = false): DirtyBitmap {
  return new DirtyBitmap(npages, allSet);
}

/** __gfn_to_hva_memslot(): the hva of `gfn` inside `slot` (no checks) */
export function gfnToHvaMemslot(slot: MemslotView, gfn: number): number {
  return slot.userspaceAddr + (gfn - slot.baseGfn) * PAGE_SIZE;
}

/**
 * __gfn_to_hva_many() / gfn_to_hva_memslot_prot(): KVM_HVA_ERR_BAD for no slot, an INVALID
 * slot or a PCI hole slot (RFC: it has no hva); KVM_HVA_ERR_RO_BAD for a write to a
 * read-only slot; else the hva.
 */
export function gfnToHvaMemslotProt(slot: MemslotView | null, gfn: number, write: boolean): number {
  if (slot === null || slot.flags & (KVM_MEMSLOT_INVALID | KVM_MEM_PCI_HOLE)) return KVM_HVA_ERR_BAD;
  if (write && memslotIsReadonly(slot)) return KVM_HVA_ERR_RO_BAD;
  return gfnToHvaMemslot(slot, gfn);
}

/** memslot_is_readonly(); the PCI hole RFC makes PCI hole slots read-only too */
export function memslotIsReadonly(slot: MemslotView): boolean {
  return (slot.flags & (KVM_MEM_READONLY | KVM_MEM_PCI_HOLE)) !== 0;
}

/** kvm_slot_dirty_track_enabled() */
export function kvmSlotDirtyTrackEnabled(slot: MemslotView): boolean {
  return (slot.flags & KVM_MEM_LOG_DIRTY_PAGES) !== 0;
}

/** kvm_memslot_is_gmem_only(): every fault, shared or private, is served by guest_memfd */
export function kvmMemslotIsGmemOnly(slot: MemslotView): boolean {
  return (slot.flags & KVM_MEMSLOT_GMEM_ONLY) !== 0;
}

/** the slot is being deleted or moved (KVM_MEMSLOT_INVALID) */
export function memslotIsInvalid(slot: MemslotView): boolean {
  return (slot.flags & KVM_MEMSLOT_INVALID) !== 0;
}

/** kvm_is_visible_memslot(): a user slot that is not being deleted / moved */
export function kvmIsVisibleMemslot(slot: MemslotView | null, userMemSlots: number): boolean {
  return slot !== null && slot.id < userMemSlots && (slot.flags & KVM_MEMSLOT_INVALID) === 0;
}
