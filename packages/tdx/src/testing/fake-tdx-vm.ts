/**
 * A small stand-in for the engine, used by this package's tests (host memory is core's
 * PhysMem): a VM whose "TDP MMU" only does what the mirror-root hooks need (link missing S-EPT
 * levels, then set / remove leaves). Not exported from the package entry point.
 */
import type { HostPhysMem, KvmGmemPopulateArgs, MemslotView, VmForBackend } from '@ccmem/core';
import type { TdxBackend } from '../tdx-backend.js';


/**
 * A VM for the TDX backend: every gfn below `privateGfns` is private and backed by a gmem pfn;
 * `mapPrivatePfn` / `mapPrivate` walk the mirror root as kvm_tdp_mmu_map does (SEPT.ADD for each
 * missing level from the top, then the leaf), retrying on -EBUSY like RET_PF_RETRY.
 */
export class FakeTdxVm implements VmForBackend {
  readonly vmType = 5;
  readonly mmuInvalidateSeq = 0;
  readonly tracer = { enabled: false, emit(): void {} };
  nrVcpus = 2;
  kicks = 0;
  bugged: string | null = null;
  readonly userMemory = new Map<number, Uint8Array>();
  /** mirror root: linked tables by (pg level << 48 | key), leaves by gfn → pfn / level */
  readonly mirrorTables = new Map<string, number>();
  readonly mirrorLeaves = new Map<number, { pfn: number; level: number }>();
  readonly directLeaves = new Map<number, number>();
  readonly gmemPfn = new Map<number, number>();
  readonly log: string[] = [];
  private backend: TdxBackend | null = null;
  privateAttr = true;
  hypercallExit = true;

  constructor(
    readonly phys: HostPhysMem,
    readonly privateGfns = 2 ** 20,
  ) {}

  bind(backend: TdxBackend): void {
    this.backend = backend;
    backend.attach(this);
  }

  memIsPrivate(gfn: number): boolean {
    return this.privateAttr && gfn < this.privateGfns;
  }
  gfnToMemslot(gfn: number): MemslotView | null {
    if (gfn >= this.privateGfns) return null;
    return {
      id: 0,
      asId: 0,
      baseGfn: 0,
      npages: this.privateGfns,
      userspaceAddr: 0x7f0000000000,
      flags: 4,
      gmemFile: {} as MemslotView['gmemFile'],
      gmemPgoff: 0,
    };
  }
  zapGfnRange(): void {}
  readPfn(pfn: number, offset: number, length: number): Uint8Array {
    return this.phys.readBytes(pfn, offset, length);
  }
  writePfn(pfn: number, offset: number, data: Uint8Array): void {
    this.phys.writeBytes(pfn, offset, data);
  }
  copyFromUser(hva: number, length: number): Uint8Array | null {
    const b = this.userMemory.get(hva);
    if (b) return b.slice(0, length);
    return hva >= 0x1000 ? new Uint8Array(length) : null;
  }
  copyToUser(): boolean {
    return true;
  }
  markBugged(reason: string): void {
    this.log.push(`bugged: ${reason}`);
    if (!this.bugged) this.bugged = reason;
  }
  kickAllVcpus(reason: string): number {
    this.kicks++;
    this.log.push(`kick: ${reason}`);
    return this.nrVcpus;
  }
  gmemGetPfn(gfn: number): { pfn: number; maxOrder: number } | { errno: number } {
    if (gfn >= this.privateGfns) return { errno: -14 };
    let pfn = this.gmemPfn.get(gfn);
    if (pfn === undefined) {
      pfn = this.phys.allocPage();
      this.gmemPfn.set(gfn, pfn);
    }
    return { pfn, maxOrder: 0 };
  }

  gmemPeekPfn(gfn: number): number {
    return this.gmemPfn.get(gfn) ?? -1;
  }
  /** KVM_TDX_INIT_MEM_REGION populates one page per call: the first page of the request only */
  gmemPopulate(args: KvmGmemPopulateArgs): number {
    const gfn = args.startGfn;
    if (!this.gfnToMemslot(gfn)) return -22;
    const src = args.src === null ? null : this.copyFromUser(args.src, 4096);
    if (args.src !== null && src === null) return -14;
    const r = this.gmemGetPfn(gfn);
    if ('errno' in r) return r.errno;
    if (!this.memIsPrivate(gfn)) return -22;
    const ret = args.postPopulate(gfn, r.pfn, src);
    return ret < 0 ? ret : 1;
  }

  /** link missing mirror levels (pg levels rootLevel..level+1) then set the leaf at `level` */
  mapPrivate(gfn: number, pfn: number, level = 1): number {
    const b = this.backend!;
    const top = b.td.sept ? b.td.sept.rootLevel + 1 : 4;
    for (let l = top; l > level; l--) {
      const key = `${l}:${Math.floor(gfn / 512 ** (l - 1))}`;
      if (this.mirrorTables.has(key)) continue;
      const spt = this.phys.allocPage();
      const base = Math.floor(gfn / 512 ** (l - 1)) * 512 ** (l - 1);
      let r = b.linkExternalSpt(base, l, spt);
      while (r === -16) r = b.linkExternalSpt(base, l, spt);
      if (r < 0) return r;
      this.mirrorTables.set(key, spt);
    }
    let r = b.setExternalSpte(gfn, level, pfn);
    while (r === -16) r = b.setExternalSpte(gfn, level, pfn);
    if (r < 0) return r;
    this.mirrorLeaves.set(gfn, { pfn, level });
    return 0;
  }
  mapPrivatePfn(gfn: number, pfn: number): number {
    return this.mapPrivate(gfn, pfn, 1);
  }
  /** zap one private leaf (mmu_lock held for write) */
  zapPrivate(gfn: number): void {
    const leaf = this.mirrorLeaves.get(gfn);
    if (!leaf) return;
    this.mirrorLeaves.delete(gfn);
    this.backend!.removeExternalSpte(gfn, leaf.level, leaf.pfn);
  }
  /** kvm_mmu_uninit_tdp_mmu on the mirror root: free every table page bottom-up */
  freeMirrorTables(): number[] {
    const results: number[] = [];
    const entries = [...this.mirrorTables.entries()].sort((a, b) => Number(a[0].split(':')[0]) - Number(b[0].split(':')[0]));
    for (const [key, spt] of entries) {
      const [l, k] = key.split(':').map(Number) as [number, number];
      results.push(this.backend!.freeExternalSpt(k * 512 ** (l - 1), l, spt));
      this.mirrorTables.delete(key);
    }
    return results;
  }

  forEachMirrorLeaf(cb: (gfn: number, level: number, pfn: number) => void): void {
    for (const [gfn, l] of this.mirrorLeaves) cb(gfn, l.level, l.pfn);
  }
  forEachPrivateMapping(cb: (gfn: number, pfn: number, level: number) => void): void {
    for (const [gfn, l] of this.mirrorLeaves) cb(gfn, l.pfn, l.level);
  }
  forEachDirectLeaf(cb: (gfn: number, level: number, pfn: number) => void): void {
    for (const [gfn, pfn] of this.directLeaves) cb(gfn, 1, pfn);
  }
  userExitOnHypercall(): boolean {
    return this.hypercallExit;
  }
  handlePrivateFault(_vcpuId: number, gpa: number): number {
    const gfn = Math.floor(gpa / 4096);
    const r = this.gmemGetPfn(gfn);
    if ('errno' in r) return r.errno;
    return this.mapPrivate(gfn, r.pfn, 1);
  }
}
