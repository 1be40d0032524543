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
 * within each 64-bit word) = page i of the slot, held in chunks (dirty-bitmap.ts) so that a
 * slot costs memory and time by what is dirty, not by its size. Write tracking is re-armed
 * through `enableDirtyLogPtMasked(slot, gfnOffset, mask)` with 32-bit masks: one call per
 * 32-bit half of each 64-bit word that had bits taken (or `enableDirtyLogPtRange()` for a
 * whole chunk of set bits).
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
import { CHUNK_FULL, CHUNK_ZERO, DirtyBitmap } from './dirty-bitmap.js';
import type { KvmMemorySlot } from './memslot.js';
import { SlotsLockBusyError, type KvmVmMemslots } from './memslots.js';
import type { MemslotHooks } from './set-memory-region.js';

/** struct kvm_dirty_log (the bitmap is returned instead of copied to a pointer) */
export interface KvmDirtyLog {
  slot: number;
}

/**
 * struct kvm_clear_dirty_log; `dirty_bitmap` is the user buffer (null = bad pointer): the
 * kernel's bytes, or a DirtyBitmap standing for them (its byteLength is the buffer's size)
 * that costs memory by the bits set in it
 */
export interface KvmClearDirtyLog {
  slot: number;
  num_pages: number;
  first_page: number;
  dirty_bitmap: Uint8Array | DirtyBitmap | null;
}

/**
 * The bitmap half of mark_page_dirty_in_slot(): set the gfn's bit if the slot logs dirty pages.
 * Vm.markPageDirty() decides between the running vCPU's dirty ring and this bitmap.
 */
export function markPageDirtyInSlot(slot: MemslotView & { dirtyBitmap: DirtyBitmap | null } | null, gfn: number): void {
  if (slot === null || !(slot.flags & KVM_MEM_LOG_DIRTY_PAGES)) return;
  const bitmap = slot.dirtyBitmap;
  if (bitmap === null) return;
  const rel = gfn - slot.baseGfn;
  if (rel < 0 || rel >= slot.npages) throw new RangeError(`gfn 0x${gfn.toString(16)} is outside slot ${slot.id}`);
  bitmap.set(rel);
}

/** test_bit_le() on a slot's dirty bitmap */
export function testDirtyBit(slot: KvmMemorySlot, gfn: number): boolean {
  const b = slot.dirtyBitmap;
  if (b === null) return false;
  return b.test(gfn - slot.baseGfn);
}

export type DirtyLogHooks = Pick<MemslotHooks, 'nrAsIds' | 'enableDirtyLogPtMasked' | 'flushRemoteTlbs'> & {
  /**
   * kvm_arch_mmu_enable_log_dirty_pt_masked() with every bit set, for each 32-page word of
   * [gfnOffset, gfnOffset + npages) (gfnOffset a multiple of 32): what a whole chunk of bits
   * taken or cleared at once re-arms, in time by the mappings there rather than by npages.
   * Without it, enableDirtyLogPtMasked() is called word by word.
   */
  enableDirtyLogPtRange?(slot: KvmMemorySlot, gfnOffset: number, npages: number): void;
};

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
   * KVM_GET_DIRTY_LOG (kvm_get_dirty_log_protect()). Without manual protect: take and zero
   * every word, re-arm tracking for the taken bits, flush TLBs if anything was taken. With it:
   * copy the live bitmap. The copy is a DirtyBitmap (the kernel's layout), costing memory by
   * what is dirty; `getDirtyLog()` gives its bytes.
   */
  getDirtyLogBitmap(log: KvmDirtyLog): DirtyBitmap {
    this.assertUnlocked();
    if (this.slots.dirtyRingOnly) fail('ENXIO', 'kvm_get_dirty_log_protect: dirty ring without bitmap');
    const memslot = this.lookup(log.slot, 'kvm_get_dirty_log_protect');
    const bitmap = memslot.dirtyBitmap!;
    if (this.manualProtect) return bitmap.clone();
    const out = new DirtyBitmap(memslot.npages);
    let flush = false;
    for (let c = 0; c < bitmap.nchunks; c++) {
      const kind = bitmap.chunkKind(c);
      if (kind === CHUNK_ZERO) continue;
      const { start, end } = bitmap.chunkWordRange(c);
      if (kind === CHUNK_FULL) {
        // every word of the chunk taken whole (xchg(&dirty_bitmap[i], 0) for each)
        flush = true;
        out.setChunk(c, true);
        bitmap.setChunk(c, false);
        this.enableRange(memslot, start * 32, Math.min(end * 32, memslot.npages) - start * 32);
        continue;
      }
      const words = bitmap.chunkWords(c);
      for (let k = 0; k < words.length; k++) {
        const mask = words[k]!;
        if (mask === 0) continue;
        flush = true;
        words[k] = 0; // xchg(&dirty_bitmap[i], 0)
        out.setWord(start + k, mask);
        this.hooks.enableDirtyLogPtMasked(memslot, (start + k) * 32, mask);
      }
      bitmap.setChunk(c, false); // every word is 0 now: the chunk's words are freed
    }
    if (flush) this.hooks.flushRemoteTlbs();
    return out;
  }

  /** KVM_GET_DIRTY_LOG: the bytes the kernel copies to userspace (O(npages): small slots) */
  getDirtyLog(log: KvmDirtyLog): Uint8Array {
    return this.getDirtyLogBitmap(log).toBytes();
  }

  /**
   * KVM_CLEAR_DIRTY_LOG (kvm_clear_dirty_log_protect()): clear the bits set in the user bitmap
   * for pages [first_page, first_page + num_pages) and re-arm tracking for the bits actually
   * cleared. Only words where both bitmaps have bits are visited.
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
    const userBytes = user === null ? 0 : user instanceof DirtyBitmap ? user.byteLength : user.length;
    if (n > 0 && (user === null || userBytes < n)) fail('EFAULT', 'kvm_clear_dirty_log_protect: copy_from_user of the bitmap');
    if (n === 0 || user === null) return;
    const sparse = user instanceof DirtyBitmap ? user : null;
    const view = sparse === null ? new DataView((user as Uint8Array).buffer, (user as Uint8Array).byteOffset, n) : null;
    const bitmap = memslot.dirtyBitmap;
    let flush = false;
    const firstWord = firstPage / 32;
    const lastWord = firstWord + n / 4; // one past
    for (let c = firstWord >>> 10; c < bitmap.nchunks && c * 1024 < lastWord; c++) {
      const kind = bitmap.chunkKind(c);
      if (kind === CHUNK_ZERO) continue;
      const range = bitmap.chunkWordRange(c);
      const start = Math.max(range.start, firstWord);
      const end = Math.min(range.end, lastWord);
      const setEnd = Math.min(end * 32, npages); // one past the chunk's last page
      if (
        kind === CHUNK_FULL &&
        sparse !== null &&
        start === range.start &&
        end === range.end &&
        sparse.allSet(start * 32 - firstPage, setEnd - firstPage)
      ) {
        // the user bitmap covers every bit of a full chunk: all of it is cleared
        bitmap.setChunk(c, false);
        flush = true;
        this.enableRange(memslot, start * 32, setEnd - start * 32);
        continue;
      }
      for (let w = start; w < end; ) {
        const uw = w - firstWord;
        if (sparse !== null && sparse.chunkKind(uw >>> 10) === CHUNK_ZERO) {
          w = firstWord + ((uw >>> 10) + 1) * 1024; // nothing to clear up to the user chunk's end
          continue;
        }
        const userMask = sparse !== null ? sparse.word(uw) : view!.getUint32(uw * 4, true);
        w++;
        if (userMask === 0) continue;
        const old = bitmap.word(w - 1);
        const cleared = (userMask & old) >>> 0; // atomic_long_fetch_andnot
        if (cleared === 0) continue;
        bitmap.setWord(w - 1, (old & ~userMask) >>> 0);
        flush = true;
        this.hooks.enableDirtyLogPtMasked(memslot, (w - 1) * 32, cleared);
      }
    }
    if (flush) this.hooks.flushRemoteTlbs();
  }

  /** enableDirtyLogPtMasked() with every bit set for each 32-page word of the range */
  private enableRange(slot: KvmMemorySlot, gfnOffset: number, npages: number): void {
    if (npages <= 0) return;
    if (this.hooks.enableDirtyLogPtRange) {
      this.hooks.enableDirtyLogPtRange(slot, gfnOffset, npages);
      return;
    }
    for (let off = gfnOffset; off < gfnOffset + npages; off += 32) {
      const k = Math.min(32, gfnOffset + npages - off);
      this.hooks.enableDirtyLogPtMasked(slot, off, k === 32 ? 0xffffffff : 2 ** k - 1);
    }
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
