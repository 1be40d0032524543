/**
 * The two plug-in interfaces of @ccmem/core.
 *
 *  - `VendorBackend` is the model's `struct kvm_x86_ops`: what SEV-SNP, TDX (and the
 *    software-protected VM type) add to the generic engine. @ccmem/core never imports a
 *    vendor package; a backend is handed to `Kvm.createVm()` by whoever creates the VM.
 *  - `GuestMemoryFile` is a memory provider: a file whose pages back private (or gmem-only)
 *    memslots, such as guest_memfd (@ccmem/gmem) or a device region exported as an fd.
 *
 * Hooks return a negative errno (`-ERRNO.EBUSY`, ...) or 0, like the kernel's, so hot paths
 * need no exceptions. Every hook is optional unless marked otherwise.
 */
import type { SharedPolicy } from './host/numa.js';
import type { ErrnoName } from './errno.js';
import type { TraceEvent } from './trace.js';

/* ------------------------------------------------------------------------------------------ */
/* Shared shapes                                                                              */
/* ------------------------------------------------------------------------------------------ */

/** `enum kvm_gfn_range_filter`: which roots a zap reaches. */
export const KVM_FILTER_SHARED = 1 << 0;
export const KVM_FILTER_PRIVATE = 1 << 1;

/** The model's read-only view of a `struct kvm_memory_slot`. */
export interface MemslotView {
  readonly id: number;
  readonly asId: number;
  readonly baseGfn: number;
  readonly npages: number;
  readonly userspaceAddr: number;
  /** userspace flags plus the internal KVM_MEMSLOT_INVALID / KVM_MEMSLOT_GMEM_ONLY */
  readonly flags: number;
  /** guest_memfd binding (slot->gmem): the file and the page offset of the slot's first gfn */
  readonly gmemFile: GuestMemoryFile | null;
  readonly gmemPgoff: number;
}

/** An entry of the VMM process's file-descriptor table. */
export interface KvmFile {
  /** "kvm-vm", "kvm-vcpu", "kvm-gmem", "device-fd", "memfd", "kvm" */
  readonly kind: string;
  /** close(2): called once, when the last descriptor is closed */
  release(): void;
}

/* ------------------------------------------------------------------------------------------ */
/* Memory providers                                                                           */
/* ------------------------------------------------------------------------------------------ */

/** Result of `GuestMemoryFile.getPfn`: the pfn and the largest order the provider can map. */
export interface GmemPfn {
  pfn: number;
  /** log2 of the pages in the backing folio at this gfn (0 = 4 KiB) */
  maxOrder: number;
}

/**
 * A file that provides guest memory for memslots bound with KVM_MEM_GUEST_MEMFD.
 * guest_memfd and the device-fd provider implement it; the core calls only this interface.
 */
export interface GuestMemoryFile extends KvmFile {
  /** the VM this file belongs to (file->kvm); binding from another VM is EINVAL */
  readonly ownerVm: unknown;
  /** i_size in bytes */
  readonly size: number;
  /** creation flags (GUEST_MEMFD_FLAG_*), or 0 for providers without them */
  readonly flags: number;
  /** the slot serves shared faults from this file too (KVM_MEMSLOT_GMEM_ONLY) */
  readonly gmemOnly: boolean;
  /** false once close() started: faults on bound slots then fail with EFAULT */
  readonly live: boolean;

  /**
   * kvm_gmem_bind() checks d and e (offset range, page already bound); a and c are the
   * core's. Throws KvmError; binds nothing on failure.
   */
  bind(slot: MemslotView, offset: number): void;
  /** kvm_gmem_unbind(): the slot is going away */
  unbind(slot: MemslotView): void;

  /**
   * kvm_gmem_get_pfn(): the pfn backing `gfn` of `slot`, allocating (zeroed) on first use and
   * running the vendor's gmem_prepare; or a negative errno (-EFAULT, -EIO, -EHWPOISON, ...).
   */
  getPfn(slot: MemslotView, gfn: number, out: GmemPfn): number;

  /**
   * Side-effect-free lookup for invariant checks and inspection: the pfn currently backing
   * `gfn` of `slot`, or -1 when none is allocated (no allocation, no prepare).
   */
  peekPfn?(slot: MemslotView, gfn: number): number;

  /**
   * kvm_gmem_populate() from kvm_gmem_get_file() on (virt/kvm/guest_memfd.c): the core has
   * checked the arguments and that `req.slot` is bound to this file. Returns the number of
   * pages populated if at least one was, else 0 or the first negative errno. A provider that
   * cannot hand pages to the firmware returns -EINVAL.
   */
  populate(req: GmemPopulateRequest): number;
}

/** kvm_gmem_populate(kvm, start_gfn, src, npages, post_populate, opaque), as a vendor calls it */
export interface KvmGmemPopulateArgs {
  readonly startGfn: number;
  readonly npages: number;
  /** userspace source address, or null for no source (e.g. SNP zero pages) */
  readonly src: number | null;
  /** the vendor's post_populate callback for one page: 0 or a negative errno */
  readonly postPopulate: (gfn: number, pfn: number, srcPage: Uint8Array | null) => number;
  /**
   * The source is pinned page by page (the 2026 change that GUPs source pages before
   * populating), so an unaligned `src` is EINVAL. Default true (upstream); false for v6.18,
   * where the vendor callback copies from `src + i * PAGE_SIZE` as given.
   */
  readonly alignedSrc?: boolean;
}

/** What `GuestMemoryFile.populate` gets: the call, its slot, and the VM's side of each page. */
export interface GmemPopulateRequest extends KvmGmemPopulateArgs {
  /** gfn_to_memslot(kvm, start_gfn), a slot bound to this file */
  readonly slot: MemslotView;
  /** get_user_pages_fast() of one source page: its bytes, or a negative errno */
  readonly getSrcPage: (hva: number) => Uint8Array | number;
  /** kvm_range_has_memory_attributes(gfn, gfn + 1, PRIVATE, PRIVATE) */
  readonly isPrivate: (gfn: number) => boolean;
}

/* ------------------------------------------------------------------------------------------ */
/* Vendor backends                                                                            */
/* ------------------------------------------------------------------------------------------ */

/** Where an attribute change is, for the three attribute hooks. */
export interface AttributeChange {
  readonly start: number;
  readonly end: number;
  /** new attributes (KVM_MEMORY_ATTRIBUTE_PRIVATE or 0) */
  readonly attributes: number;
}

/** A guest access as the hardware sees it after the TDP walk found a present leaf. */
export interface GuestAccessCheck {
  readonly vcpuId: number;
  readonly gpa: number;
  readonly gfn: number;
  readonly pfn: number;
  /** level of the TDP leaf that translated the access */
  readonly level: number;
  readonly isPrivate: boolean;
  readonly write: boolean;
  readonly fetch: boolean;
}

/**
 * What the vendor's hardware does with an access that passed the TDP walk:
 *  - `ok`: the access completes;
 *  - `npf`: a nested page fault with these extra error-code bits (SNP: PFERR_GUEST_RMP...),
 *    handled by KVM's fault path and then `handleNpfExtra`;
 *  - `guest-exception`: the guest itself takes an exception (#VC, #VE) and the access
 *    does not complete: reported to the caller, KVM is not involved;
 *  - `vm-dead`: the access kills the VM (e.g. TDX pending-EPT violation).
 */
export type GuestAccessVerdict =
  | { readonly kind: 'ok' }
  | { readonly kind: 'npf'; readonly errorCode: number; readonly reason: string }
  | { readonly kind: 'guest-exception'; readonly vector: string; readonly reason: string }
  | { readonly kind: 'vm-dead'; readonly reason: string };

/**
 * A vendor's uAPI edge, as types: the guest operations it runs (PVALIDATE, TDG.MEM.PAGE.ACCEPT,
 * PSC, MapGPA...), its KVM_MEMORY_ENCRYPT_OP sub-commands on the VM and vCPU fds, what
 * `inspect` answers, and its VM options. Each vendor package exports one (`SnpEdge`,
 * `TdxEdge`); `Vm<E>`, `Vcpu<E>` and `VendorBackend<E>` take it, so a misspelled operation,
 * argument or option is a compile error where the caller is typed.
 */
export interface VendorEdge {
  /** a discriminated union on `op` */
  readonly guestRequest: { readonly op: string };
  /** a discriminated union on `cmd`: KVM_MEMORY_ENCRYPT_OP on the VM fd */
  readonly vmIoctl: { readonly cmd: string };
  /** a discriminated union on `cmd`: KVM_MEMORY_ENCRYPT_OP on a vCPU fd */
  readonly vcpuIoctl: { readonly cmd: string };
  /** what an ioctl writes back (`VendorIoctlResult.out`) */
  readonly ioctlOut: object;
  /** a discriminated union on `what` */
  readonly inspect: { readonly what: string };
  /** the VM options `Kvm.createVm({ options })` passes to the backend factory */
  readonly options: object;
}

/** The edge of a VM type without a vendor backend (default, SW-protected): nothing to call. */
export interface NoVendorEdge extends VendorEdge {
  readonly guestRequest: never;
  readonly vmIoctl: never;
  readonly vcpuIoctl: never;
  readonly ioctlOut: never;
  readonly inspect: never;
  readonly options: { readonly [key: string]: never };
}

/** The result of a vendor guest operation, or an exit to userspace it caused. */
export interface GuestOpResult {
  /**
   * instruction return code / TDCALL status, as a number or the vendor's name; a 64-bit
   * register value above 2^53 (a GHCB MSR value) as a bigint
   */
  readonly ret?: number | string | bigint;
  readonly exit?: KvmRunExit;
  readonly errno?: ErrnoName;
  readonly detail?: Readonly<Record<string, unknown>>;
}

/** Result of a vendor VM/vCPU ioctl (KVM_MEMORY_ENCRYPT_OP sub-commands). */
export interface VendorIoctlResult<Out extends object = object> {
  readonly ret: number;
  readonly out?: Readonly<Out>;
}

/**
 * The model's `struct kvm_x86_ops` (the memory-related subset). One instance per VM:
 * `Kvm.createVm({ type, backend })` calls `attach(vm)` before the VM is used.
 */
export interface VendorBackend<E extends VendorEdge = VendorEdge> {
  /** short name: "sw-protected", "snp", "tdx" */
  readonly name: string;
  /** the KVM_X86_*_VM type this backend implements */
  readonly vmType: number;

  /** called once at VM creation; the backend keeps the VM handle for its own use */
  attach(vm: VmForBackend): void;

  /** kvm_arch_has_private_mem() */
  readonly hasPrivateMem: boolean;
  /** kvm_arch_has_readonly_mem() */
  readonly hasReadonlyMem: boolean;
  /** kvm_arch_nr_memslot_as_ids(): 1 for VMs with protected state */
  readonly nrMemslotAsIds: number;
  /** kvm_has_mirrored_tdp(): private memory is mapped through a mirror root (TDX) */
  readonly hasMirroredTdp: boolean;
  /** kvm_gfn_direct_bits(): gfn bits marking a shared alias (TDX shared bit), else 0 */
  readonly gfnDirectBits: number;
  /** gmem INIT_SHARED support (kvm_arch_supports_gmem_init_shared) */
  readonly supportsGmemInitShared: boolean;
  /** kvm->arch.pre_fault_allowed (SNP: after LAUNCH_FINISH, TDX: after FINALIZE_VM) */
  preFaultAllowed(): boolean;

  /**
   * Whether a guest access is private (the PFERR_PRIVATE_ACCESS decision): SNP's C-bit,
   * TDX's missing shared bit. `requested` is what the access asked for (`private: true`);
   * the SW-protected type ignores it and uses the gfn attribute instead (handled by core).
   */
  faultIsPrivate?(gpa: number, requested: boolean): boolean;

  /* -- guest_memfd hooks (kvm_arch_gmem_prepare / _invalidate / gmem_max_mapping_level) -- */
  gmemPrepare?(pfn: number, gfn: number, maxOrder: number): number;
  /**
   * A private page is usable by the guest only once gmemPrepare ran for it (SEV-SNP: the RMP
   * assignment in sev_gmem_prepare()). A provider without a prepare step (the device fd) must
   * refuse such a VM, or its guest would fault forever.
   */
  readonly gmemPrepareRequired?: boolean;
  gmemInvalidate?(startPfn: number, endPfn: number): void;
  /** 0 = no limit, otherwise the largest PG_LEVEL_* a mapping of `pfn` may have */
  gmemMaxMappingLevel?(pfn: number, isPrivate: boolean): number;

  /* -- attribute-change hooks (seed 002): before the store, under mmu_lock, after end -- */
  /** before the attribute store, outside mmu_lock (may sleep: directmap unmap) */
  preSetMemoryAttributes?(change: AttributeChange): number;
  /** under mmu_lock, inside the invalidation, after the zap and the store */
  setMemoryAttributesLocked?(change: AttributeChange): void;
  /** after kvm_mmu_invalidate_end(), outside mmu_lock (seed's update_mem_attr, restore) */
  postSetMemoryAttributes?(change: AttributeChange): number;

  /* -- mirror-root hooks (TDX): return 0 or -errno (-EBUSY means retry) -- */
  linkExternalSpt?(gfn: number, level: number, externalSpt: number): number;
  setExternalSpte?(gfn: number, level: number, pfn: number): number;
  removeExternalSpte?(gfn: number, level: number, pfn: number): void;
  freeExternalSpt?(gfn: number, level: number, externalSpt: number): number;
  /** split a huge private leaf into a table (TDX huge-page series; not upstream) */
  splitExternalSpt?(gfn: number, level: number, externalSpt: number): number;

  /* -- the hardware side of guest accesses -- */
  checkGuestAccess?(access: GuestAccessCheck): GuestAccessVerdict;
  /** after kvm_mmu_page_fault() handled an `npf` verdict (SNP: sev_handle_rmp_fault) */
  handleNpfExtra?(vcpuId: number, gpa: number, errorCode: number): void;
  /** a host (VMM or kernel directmap) access to `pfn`: null when allowed, else why it faults */
  checkHostAccess?(pfn: number, write: boolean): string | null;

  /*
   * -- KVM_CREATE_VCPU (kvm_x86_ops.vcpu_create) --
   * Called by KVM_CREATE_VCPU after the id and max_vcpus checks and before the duplicate-id check
   * (kvm_vm_ioctl_create_vcpu(): kvm_arch_vcpu_create() runs before kvm_get_vcpu_by_id()): 0
   * lets the vCPU be created, a negative errno refuses it and changes nothing
   * (tdx_vcpu_create(): -EIO unless the TD is TD_STATE_INITIALIZED).
   */
  vcpuCreate?(vcpuId: number): number;

  /*
   * -- KVM_RUN gate (kvm_x86_ops.vcpu_pre_run) --
   * Called by every KVM_RUN before anything else runs (kvm_arch_vcpu_ioctl_run(): after the
   * dead-VM check, before complete_userspace_io and vcpu_run()): 1 lets the vCPU run, 0 or a
   * negative errno ends KVM_RUN with that result and changes nothing (tdx_vcpu_pre_run(): the TD
   * is not RUNNABLE or the vCPU was never initialized → -EINVAL).
   */
  vcpuPreRun?(vcpuId: number): number;

  /* -- vendor operations -- */
  guestOp?(vcpuId: number, req: E['guestRequest']): GuestOpResult;
  /** userspace completed a KVM_EXIT_HYPERCALL the vendor raised (sets hypercall.ret) */
  completeHypercall?(vcpuId: number, ret: number): GuestOpResult | null;
  vmIoctl?(req: E['vmIoctl']): VendorIoctlResult<E['ioctlOut']>;
  vcpuIoctl?(vcpuId: number, req: E['vcpuIoctl']): VendorIoctlResult<E['ioctlOut']>;
  /**
   * KVM_MEMORY_ENCRYPT_REG_REGION / KVM_MEMORY_ENCRYPT_UNREG_REGION (kvm_x86_ops
   * mem_enc_register_region / mem_enc_unregister_region: sev_mem_enc_register_region()). A VM
   * whose backend lacks them answers ENOTTY. Throw KvmError; change nothing on failure.
   */
  memEncRegisterRegion?(range: KvmEncRegion): void;
  memEncUnregisterRegion?(range: KvmEncRegion): void;
  /** VM teardown (kvm_arch_pre_destroy_vm / destroy); after every gmem file is released */
  destroy?(): void;
  /**
   * kvm_x86_ops.vm_destroy, from kvm_arch_destroy_vm(): after destroy() and after the MMU has
   * zapped every mapping (kvm_destroy_vm() runs the MMU notifier's release in between), e.g.
   * tdx_vm_destroy() reclaiming the TD's control pages.
   */
  vmDestroy?(): void;
  /** invariants the backend can check after any step; returns violations in plain words */
  checkInvariants?(): string[];
  /**
   * After destroy(): what the VM left on the host that its teardown should have released (a
   * key, a firmware context, a table entry still naming the VM), in plain words. Pages the
   * kernel leaks on purpose after a firmware failure (snp_leak_pages(), a TDX page that
   * TDH.PHYMEM.PAGE.RECLAIM refused) do not count.
   */
  checkAfterDestroy?(): string[];
  /** read-only state for `assert` steps and `ccmem explain` */
  inspect?(query: E['inspect']): unknown;
}

/** struct kvm_enc_region: a range of the VMM's address space */
export interface KvmEncRegion {
  readonly addr: number;
  readonly size: number;
}

/** What a backend factory gets from the host besides the VM's options. */
export interface BackendEnv {
  readonly phys: HostPhysMem;
  /** the kernel profile of the Kvm creating the VM */
  readonly profile?: KernelProfile;
}

/**
 * Creates a vendor backend for one VM from the VM's options. The options are typed for typed
 * callers; a factory still checks them at run time (`checkVmOptions`), because scenario files
 * and untyped callers reach it too.
 */
export interface BackendFactory<E extends VendorEdge = VendorEdge> {
  (options: Readonly<E['options']>, env: BackendEnv): VendorBackend<E>;
}

/**
 * The VM as a backend sees it: what vendor code may call back into the generic engine.
 * (Implemented by @ccmem/core's Vm.)
 */
export interface VmForBackend {
  readonly vmType: number;
  /** `enabled` is false when nobody listens: skip building events on hot paths */
  readonly tracer: { readonly enabled: boolean; emit(name: string, fields: TraceEvent['fields']): void };
  readonly nrVcpus: number;
  /** kvm->mmu_invalidate_seq, read-only (for vendor race checks) */
  readonly mmuInvalidateSeq: number;
  /** kvm_mem_is_private(gfn) */
  memIsPrivate(gfn: number): boolean;
  /** __gfn_to_memslot() in address space 0 */
  gfnToMemslot(gfn: number): MemslotView | null;
  /** kvm_zap_gfn_range(): zap SPTEs of [start,end) in every root, with an invalidation */
  zapGfnRange(start: number, end: number): void;
  /** the pfn's contents (host physical memory), for measuring or copying launch pages */
  readPfn(pfn: number, offset: number, length: number): Uint8Array;
  writePfn(pfn: number, offset: number, data: Uint8Array): void;
  /** the VMM process's memory: copy from a userspace address (copy_from_user), or null on EFAULT */
  copyFromUser(hva: number, length: number): Uint8Array | null;
  copyToUser(hva: number, data: Uint8Array): boolean;
  /**
   * pin_user_pages_fast() of `npages` pages from the page of `hva` (faulting each in, for write
   * when `write`; `longterm` is FOLL_LONGTERM): their pfns, or null when any page cannot be
   * pinned (no mapping, no permission). A refused pin faults nothing in.
   */
  pinUserPages(hva: number, npages: number, write: boolean, longterm: boolean): Float64Array | null;
  /** kvm_vm_bugged(): the VM is dead; every later ioctl fails with EIO */
  markBugged(reason: string): void;
  /** kvm_make_all_cpus_request(KVM_REQ_OUTSIDE_GUEST_MODE): the number of vCPUs kicked */
  kickAllVcpus(reason: string): number;
  /** map one private page through the TDP MMU at build time (kvm_tdp_mmu_map_private_pfn) */
  mapPrivatePfn(gfn: number, pfn: number): number;
  /** kvm_gmem_get_pfn() for a private gfn: allocates and prepares on first use */
  gmemGetPfn(gfn: number): { pfn: number; maxOrder: number } | { errno: number };
  /** gmemGetPfn() into `out` (no allocation): 0, or -errno (and `out` holds nothing to use) */
  gmemGetPfnInto(gfn: number, out: GmemPfn): number;
  /** the kernel profile the VM follows (vendor code follows it too; docs/profiles.md) */
  readonly profile: KernelProfile;
  /** the guest_memfd pfn backing private `gfn` without allocating or preparing, or -1 */
  gmemPeekPfn(gfn: number): number;
  /**
   * kvm_gmem_populate(): checks the arguments and the slot of `startGfn`, then the provider the
   * slot is bound to populates (GuestMemoryFile.populate). Pages populated, or -errno if none.
   */
  gmemPopulate(args: KvmGmemPopulateArgs): number;
  /** every present leaf of the mirror root: private gfn, PG_LEVEL_*, pfn (none without one) */
  forEachMirrorLeaf(cb: (gfn: number, level: number, pfn: number) => void): void;
  /** every present leaf of the direct root: gfn as mapped (with direct bits), PG_LEVEL_*, pfn */
  forEachDirectLeaf(cb: (gfn: number, level: number, pfn: number) => void): void;
  /** every present mapping of a private gfn (mirror leaves for TDX): gfn, pfn, PG_LEVEL_* */
  forEachPrivateMapping(cb: (gfn: number, pfn: number, level: number) => void): void;
  /** user_exit_on_hypercall(): KVM_CAP_EXIT_HYPERCALL enabled hypercall `nr` */
  userExitOnHypercall(nr: number): boolean;
  /**
   * kvm_mmu_page_fault() for a private access of `vcpuId` at `gpa`: 0 once mapped, or -errno.
   * `acceptLevel` (PG_LEVEL_*): the EPT violation came from TDG.MEM.PAGE.ACCEPT at that level
   * (TDX huge-page series): larger private mappings there are split and the map is at most
   * that level.
   */
  handlePrivateFault(vcpuId: number, gpa: number, acceptLevel?: number): number;
}

/* ------------------------------------------------------------------------------------------ */
/* vCPU exits                                                                                 */
/* ------------------------------------------------------------------------------------------ */

/** `struct kvm_run` after KVM_RUN returned to userspace, with the kernel's field names. */
export type KvmRunExit =
  | {
      readonly reason: 'KVM_EXIT_MMIO';
      readonly mmio: { phys_addr: number; data: bigint; len: number; is_write: boolean };
    }
  | {
      readonly reason: 'KVM_EXIT_MEMORY_FAULT';
      readonly memory_fault: { flags: number; gpa: number; size: number };
    }
  | {
      readonly reason: 'KVM_EXIT_HYPERCALL';
      readonly hypercall: { nr: number; args: number[]; ret: number; flags: number };
    }
  | { readonly reason: 'KVM_EXIT_SHUTDOWN' }
  | { readonly reason: 'KVM_EXIT_DIRTY_RING_FULL' }
  | {
      readonly reason: 'KVM_EXIT_INTERNAL_ERROR';
      /** `ndata` and `gpa` (data[3]) for KVM_INTERNAL_ERROR_DELIVERY_EV (kvm_prepare_event_vectoring_exit) */
      readonly internal: { suberror: number; ndata?: number; gpa?: number };
    }
  | {
      readonly reason: 'KVM_EXIT_SYSTEM_EVENT';
      /** `data[0..ndata)` as the kernel fills it (KVM_SYSTEM_EVENT_SEV_TERM: the GHCB MSR or GHCB gpa) */
      readonly system_event: { type: number; ndata?: number; data?: readonly (number | bigint)[] };
    };

/* ------------------------------------------------------------------------------------------ */
/* What providers and the host need from the engine                                          */
/* ------------------------------------------------------------------------------------------ */

/**
 * Host physical memory: page frames allocated lazily, contents stored sparsely.
 * A never-written frame reads as zeros and costs nothing beyond its allocation bit.
 */
export interface HostPhysMem {
  /** allocate a frame (contents zero); returns its pfn */
  allocPage(): number;
  /** return a frame to the allocator; its contents are dropped */
  freePage(pfn: number): void;
  /** `npages` (a power of two) consecutive frames aligned to `npages`; returns the first pfn */
  allocContiguous?(npages: number): number;
  /** free frames obtained from allocContiguous */
  freeContiguous?(first: number, npages: number): void;
  /** never give this frame out again (snp_leak_pages) */
  leakPage(pfn: number): void;
  /** leakPage() took the frame: whoever still holds it must not free it */
  isLeaked?(pfn: number): boolean;
  /** record the NUMA node a memory policy allocated the frame on (page_to_nid()) */
  setNode?(pfn: number, node: number): void;
  isAllocated(pfn: number): boolean;
  zeroPage(pfn: number): void;
  /** little-endian load/store of 1, 2, 4 or 8 bytes within one page */
  readValue(pfn: number, offset: number, size: number): bigint;
  writeValue(pfn: number, offset: number, size: number, value: bigint): void;
  readBytes(pfn: number, offset: number, length: number): Uint8Array;
  writeBytes(pfn: number, offset: number, data: Uint8Array): void;
  /**
   * frames currently allocated / frames with stored contents: a frame starts storing when a
   * non-zero value is written to it and stops when it is zeroed or freed (zeros written over
   * earlier data keep it stored; zeros over zeros store nothing)
   */
  readonly allocatedPages: number;
  readonly storedPages: number;
}

/** How a file mapped into the VMM (mmap of guest_memfd) resolves a page on host access. */
export interface FileMappingBacking {
  /** mmap(2) of this file: null when allowed, else the errno name (ENODEV, EINVAL) */
  checkMmap(shared: boolean): ErrnoName | null;
  /** fault the page at file page index `pgoff`: its pfn, or 'SIGBUS' */
  faultPage(pgoff: number, write: boolean): number | 'SIGBUS';
  /** side-effect-free: the pfn at `pgoff` if allocated and host-visible, else -1 */
  peekPage?(pgoff: number): number;
  /** side-effect-free: the pfn of the file's page at `pgoff` if it has one (filemap_get_folio), else -1 */
  pageAt?(pgoff: number): number;
  /**
   * madvise(MADV_REMOVE) of a shared mapping: vfs_fallocate(FALLOC_FL_PUNCH_HOLE |
   * FALLOC_FL_KEEP_SIZE) of `npages` file pages from `pgoff` (throws KvmError like fallocate)
   */
  punchHole?(pgoff: number, npages: number): void;
  /** the file's shared memory policy (vm_ops->set_policy / ->get_policy: guest_memfd, shmem) */
  readonly sharedPolicy?: SharedPolicy;
  /** a VMA starts / stops mapping the file (vm_operations_struct open / close) */
  vmaOpen?(): void;
  vmaClose?(): void;
}

/** Kernel profile: where kernel versions or build options differ, the model follows one. */
export interface KernelProfile {
  /** profile name, e.g. "upstream" or "host-6.18" */
  readonly name: string;
  /** errno for a guest_memfd binding that overlaps another binding (EEXIST from 7ea987a9) */
  readonly gmemBindOverlapErrno: 'EEXIST' | 'EINVAL';
  /** number of memslot address spaces of a default VM (2 with CONFIG_KVM_SMM) */
  readonly smmAddressSpaces: boolean;
  /** value KVM_CHECK_EXTENSION(KVM_CAP_MULTI_ADDRESS_SPACE) reports on a default VM */
  readonly multiAddressSpaceCap: number;
  /** KVM_SET_MEMORY_ATTRIBUTES and KVM_CAP_MEMORY_ATTRIBUTES exist (CONFIG_KVM_GENERIC_MEMORY_ATTRIBUTES) */
  readonly memoryAttributes: boolean;
  /** KVM_PRE_FAULT_MEMORY exists and the MMU is TDP */
  readonly preFaultMemory: boolean;
  /** KVM_X86_* VM types the host offers (KVM_CAP_VM_TYPES bitmap) */
  readonly vmTypes: number;
  /** guest_memfd flags supported on a default VM */
  readonly gmemFlagsDefaultVm: number;
  /** KVM_MEM_PCI_HOLE (model-only RFC flag) is offered */
  readonly pciHole: boolean;
  /**
   * Shared faults on a slot bound to an mmap-able guest_memfd are served from the guest_memfd
   * (KVM_MEMSLOT_GMEM_ONLY, __kvm_mmu_faultin_pfn). When false the kernel's fault path resolves
   * them through userspace_addr like any other shared fault. Absent means true (upstream).
   */
  readonly gmemOnlySharedFaults?: boolean;
  /**
   * A shared guest access whose hva cannot be faulted in (unmapped, PROT_NONE) is emulated and
   * exits with KVM_EXIT_MMIO, instead of kvm_handle_error_pfn()'s -EFAULT with
   * KVM_EXIT_MEMORY_FAULT (upstream since v6.12). Absent means false (upstream).
   */
  readonly unfaultableHvaEmulatesMmio?: boolean;
  /**
   * KVM_SEV_SNP_LAUNCH_UPDATE rejects a `uaddr` that is 0 or not page-aligned (for every page
   * type but ZERO) with EINVAL, before any page is touched (the 2026 sev.c series that makes the
   * source page-granular). When false an unaligned `uaddr` is copied from as given. Absent
   * means true (upstream).
   */
  readonly snpLaunchUpdateUaddrChecks?: boolean;
  /**
   * Userspace completes KVM_HC_MAP_GPA_RANGE with `hypercall.ret` 0, EINVAL or EAGAIN only
   * (kvm_is_valid_map_gpa_range_ret(), 2026 "allow userspace to return errors to guest"): TDX
   * MapGPA maps EAGAIN to TDVMCALL_STATUS_RETRY and EINVAL to INVALID_OPERAND, SNP PSC reports
   * either as an error, and any other value fails KVM_RUN with EINVAL. When false every non-zero
   * value is an error for the guest. Absent means true (upstream).
   */
  readonly mapGpaRangeUserErrors?: boolean;
  /**
   * KVM_TDX_INIT_MEM_REGION rejects `source_addr` 0 with EINVAL before any page (the 2026
   * pre-check of the source address); when false the copy from address 0 fails with EFAULT.
   * Absent means true (upstream).
   */
  readonly tdxInitMemRegionSourceCheck?: boolean;
  /**
   * KVM_CREATE_GUEST_MEMFD accepts GUEST_MEMFD_FLAG_HUGETLB | GUESTMEM_HUGETLB_FLAG_2MB: a
   * guest_memfd of 2 MiB folios (the in-flight HugeTLB series, model option). Absent means true
   * (the model's upstream offers it, as it offers other RFC options).
   */
  readonly gmemHugetlb?: boolean;
  /**
   * CONFIG_KVM_GUEST_MEMFD: KVM_CREATE_GUEST_MEMFD exists (else ENOTTY), KVM_CAP_GUEST_MEMFD is
   * 1, and check_memory_region_flags() accepts KVM_MEM_GUEST_MEMFD (else EINVAL, before any fd
   * is looked at). Absent means true (upstream).
   */
  readonly guestMemfd?: boolean;
  /**
   * The host's MAXPHYADDR (kvm_host.maxphyaddr), which bounds memslots under TDP
   * (kvm_mmu_max_gfn()). Absent: 48 bits with a 4-level TDP root, 52 with a 5-level root.
   */
  readonly hostMaxPhyAddr?: number;
  /** KVM_MAX_VCPUS (CONFIG_KVM_MAX_NR_VCPUS: 1024 by default, 4096 with MAXSMP). Absent: 4096. */
  readonly maxVcpus?: number;
  /** num_online_cpus() of the host: KVM_CAP_NR_VCPUS is this capped at KVM_MAX_VCPUS. Absent: 64. */
  readonly onlineCpus?: number;
  /**
   * kvm.enable_mmio_caching: a fault on a gfn without a memslot installs an MMIO SPTE tagged
   * with the memslot generation (kvm_handle_noslot_fault(), make_mmio_spte()), and later
   * accesses take the EPT-misconfig fast path (handle_mmio_page_fault()) until the generation
   * changes. Absent means true (upstream default).
   */
  readonly mmioCaching?: boolean;
  /**
   * Every guest instruction runs in KVM's instruction emulator (x86_emulate_instruction()),
   * so guest memory is read and written through the memslot's hva (kvm_vcpu_read_guest(),
   * kvm_vcpu_write_guest()) without page faults or SPTEs, and whatever the emulator cannot
   * reach that way is MMIO (emulated-access.ts). Measured on kvm_pvm with a guest that does
   * not use the PVM ABI (`insn_emulation` counts every instruction, `pf_taken` stays 0).
   * Applies to gpa accesses of a shadow-MMU VM with guest paging off. Absent means false.
   */
  readonly emulatedGuestAccesses?: boolean;
  /**
   * kvm.tdp_enabled (kvm_intel.ept / kvm_amd.npt): false means every VM's guest paging is
   * shadowed by the shadow MMU. Absent means true.
   */
  readonly tdpEnabled?: boolean;
  /** kvm.tdp_mmu: the TDP MMU (rather than the shadow MMU in direct mode) serves TDP. Absent means true. */
  readonly tdpMmu?: boolean;
  /**
   * KVM_GET_STATS_FD's pages_4k / pages_2m / pages_1g count the MMU's leaves
   * (kvm_update_page_stats()). Absent means true; the v6.18 PVM module leaves them at 0.
   */
  readonly pageStats?: boolean;
  /**
   * KVM_CAP_DIRTY_LOG_RING / _ACQ_REL (x86 selects CONFIG_HAVE_KVM_DIRTY_RING_TSO and
   * _ACQ_REL since v5.11). Absent means true.
   */
  readonly dirtyRing?: boolean;
  /**
   * kvm_cpu_dirty_log_size(): ring entries reserved on top of KVM_DIRTY_RING_RSVD_ENTRIES for
   * the CPU's own dirty log (VMX PML: 512; none on SVM or without PML). Absent means 0.
   */
  readonly cpuDirtyLogSize?: number;
  /**
   * CONFIG_NEED_KVM_DIRTY_RING_WITH_BITMAP (arm64 upstream; a model option on x86):
   * KVM_CAP_DIRTY_LOG_RING_WITH_BITMAP can be enabled, and pages dirtied without a running vCPU
   * go to the bitmap without a warning. Absent means false (x86).
   */
  readonly dirtyRingWithBitmap?: boolean;
  /**
   * Each KVM_RUN in which the guest writes a page of a dirty-logged slot logs that page again,
   * even when the previous KVM_RUN had made it writable: a dirty ring gets one entry per such
   * run (measured on the PVM host, whose shadow paging re-faults a guest write on every entry).
   * Absent means false (upstream: a writable page is not logged again until a reset or a
   * KVM_GET/CLEAR_DIRTY_LOG write-protects it).
   */
  readonly dirtyRingRelogsEachRun?: boolean;
  /**
   * KVM_EXIT_DIRTY_RING_FULL comes right after the push that reaches the soft limit (the
   * request is checked before every re-entry). Measured false on the PVM host: the guest runs
   * on for a varying number of pages (sometimes past the ring's end) before the exit. Absent
   * means true. The model always exits at the limit; scenarios that count on the exact point
   * `require` this.
   */
  readonly dirtyRingSoftFullAtLimit?: boolean;
  /**
   * A guest read of a dirty-logged page whose host page is writable maps it writable, and
   * make_spte() logs it (`__kvm_faultin_pfn()` asks for `map_writable`). Measured false on the
   * PVM host: such a read is never logged, the page only when written. Absent means true.
   */
  readonly readFaultLogsWritablePage?: boolean;
}

/** The VM as a memory provider (guest_memfd, device fd) sees it. */
export interface VmForProvider {
  readonly vmType: number;
  readonly profile: KernelProfile;
  readonly backend: VendorBackend | null;
  readonly phys: HostPhysMem;
  readonly tracer: { emit(name: string, fields: TraceEvent['fields']): void };
  /** kvm_arch_has_private_mem() */
  readonly hasPrivateMem: boolean;
  /** kvm_mmu_invalidate_begin() under mmu_lock */
  mmuInvalidateBegin(): void;
  /** kvm_mmu_unmap_gfn_range(): range_add + zap of [start,end) in the roots `filter` selects */
  mmuUnmapGfnRange(start: number, end: number, filter: number): void;
  /** kvm_mmu_invalidate_end() */
  mmuInvalidateEnd(): void;
  /** the VM gains / drops a reference held by a file (the file keeps the VM alive) */
  get(): void;
  put(): void;
}

/** KVM_CREATE_GUEST_MEMFD arguments (struct kvm_create_guest_memfd). */
export interface KvmCreateGuestMemfd {
  size: number;
  flags: number;
}

/**
 * Creates guest_memfd files for `KVM_CREATE_GUEST_MEMFD`: supplied by @ccmem/gmem to
 * `new Kvm({ guestMemfd })`, because the core never imports a provider package.
 * Runs guest_memfd.c's checks and throws KvmError; returns the new file.
 */
export interface GuestMemfdFactory {
  /** flags supported for this VM (KVM_CAP_GUEST_MEMFD_FLAGS) */
  supportedFlags(vm: VmForProvider): number;
  create(vm: VmForProvider, args: KvmCreateGuestMemfd): GuestMemoryFile & FileMappingBacking;
}
