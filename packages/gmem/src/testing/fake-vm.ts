/**
 * A stand-in for @ccmem/core's VM as memory providers see it (VmForProvider), recording
 * every call a provider makes into the VM and its vendor hooks, so tests can check their
 * order. Also a small host-physical-memory allocator and memslot views.
 */
import {
  GUEST_MEMFD_FLAG_INIT_SHARED,
  GUEST_MEMFD_FLAG_MMAP,
  KVM_MEM_GUEST_MEMFD,
  KVM_MEMSLOT_GMEM_ONLY,
  KVM_X86_DEFAULT_VM,
  PAGE_SIZE,
} from '@ccmem/core';
import type { GuestMemoryFile, HostPhysMem, KernelProfile, MemslotView, TraceEvent, VendorBackend, VmForProvider } from '@ccmem/core';

/** newest upstream: EEXIST for overlapping bindings (commit 7ea987a9) */
export const TEST_UPSTREAM_PROFILE: KernelProfile = {
  name: 'upstream',
  gmemBindOverlapErrno: 'EEXIST',
  smmAddressSpaces: true,
  multiAddressSpaceCap: 2,
  memoryAttributes: true,
  preFaultMemory: true,
  vmTypes: 0x3f,
  gmemFlagsDefaultVm: GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED,
  pciHole: false,
};

/** v6.18: EINVAL for overlapping bindings */
export const TEST_6_18_PROFILE: KernelProfile = {
  ...TEST_UPSTREAM_PROFILE,
  name: 'linux-6.18',
  gmemBindOverlapErrno: 'EINVAL',
};

export type ProviderCall =
  | { op: 'begin' }
  | { op: 'unmap'; start: number; end: number; filter: number }
  | { op: 'end' }
  | { op: 'prepare'; pfn: number; gfn: number; order: number }
  | { op: 'invalidate'; start: number; end: number }
  | { op: 'free'; pfn: number }
  | { op: 'leak'; pfn: number }
  | { op: 'get' }
  | { op: 'put' };

/** Host frames: a free list and sparse contents. Never-written frames read as zero. */
export class FakePhysMem implements HostPhysMem {
  private next: number;
  private readonly freeList: number[] = [];
  private allocated = new Uint8Array(1024);
  private readonly contents = new Map<number, Uint8Array>();
  private readonly leaked = new Set<number>();
  allocatedPages = 0;
  /** called on every free and leak, for the recorder */
  onFree: ((pfn: number, leak: boolean) => void) | null = null;

  constructor(firstPfn = 0x1000) {
    this.next = firstPfn;
  }

  get storedPages(): number {
    return this.contents.size;
  }

  allocPage(): number {
    const pfn = this.freeList.length > 0 ? this.freeList.pop()! : this.next++;
    if (pfn >= this.allocated.length) {
      const grown = new Uint8Array(Math.max(pfn + 1, this.allocated.length * 2));
      grown.set(this.allocated);
      this.allocated = grown;
    }
    this.allocated[pfn] = 1;
    this.allocatedPages++;
    return pfn;
  }

  freePage(pfn: number): void {
    if (!this.isAllocated(pfn)) throw new Error(`freePage(${pfn}): not allocated`);
    this.allocated[pfn] = 0;
    this.allocatedPages--;
    this.contents.delete(pfn);
    this.freeList.push(pfn);
    this.onFree?.(pfn, false);
  }

  leakPage(pfn: number): void {
    if (!this.isAllocated(pfn)) throw new Error(`leakPage(${pfn}): not allocated`);
    this.allocated[pfn] = 0;
    this.allocatedPages--;
    this.contents.delete(pfn);
    this.leaked.add(pfn);
    this.onFree?.(pfn, true);
  }

  isLeaked(pfn: number): boolean {
    return this.leaked.has(pfn);
  }

  isAllocated(pfn: number): boolean {
    return this.allocated[pfn] === 1;
  }

  zeroPage(pfn: number): void {
    this.contents.delete(pfn);
  }

  readValue(pfn: number, offset: number, size: number): bigint {
    const b = this.readBytes(pfn, offset, size);
    let v = 0n;
    for (let i = size - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]!);
    return v;
  }

  writeValue(pfn: number, offset: number, size: number, value: bigint): void {
    const b = new Uint8Array(size);
    for (let i = 0; i < size; i++) b[i] = Number((value >> BigInt(8 * i)) & 0xffn);
    this.writeBytes(pfn, offset, b);
  }

  readBytes(pfn: number, offset: number, length: number): Uint8Array {
    const page = this.contents.get(pfn);
    return page ? page.slice(offset, offset + length) : new Uint8Array(length);
  }

  writeBytes(pfn: number, offset: number, data: Uint8Array): void {
    let page = this.contents.get(pfn);
    if (!page) {
      page = new Uint8Array(PAGE_SIZE);
      this.contents.set(pfn, page);
    }
    page.set(data, offset);
  }
}

export interface FakeVmOptions {
  vmType?: number;
  hasPrivateMem?: boolean;
  profile?: KernelProfile;
  /** record calls (off for benchmarks) */
  record?: boolean;
  /** install a vendor backend with recording gmem_prepare / gmem_invalidate hooks */
  withBackend?: boolean;
}

/** VmForProvider with the MMU-invalidation counters of `struct kvm` and a call log. */
export class FakeVm implements VmForProvider {
  readonly vmType: number;
  readonly profile: KernelProfile;
  readonly hasPrivateMem: boolean;
  readonly phys = new FakePhysMem();
  readonly backend: VendorBackend | null;
  readonly calls: ProviderCall[] = [];
  readonly events: TraceEvent[] = [];
  readonly tracer = { emit: (name: string, fields: TraceEvent['fields']) => void this.events.push({ name, fields }) };
  record: boolean;
  /** kvm->users_count, starting with the VM fd's reference */
  refs = 1;
  mmuInvalidateSeq = 0;
  mmuInvalidateInProgress = 0;
  /** what the next gmem_prepare returns */
  prepareResult = 0;

  constructor(opts: FakeVmOptions = {}) {
    this.vmType = opts.vmType ?? KVM_X86_DEFAULT_VM;
    this.hasPrivateMem = opts.hasPrivateMem ?? this.vmType !== KVM_X86_DEFAULT_VM;
    this.profile = opts.profile ?? TEST_UPSTREAM_PROFILE;
    this.record = opts.record ?? true;
    this.phys.onFree = (pfn, leak) => this.log(leak ? { op: 'leak', pfn } : { op: 'free', pfn });
    this.backend = opts.withBackend ? this.makeBackend() : null;
  }

  private log(c: ProviderCall): void {
    if (this.record) this.calls.push(c);
  }

  private makeBackend(): VendorBackend {
    return {
      name: 'fake',
      vmType: this.vmType,
      attach: () => {},
      hasPrivateMem: this.hasPrivateMem,
      hasReadonlyMem: !this.hasPrivateMem,
      nrMemslotAsIds: 1,
      hasMirroredTdp: false,
      gfnDirectBits: 0,
      supportsGmemInitShared: !this.hasPrivateMem,
      preFaultAllowed: () => true,
      gmemPrepare: (pfn, gfn, order) => {
        this.log({ op: 'prepare', pfn, gfn, order });
        return this.prepareResult;
      },
      gmemInvalidate: (start, end) => this.log({ op: 'invalidate', start, end }),
    };
  }

  mmuInvalidateBegin(): void {
    this.mmuInvalidateInProgress++;
    this.log({ op: 'begin' });
  }

  mmuUnmapGfnRange(start: number, end: number, filter: number): void {
    if (this.mmuInvalidateInProgress <= 0) throw new Error('kvm_mmu_unmap_gfn_range outside an invalidation');
    this.log({ op: 'unmap', start, end, filter });
  }

  mmuInvalidateEnd(): void {
    this.mmuInvalidateSeq++;
    this.mmuInvalidateInProgress--;
    if (this.mmuInvalidateInProgress < 0) throw new Error('kvm_mmu_invalidate_end without begin');
    this.log({ op: 'end' });
  }

  get(): void {
    this.refs++;
    this.log({ op: 'get' });
  }

  put(): void {
    if (this.refs <= 0) throw new Error('kvm_put_kvm underflow');
    this.refs--;
    this.log({ op: 'put' });
  }

  clearCalls(): void {
    this.calls.length = 0;
  }
}

export interface FakeSlotOptions {
  id: number;
  asId?: number;
  baseGfn: number;
  npages: number;
  file: GuestMemoryFile | null;
  /** guest_memfd_offset in bytes */
  offset?: number;
}

/** A memslot view as the memslot engine would build it for KVM_SET_USER_MEMORY_REGION2. */
export function fakeSlot(o: FakeSlotOptions): MemslotView {
  return {
    id: o.id,
    asId: o.asId ?? 0,
    baseGfn: o.baseGfn,
    npages: o.npages,
    userspaceAddr: 0,
    flags: o.file ? KVM_MEM_GUEST_MEMFD | (o.file.gmemOnly ? KVM_MEMSLOT_GMEM_ONLY : 0) : 0,
    gmemFile: o.file,
    gmemPgoff: (o.offset ?? 0) / PAGE_SIZE,
  };
}

/** bind as the memslot engine does: file.bind(), and the slot records the file */
export function bindSlot(o: FakeSlotOptions): MemslotView {
  const slot = fakeSlot(o);
  o.file?.bind(slot, o.offset ?? 0);
  return slot;
}
