/**
 * A private memslot backed by a device's own memory, exported as an fd: the model of Xu
 * Yilun's RFC "KVM: Support vfio_dmabuf backed MMIO region" (v1 Jan 2025, v2 May 2025, part
 * of the TDX Connect / TEE-IO work; NOT merged upstream). See mmu-and-vendors.md §D and
 * docs/gmem.md. What the model takes from the RFC:
 *  - the fd goes in kvm_userspace_memory_region2.guest_memfd, and the offset must be 0;
 *  - pfns come from the device region (dma_buf_get_pfn_unlocked), not from a page cache:
 *    nothing is allocated, zeroed or prepared (no kvm_arch_gmem_prepare step), nothing is
 *    freed to the host (no kvm_arch_gmem_invalidate);
 *  - the exporter can revoke the region (move_notify): KVM zaps both the private and the
 *    shared mappings of every bound range, and later lookups fail;
 *  - the provider reports the region's natural alignment as max_order; the vendor's
 *    gmem_max_mapping_level (TDX private: 4K) is what limits the mapping level.
 * Model choices where the RFC is silent or differs in plumbing:
 *  - the RFC uses its own slot flag (KVM_MEM_VFIO_DMABUF, 1<<3); the model binds through
 *    the core's guest_memfd path, so the slot carries KVM_MEM_GUEST_MEMFD;
 *  - a lookup on a revoked region returns -EFAULT (a KVM_EXIT_MEMORY_FAULT for the VMM);
 *  - KVM holds its own dma-buf reference per bound slot, so closing the VMM's fd does not
 *    invalidate bound slots; the import ends when the last bound slot goes. The fd does
 *    not keep the VM alive (it is the device's, not KVM's).
 *  - `hostAccessible` models Yan Zhao's request (seed 004): device memory whose host
 *    access cannot hurt the machine may stay mmap-able by the VMM while mapped privately.
 */
import { ERRNO, KVM_FILTER_PRIVATE, KVM_FILTER_SHARED, PAGE_SIZE, fail } from '@ccmem/core';
import type { ErrnoName, FileMappingBacking, GmemPfn, GmemPopulateRequest, GuestMemoryFile, HostPhysMem, MemslotView, VmForProvider } from '@ccmem/core';
import { GmemBindings, bindingGfnRange, slotBytes } from './bindings.js';
import type { GmemBinding } from './bindings.js';

/** Largest order the region reports (1 GiB, PG_LEVEL_1G). */
const MAX_DEVICE_ORDER = 18;

export interface DeviceMemoryRegionOptions {
  /** bytes; a positive multiple of PAGE_SIZE */
  readonly size: number;
  /**
   * First frame of a BAR-like pfn range outside host RAM. Without it the region's frames
   * are allocated from host physical memory at creation.
   */
  readonly basePfn?: number;
}

/** The device side: `size` bytes of the device's own frames, which it can revoke. */
export class DeviceMemoryRegion {
  readonly size: number;
  readonly npages: number;
  /** frames are consecutive, so naturally aligned blocks can be mapped huge */
  readonly contiguous: boolean;
  private readonly pfns: Float64Array;
  private readonly phys: HostPhysMem | null;
  private revokedFlag = false;
  private destroyed = false;
  /** frames taken with allocContiguous (a power of two ≥ npages), 0 otherwise */
  private contiguousSpan = 0;
  private readonly importers = new Set<DeviceFdFile>();

  constructor(phys: HostPhysMem, opts: DeviceMemoryRegionOptions) {
    const { size, basePfn } = opts;
    if (!Number.isInteger(size) || size <= 0 || size % PAGE_SIZE !== 0) {
      fail('EINVAL', 'device region: size must be a positive multiple of PAGE_SIZE');
    }
    this.size = size;
    this.npages = size / PAGE_SIZE;
    this.pfns = new Float64Array(this.npages);
    let contiguous = true;
    if (basePfn !== undefined) {
      for (let i = 0; i < this.npages; i++) this.pfns[i] = basePfn + i;
      this.phys = null;
    } else if (phys.allocContiguous) {
      // A BAR is naturally aligned to its (power-of-two) size: take frames the same way.
      let span = 1;
      while (span < this.npages) span *= 2;
      const first = phys.allocContiguous(span);
      for (let i = 0; i < this.npages; i++) this.pfns[i] = first + i;
      this.contiguousSpan = span;
      this.phys = phys;
    } else {
      for (let i = 0; i < this.npages; i++) {
        this.pfns[i] = phys.allocPage();
        if (i > 0 && this.pfns[i] !== this.pfns[i - 1]! + 1) contiguous = false;
      }
      this.phys = phys;
    }
    this.contiguous = contiguous;
  }

  get revoked(): boolean {
    return this.revokedFlag;
  }

  pfnAt(pgoff: number): number {
    return this.pfns[pgoff]!;
  }

  /**
   * log2 of the largest block around `pgoff` that a huge mapping may cover, like a folio's
   * order: the block must lie inside the region and be naturally aligned both in pfn and in
   * file offset, because kvm_mmu_hugepage_adjust() aligns gfn and pfn down together.
   */
  maxOrderAt(pgoff: number): number {
    if (!this.contiguous) return 0;
    const base = this.pfns[0]!;
    const pfn = base + pgoff;
    let order = 0;
    for (let k = 1; k <= MAX_DEVICE_ORDER; k++) {
      const n = 2 ** k;
      if ((pfn - pgoff) % n !== 0) break; // pfn and offset disagree within the block
      const first = pfn - (pfn % n);
      if (first < base || first + n > base + this.npages) break;
      order = k;
    }
    return order;
  }

  /**
   * The device takes its memory back (e.g. vfio_pci_dma_buf_move(revoked=true) on reset or
   * memory-disable): the exporter marks it revoked, then every importer's move_notify runs.
   */
  revoke(): void {
    if (this.revokedFlag) return;
    this.revokedFlag = true;
    for (const f of this.importers) f.moveNotify();
  }

  /** the device gives access back; importers fault pages in again on demand */
  restore(): void {
    this.revokedFlag = false;
  }

  /** hot-unplug: revoke, then return RAM-backed frames to the host */
  destroy(): void {
    if (this.destroyed) return;
    this.revoke();
    this.destroyed = true;
    if (this.phys && this.contiguousSpan > 0 && this.phys.freeContiguous) {
      this.phys.freeContiguous(this.pfns[0]!, this.contiguousSpan);
    } else if (this.phys) {
      for (let i = 0; i < this.npages; i++) this.phys.freePage(this.pfns[i]!);
    }
  }

  /** @internal */
  attach(f: DeviceFdFile): void {
    this.importers.add(f);
  }
  /** @internal */
  detach(f: DeviceFdFile): void {
    this.importers.delete(f);
  }
}

export interface DeviceFdOptions {
  /** bytes exported; defaults to the region's size */
  readonly size?: number;
  /** an existing region; without it a new one of `size` bytes is created from vm.phys */
  readonly region?: DeviceMemoryRegion;
  /**
   * The VMM may mmap the fd and touch the device memory even while the guest maps it
   * privately (Yan Zhao, seed 004: the device memory "will not cause the severe machine
   * check"). Default false: no host mapping at all.
   */
  readonly hostAccessible?: boolean;
}

/** The device region as a memory provider for private memslots. */
export class DeviceFdFile implements GuestMemoryFile, FileMappingBacking {
  readonly kind = 'device-fd';
  readonly ownerVm: VmForProvider;
  readonly size: number;
  readonly flags = 0;
  /** shared faults keep going through the slot's userspace_addr */
  readonly gmemOnly = false;
  readonly hostAccessible: boolean;
  readonly region: DeviceMemoryRegion;

  private readonly vm: VmForProvider;
  private readonly bindings = new GmemBindings();
  private fdOpen = true;
  private imported = true;

  constructor(vm: VmForProvider, region: DeviceMemoryRegion, size: number, hostAccessible: boolean) {
    this.vm = vm;
    this.ownerVm = vm;
    this.region = region;
    this.size = size;
    this.hostAccessible = hostAccessible;
    region.attach(this);
  }

  /** the import exists: the fd is open or a bound slot still holds its reference */
  get live(): boolean {
    return this.imported;
  }

  get revoked(): boolean {
    return this.region.revoked;
  }

  bind(slot: MemslotView, offset: number): void {
    if (!this.imported) fail('EBADF', 'device fd: fget');
    // A device fd never runs the vendor's gmem_prepare (the frames are the device's), so a VM
    // type that makes private pages usable there (gmemPrepareRequired; SEV-SNP: the RMP assignment in
    // sev_gmem_prepare()) could never run on them: every PVALIDATE would end in an RMP #NPF on an
    // unassigned page, forever. The vfio_dmabuf RFC only serves TDX (private MMIO through the
    // TDX module); the model refuses such a binding with EINVAL (docs/gmem.md).
    if (this.vm.backend?.gmemPrepareRequired) {
      fail('EINVAL', `device fd bind: the ${this.vm.backend.name} VM type needs gmem_prepare for private pages, which a device fd cannot run`);
    }
    const size = slotBytes(slot);
    if (offset < 0 || !Number.isInteger(offset) || offset % PAGE_SIZE !== 0 || offset + size > this.size) {
      fail('EINVAL', 'device fd bind: offset < 0, unaligned, or offset + size > region size');
    }
    if (offset !== 0) fail('EINVAL', 'device fd bind: offset must be 0 (vfio_dmabuf RFC)');
    const start = 0;
    const end = slot.npages;
    if (this.bindings.anyIn(start, end)) {
      fail(this.vm.profile.gmemBindOverlapErrno, 'device fd bind: page already bound to another memslot');
    }
    this.bindings.add(slot, start, end);
    this.vm.tracer.emit('kvm_device_fd_bind', { slot: slot.id, as_id: slot.asId, npages: slot.npages });
  }

  unbind(slot: MemslotView): void {
    if (this.bindings.remove(slot) === undefined) return;
    if (!this.fdOpen && this.bindings.size === 0) this.endImport();
  }

  boundRanges(): readonly GmemBinding[] {
    return this.bindings.all();
  }

  /** side-effect-free: the device pfn backing `gfn` of `slot`, or -1 once revoked */
  peekPfn(slot: MemslotView, gfn: number): number {
    if (slot.gmemFile !== this || this.region.revoked) return -1;
    return this.region.pfnAt(gfn - slot.baseGfn + slot.gmemPgoff);
  }

  /**
   * kvm_gmem_populate() on a device region: refused (-EINVAL). The RFC binds MMIO, whose
   * contents the device owns: there is no page cache to fill from a source page and mark up to
   * date, and a vendor's launch flow (SNP_LAUNCH_UPDATE, TDH.MEM.PAGE.ADD) never measures device
   * memory into the TD.
   */
  populate(_req: GmemPopulateRequest): number {
    return -ERRNO.EINVAL;
  }

  /** kvm_vfio_dmabuf_get_pfn() in the RFC: same shape as kvm_gmem_get_pfn, no prepare step */
  getPfn(slot: MemslotView, gfn: number, out: GmemPfn): number {
    if (!this.imported) return -ERRNO.EFAULT;
    if (slot.gmemFile !== this) return -ERRNO.EFAULT;
    const index = gfn - slot.baseGfn + slot.gmemPgoff;
    if (!this.bindings.isBoundTo(index, slot)) return -ERRNO.EIO;
    if (this.region.revoked) return -ERRNO.EFAULT;
    out.pfn = this.region.pfnAt(index);
    out.maxOrder = this.region.maxOrderAt(index);
    return 0;
  }

  /** revoke the whole region (the exporter's side; see DeviceMemoryRegion.revoke) */
  revoke(): void {
    this.region.revoke();
  }

  /**
   * move_notify from the exporter: zap both the private and the shared mappings of every
   * bound range, each in its own invalidate begin/end.
   * @internal called by DeviceMemoryRegion
   */
  moveNotify(): void {
    for (const b of this.bindings.all()) {
      const r = bindingGfnRange(b, b.start, b.end);
      this.vm.mmuInvalidateBegin();
      this.vm.mmuUnmapGfnRange(r.start, r.end, KVM_FILTER_PRIVATE | KVM_FILTER_SHARED);
      this.vm.mmuInvalidateEnd();
    }
    this.vm.tracer.emit('kvm_device_fd_move_notify', { bindings: this.bindings.size });
  }

  checkMmap(shared: boolean): ErrnoName | null {
    if (!this.hostAccessible) return 'ENODEV';
    if (!shared) return 'EINVAL';
    return null;
  }

  /**
   * A host access through the VMM's mapping: the device frame, whether or not the guest
   * maps the same page privately (that is the point of `hostAccessible`).
   */
  faultPage(pgoff: number, _write: boolean): number | 'SIGBUS' {
    if (!this.hostAccessible) return 'SIGBUS';
    if (pgoff * PAGE_SIZE >= this.size) return 'SIGBUS';
    if (this.region.revoked) return 'SIGBUS';
    return this.region.pfnAt(pgoff);
  }

  /** close(2) of the VMM's fd: bound slots keep KVM's own reference */
  release(): void {
    if (!this.fdOpen) throw new Error('device fd closed twice');
    this.fdOpen = false;
    if (this.bindings.size === 0) this.endImport();
  }

  private endImport(): void {
    this.imported = false;
    this.region.detach(this);
    this.vm.tracer.emit('kvm_device_fd_release', {});
  }
}

/** Export `size` bytes of a (new or given) device region as an fd for private memslots. */
export function createDeviceFd(vm: VmForProvider, opts: DeviceFdOptions): DeviceFdFile {
  const region = opts.region ?? new DeviceMemoryRegion(vm.phys, { size: opts.size ?? 0 });
  const size = opts.size ?? region.size;
  if (!Number.isInteger(size) || size <= 0 || size % PAGE_SIZE !== 0 || size > region.size) {
    fail('EINVAL', 'device fd: size must be a positive multiple of PAGE_SIZE within the region');
  }
  return new DeviceFdFile(vm, region, size, opts.hostAccessible ?? false);
}
