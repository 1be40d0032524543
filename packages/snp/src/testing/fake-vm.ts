/**
 * A small VmForBackend for the SNP backend's unit tests: one guest_memfd memslot whose
 * gfn N is backed by pfn `pfnBase + N`, a private "NPT" as a Map, attributes as a Set, and a
 * guest access loop shaped like the core's (walk → vendor check → fault → handleNpfExtra).
 */
import { KVM_MEMORY_ATTRIBUTE_PRIVATE, PG_LEVEL_2M, PG_LEVEL_4K, Tracer, UPSTREAM_PROFILE } from '@ccmem/core';
import type { GuestAccessVerdict, GuestMemoryFile, KernelProfile, MemslotView, TraceEvent, VendorBackend } from '@ccmem/core';
import type { VmForBackend } from '@ccmem/core';
import type { PhysMem } from '@ccmem/core';

export interface FakeVmOptions {
  phys: PhysMem;
  npages: number;
  /** first backing pfn (2M-aligned) */
  pfnBase: number;
  /** guest_memfd folio order (0 or 9) */
  order?: number;
  nrVcpus?: number;
}

export type AccessResult = GuestAccessVerdict | { kind: 'memory-fault'; gpa: number } | { kind: 'loop'; retries: number; last: GuestAccessVerdict };

export class FakeVm implements VmForBackend {
  readonly vmType = 4;
  readonly mmuInvalidateSeq = 0;
  profile: KernelProfile = UPSTREAM_PROFILE;
  readonly tracer = new Tracer();
  readonly events: TraceEvent[] = [];
  readonly nrVcpus: number;
  /** KVM_CAP_EXIT_HYPERCALL */
  exitHypercalls = 1 << 12;
  backend!: VendorBackend;
  readonly private = new Set<number>();
  /** private NPT: gfn → {pfn, level} of the leaf covering it */
  readonly npt = new Map<number, { gfn: number; pfn: number; level: number }>();
  readonly gmem = new Map<number, number>();
  readonly phys: PhysMem;
  readonly slot: MemslotView;
  zaps: [number, number][] = [];

  constructor(private readonly o: FakeVmOptions) {
    this.phys = o.phys;
    this.nrVcpus = o.nrVcpus ?? 1;
    this.slot = { id: 0, asId: 0, baseGfn: 0, npages: o.npages, userspaceAddr: 0x7f0000000000, flags: 4, gmemFile: {} as GuestMemoryFile, gmemPgoff: 0 };
    this.tracer.on((e) => this.events.push(e));
  }

  attach(b: VendorBackend): this {
    this.backend = b;
    b.attach(this);
    return this;
  }

  memIsPrivate(gfn: number): boolean {
    return this.private.has(gfn);
  }
  gfnToMemslot(gfn: number): MemslotView | null {
    return gfn >= 0 && gfn < this.o.npages ? this.slot : null;
  }
  zapGfnRange(start: number, end: number): void {
    this.zaps.push([start, end]);
    for (const [g, m] of [...this.npt]) if (m.gfn < end && m.gfn + (m.level === PG_LEVEL_2M ? 512 : 1) > start) this.npt.delete(g);
  }
  readPfn(pfn: number, offset: number, length: number): Uint8Array {
    return this.phys.readBytes(pfn, offset, length);
  }
  writePfn(pfn: number, offset: number, data: Uint8Array): void {
    this.phys.writeBytes(pfn, offset, data);
  }
  /** the VMM's memory is not modelled here (launch runs on the real VM: snp-e2e.test.ts) */
  copyFromUser(): null {
    return null;
  }
  pinUserPages(): Float64Array | null {
    return null;
  }
  copyToUser(): boolean {
    return false;
  }
  markBugged(): void {}
  userExitOnHypercall(nr: number): boolean {
    return (this.exitHypercalls & (1 << nr)) !== 0;
  }
  /** launch runs on the real VM (snp-e2e.test.ts): this VM has no guest_memfd to populate */
  gmemPopulate(): number {
    return -22;
  }
  /** no mirror root, no private faults from the backend in these tests */
  forEachMirrorLeaf(): void {}
  forEachDirectLeaf(): void {}
  handlePrivateFault(): number {
    return -22;
  }
  kickAllVcpus(): number {
    return this.nrVcpus;
  }
  mapPrivatePfn(): number {
    return 0;
  }
  /** kvm_gmem_get_pfn(): allocate (identity) and prepare once per folio */
  gmemGetPfn(gfn: number): { pfn: number; maxOrder: number } | { errno: number } {
    if (!this.gfnToMemslot(gfn)) return { errno: -22 };
    const order = this.o.order ?? 0;
    const pfn = this.o.pfnBase + gfn;
    if (!this.gmem.has(gfn)) {
      const n = 1 << order;
      const g0 = gfn - (gfn % n);
      for (let i = 0; i < n; i++) this.gmem.set(g0 + i, this.o.pfnBase + g0 + i);
      const r = this.backend.gmemPrepare?.(this.o.pfnBase + g0, g0, order) ?? 0;
      if (r < 0) return { errno: r };
    }
    return { pfn, maxOrder: order };
  }
  gmemPeekPfn(gfn: number): number {
    return this.gmem.get(gfn) ?? -1;
  }
  forEachPrivateMapping(fn: (gfn: number, pfn: number, level: number) => void): void {
    const seen = new Set<number>();
    for (const m of this.npt.values()) {
      if (seen.has(m.gfn)) continue;
      seen.add(m.gfn);
      fn(m.gfn, m.pfn, m.level);
    }
  }

  /** guest_memfd hole punch: free the folio's pages (sev_gmem_invalidate) */
  punchHole(gfnStart: number, gfnEnd: number): void {
    const pfns = [];
    for (let g = gfnStart; g < gfnEnd; g++) {
      const p = this.gmem.get(g);
      if (p !== undefined) pfns.push(p);
      this.gmem.delete(g);
    }
    this.zapGfnRange(gfnStart, gfnEnd);
    if (pfns.length) this.backend.gmemInvalidate?.(Math.min(...pfns), Math.max(...pfns) + 1);
  }

  /** a private page fault: map at min(folio order, vendor level), or force a level */
  faultPrivate(gfn: number, forceLevel?: number): boolean {
    if (!this.memIsPrivate(gfn)) return false;
    const r = this.gmemGetPfn(gfn);
    if (!('pfn' in r)) return false;
    let level = r.maxOrder >= 9 ? PG_LEVEL_2M : PG_LEVEL_4K;
    const v = this.backend.gmemMaxMappingLevel?.(r.pfn, true) ?? 0;
    if (v && v < level) level = v;
    if (forceLevel) level = forceLevel;
    const g0 = level === PG_LEVEL_2M ? gfn - (gfn % 512) : gfn;
    const p0 = level === PG_LEVEL_2M ? r.pfn - (r.pfn % 512) : r.pfn;
    const m = { gfn: g0, pfn: p0, level };
    for (let i = 0; i < (level === PG_LEVEL_2M ? 512 : 1); i++) this.npt.set(g0 + i, m);
    return true;
  }

  /** one private guest access, retried like the core does after an #NPF */
  accessPrivate(gpa: number, opts: { forceLevel?: number } = {}): AccessResult {
    const gfn = Math.floor(gpa / 4096);
    let last: GuestAccessVerdict = { kind: 'ok' };
    for (let tries = 0; tries < 8; tries++) {
      let m = this.npt.get(gfn);
      if (!m) {
        if (!this.memIsPrivate(gfn)) return { kind: 'memory-fault', gpa: gfn * 4096 };
        this.faultPrivate(gfn, opts.forceLevel);
        m = this.npt.get(gfn)!;
      }
      const pfn = m.pfn + (gfn - m.gfn);
      last = this.backend.checkGuestAccess!({ vcpuId: 0, gpa, gfn, pfn, level: m.level, isPrivate: true, write: true, fetch: false });
      if (last.kind !== 'npf') return last;
      this.backend.handleNpfExtra?.(0, gpa, last.errorCode);
    }
    return { kind: 'loop', retries: 8, last };
  }

  /** KVM_SET_MEMORY_ATTRIBUTES in the core's phases: pre, zap + store, post */
  setAttributes(start: number, end: number, priv: boolean): void {
    const change = { start, end, attributes: priv ? KVM_MEMORY_ATTRIBUTE_PRIVATE : 0 };
    this.backend.preSetMemoryAttributes?.(change);
    this.zapGfnRange(start, end);
    for (let g = start; g < end; g++) priv ? this.private.add(g) : this.private.delete(g);
    this.backend.setMemoryAttributesLocked?.(change);
    this.backend.postSetMemoryAttributes?.(change);
  }
}
