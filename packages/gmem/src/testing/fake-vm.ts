/**
 * A recorder for the provider tests: the VM as memory providers see it (VmForProvider), logging
 * every call a provider makes into the VM and its vendor hooks, so tests can check their order.
 * Host memory and kernel profiles are core's; memslot views are built as the memslot engine does.
 */
import { KVM_MEM_GUEST_MEMFD, KVM_MEMSLOT_GMEM_ONLY, KVM_X86_DEFAULT_VM, PAGE_SIZE, PhysMem, UPSTREAM_PROFILE } from '@ccmem/core';
import type { GuestMemoryFile, KernelProfile, MemslotView, TraceEvent, VendorBackend, VmForProvider } from '@ccmem/core';

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

/** what the fake host's physical memory can do */
export interface FakePhysOptions {
  /**
   * HostPhysMem methods this host lacks (a host without a contiguous allocator, or one that
   * allocates contiguous blocks but frees them frame by frame)
   */
  without?: readonly ('allocContiguous' | 'freeContiguous')[];
}

/** core's host physical memory, telling the recorder about every free and leak */
export class FakePhysMem extends PhysMem {
  /** called on every free and leak, for the recorder */
  onFree: ((pfn: number, leak: boolean) => void) | null = null;
  /** frames the host can still hand out (null: no limit); beyond that allocations fail as on an exhausted host */
  framesLeft: number | null = null;

  constructor(opts: FakePhysOptions = {}) {
    super();
    for (const m of opts.without ?? []) Object.defineProperty(this, m, { value: undefined });
  }

  private take(n: number): void {
    if (this.framesLeft === null) return;
    if (this.framesLeft < n) throw new Error('host out of memory');
    this.framesLeft -= n;
  }

  override allocPage(): number {
    this.take(1);
    return super.allocPage();
  }

  override allocContiguous(npages: number): number {
    this.take(npages);
    return super.allocContiguous(npages);
  }

  override freePage(pfn: number): void {
    super.freePage(pfn);
    this.onFree?.(pfn, false);
  }

  override leakPage(pfn: number): void {
    super.leakPage(pfn);
    this.onFree?.(pfn, true);
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
  /** the backend has no gmem_invalidate hook (kvm_arch_gmem_invalidate is SEV's only) */
  noInvalidateHook?: boolean;
  /** the backend sets gmemPrepareRequired (SEV-SNP: private pages need the RMP assignment) */
  prepareRequired?: boolean;
  /** the host's physical memory */
  phys?: FakePhysOptions;
}

/** VmForProvider with the MMU-invalidation counters of `struct kvm` and a call log. */
export class FakeVm implements VmForProvider {
  readonly vmType: number;
  readonly profile: KernelProfile;
  readonly hasPrivateMem: boolean;
  readonly phys: FakePhysMem;
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
    this.profile = opts.profile ?? UPSTREAM_PROFILE;
    this.record = opts.record ?? true;
    this.phys = new FakePhysMem(opts.phys);
    this.phys.onFree = (pfn, leak) => this.log(leak ? { op: 'leak', pfn } : { op: 'free', pfn });
    this.backend = opts.withBackend ? this.makeBackend(opts) : null;
  }

  private log(c: ProviderCall): void {
    if (this.record) this.calls.push(c);
  }

  private makeBackend(opts: FakeVmOptions): VendorBackend {
    const backend: VendorBackend = {
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
      ...(opts.noInvalidateHook ? {} : { gmemInvalidate: (start: number, end: number) => this.log({ op: 'invalidate', start, end }) }),
      ...(opts.prepareRequired ? { gmemPrepareRequired: true } : {}),
    };
    return backend;
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
