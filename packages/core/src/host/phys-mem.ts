/**
 * Host physical memory: the page frames behind the VMM's anonymous memory, guest_memfd and
 * every other memory provider.
 *
 * Frames are handed out lazily by a bump allocator that starts at pfn 0x100 (the low frames
 * stand for firmware / kernel memory and are never given out), with freed frames recycled
 * through a free list kept in a typed array. Contents are stored sparsely: a frame costs a
 * Uint8Array(4096) only once something non-zero was written to it, so a never-written frame
 * reads as zeros for free. Leaked frames (snp_leak_pages(): a frame the firmware still owns)
 * are never reused.
 */
import type { HostPhysMem } from '../backend.js';
import { PAGE_SIZE } from '../uapi.js';

/** First pfn the allocator hands out. */
export const FIRST_ALLOC_PFN = 0x100;

/**
 * The shared zero page (ZERO_PAGE(0)): what a read-only GUP of a never-touched anonymous page
 * maps. It belongs to nobody, always reads zero, and must never be written.
 */
export const ZERO_PFN = 0x1;

/* Per-frame state, one byte per pfn below the bump pointer. */
const FRAME_NEVER = 0;
const FRAME_ALLOCATED = 1;
const FRAME_FREE = 2;
const FRAME_LEAKED = 3;

export class PhysMem implements HostPhysMem {
  /** next never-used pfn */
  private nextPfn = FIRST_ALLOC_PFN;
  /** frame state by pfn (grows with the bump pointer) */
  private state = new Uint8Array(4096);
  /** LIFO free list of pfns */
  private freeList = new Float64Array(256);
  private freeCount = 0;
  /** pfn -> contents, only for frames that hold non-zero bytes */
  private readonly contents = new Map<number, Uint8Array>();
  private allocated = 0;
  private leaked = 0;

  get allocatedPages(): number {
    return this.allocated;
  }

  get storedPages(): number {
    return this.contents.size;
  }

  /** frames given to snp_leak_pages() and never reusable */
  get leakedPages(): number {
    return this.leaked;
  }

  allocPage(): number {
    let pfn: number;
    if (this.freeCount > 0) {
      pfn = this.freeList[--this.freeCount]!;
    } else {
      pfn = this.nextPfn++;
      if (pfn >= this.state.length) {
        const grown = new Uint8Array(Math.max(this.state.length * 2, pfn + 1));
        grown.set(this.state);
        this.state = grown;
      }
    }
    this.state[pfn] = FRAME_ALLOCATED;
    this.allocated++;
    return pfn;
  }

  /**
   * Allocate `npages` (a power of two) physically contiguous frames aligned to `npages`
   * (a hugetlb page, a 2M folio); returns the first pfn. Frames skipped for alignment go to
   * the free list.
   */
  allocContiguous(npages: number): number {
    if (npages < 1 || (npages & (npages - 1)) !== 0) throw new RangeError(`allocContiguous: ${npages} is not a power of two`);
    const first = Math.ceil(this.nextPfn / npages) * npages;
    this.ensureState(first + npages);
    for (let p = this.nextPfn; p < first; p++) this.pushFree(p);
    this.nextPfn = first + npages;
    this.state.fill(FRAME_ALLOCATED, first, first + npages);
    this.allocated += npages;
    return first;
  }

  private ensureState(end: number): void {
    if (end <= this.state.length) return;
    const grown = new Uint8Array(Math.max(this.state.length * 2, end));
    grown.set(this.state);
    this.state = grown;
  }

  private pushFree(pfn: number): void {
    this.state[pfn] = FRAME_FREE;
    if (this.freeCount === this.freeList.length) {
      const grown = new Float64Array(this.freeList.length * 2);
      grown.set(this.freeList);
      this.freeList = grown;
    }
    this.freeList[this.freeCount++] = pfn;
  }

  freePage(pfn: number): void {
    this.assertAllocated(pfn, 'freePage');
    this.contents.delete(pfn);
    this.state[pfn] = FRAME_FREE;
    this.allocated--;
    if (this.freeCount === this.freeList.length) {
      const grown = new Float64Array(this.freeList.length * 2);
      grown.set(this.freeList);
      this.freeList = grown;
    }
    this.freeList[this.freeCount++] = pfn;
  }

  leakPage(pfn: number): void {
    this.assertAllocated(pfn, 'leakPage');
    this.state[pfn] = FRAME_LEAKED;
    this.allocated--;
    this.leaked++;
  }

  isAllocated(pfn: number): boolean {
    return pfn < this.state.length && this.state[pfn] === FRAME_ALLOCATED;
  }

  /** true for a frame that was leaked (never handed out again) */
  isLeaked(pfn: number): boolean {
    return pfn < this.state.length && this.state[pfn] === FRAME_LEAKED;
  }

  zeroPage(pfn: number): void {
    this.assertWritable(pfn, 'zeroPage');
    this.contents.delete(pfn);
  }

  readValue(pfn: number, offset: number, size: number): bigint {
    checkValueAccess(offset, size);
    const page = this.contents.get(pfn);
    if (page === undefined) return 0n;
    let v = 0n;
    for (let i = size - 1; i >= 0; i--) v = (v << 8n) | BigInt(page[offset + i]!);
    return v;
  }

  writeValue(pfn: number, offset: number, size: number, value: bigint): void {
    checkValueAccess(offset, size);
    this.assertWritable(pfn, 'writeValue');
    let v = BigInt.asUintN(size * 8, value);
    let page = this.contents.get(pfn);
    if (page === undefined) {
      if (v === 0n) return;
      page = new Uint8Array(PAGE_SIZE);
      this.contents.set(pfn, page);
    }
    for (let i = 0; i < size; i++) {
      page[offset + i] = Number(v & 0xffn);
      v >>= 8n;
    }
  }

  readBytes(pfn: number, offset: number, length: number): Uint8Array {
    checkRange(offset, length);
    const out = new Uint8Array(length);
    const page = this.contents.get(pfn);
    if (page !== undefined) out.set(page.subarray(offset, offset + length));
    return out;
  }

  writeBytes(pfn: number, offset: number, data: Uint8Array): void {
    checkRange(offset, data.length);
    this.assertWritable(pfn, 'writeBytes');
    let page = this.contents.get(pfn);
    if (page === undefined) {
      if (isAllZero(data)) return;
      page = new Uint8Array(PAGE_SIZE);
      this.contents.set(pfn, page);
    }
    page.set(data, offset);
  }

  private assertAllocated(pfn: number, op: string): void {
    if (!this.isAllocated(pfn)) throw new Error(`PhysMem.${op}: pfn 0x${pfn.toString(16)} is not allocated`);
  }

  private assertWritable(pfn: number, op: string): void {
    if (pfn === ZERO_PFN) throw new Error(`PhysMem.${op}: the shared zero page (pfn 0x${pfn.toString(16)}) is read-only`);
    this.assertAllocated(pfn, op);
  }
}

function checkValueAccess(offset: number, size: number): void {
  if (size !== 1 && size !== 2 && size !== 4 && size !== 8) throw new RangeError(`access size ${size} is not 1, 2, 4 or 8`);
  checkRange(offset, size);
}

function checkRange(offset: number, length: number): void {
  if (!Number.isInteger(offset) || !Number.isInteger(length) || offset < 0 || length < 0 || offset + length > PAGE_SIZE) {
    throw new RangeError(`access [${offset}, +${length}) does not fit in one page`);
  }
}

function isAllZero(data: Uint8Array): boolean {
  for (let i = 0; i < data.length; i++) if (data[i] !== 0) return false;
  return true;
}
