/**
 * A provider file's memslot bindings (`gmem_file.bindings`, an xarray pgoff → memslot in
 * virt/kvm/guest_memfd.c): each file page is bound to at most one memslot. Kept as a sorted
 * list of page ranges plus a per-slot index, so the fault path's "is this index bound to
 * this slot" test is one map lookup.
 */
import type { MemslotView } from '@ccmem/core';
import { PAGE_SIZE } from '@ccmem/core';

export interface GmemBinding {
  /** first file page (slot->gmem.pgoff) */
  readonly start: number;
  /** one past the last file page */
  readonly end: number;
  readonly slot: MemslotView;
}

/** The identity of a memslot across the copies the memslot engine makes: (as_id, id). */
export function slotKey(slot: MemslotView): number {
  return slot.asId * 0x10000 + slot.id;
}

/** The gfn range of `slot` that covers file pages [start, end) (kvm_gmem_invalidate_begin). */
export function bindingGfnRange(b: GmemBinding, start: number, end: number): { start: number; end: number } {
  return {
    start: b.slot.baseGfn + Math.max(b.start, start) - b.start,
    end: b.slot.baseGfn + Math.min(b.end, end) - b.start,
  };
}

export class GmemBindings {
  /** sorted by start, non-overlapping */
  private ranges: GmemBinding[] = [];
  private readonly bySlot = new Map<number, GmemBinding>();

  get size(): number {
    return this.ranges.length;
  }

  /* the last slot object asked about and its binding (the fault path asks about one slot
   * over and over); dropped whenever the bindings change */
  private lastSlot: MemslotView | null = null;
  private lastBinding: GmemBinding | undefined = undefined;

  /** xa_load(bindings, index) === slot */
  isBoundTo(index: number, slot: MemslotView): boolean {
    let b: GmemBinding | undefined;
    if (slot === this.lastSlot) b = this.lastBinding;
    else {
      b = this.bySlot.get(slotKey(slot));
      this.lastSlot = slot;
      this.lastBinding = b;
    }
    return b !== undefined && index >= b.start && index < b.end;
  }

  private dropCache(): void {
    this.lastSlot = null;
    this.lastBinding = undefined;
  }

  /** xa_find(bindings, start, end - 1): any page of [start, end) bound */
  anyIn(start: number, end: number): boolean {
    const b = this.ranges[this.firstEndingAfter(start)];
    return b !== undefined && b.start < end;
  }

  /** bindings that intersect [start, end), in pgoff order */
  in(start: number, end: number): GmemBinding[] {
    const out: GmemBinding[] = [];
    for (let i = this.firstEndingAfter(start); i < this.ranges.length; i++) {
      const b = this.ranges[i]!;
      if (b.start >= end) break;
      out.push(b);
    }
    return out;
  }

  all(): readonly GmemBinding[] {
    return this.ranges;
  }

  /** store a binding; the caller has checked that [start, end) is free */
  add(slot: MemslotView, start: number, end: number): GmemBinding {
    const b: GmemBinding = { start, end, slot };
    this.dropCache();
    const i = this.firstEndingAfter(start);
    this.ranges.splice(i, 0, b);
    this.bySlot.set(slotKey(slot), b);
    return b;
  }

  /** xa_store_range(..., NULL): drop the slot's binding; returns it, or undefined */
  remove(slot: MemslotView): GmemBinding | undefined {
    const key = slotKey(slot);
    const b = this.bySlot.get(key);
    this.dropCache();
    if (b === undefined) return undefined;
    this.bySlot.delete(key);
    this.ranges.splice(this.ranges.indexOf(b), 1);
    return b;
  }

  /** xa_destroy() */
  clear(): void {
    this.dropCache();
    this.ranges = [];
    this.bySlot.clear();
  }

  /** index of the first range whose end is > index */
  private firstEndingAfter(index: number): number {
    let lo = 0;
    let hi = this.ranges.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.ranges[mid]!.end <= index) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}

/** Bytes of a slot (slot->npages << PAGE_SHIFT). */
export function slotBytes(slot: MemslotView): number {
  return slot.npages * PAGE_SIZE;
}
