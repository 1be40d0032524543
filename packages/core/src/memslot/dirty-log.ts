/**
 * Dirty page logging with bitmaps (virt/kvm/kvm_main.c: kvm_get_dirty_log_protect(),
 * kvm_clear_dirty_log_protect(), mark_page_dirty_in_slot(), and the
 * KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 case of kvm_vm_ioctl_enable_cap_generic()); checks and
 * errno as research kvm-uapi.md §3.
 *
 * `DirtyLog` is the VM ioctl side (KVM_GET_DIRTY_LOG, KVM_CLEAR_DIRTY_LOG, KVM_ENABLE_CAP);
 * `markPageDirtyInSlot()` is what the MMU calls when it lets the guest write a page.
 *
 * Bitmaps have the kernel layout: ALIGN(npages, 64) / 8 bytes, bit i (little-endian bit order
 * within each 64-bit word) = page i of the slot. Write tracking is re-armed through
 * `enableDirtyLogPtMasked(slot, gfnOffset, mask)` with 32-bit masks: one call per 32-bit half
 * of each 64-bit word that had bits taken.
 */
import { fail } from '../errno.js';
import type { MemslotView } from '../backend.js';
import {
  KVM_DIRTY_LOG_INITIALLY_SET,
  KVM_DIRTY_LOG_MANUAL_CAPS,
  KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE,
  KVM_MEM_LOG_DIRTY_PAGES,
  KVM_USER_MEM_SLOTS,
} from '../uapi.js';
import { kvmDirtyBitmapBytes, type KvmMemorySlot } from './memslot.js';
import { SlotsLockBusyError, type KvmVmMemslots } from './memslots.js';
import type { MemslotHooks } from './set-memory-region.js';

/** struct kvm_dirty_log (the bitmap is returned instead of copied to a pointer) */
export interface KvmDirtyLog {
  slot: number;
}

/** struct kvm_clear_dirty_log; `dirty_bitmap` is the user buffer (null = bad pointer) */
export interface KvmClearDirtyLog {
  slot: number;
  num_pages: number;
  first_page: number;
  dirty_bitmap: Uint8Array | null;
}

/**
 * The bitmap half of mark_page_dirty_in_slot(): set the gfn's bit if the slot logs dirty pages.
 * Vm.markPageDirty() decides between the running vCPU's dirty ring and this bitmap.
 */
export function markPageDirtyInSlot(slot: MemslotView & { dirtyBitmap: Uint32Array | null } | null, gfn: number): void {
  if (slot === null || !(slot.flags & KVM_MEM_LOG_DIRTY_PAGES)) return;
  const bitmap = slot.dirtyBitmap;
  if (bitmap === null) return;
  const rel = gfn - slot.baseGfn;
  if (rel < 0 || rel >= slot.npages) throw new RangeError(`gfn 0x${gfn.toString(16)} is outside slot ${slot.id}`);
  bitmap[rel >>> 5] = bitmap[rel >>> 5]! | (1 << (rel & 31));
}

/** test_bit_le() on a slot's dirty bitmap */
export function testDirtyBit(slot: KvmMemorySlot, gfn: number): boolean {
  const b = slot.dirtyBitmap;
  if (b === null) return false;
  const rel = gfn - slot.baseGfn;
  return ((b[rel >>> 5]! >>> (rel & 31)) & 1) === 1;
}

export type DirtyLogHooks = Pick<MemslotHooks, 'nrAsIds' | 'enableDirtyLogPtMasked' | 'flushRemoteTlbs'>;

export class DirtyLog {
  private readonly slots: KvmVmMemslots;
  private readonly hooks: DirtyLogHooks;

  /** `memslots`: the VM's MemslotEngine, or its KvmVmMemslots */
  constructor(memslots: KvmVmMemslots | { readonly slots: KvmVmMemslots }, hooks: DirtyLogHooks) {
    this.slots = 'spaces' in memslots ? memslots : memslots.slots;
    this.hooks = hooks;
  }

  /** kvm_dirty_log_manual_protect_and_init_set(): new bitmaps start all-ones */
  get initiallySet(): boolean {
    const m = this.slots.manualDirtyLogProtect;
    return (m & KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE) !== 0 && (m & KVM_DIRTY_LOG_INITIALLY_SET) !== 0;
  }

  /** mark_page_dirty_in_slot() (see the function of the same name) */
  markPageDirtyInSlot(slot: KvmMemorySlot | null, gfn: number): void {
    markPageDirtyInSlot(slot, gfn);
  }

  /** kvm->manual_dirty_log_protect & KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE */
  get manualProtect(): boolean {
    return (this.slots.manualDirtyLogProtect & KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE) !== 0;
  }

  /** KVM_ENABLE_CAP(KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, flags, args[0]) */
  enableManualDirtyLogProtect(args0: number, flags: number): void {
    let allowed = KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE;
    if (args0 < 2 ** 32 && args0 & KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE) allowed = KVM_DIRTY_LOG_MANUAL_CAPS;
    if (flags !== 0 || !Number.isInteger(args0) || args0 < 0 || args0 >= 2 ** 32 || args0 & ~allowed) {
      fail('EINVAL', 'kvm_vm_ioctl_enable_cap_generic: KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 bad flags or args[0]');
    }
    this.slots.manualDirtyLogProtect = args0;
  }

  /**
   * KVM_GET_DIRTY_LOG. Without manual protect: take and zero every word, re-arm tracking for
   * the taken bits, flush TLBs if anything was taken. With it: copy the live bitmap.
   */
  getDirtyLog(log: KvmDirtyLog): Uint8Array {
    this.assertUnlocked();
    if (this.slots.dirtyRingOnly) fail('ENXIO', 'kvm_get_dirty_log_protect: dirty ring without bitmap');
    const memslot = this.lookup(log.slot, 'kvm_get_dirty_log_protect');
    const bitmap = memslot.dirtyBitmap!;
    const n = kvmDirtyBitmapBytes(memslot.npages);
    const out = new Uint8Array(n);
    const outWords = new Uint32Array(out.buffer);
    if (this.manualProtect) {
      outWords.set(bitmap.subarray(0, n / 4));
      return out;
    }
    let flush = false;
    for (let i = 0; i < n / 4; i++) {
      const mask = bitmap[i]!;
      if (mask === 0) continue;
      flush = true;
      bitmap[i] = 0; // xchg(&dirty_bitmap[i], 0)
      outWords[i] = mask;
      this.hooks.enableDirtyLogPtMasked(memslot, i * 32, mask);
    }
    if (flush) this.hooks.flushRemoteTlbs();
    return out;
  }

  /**
   * KVM_CLEAR_DIRTY_LOG: clear the bits set in the user bitmap for pages
   * [first_page, first_page + num_pages) and re-arm tracking for the bits actually cleared.
   */
  clearDirtyLog(log: KvmClearDirtyLog): void {
    this.assertUnlocked();
    if (this.slots.dirtyRingOnly) fail('ENXIO', 'kvm_clear_dirty_log_protect: dirty ring without bitmap');
    const { as, id } = this.parseSlot(log.slot, 'kvm_clear_dirty_log_protect');
    const firstPage = log.first_page;
    const numPages = log.num_pages >>> 0;
    if (!Number.isInteger(firstPage) || firstPage < 0) throw new RangeError('first_page is not a u64');
    if (firstPage % 64 !== 0) fail('EINVAL', 'kvm_clear_dirty_log_protect: first_page not a multiple of 64');
    const memslot = this.slots.memslots(as).idToMemslot(id);
    if (memslot === null || memslot.dirtyBitmap === null) fail('ENOENT', 'kvm_clear_dirty_log_protect: no slot or no dirty bitmap');
    const npages = memslot.npages;
    if (
      firstPage > npages ||
      numPages > npages - firstPage ||
      (numPages < npages - firstPage && numPages % 64 !== 0)
    ) {
      fail('EINVAL', 'kvm_clear_dirty_log_protect: range outside the slot or num_pages not a multiple of 64');
    }
    const n = Math.ceil(numPages / 64) * 8;
    const user = log.dirty_bitmap;
    if (n > 0 && (user === null || user.length < n)) fail('EFAULT', 'kvm_clear_dirty_log_protect: copy_from_user of the bitmap');
    if (n === 0 || user === null) return;
    const view = new DataView(user.buffer, user.byteOffset, n);
    const bitmap = memslot.dirtyBitmap;
    let flush = false;
    const firstWord = firstPage / 32;
    for (let w = 0; w < n / 4; w++) {
      const userMask = view.getUint32(w * 4, true);
      if (userMask === 0) continue;
      const i = firstWord + w;
      const cleared = (userMask & bitmap[i]!) >>> 0; // atomic_long_fetch_andnot
      bitmap[i] = (bitmap[i]! & ~userMask) >>> 0;
      if (cleared !== 0) {
        flush = true;
        this.hooks.enableDirtyLogPtMasked(memslot, firstPage + w * 32, cleared);
      }
    }
    if (flush) this.hooks.flushRemoteTlbs();
  }

  private parseSlot(slot: number, where: string): { as: number; id: number } {
    const s = slot >>> 0;
    const as = s >>> 16;
    const id = s & 0xffff;
    if (as >= this.hooks.nrAsIds() || as >= this.slots.nrAsIds || id >= KVM_USER_MEM_SLOTS) {
      fail('EINVAL', `${where}: bad address space or slot id`);
    }
    return { as, id };
  }

  private lookup(slot: number, where: string): KvmMemorySlot {
    const { as, id } = this.parseSlot(slot, where);
    const memslot = this.slots.memslots(as).idToMemslot(id);
    if (memslot === null || memslot.dirtyBitmap === null) fail('ENOENT', `${where}: no slot or no dirty bitmap`);
    return memslot;
  }

  private assertUnlocked(): void {
    if (this.slots.slotsLockHeld) throw new SlotsLockBusyError();
  }
}
