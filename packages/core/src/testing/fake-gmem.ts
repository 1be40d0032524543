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
  live = true;
  readonly pages = new Map<number, number>();
  readonly bindings = new Map<number, MemslotView>();
  getPfnCalls = 0;
  unbinds = 0;

  /** `phys` null: a file that is only bound, never faulted */
  constructor(
    readonly ownerVm: unknown,
    readonly size: number,
    private readonly phys: HostPhysMem | null = null,
    readonly gmemOnly = false,
  ) {}

  bind(slot: MemslotView, offset: number): void {
    if (offset % 4096 !== 0 || offset + slot.npages * 4096 > this.size) fail('EINVAL', 'kvm_gmem_bind: offset');
    const pg = offset / 4096;
    for (let i = 0; i < slot.npages; i++) if (this.bindings.has(pg + i)) fail('EEXIST', 'kvm_gmem_bind: page already bound');
    for (let i = 0; i < slot.npages; i++) this.bindings.set(pg + i, slot);
  }

  unbind(slot: MemslotView): void {
    this.unbinds++;
    for (const [pg, s] of this.bindings) if (s.id === slot.id && s.asId === slot.asId) this.bindings.delete(pg);
  }

  getPfn(slot: MemslotView, gfn: number, out: GmemPfn): number {
    this.getPfnCalls++;
    if (!this.live) return -ERRNO.EFAULT;
    const index = gfn - slot.baseGfn + slot.gmemPgoff;
    let pfn = this.pages.get(index);
    if (pfn === undefined) {
      if (this.phys === null) return -ERRNO.EFAULT;
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

  /** the core's own tests never populate: refused like a provider without populate support */
  populate(): number {
    return -ERRNO.EINVAL;
  }

  release(): void {
    this.live = false;
  }
}
