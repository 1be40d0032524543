/**
 * A minimal guest-memory file for @ccmem/core's own tests (the real guest_memfd lives in
 * @ccmem/gmem, which the core may not import). Pages are allocated on first getPfn.
 */
import { ERRNO, fail } from '../errno.js';
import type { GmemPfn, GuestMemoryFile, MemslotView } from '../backend.js';
import type { HostPhysMem } from '../backend.js';

export class FakeGmem implements GuestMemoryFile {
  readonly kind = 'kvm-gmem';
  readonly flags = 0;
  readonly gmemOnly = false;
  live = true;
  readonly pages = new Map<number, number>();
  readonly bound = new Map<number, MemslotView>();
  getPfnCalls = 0;

  constructor(
    readonly ownerVm: unknown,
    readonly size: number,
    private readonly phys: HostPhysMem,
  ) {}

  bind(slot: MemslotView, offset: number): void {
    if (offset % 4096 !== 0 || offset + slot.npages * 4096 > this.size) fail('EINVAL', 'fake gmem: bad offset');
    const pg = offset / 4096;
    for (let i = 0; i < slot.npages; i++) if (this.bound.has(pg + i)) fail('EEXIST', 'fake gmem: overlap');
    for (let i = 0; i < slot.npages; i++) this.bound.set(pg + i, slot);
  }

  unbind(slot: MemslotView): void {
    for (const [pg, s] of this.bound) if (s.id === slot.id && s.asId === slot.asId) this.bound.delete(pg);
  }

  getPfn(slot: MemslotView, gfn: number, out: GmemPfn): number {
    this.getPfnCalls++;
    if (!this.live) return -ERRNO.EFAULT;
    const index = gfn - slot.baseGfn + slot.gmemPgoff;
    let pfn = this.pages.get(index);
    if (pfn === undefined) {
      pfn = this.phys.allocPage();
      this.pages.set(index, pfn);
    }
    out.pfn = pfn;
    out.maxOrder = 0;
    return 0;
  }

  peekPfn(slot: MemslotView, gfn: number): number {
    return this.pages.get(gfn - slot.baseGfn + slot.gmemPgoff) ?? -1;
  }

  release(): void {
    this.live = false;
  }
}
