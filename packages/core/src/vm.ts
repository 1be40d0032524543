/**
 * `struct kvm`: one VM and its VM-level ioctls (virt/kvm/kvm_main.c kvm_vm_ioctl, x86.c).
 * The VM ties together the memslots, dirty logging, memory attributes, the invalidation
 * protocol, the TDP MMU and the vendor backend; it implements the narrow interfaces each of
 * them needs (FaultVm, AttributesVm, MemslotHooks, VmForBackend, VmForProvider).
 */
import { uapiU64, uapiUint } from './u64.js';
import { ERRNO, errnoName, fail, type ErrnoName } from './errno.js';
import {
  KVM_FILTER_PRIVATE,
  KVM_FILTER_SHARED,
  type GmemPfn,
  type GuestMemfdFactory,
  type KernelProfile,
  type KvmCreateGuestMemfd,
  type KvmEncRegion,
  type KvmFile,
  type KvmGmemPopulateArgs,
  type MemslotView,
  type VendorBackend,
  type VendorEdge,
  type VendorIoctlResult,
  type VmForBackend,
  type VmForProvider,
} from './backend.js';
import type { MemEncryptOpFallback } from './kvm.js';
import {
  KVM_CAP_DIRTY_LOG_RING,
  KVM_CAP_DIRTY_LOG_RING_ACQ_REL,
  KVM_CAP_DIRTY_LOG_RING_WITH_BITMAP,
  KVM_CAP_EXIT_HYPERCALL,
  KVM_CAP_GUEST_MEMFD,
  KVM_CAP_GUEST_MEMFD_FLAGS,
  KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2,
  KVM_CAP_MAX_VCPU_ID,
  KVM_CAP_MAX_VCPUS,
  KVM_CAP_MEMORY_ATTRIBUTES,
  KVM_CAP_MEMORY_FAULT_INFO,
  KVM_CAP_MULTI_ADDRESS_SPACE,
  KVM_CAP_NR_MEMSLOTS,
  KVM_CAP_NR_VCPUS,
  KVM_CAP_PCI_HOLE_MEM,
  KVM_CAP_PRE_FAULT_MEMORY,
  KVM_CAP_READONLY_MEM,
  KVM_CAP_SYNC_MMU,
  KVM_CAP_USER_MEMORY2,
  KVM_CAP_VM_TYPES,
  KVM_DIRTY_LOG_MANUAL_CAPS,
  KVM_HC_MAP_GPA_RANGE,
  KVM_MAX_NR_ADDRESS_SPACES,
  KVM_MEM_GUEST_MEMFD,
  KVM_MEMORY_ATTRIBUTE_PRIVATE,
  KVM_MEM_PCI_HOLE,
  KVM_MEM_READONLY,
  KVM_MEMSLOT_GMEM_ONLY,
  KVM_USER_MEM_SLOTS,
  KVM_X86_DEFAULT_VM,
  KVM_X86_SW_PROTECTED_VM,
  PAGE_SIZE,
  PG_LEVEL_4K,
} from './uapi.js';
import { Tracer } from './trace.js';
import { kvmGfnDirectBits, kvmGpaToGfn, kvmIsGfnAlias } from './gfn.js';
import { MmuInvalidate } from './invalidate.js';
import { RangeMap } from './range-map.js';
import { KvmMemorySlot, kvmSlotDirtyTrackEnabled } from './memslot/memslot.js';
import { type KvmMemslots, SlotsLockBusyError } from './memslot/memslots.js';
import { MemslotEngine, type MemslotChange, type MemslotHooks, type KvmUserspaceMemoryRegion2 } from './memslot/set-memory-region.js';
import { DirtyLog, type KvmClearDirtyLog, type KvmDirtyLog } from './memslot/dirty-log.js';
import type { DirtyBitmap } from './memslot/dirty-bitmap.js';
import { KVM_DIRTY_GFN_SIZE, KVM_DIRTY_RING_MAX_ENTRIES, KVM_DIRTY_RING_RSVD_ENTRIES, dirtyRingSizeError } from './memslot/dirty-ring.js';
import type { Process } from './host/process.js';
import type { PhysMem } from './host/phys-mem.js';
import type { HvaToPfnOut } from './host/address-space.js';
import { PAGES_PER_LEVEL } from './mmu/tdp-iter.js';
import { TdpMmu } from './mmu/tdp-mmu.js';
import { disallowLpage } from './mmu/hugepage.js';
import { RET_PF_FIXED, RET_PF_RETRY, RET_PF_SPURIOUS, RET_PF_WRITE_PROTECTED } from './mmu/mmu-internal.js';
import type { FaultInjection, FaultVm } from './mmu/fault-vm.js';
import type { KvmPageFault } from './mmu/page-fault.js';
import { SetMemoryAttributesOp, kvmSupportedMemAttributes, type KvmMemoryAttributes } from './attributes.js';
import type { AttributesVm } from './attributes-vm.js';
import { runOp, type KernelOp } from './steps.js';
import { Vcpu } from './vcpu.js';
import { ShadowMmu, type ShadowMmuHost } from './mmu/shadow/shadow-mmu.js';
import { EPT_SPTE, LEGACY_SPTE } from './mmu/shadow/mmu-page.js';
import { VmGuestMemory } from './mmu/shadow/guest-memory.js';
import { ZERO_PFN } from './host/phys-mem.js';

/** KVM_MAX_VCPU_IDS on x86 with the Kconfig default KVM_MAX_VCPUS (1024) */
export const KVM_MAX_VCPU_IDS = 4096;
/** KVM_MAX_VCPUS when the profile does not say (CONFIG_KVM_MAX_NR_VCPUS=4096) */
export const KVM_MAX_VCPUS = 4096;
/** KVM_VCPU_ID_RATIO (arch/x86/include/asm/kvm_host.h): APIC ids may exceed the vCPU count */
export const KVM_VCPU_ID_RATIO = 4;
/** num_online_cpus() when the profile does not say */
const DEFAULT_ONLINE_CPUS = 64;

/** KVM_MAX_VCPUS of a kernel profile (CONFIG_KVM_MAX_NR_VCPUS) */
export function kvmMaxVcpus(profile: KernelProfile): number {
  return profile.maxVcpus ?? KVM_MAX_VCPUS;
}
/** KVM_EXIT_HYPERCALL_VALID_MASK */
export const KVM_EXIT_HYPERCALL_VALID_MASK = 1 << KVM_HC_MAP_GPA_RANGE;

/** struct kvm_enable_cap */
export interface KvmEnableCap {
  cap: number;
  flags?: number;
  args?: number[];
}

export interface VmOptions<E extends VendorEdge = VendorEdge> {
  readonly type: number;
  readonly profile: KernelProfile;
  readonly process: Process;
  readonly backend: VendorBackend<E> | null;
  readonly guestMemfd: GuestMemfdFactory | null;
  readonly tracer: Tracer;
  /** MMU root level: 4 (48-bit GPA) or 5 (52-bit GPA) */
  readonly rootLevel?: 4 | 5;
}

let nextVmId = 1;

/**
 * `E` is the vendor's edge (`SnpEdge`, `TdxEdge`): it types `memoryEncryptOp`, the vCPUs'
 * `guestOp` and the backend's `inspect`. `Kvm.createVm` picks it from the VM type.
 */
export class Vm<E extends VendorEdge = VendorEdge> implements FaultVm, AttributesVm, VmForBackend, VmForProvider, KvmFile {
  readonly kind = 'kvm-vm';
  readonly id = nextVmId++;
  readonly vmType: number;
  readonly profile: KernelProfile;
  readonly process: Process;
  readonly phys: PhysMem;
  readonly backend: VendorBackend<E> | null;
  readonly tracer: Tracer;
  readonly hasPrivateMem: boolean;
  readonly nrMemslotAsIds: number;
  readonly mmuInvalidate = new MmuInvalidate();
  readonly attributes = new RangeMap();
  /** the op KVM_SET_MEMORY_ATTRIBUTES runs (setMemoryAttributes() reuses it) */
  private attrOp: SetMemoryAttributesOp | null = null;
  readonly faultInjection: FaultInjection = { skipRetryCheck: false };
  readonly memslots: MemslotEngine;
  readonly dirtyLog: DirtyLog;
  readonly mmu: TdpMmu;
  readonly vcpus: Vcpu<E>[] = [];
  /** KVM_CAP_EXIT_HYPERCALL: hypercalls that exit to userspace */
  exitHypercalls = 0;
  /** kvm->dirty_ring_size: bytes of each vCPU's dirty ring, 0 without a ring */
  dirtyRingSize = 0;
  /** kvm->dirty_ring_with_bitmap (KVM_CAP_DIRTY_LOG_RING_WITH_BITMAP) */
  dirtyRingWithBitmap = false;
  /**
   * kvm_get_running_vcpu(): the vCPU whose KVM_RUN (or other vCPU ioctl) is in progress, set
   * while a guest access or a vCPU ioctl runs; mark_page_dirty_in_slot() pushes to its ring.
   */
  runningVcpu: Vcpu<E> | null = null;
  /** kvm->vm_dead / vm_bugged, with why */
  deadReason: string | null = null;
  /** the VM's file descriptor in the VMM process */
  fd = -1;
  /** KVM_CAP_VM_TYPES as this VM's /dev/kvm answers it */
  kvmVmTypes = 1;
  /** the vendor module's KVM_MEMORY_ENCRYPT_OP for a VM without a backend (KvmOptions) */
  memEncryptOpFallback: MemEncryptOpFallback | null = null;
  private refs = 1;
  /** close(2) of the VM fd happened (release()) */
  private fdReleased = false;
  private readonly guestMemfd: GuestMemfdFactory | null;
  private readonly unsubscribeMmuNotifier: () => void;
  private shadow: ShadowMmu | null = null;
  private guestMem: VmGuestMemory | null = null;

  constructor(opts: VmOptions<E>) {
    this.vmType = opts.type;
    this.profile = opts.profile;
    this.process = opts.process;
    this.phys = opts.process.phys;
    this.backend = opts.backend;
    this.tracer = opts.tracer;
    this.guestMemfd = opts.guestMemfd;
    this.hasPrivateMem = opts.backend ? opts.backend.hasPrivateMem : opts.type === KVM_X86_SW_PROTECTED_VM;
    // kvm_arch_nr_memslot_as_ids(): with CONFIG_KVM_SMM, `kvm_arch_has_private_mem(kvm) ? 1 : 2`
    // (arch/x86/include/asm/kvm_host.h): SMM is unsupported for guests with private memory,
    // so KVM_X86_SW_PROTECTED_VM has one address space like SNP and TDX
    this.nrMemslotAsIds = opts.backend
      ? opts.backend.nrMemslotAsIds
      : opts.profile.smmAddressSpaces && !this.hasPrivateMem
        ? KVM_MAX_NR_ADDRESS_SPACES
        : 1;
    const hooks = new VmMemslotHooks(this);
    this.memslots = new MemslotEngine(hooks);
    this.memslots0 = this.memslots.slots.memslots(0);
    this.dirtyLog = new DirtyLog(this.memslots, hooks);
    const backend = opts.backend;
    this.mmu = new TdpMmu({
      rootLevel: opts.rootLevel ?? 4,
      mirror: backend?.hasMirroredTdp ?? false,
      external: backend ?? undefined,
      gfnDirectBits: backend?.gfnDirectBits ?? 0,
      tracer: this.tracer,
      // S-EPT table pages are host frames the TDX module takes ownership of
      ...(backend?.hasMirroredTdp ? { externalSptPages: this.phys } : {}),
    });
    this.unsubscribeMmuNotifier = this.process.mm.onInvalidateRange((start, end) => this.mmuNotifierInvalidate(start, end));
    backend?.attach(this);
  }

  /* ------------------------------------------------------------------ state ------------- */

  /** tdp_enabled: the hardware translates gpas (EPT/NPT); false: guest paging is shadowed */
  get tdpEnabled(): boolean {
    return this.profile.tdpEnabled ?? true;
  }

  /**
   * The shadow MMU's pages (created on first use): every guest page table when TDP is off,
   * and an L2's nested EPT when it is on (the rmap-based MMU of arch/x86/kvm/mmu/mmu.c).
   */
  get shadowMmu(): ShadowMmu {
    // small enough to inline on the fault path, which reads it several times per fault
    return this.shadow ?? this.createShadowMmu();
  }

  private createShadowMmu(): ShadowMmu {
    this.shadow = new ShadowMmu(new VmShadowMmuHost(this, this.guestMemory), {
      format: this.tdpEnabled ? EPT_SPTE : LEGACY_SPTE,
      maxMmuPages: this.defaultMmuPages(),
    });
    return this.shadow;
  }

  /** the shadow MMU if it was ever used (hooks skip it otherwise) */
  get shadowMmuIfUsed(): ShadowMmu | null {
    return this.shadow;
  }

  /** guest memory as KVM reads guest page tables (through the memslots' hvas) */
  get guestMemory(): VmGuestMemory {
    return (this.guestMem ??= new VmGuestMemory(this));
  }

  /**
   * The MMU part of the VM's binary stats (`kvm_vm_stats_desc` in arch/x86/kvm/x86.c, what
   * KVM_GET_STATS_FD reports) under the kernel's names: pages_* count the leaves of both
   * MMUs (kvm_update_page_stats() is shared), the mmu_* counters are the shadow MMU's.
   */
  mmuStats(): Record<string, number> {
    const t = this.mmu.stats;
    const s = this.shadow?.stats;
    // a kernel that keeps no page stats (the PVM module) reports 0 leaves whatever is mapped
    const pages = this.profile.pageStats ?? true;
    return {
      remote_tlb_flush: t.tlb_flushes,
      pages_4k: pages ? t.pages_4k + (s?.pages_4k ?? 0) : 0,
      pages_2m: pages ? t.pages_2m + (s?.pages_2m ?? 0) : 0,
      pages_1g: pages ? t.pages_1g + (s?.pages_1g ?? 0) : 0,
      mmu_shadow_zapped: s?.mmu_shadow_zapped ?? 0,
      mmu_pte_write: s?.mmu_pte_write ?? 0,
      mmu_pde_zapped: s?.mmu_pde_zapped ?? 0,
      mmu_flooded: s?.mmu_flooded ?? 0,
      mmu_recycled: s?.mmu_recycled ?? 0,
      mmu_cache_miss: s?.mmu_cache_miss ?? 0,
      mmu_unsync: s?.mmu_unsync ?? 0,
      nx_lpage_splits: 0, // the NX huge-page mitigation is not modelled
      max_mmu_rmap_size: s?.max_mmu_rmap_size ?? 0,
      max_mmu_page_hash_collisions: s?.max_mmu_page_hash_collisions ?? 0,
    };
  }

  /** kvm_memslots(kvm)->generation of address space 0 */
  memslotGeneration(): number {
    return this.memslots0.generation;
  }
  /** address space 0's memslots (the object lives as long as the VM; its fields change) */
  private readonly memslots0: KvmMemslots;

  /**
   * mark_page_dirty_in_slot() (virt/kvm/kvm_main.c): in a dirty-logged slot, the gfn goes to
   * the running vCPU's dirty ring when the VM has rings, else to the slot's bitmap if it has
   * one. With rings and no running vCPU the kernel warns (x86 has no
   * kvm_arch_allow_write_without_running_vcpu()) and only a bitmap can take the page.
   */
  markPageDirty(slot: KvmMemorySlot, gfn: number): void {
    const vcpu = this.runningVcpu;
    if (this.dirtyRingSize !== 0 && vcpu === null && !this.profile.dirtyRingWithBitmap) {
      this.tracer.emit('kvm_warn', { where: 'mark_page_dirty_in_slot', reason: 'dirty ring without a running vCPU', gfn });
    }
    if (!kvmSlotDirtyTrackEnabled(slot)) return;
    if (this.dirtyRingSize !== 0 && vcpu !== null && vcpu.dirtyRing !== null) {
      const rel = gfn - slot.baseGfn;
      const ring = vcpu.dirtyRing;
      if (!ring.push(((slot.asId << 16) | slot.id) >>> 0, rel)) {
        this.tracer.emit('kvm_warn', { where: 'kvm_dirty_ring_push', reason: 'dirty ring full', vcpu_id: vcpu.id });
      }
      if (this.tracer.enabled) this.tracer.emit('kvm_dirty_ring_push', { vcpu_id: vcpu.id, slot: slot.id, offset: rel, used: ring.used });
    } else if (slot.dirtyBitmap) this.dirtyLog.markPageDirtyInSlot(slot, gfn);
  }

  /** kvm_dirty_ring_get_rsvd_entries(): KVM_DIRTY_RING_RSVD_ENTRIES + kvm_cpu_dirty_log_size() (PML) */
  get dirtyRingRsvdEntries(): number {
    return KVM_DIRTY_RING_RSVD_ENTRIES + (this.profile.cpuDirtyLogSize ?? 0);
  }

  /** kvm_use_dirty_bitmap(): no ring, or ring + bitmap */
  get useDirtyBitmap(): boolean {
    return this.dirtyRingSize === 0 || this.dirtyRingWithBitmap;
  }

  /** kvm_mmu_calculate_default_mmu_pages(): 20 per mille of the guest's pages, at least 64 */
  private defaultMmuPages(): number {
    let pages = 0;
    this.forEachMemslotInGfnRange(0, Number.MAX_SAFE_INTEGER, (slot) => {
      pages += slot.npages;
    });
    return Math.max(64, Math.floor((pages * 20) / 1000));
  }

  get dead(): boolean {
    return this.deadReason !== null;
  }

  /** every VM ioctl: a closed VM fd is EBADF, a dead VM answers EIO */
  private checkAlive(ioctl: string): void {
    if (this.fdReleased) fail('EBADF', `${ioctl}: the VM fd is closed`);
    if (this.deadReason !== null) fail('EIO', `${ioctl}: the VM is dead (${this.deadReason})`);
  }

  /** KVM_CAP_GUEST_MEMFD: a provider is plugged in and the kernel has CONFIG_KVM_GUEST_MEMFD */
  get hasGuestMemfd(): boolean {
    return this.guestMemfd !== null && this.profile.guestMemfd !== false;
  }

  /** KVM_CAP_GUEST_MEMFD_FLAGS for this VM */
  get guestMemfdFlags(): number {
    return this.guestMemfd && this.hasGuestMemfd ? this.guestMemfd.supportedFlags(this) : 0;
  }

  get nrVcpus(): number {
    return this.vcpus.length;
  }

  /* -------------------------------------------------------- KVM_CHECK_EXTENSION --------- */

  /** kvm_vm_ioctl_check_extension_generic() + x86 kvm_vm_ioctl_check_extension() on a VM fd */
  checkExtension(cap: number): number {
    return checkExtension(cap, this);
  }

  /** KVM_ENABLE_CAP on the VM fd */
  enableCap(args: KvmEnableCap): void {
    uapiUint(args.cap, 32, 'KVM_ENABLE_CAP', 'cap');
    uapiUint(args.flags ?? 0, 32, 'KVM_ENABLE_CAP', 'flags');
    if ((args.args?.length ?? 0) > 4) fail('EINVAL', 'KVM_ENABLE_CAP: args has 4 entries');
    for (const [i, x] of (args.args ?? []).entries()) uapiU64(x, 'KVM_ENABLE_CAP', `args[${i}]`);
    this.checkAlive('KVM_ENABLE_CAP');
    const flags = args.flags ?? 0;
    const a0 = args.args?.[0] ?? 0;
    switch (args.cap) {
      case KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2:
        this.dirtyLog.enableManualDirtyLogProtect(a0, flags);
        return;
      case KVM_CAP_DIRTY_LOG_RING:
      case KVM_CAP_DIRTY_LOG_RING_ACQ_REL:
        if (!this.checkExtension(args.cap)) fail('EINVAL', 'kvm_vm_ioctl_enable_cap_generic: dirty ring not supported');
        this.enableDirtyLogRing(a0);
        return;
      case KVM_CAP_DIRTY_LOG_RING_WITH_BITMAP:
        // kvm_vm_ioctl_enable_cap_generic(): CONFIG_NEED_KVM_DIRTY_RING_WITH_BITMAP (arm64;
        // a model option on x86), a ring first, no flags, and no memslot yet
        if (!this.profile.dirtyRingWithBitmap || !this.dirtyRingSize || flags) {
          fail('EINVAL', 'KVM_CAP_DIRTY_LOG_RING_WITH_BITMAP: not supported, no dirty ring yet, or flags');
        }
        if (!this.memslots.slots.areAllMemslotsEmpty()) fail('EINVAL', 'KVM_CAP_DIRTY_LOG_RING_WITH_BITMAP: memslots exist already');
        this.dirtyRingWithBitmap = true;
        this.memslots.slots.dirtyRingOnly = false;
        return;
      case KVM_CAP_EXIT_HYPERCALL:
        if (a0 & ~KVM_EXIT_HYPERCALL_VALID_MASK) fail('EINVAL', 'KVM_CAP_EXIT_HYPERCALL: unknown hypercall bits');
        this.exitHypercalls = a0;
        return;
      default:
        fail('EINVAL', `KVM_ENABLE_CAP: capability ${args.cap} cannot be enabled on a VM`);
    }
  }

  /**
   * kvm_vm_ioctl_enable_dirty_log_ring(): `args[0]` is passed as a u32 size; the size checks,
   * then once only (EINVAL), then no vCPU created yet (EINVAL).
   */
  private enableDirtyLogRing(args0: number): void {
    const size = args0 >>> 0;
    const err = dirtyRingSizeError(size, this.dirtyRingRsvdEntries);
    if (err) fail(err, `kvm_vm_ioctl_enable_dirty_log_ring: size ${size} is not a power of two, below a page or the reserved entries, or above ${KVM_DIRTY_RING_MAX_ENTRIES} entries`);
    if (this.dirtyRingSize) fail('EINVAL', 'kvm_vm_ioctl_enable_dirty_log_ring: the dirty ring is enabled already');
    if (this.vcpus.length > 0) fail('EINVAL', 'kvm_vm_ioctl_enable_dirty_log_ring: vCPUs were created already');
    this.dirtyRingSize = size;
    // kvm_use_dirty_bitmap() is false from now on: new slots get no bitmap, KVM_GET_DIRTY_LOG fails
    this.memslots.slots.dirtyRingOnly = !this.dirtyRingWithBitmap;
  }

  /**
   * KVM_RESET_DIRTY_RINGS (kvm_vm_ioctl_reset_dirty_pages()): EINVAL without rings; reset
   * every vCPU's ring under slots_lock; flush TLBs if any entry was reset. Returns the count.
   */
  resetDirtyRings(): number {
    this.checkAlive('KVM_RESET_DIRTY_RINGS');
    if (!this.dirtyRingSize) fail('EINVAL', 'kvm_vm_ioctl_reset_dirty_pages: no dirty ring');
    if (this.memslots.slots.slotsLockHeld) throw new SlotsLockBusyError();
    let cleared = 0;
    const hooks = {
      nrAsIds: () => this.nrMemslotAsIds,
      idToMemslot: (asId: number, id: number) => this.memslots.idToMemslot(asId, id),
      enableDirtyLogPtMasked: (slot: KvmMemorySlot, off: number, mask: number) => this.enableDirtyLogPtMasked(slot, off, mask),
    };
    for (const v of this.vcpus) {
      if (v.dirtyRing === null) continue;
      const n = v.dirtyRing.reset(hooks);
      cleared += n;
      if (n > 0) this.tracer.emit('kvm_dirty_ring_reset', { vcpu_id: v.id, reset: n, used: v.dirtyRing.used });
    }
    if (cleared) this.flushRemoteTlbs();
    return cleared;
  }

  /* ------------------------------------------------------------------- memslots --------- */

  /** KVM_SET_USER_MEMORY_REGION (legacy: flags limited to LOG_DIRTY_PAGES | READONLY) */
  setUserMemoryRegion(region: KvmUserspaceMemoryRegion2): void {
    checkRegionFields(region, 'KVM_SET_USER_MEMORY_REGION');
    this.checkAlive('KVM_SET_USER_MEMORY_REGION');
    runOp(this.memslots.beginSetUserMemoryRegion(region, { v2: false }));
  }

  /** KVM_SET_USER_MEMORY_REGION2 */
  setUserMemoryRegion2(region: KvmUserspaceMemoryRegion2): void {
    checkRegionFields(region, 'KVM_SET_USER_MEMORY_REGION2');
    this.checkAlive('KVM_SET_USER_MEMORY_REGION2');
    runOp(this.memslots.beginSetUserMemoryRegion(region, { v2: true }));
  }

  /** the resumable form, for an explorer: all checks run now, phases on step() */
  beginSetUserMemoryRegion2(region: KvmUserspaceMemoryRegion2): KernelOp<void> {
    checkRegionFields(region, 'KVM_SET_USER_MEMORY_REGION2');
    this.checkAlive('KVM_SET_USER_MEMORY_REGION2');
    return this.memslots.beginSetUserMemoryRegion(region, { v2: true });
  }

  /** KVM_GET_DIRTY_LOG: the slot's bitmap as the bytes the kernel copies (O(npages)) */
  getDirtyLog(args: KvmDirtyLog): Uint8Array {
    return this.getDirtyLogBitmap(args).toBytes();
  }

  /** KVM_GET_DIRTY_LOG with the copy as a DirtyBitmap: memory by what is dirty, not by npages */
  getDirtyLogBitmap(args: KvmDirtyLog): DirtyBitmap {
    uapiUint(args.slot, 32, 'KVM_GET_DIRTY_LOG', 'slot');
    this.checkAlive('KVM_GET_DIRTY_LOG');
    return this.dirtyLog.getDirtyLogBitmap(args);
  }

  /** KVM_CLEAR_DIRTY_LOG */
  clearDirtyLog(args: KvmClearDirtyLog): void {
    uapiUint(args.slot, 32, 'KVM_CLEAR_DIRTY_LOG', 'slot');
    uapiUint(args.num_pages, 32, 'KVM_CLEAR_DIRTY_LOG', 'num_pages');
    uapiU64(args.first_page, 'KVM_CLEAR_DIRTY_LOG', 'first_page');
    this.checkAlive('KVM_CLEAR_DIRTY_LOG');
    this.dirtyLog.clearDirtyLog(args);
  }

  /** kvm_memslots(kvm)->generation of address space 0 (what MMIO SPTEs are tagged with) */
  get memslotsGeneration(): number {
    return this.memslots.slots.memslots(0).generation;
  }

  /** __gfn_to_memslot() in address space 0 (INVALID slots included) */
  gfnToMemslot(gfn: number): KvmMemorySlot | null {
    return this.memslots.gfnToMemslot(0, gfn);
  }

  forEachMemslotInGfnRange(start: number, end: number, cb: (slot: KvmMemorySlot) => void): void {
    for (let as = 0; as < this.nrMemslotAsIds; as++) this.memslots.forEachMemslotInGfnRange(as, start, end, cb);
  }

  /**
   * kvm_mmu_max_gfn() (arch/x86/kvm/mmu.h): the host's MAXPHYADDR with TDP, 52 bits with the
   * shadow MMU (which can shadow any guest-physical address the guest's page tables hold)
   */
  get maxGfn(): number {
    const p = this.profile;
    const bits = p.tdpEnabled === false ? 52 : (p.hostMaxPhyAddr ?? (this.mmu.rootLevel === 5 ? 52 : 48));
    return 2 ** (bits - 12) - 1;
  }

  /** kvm_arch_prepare_memory_region(): the new slot must fit the guest physical address space */
  /** @internal */
  archPrepareMemoryRegion(change: MemslotChange, next: KvmMemorySlot | null): ErrnoName | null {
    if ((change === 'CREATE' || change === 'MOVE') && next) {
      const lastGfn = next.baseGfn + next.npages - 1;
      // base_gfn + npages - 1 > kvm_mmu_max_gfn()
      if (lastGfn > this.maxGfn) return 'EINVAL';
      // a gfn "alias" (TDX shared bit) can never be a memslot: kvm_is_gfn_alias() of the last gfn
      if (kvmIsGfnAlias(this, lastGfn)) return 'EINVAL';
    }
    return null;
  }

  /**
   * kvm_arch_flush_shadow_memslot(): zap what the slot mapped. The default VM zaps every
   * SPTE (KVM_X86_QUIRK_SLOT_ZAP_ALL); other VM types zap only the slot's leaves, with both
   * filters (a TDX guest's accepted memory elsewhere must survive).
   */
  /** @internal */
  flushShadowMemslot(slot: KvmMemorySlot): void {
    const start = slot.baseGfn;
    const end = slot.baseGfn + slot.npages;
    this.tracer.emit('kvm_arch_flush_shadow_memslot', { slot: slot.id, start, end, zap_all: this.vmType === KVM_X86_DEFAULT_VM });
    let flush: boolean;
    if (this.vmType === KVM_X86_DEFAULT_VM) flush = this.mmu.zapAllDirect();
    else flush = this.mmu.zapGfnRange(start, end, KVM_FILTER_PRIVATE | KVM_FILTER_SHARED);
    if (flush) this.flushRemoteTlbs();
    // the shadow MMU: kvm_mmu_zap_all_fast() (KVM_X86_QUIRK_SLOT_ZAP_ALL) or the slot's rmaps
    if (this.shadow) {
      if (this.vmType === KVM_X86_DEFAULT_VM) this.shadow.zapAllFast();
      else this.shadow.unmapGfnRange(start, end);
    }
  }

  /** kvm_arch_commit_memory_region() / kvm_mmu_slot_apply_flags() (arch/x86/kvm/x86.c) */
  /** @internal */
  archCommitMemoryRegion(change: MemslotChange, old: KvmMemorySlot | null, next: KvmMemorySlot | null): void {
    // kvm_mmu_change_mmu_pages(kvm_mmu_calculate_default_mmu_pages()) on CREATE / DELETE
    if (this.shadow && (change === 'CREATE' || change === 'DELETE')) this.shadow.setMaxMmuPages(this.defaultMmuPages());
    // nothing to do for CREATE / MOVE / DELETE, nor for a read-only slot (it can't be dirtied
    // and can't be made writable)
    if (change !== 'FLAGS_ONLY' || !old || !next || next.flags & KVM_MEM_READONLY) return;
    const wasLogging = kvmSlotDirtyTrackEnabled(old);
    const logging = kvmSlotDirtyTrackEnabled(next);
    if (wasLogging === logging) return;
    if (!logging) {
      // kvm_mmu_recover_huge_pages(): 4K tracking is over, map huge again where allowed
      if (this.mmu.recoverHugePages(next.baseGfn, next.baseGfn + next.npages, (gfn, level) => this.maxMappingLevel(next, gfn, level))) {
        this.flushRemoteTlbs();
      }
      return;
    }
    // Initially-all-set does not write-protect (or split) anything: every page is assumed
    // dirty, and KVM_CLEAR_DIRTY_LOG write-protects (and splits) what it clears.
    if (this.dirtyLog.initiallySet) return;
    // eager_page_split, then write-protect so the first write to each page is logged
    const split = this.mmu.splitHugePages(next.baseGfn, next.baseGfn + next.npages, PG_LEVEL_4K);
    if (split > 0) this.tracer.emit('kvm_mmu_eager_split', { slot: next.id, sptes: split });
    // kvm_shadow_mmu_try_split_huge_pages(): only with the TDP MMU on, i.e. nested pages
    if (this.shadow && this.tdpEnabled) {
      const n = this.shadow.trySplitHugePages(next.baseGfn, next.baseGfn + next.npages, PG_LEVEL_4K);
      if (n > 0) this.tracer.emit('kvm_mmu_shadow_eager_split', { slot: next.id, sptes: n });
    }
    this.mmu.writeProtectGfnRange(next.baseGfn, next.baseGfn + next.npages);
    this.shadow?.slotRemoveWriteAccess(next.baseGfn, next.baseGfn + next.npages, PG_LEVEL_4K);
    this.flushRemoteTlbs();
  }

  /**
   * kvm_mmu_max_mapping_level() for recovering a huge page at `gfn` (aligned to `level`):
   * the slot's geometry and attributes (disallow_lpage) and the host mapping of each page.
   */
  private maxMappingLevel(slot: KvmMemorySlot, gfn: number, level: number): boolean {
    if (disallowLpage(slot, gfn, level, this.hasPrivateMem ? this.attributes : null)) return false;
    if (slot.flags & (KVM_MEM_PCI_HOLE | KVM_MEMSLOT_GMEM_ONLY) || slot.gmemFile !== null) return false;
    // host_pfn_mapping_level(): the host page tables (read, never faulted) must map the hva
    // at least that large; the model's hosts map 2M with hugetlb only
    const mm = this.process.mm;
    const hva = slot.userspaceAddr + (gfn - slot.baseGfn) * PAGE_SIZE;
    return level === 2 && mm.findVma(hva)?.huge === true && mm.peekPfn(hva) >= 0;
  }

  /**
   * kvm_arch_mmu_enable_log_dirty_pt_masked(): with KVM_DIRTY_LOG_INITIALLY_SET the slot may
   * still have huge mappings: split the cleared range (eager_page_split) and write-protect
   * the huge pages at its first and last gfn; then write-protect the 4K leaves of `mask`.
   */
  /** @internal */
  enableDirtyLogPtMasked(slot: KvmMemorySlot, gfnOffset: number, mask: number): void {
    if (mask === 0) return;
    if (this.dirtyLog.initiallySet) {
      const start = slot.baseGfn + gfnOffset + (31 - Math.clz32(mask & -mask));
      const end = slot.baseGfn + gfnOffset + (31 - Math.clz32(mask));
      this.mmu.splitHugePages(start, end + 1, PG_LEVEL_4K);
      this.mmu.writeProtectGfnRange(start, start + 1, 2);
      this.mmu.writeProtectGfnRange(end, end + 1, 2);
    }
    this.mmu.writeProtectGfnMask(slot.baseGfn + gfnOffset, mask);
    this.shadowMmuIfUsed?.writeProtectGfnMask(slot.baseGfn + gfnOffset, mask);
  }

  /**
   * enableDirtyLogPtMasked() with every bit set, for each 32-page word of [gfnOffset,
   * gfnOffset + npages): what a whole chunk of dirty bits taken or cleared at once re-arms. Over
   * whole words the huge pages write-protected at each word's first and last gfn are every
   * huge page overlapping the range; the 4K leaves are found by walking what is mapped, not
   * page by page.
   */
  /** @internal */
  enableDirtyLogPtRange(slot: KvmMemorySlot, gfnOffset: number, npages: number): void {
    if (npages <= 0) return;
    const start = slot.baseGfn + gfnOffset;
    const end = start + npages;
    if (this.dirtyLog.initiallySet) {
      this.mmu.splitHugePages(start, end, PG_LEVEL_4K);
      this.mmu.writeProtectGfnRange(start, end, 2);
    }
    this.mmu.writeProtect4kRange(start, end);
    this.shadowMmuIfUsed?.writeProtect4kRange(start, end);
  }

  /* ------------------------------------------------------------- attributes ------------- */

  /** KVM_SET_MEMORY_ATTRIBUTES */
  setMemoryAttributes(attrs: KvmMemoryAttributes): void {
    this.checkSetMemoryAttributes();
    // the ioctl runs to completion here, so one op object serves every call; a call from
    // inside a running one (a vendor hook) or after one that threw gets a fresh op
    let op = this.attrOp;
    if (op !== null && op.phase === 'done') op.reset(attrs);
    else this.attrOp = op = new SetMemoryAttributesOp(this, attrs);
    runOp(op);
  }

  /** what KVM_SET_MEMORY_ATTRIBUTES refuses before its op starts: not built, or the VM is gone */
  private checkSetMemoryAttributes(): void {
    if (!this.profile.memoryAttributes) fail('ENOTTY', 'KVM_SET_MEMORY_ATTRIBUTES: not built (CONFIG_KVM_GENERIC_MEMORY_ATTRIBUTES)');
    this.checkAlive('KVM_SET_MEMORY_ATTRIBUTES');
  }

  /** the resumable form (prepare → invalidate → store → post → finish) */
  beginSetMemoryAttributes(attrs: KvmMemoryAttributes): KernelOp<void> {
    this.checkSetMemoryAttributes();
    return new SetMemoryAttributesOp(this, attrs);
  }

  /** kvm_get_memory_attributes() */
  getMemoryAttributes(gfn: number): number {
    return this.attributes.get(gfn);
  }

  /** kvm_mem_is_private() */
  memIsPrivate(gfn: number): boolean {
    return this.hasPrivateMem && (this.attributes.get(gfn) & KVM_MEMORY_ATTRIBUTE_PRIVATE) !== 0;
  }

  /* -------------------------------------------------------- invalidation / zap ---------- */

  mmuInvalidateBegin(): void {
    this.mmuInvalidate.begin();
    this.tracer.emit('kvm_mmu_invalidate_begin', { in_progress: this.mmuInvalidate.inProgress });
  }

  /** kvm_mmu_unmap_gfn_range(): range_add, then zap in the roots `filter` selects */
  mmuUnmapGfnRange(start: number, end: number, filter: number): void {
    this.mmuInvalidate.rangeAdd(start, end);
    if (this.mmu.zapGfnRange(start, end, filter)) this.flushRemoteTlbs();
    if (this.shadow && filter & KVM_FILTER_SHARED) this.shadow.unmapGfnRange(start, end);
  }

  mmuInvalidateEnd(): void {
    this.mmuInvalidate.end();
    this.tracer.emit('kvm_mmu_invalidate_end', { seq: this.mmuInvalidate.seq });
  }

  zapGfnRange(start: number, end: number, filter = KVM_FILTER_PRIVATE | KVM_FILTER_SHARED): boolean {
    return this.mmu.zapGfnRange(start, end, filter);
  }

  /** kvm_zap_gfn_range(): an invalidation around a zap of every root */
  zapGfnRangeAll(start: number, end: number): void {
    this.mmuInvalidateBegin();
    this.mmuUnmapGfnRange(start, end, KVM_FILTER_PRIVATE | KVM_FILTER_SHARED);
    this.mmuInvalidateEnd();
  }

  flushRemoteTlbs(): void {
    this.mmu.stats.tlb_flushes++;
  }

  /**
   * The mmu-notifier (kvm_mmu_notifier_invalidate_range_start/_end): the VMM's mapping of
   * [hvaStart, hvaEnd) changed; zap the shared mappings of every slot it backs.
   * kvm_handle_hva_range() walks every slot in the hva tree, gmem-only slots included: their
   * shared SPTEs (which map guest_memfd pages) are zapped too, with KVM_FILTER_SHARED, and
   * the next fault maps them again.
   */
  private mmuNotifierInvalidate(hvaStart: number, hvaEnd: number): void {
    let began = false;
    for (let as = 0; as < this.nrMemslotAsIds; as++) {
      this.memslots.forEachMemslotInHvaRange(as, hvaStart, hvaEnd, (slot) => {
        const slotHvaEnd = slot.userspaceAddr + slot.npages * PAGE_SIZE;
        const s = Math.max(hvaStart, slot.userspaceAddr);
        const e = Math.min(hvaEnd, slotHvaEnd);
        if (s >= e) return;
        if (!began) {
          this.mmuInvalidateBegin();
          began = true;
        }
        const gs = slot.baseGfn + Math.floor((s - slot.userspaceAddr) / PAGE_SIZE);
        const ge = slot.baseGfn + Math.ceil((e - slot.userspaceAddr) / PAGE_SIZE);
        this.mmuUnmapGfnRange(gs, ge, KVM_FILTER_SHARED);
      });
    }
    if (began) this.mmuInvalidateEnd();
  }

  /* ----------------------------------------------------------- fault helpers ------------ */

  hvaToPfn(hva: number, write: boolean, fault: KvmPageFault): number {
    const out = this.gupOut;
    if (this.process.mm.hvaToPfnInto(hva, write, out) !== null) return -ERRNO.EFAULT;
    fault.pfn = out.pfn;
    fault.mapWritable = out.writable;
    fault.hostLevel = out.level;
    return 0;
  }
  private readonly gupOut: HvaToPfnOut = { pfn: 0, writable: false, level: PG_LEVEL_4K };

  private readonly mapReq = {
    gfn: 0,
    pfn: 0,
    level: 1,
    isPrivate: false,
    writable: false,
    exec: true,
    hostWritable: false,
    prefetch: false,
    write: false,
  };

  tdpMmuMap(fault: KvmPageFault): number {
    if (fault.slot === null) {
      // tdp_mmu_map_handle_target_level(): no memslot → make_mmio_spte() with the memslot
      // generation, then RET_PF_EMULATE
      fault.reason = 'no memslot: MMIO SPTE installed, emulated MMIO';
      return this.mmu.installMmioSpte(fault.gfn, this.memslotsGeneration);
    }
    const req = this.mapReq;
    // the gfn rounded down to the goal level (gfns are below 2^40: the low half holds the offset)
    const level = fault.goalLevel;
    req.gfn = level === PG_LEVEL_4K ? fault.gfn : fault.gfn - ((fault.gfn >>> 0) & (PAGES_PER_LEVEL[level]! - 1));
    req.pfn = fault.pfn;
    req.level = fault.goalLevel;
    req.isPrivate = fault.isPrivate;
    req.writable = fault.mapWritable;
    req.hostWritable = fault.mapWritable;
    req.exec = true;
    req.prefetch = fault.prefetch;
    req.write = fault.write;
    // trace_kvm_mmu_spte_requested(): what the fault asks the MMU to install (the MMU traces
    // the SPTE it writes as kvm_mmu_set_spte)
    if (this.tracer.enabled) {
      this.tracer.emit('kvm_mmu_spte_requested', { gfn: req.gfn, pfn: req.pfn, level: req.level, private: req.isPrivate });
    }
    const shadow = this.shadow;
    if (shadow === null || shadow.indirectShadowPages === 0) return this.mmu.map(req);
    // L1's TDP mapping of a gfn the shadow MMU shadows (an L2's EPT table): lpage_info counts
    // the shadowed tables (kvm_mmu_gfn_disallow_lpage), and make_spte() asks
    // mmu_try_to_unsync_pages() before making it writable
    const goal = req.level;
    while (req.level > PG_LEVEL_4K && shadow.lpageDisallowed(fault.gfn, req.level)) req.level--;
    if (req.level !== goal) {
      const n = PAGES_PER_LEVEL[req.level]!;
      req.gfn = fault.gfn - (fault.gfn % n);
      req.pfn = fault.pfn + (fault.gfn % PAGES_PER_LEVEL[goal]!) - (fault.gfn % n);
    }
    let wrprot = false;
    if (req.writable && shadow.mmuTryToUnsyncPages(req.gfn, false, fault.prefetch) !== 0) {
      req.writable = false;
      wrprot = true;
    }
    const r = this.mmu.map(req);
    if (wrprot && fault.write && (r === RET_PF_FIXED || r === RET_PF_SPURIOUS)) {
      fault.reason = 'write to a gfn the shadow MMU write-tracks: emulated (RET_PF_WRITE_PROTECTED)';
      return RET_PF_WRITE_PROTECTED;
    }
    return r;
  }

  /** make_spte(): a writable SPTE in a dirty-logged slot marks its page dirty at once */
  markMappedWritable(fault: KvmPageFault): void {
    const slot = fault.slot;
    if (slot && kvmSlotDirtyTrackEnabled(slot)) this.markPageDirty(slot, fault.gfn);
  }

  /* ---------------------------------------------------------------- vCPUs --------------- */

  /** KVM_CREATE_VCPU */
  createVcpu(id: number): Vcpu<E> {
    this.checkAlive('KVM_CREATE_VCPU');
    // kvm_vm_ioctl_create_vcpu(): KVM_MAX_VCPU_IDS = KVM_MAX_VCPUS * KVM_VCPU_ID_RATIO, then
    // created_vcpus >= kvm->max_vcpus (KVM_MAX_VCPUS)
    const maxVcpus = kvmMaxVcpus(this.profile);
    if (!Number.isInteger(id) || id < 0 || id >= maxVcpus * KVM_VCPU_ID_RATIO) {
      fail('EINVAL', 'kvm_vm_ioctl_create_vcpu: id >= KVM_MAX_VCPU_IDS');
    }
    if (this.vcpus.length >= maxVcpus) fail('EINVAL', 'kvm_vm_ioctl_create_vcpu: created_vcpus >= max_vcpus');
    // kvm_arch_vcpu_create() (kvm_x86_ops.vcpu_create) runs before the duplicate-id check
    const created = this.backend?.vcpuCreate?.(id) ?? 0;
    if (created < 0) fail(errnoName(-created) ?? 'EINVAL', `KVM_CREATE_VCPU refused by ${this.backend!.name}'s vcpu_create (${created})`);
    if (this.vcpus.some((v) => v.id === id)) fail('EEXIST', 'KVM_CREATE_VCPU: vcpu id already exists');
    const vcpu = new Vcpu<E>(this, id);
    // kvm_dirty_ring_alloc() with kvm->dirty_ring_size
    if (this.dirtyRingSize) vcpu.allocDirtyRing(this.vcpus.length, this.dirtyRingSize, this.dirtyRingRsvdEntries);
    this.vcpus.push(vcpu);
    this.tracer.emit('kvm_create_vcpu', { vcpu_id: id });
    // the vCPU fd holds a reference to the VM: kvm_get_kvm(), then create_vcpu_fd()
    this.get();
    vcpu.fd = this.process.installFd(vcpu);
    return vcpu;
  }

  vcpu(id: number): Vcpu<E> | undefined {
    return this.vcpus.find((v) => v.id === id);
  }

  /* -------------------------------------------------------------- guest_memfd ----------- */

  /** KVM_CREATE_GUEST_MEMFD: returns the new fd */
  createGuestMemfd(args: KvmCreateGuestMemfd): number {
    uapiU64(args.size, 'KVM_CREATE_GUEST_MEMFD', 'size');
    uapiU64(args.flags ?? 0, 'KVM_CREATE_GUEST_MEMFD', 'flags');
    this.checkAlive('KVM_CREATE_GUEST_MEMFD');
    if (!this.guestMemfd || !this.hasGuestMemfd) fail('ENOTTY', 'KVM_CREATE_GUEST_MEMFD: guest_memfd not built (CONFIG_KVM_GUEST_MEMFD)');
    const file = this.guestMemfd.create(this, args);
    return this.process.installFd(file);
  }

  /* --------------------------------------------------------- vendor ioctls -------------- */

  /** KVM_MEMORY_ENCRYPT_OP on the VM fd (KVM_SEV_SNP_*, KVM_TDX_INIT_VM, ...) */
  memoryEncryptOp(req: E['vmIoctl']): VendorIoctlResult<E['ioctlOut']> {
    this.checkAlive('KVM_MEMORY_ENCRYPT_OP');
    if (!this.backend?.vmIoctl) {
      if (!this.backend && this.memEncryptOpFallback) return this.memEncryptOpFallback(this, req) as VendorIoctlResult<E['ioctlOut']>;
      fail('ENOTTY', 'KVM_MEMORY_ENCRYPT_OP: no vendor backend for this VM type');
    }
    return this.backend.vmIoctl(req);
  }

  /** KVM_MEMORY_ENCRYPT_REG_REGION (kvm_arch_vm_ioctl → kvm_x86_ops.mem_enc_register_region) */
  memoryEncryptRegRegion(range: KvmEncRegion): void {
    this.checkAlive('KVM_MEMORY_ENCRYPT_REG_REGION');
    if (!this.backend?.memEncRegisterRegion) fail('ENOTTY', 'KVM_MEMORY_ENCRYPT_REG_REGION: not an SEV guest (sev_mem_enc_register_region)');
    this.backend.memEncRegisterRegion(range);
  }

  /** KVM_MEMORY_ENCRYPT_UNREG_REGION (kvm_x86_ops.mem_enc_unregister_region) */
  memoryEncryptUnregRegion(range: KvmEncRegion): void {
    this.checkAlive('KVM_MEMORY_ENCRYPT_UNREG_REGION');
    if (!this.backend?.memEncUnregisterRegion) fail('ENOTTY', 'KVM_MEMORY_ENCRYPT_UNREG_REGION: not an SEV guest (sev_mem_enc_unregister_region)');
    this.backend.memEncUnregisterRegion(range);
  }

  /* ---------------------------------------------------- VmForBackend / Provider --------- */

  readPfn(pfn: number, offset: number, length: number): Uint8Array {
    return this.phys.readBytes(pfn, offset, length);
  }

  writePfn(pfn: number, offset: number, data: Uint8Array): void {
    this.phys.writeBytes(pfn, offset, data);
  }

  copyFromUser(hva: number, length: number): Uint8Array | null {
    try {
      return this.process.mm.readBytes(hva, length);
    } catch {
      return null;
    }
  }

  pinUserPages(hva: number, npages: number, write: boolean, _longterm: boolean): Float64Array | null {
    const mm = this.process.mm;
    const first = Math.floor(hva / PAGE_SIZE);
    // every page first, without side effects: a refused pin faults nothing in
    for (let vpn = first; vpn < first + npages; ) {
      const vma = mm.findVma(vpn * PAGE_SIZE);
      if (vma === undefined || (write ? !vma.prot.write : !vma.prot.read)) return null;
      // mm/gup.c writable_file_mapping_allowed() refuses FOLL_LONGTERM | FOLL_WRITE only on file
      // mappings that need dirty tracking; the model's files (guest_memfd, device fds) have none
      vpn = Math.floor(vma.end / PAGE_SIZE);
    }
    const pfns = new Float64Array(npages);
    for (let i = 0; i < npages; i++) {
      const r = mm.hvaToPfn((first + i) * PAGE_SIZE, write);
      if ('fault' in r) return null;
      pfns[i] = r.pfn;
    }
    return pfns;
  }

  copyToUser(hva: number, data: Uint8Array): boolean {
    try {
      this.process.mm.writeBytes(hva, data);
      return true;
    } catch {
      return false;
    }
  }

  markBugged(reason: string): void {
    if (this.deadReason === null) {
      this.deadReason = reason;
      this.tracer.emit('kvm_vm_bugged', { reason });
    }
  }

  kickAllVcpus(reason: string): number {
    for (const v of this.vcpus) v.kick();
    this.tracer.emit('kvm_make_all_cpus_request', { request: 'KVM_REQ_OUTSIDE_GUEST_MODE', reason, vcpus: this.vcpus.length });
    return this.vcpus.length;
  }

  /** kvm_tdp_mmu_map_private_pfn(): map one private 4K page at build time (TDX) */
  mapPrivatePfn(gfn: number, pfn: number): number {
    const req = this.mapReq;
    req.gfn = gfn;
    req.pfn = pfn;
    req.level = PG_LEVEL_4K;
    req.isPrivate = true;
    req.writable = true;
    req.hostWritable = true;
    req.exec = true;
    req.prefetch = true;
    req.write = false;
    for (let tries = 0; tries < 1000; tries++) {
      const r = this.mmu.map(req);
      if (r === RET_PF_FIXED) return 0;
      if (r < 0) return r;
      if (r !== RET_PF_RETRY) return -ERRNO.EIO;
    }
    return -ERRNO.EIO;
  }

  gmemGetPfn(gfn: number): { pfn: number; maxOrder: number } | { errno: number } {
    const out = { pfn: 0, maxOrder: 0 };
    const r = this.gmemGetPfnInto(gfn, out);
    return r < 0 ? { errno: r } : out;
  }

  gmemGetPfnInto(gfn: number, out: GmemPfn): number {
    const slot = this.gfnToMemslot(gfn);
    if (!slot || !slot.gmemFile) return -ERRNO.EINVAL;
    return slot.gmemFile.getPfn(slot, gfn, out);
  }

  /**
   * kvm_gmem_populate() up to kvm_gmem_get_file() (virt/kvm/guest_memfd.c); the file the slot
   * is bound to does the rest, page by page.
   */
  gmemPopulate(args: KvmGmemPopulateArgs): number {
    const { npages, src } = args;
    // WARN_ON_ONCE(npages <= 0), WARN_ON_ONCE(!PAGE_ALIGNED(src))
    if (!(npages > 0)) return -ERRNO.EINVAL;
    // (linux-6.18 and before copy from `src + i * PAGE_SIZE` as given: alignedSrc false)
    if (src !== null && args.alignedSrc !== false && src % PAGE_SIZE !== 0) return -ERRNO.EINVAL;
    // kvm_slot_has_gmem()
    const slot = this.gfnToMemslot(args.startGfn);
    if (slot === null || !(slot.flags & KVM_MEM_GUEST_MEMFD)) return -ERRNO.EINVAL;
    // kvm_gmem_get_file(): the binding is gone (a closed file is the provider's to refuse)
    if (slot.gmemFile === null) return -ERRNO.EFAULT;
    return slot.gmemFile.populate({
      ...args,
      slot,
      getSrcPage: (hva) => this.copyFromUser(hva, PAGE_SIZE) ?? -ERRNO.EFAULT,
      isPrivate: (gfn) => this.memIsPrivate(gfn),
    });
  }

  forEachMirrorLeaf(cb: (gfn: number, level: number, pfn: number) => void): void {
    if (!this.backend?.hasMirroredTdp) return;
    this.mmu.forEachLeaf(0, Number.MAX_SAFE_INTEGER, KVM_FILTER_PRIVATE, (gfn, level, pfn, _w, _d, isMirror) => {
      if (isMirror) cb(gfn, level, pfn);
    });
  }

  forEachDirectLeaf(cb: (gfn: number, level: number, pfn: number) => void): void {
    const direct = kvmGfnDirectBits(this);
    this.mmu.forEachLeaf(0, Number.MAX_SAFE_INTEGER, KVM_FILTER_SHARED, (gfn, level, pfn, _w, _d, isMirror) => {
      if (!isMirror) cb(gfn + direct, level, pfn);
    });
  }

  forEachPrivateMapping(cb: (gfn: number, pfn: number, level: number) => void): void {
    if (this.backend?.hasMirroredTdp) {
      this.forEachMirrorLeaf((gfn, level, pfn) => cb(gfn, pfn, level));
      return;
    }
    if (!this.hasPrivateMem) return;
    this.mmu.forEachLeaf(0, Number.MAX_SAFE_INTEGER, KVM_FILTER_SHARED | KVM_FILTER_PRIVATE, (gfn, level, pfn) => {
      if (this.memIsPrivate(gfn)) cb(gfn, pfn, level);
    });
  }

  gmemPeekPfn(gfn: number): number {
    const slot = this.gfnToMemslot(gfn);
    if (!slot?.gmemFile?.peekPfn) return -1;
    return slot.gmemFile.peekPfn(slot, gfn);
  }

  userExitOnHypercall(nr: number): boolean {
    return nr < 31 && (this.exitHypercalls & (1 << nr)) !== 0;
  }

  get mmuInvalidateSeq(): number {
    return this.mmuInvalidate.seq;
  }

  /** kvm_mmu_page_fault() for a private access (e.g. TDX ACCEPT of an unmapped page) */
  handlePrivateFault(vcpuId: number, gpa: number, acceptLevel?: number): number {
    const vcpu = this.vcpu(vcpuId);
    if (!vcpu) return -ERRNO.EINVAL;
    const prev = this.runningVcpu;
    this.runningVcpu = vcpu;
    try {
      return this.handlePrivateFaultOn(vcpu, gpa, acceptLevel);
    } finally {
      this.runningVcpu = prev;
    }
  }

  private handlePrivateFaultOn(vcpu: Vcpu<E>, gpa: number, acceptLevel?: number): number {
    const gfn = kvmGpaToGfn(this, gpa);
    if (acceptLevel !== undefined) {
      // TDX huge-page series, tdx_check_accept_level(): an EPT violation from TDG.MEM.PAGE.ACCEPT
      // carries the guest's accept level; a larger private mapping over that range is split
      // down to it first, and the fault maps at most at that level
      const span = PAGES_PER_LEVEL[acceptLevel]!;
      const start = Math.floor(gfn / span) * span;
      const r = this.mmu.splitMirrorHugePages(start, start + span, acceptLevel);
      if (r < 0) return r;
    }
    for (let tries = 0; tries < 64; tries++) {
      // private faults are handled as writes (tdx_handle_ept_violation)
      const r = vcpu.pageFault(gpa, gfn, true, true, false, false, acceptLevel);
      if (r === RET_PF_FIXED || r === RET_PF_SPURIOUS) return 0;
      if (r < 0) return r;
      if (r !== RET_PF_RETRY) return -ERRNO.EFAULT;
    }
    return -ERRNO.EAGAIN;
  }

  get(): void {
    this.refs++;
  }

  put(): void {
    // kvm_put_kvm() on a VM already destroyed would be a use after free in the kernel
    if (this.refs <= 0) throw new RangeError(`Vm.put(): VM ${this.id} has no references left`);
    this.refs--;
    if (this.refs === 0) this.destroy();
  }

  /**
   * close(2) of the VM fd (kvm_vm_release()): the VM lives on while vCPU fds and guest_memfd
   * files hold references, but its ioctls are EBADF from now on. A second close does nothing
   * (the fd is gone already).
   */
  release(): void {
    if (this.fdReleased) return;
    this.fdReleased = true;
    this.put();
  }

  /** release() was called: the VM fd is closed */
  get released(): boolean {
    return this.fdReleased;
  }

  get alive(): boolean {
    return this.refs > 0;
  }

  /** kvm_destroy_vm(): vendor teardown (HKID release), then the MMU's roots */
  private destroy(): void {
    this.tracer.emit('kvm_destroy_vm', { vm: this.id });
    this.backend?.destroy?.();
    this.mmu.destroy();
    this.backend?.vmDestroy?.();
    this.memslots.freeMemslots();
    this.shadow?.pool.dispose(); // the shadow pages go with the VM (kvm_mmu_uninit_vm)
    this.unsubscribeMmuNotifier();
  }

  /** read-only inspection for scenario `assert` steps and `ccmem explain` */
  inspectMemslot(asId: number, id: number): MemslotView | undefined {
    return this.memslots.idToMemslot(asId, id) ?? undefined;
  }
}

/** The VM's side of the memslot engine (one object per VM; methods on the prototype). */
class VmMemslotHooks implements MemslotHooks {
  readonly ownerVm: Vm;
  readonly tracer: Tracer;

  constructor(private readonly vm: Vm) {
    this.ownerVm = vm;
    this.tracer = vm.tracer;
  }

  nrAsIds(): number {
    return this.vm.nrMemslotAsIds;
  }

  hasReadonlyMem(): boolean {
    return this.vm.backend ? this.vm.backend.hasReadonlyMem : true;
  }

  pciHoleSupported(): boolean {
    return this.vm.profile.pciHole;
  }

  guestMemfdSupported(): boolean {
    return this.vm.profile.guestMemfd !== false;
  }

  getFile(fd: number): KvmFile | undefined {
    return this.vm.process.getFile(fd);
  }

  archPrepareMemoryRegion(change: MemslotChange, _old: KvmMemorySlot | null, next: KvmMemorySlot | null): ErrnoName | null {
    return this.vm.archPrepareMemoryRegion(change, next);
  }

  flushShadowMemslot(slot: KvmMemorySlot): void {
    this.vm.flushShadowMemslot(slot);
  }

  archCommitMemoryRegion(change: MemslotChange, old: KvmMemorySlot | null, next: KvmMemorySlot | null): void {
    this.vm.archCommitMemoryRegion(change, old, next);
  }

  enableDirtyLogPtMasked(slot: KvmMemorySlot, gfnOffset: number, mask: number): void {
    this.vm.enableDirtyLogPtMasked(slot, gfnOffset, mask);
  }

  enableDirtyLogPtRange(slot: KvmMemorySlot, gfnOffset: number, npages: number): void {
    this.vm.enableDirtyLogPtRange(slot, gfnOffset, npages);
  }

  flushRemoteTlbs(): void {
    this.vm.flushRemoteTlbs();
  }
}

/**
 * KVM_CHECK_EXTENSION, on /dev/kvm (`vm` null) or on a VM fd.
 * `ctx` carries what the system-wide answer depends on.
 */
export function checkExtension(
  cap: number,
  vm: Vm | null,
  ctx?: { profile: KernelProfile; guestMemfd: GuestMemfdFactory | null; vmTypes: number },
): number {
  const profile = vm ? vm.profile : ctx!.profile;
  switch (cap) {
    case KVM_CAP_NR_MEMSLOTS:
      return KVM_USER_MEM_SLOTS;
    case KVM_CAP_USER_MEMORY2:
    case KVM_CAP_SYNC_MMU:
    case KVM_CAP_MEMORY_FAULT_INFO:
      return 1;
    // kvm_vm_ioctl_check_extension() (x86.c): the online CPUs capped at KVM_MAX_VCPUS; the
    // maximum; the largest id + 1
    case KVM_CAP_NR_VCPUS:
      return Math.min(profile.onlineCpus ?? DEFAULT_ONLINE_CPUS, kvmMaxVcpus(profile));
    case KVM_CAP_MAX_VCPUS:
      return kvmMaxVcpus(profile);
    case KVM_CAP_MAX_VCPU_ID:
      return kvmMaxVcpus(profile) * KVM_VCPU_ID_RATIO;
    case KVM_CAP_MULTI_ADDRESS_SPACE:
      if (!profile.smmAddressSpaces) return profile.multiAddressSpaceCap;
      return vm ? vm.nrMemslotAsIds : KVM_MAX_NR_ADDRESS_SPACES;
    case KVM_CAP_READONLY_MEM:
      return vm ? (vm.backend ? (vm.backend.hasReadonlyMem ? 1 : 0) : 1) : 1;
    case KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2:
      return KVM_DIRTY_LOG_MANUAL_CAPS;
    case KVM_CAP_EXIT_HYPERCALL:
      return KVM_EXIT_HYPERCALL_VALID_MASK;
    // kvm_vm_ioctl_check_extension_generic(): x86 selects HAVE_KVM_DIRTY_RING_TSO and _ACQ_REL
    case KVM_CAP_DIRTY_LOG_RING:
    case KVM_CAP_DIRTY_LOG_RING_ACQ_REL:
      return profile.dirtyRing === false ? 0 : KVM_DIRTY_RING_MAX_ENTRIES * KVM_DIRTY_GFN_SIZE;
    case KVM_CAP_DIRTY_LOG_RING_WITH_BITMAP:
      return profile.dirtyRingWithBitmap ? 1 : 0;
    case KVM_CAP_VM_TYPES:
      return vm ? vm.kvmVmTypes : ctx!.vmTypes;
    case KVM_CAP_MEMORY_ATTRIBUTES:
      if (!profile.memoryAttributes) return 0;
      return vm ? kvmSupportedMemAttributes(vm.hasPrivateMem) : KVM_MEMORY_ATTRIBUTE_PRIVATE;
    case KVM_CAP_GUEST_MEMFD:
      return (vm ? vm.hasGuestMemfd : !!ctx!.guestMemfd && profile.guestMemfd !== false) ? 1 : 0;
    case KVM_CAP_GUEST_MEMFD_FLAGS:
      if (vm) return vm.guestMemfdFlags;
      return ctx!.guestMemfd && profile.guestMemfd !== false ? profile.gmemFlagsDefaultVm : 0;
    case KVM_CAP_PRE_FAULT_MEMORY:
      return profile.preFaultMemory ? 1 : 0;
    case KVM_CAP_PCI_HOLE_MEM:
      return profile.pciHole ? 1 : 0;
    default:
      return 0;
  }
}


/** every field of struct kvm_userspace_memory_region2 has its uAPI width (else EINVAL, nothing runs) */
function checkRegionFields(r: KvmUserspaceMemoryRegion2, ioctl: string): void {
  uapiUint(r.slot, 32, ioctl, 'slot');
  uapiUint(r.flags, 32, ioctl, 'flags');
  uapiU64(r.guest_phys_addr, ioctl, 'guest_phys_addr');
  uapiU64(r.memory_size, ioctl, 'memory_size');
  uapiU64(r.userspace_addr, ioctl, 'userspace_addr');
  if (r.guest_memfd_offset !== undefined) uapiU64(r.guest_memfd_offset, ioctl, 'guest_memfd_offset');
  if (r.guest_memfd !== undefined) uapiUint(r.guest_memfd, 32, ioctl, 'guest_memfd');
}

/**
 * The VM as the shadow MMU sees it. One class for every VM (not an object literal of closures
 * per VM), so the MMU's calls through it keep one receiver shape and one call target each
 * whatever VM runs, and compiled fault paths stay valid from one VM to the next.
 */
class VmShadowMmuHost implements ShadowMmuHost {
  readonly tracer: Tracer;
  constructor(
    private readonly vm: Vm,
    readonly guestPtes: VmGuestMemory,
  ) {
    this.tracer = vm.tracer;
  }

  gfnToMemslot(gfn: number): KvmMemorySlot | null {
    return this.vm.gfnToMemslot(gfn);
  }

  markPageDirty(slot: KvmMemorySlot, gfn: number): void {
    this.vm.markPageDirty(slot, gfn);
  }

  flushRemoteTlbs(): void {
    this.vm.flushRemoteTlbs();
  }

  prefetchPfn(slot: KvmMemorySlot, gfn: number): number {
    // gfn_to_page_many_atomic(): only pages the host already maps writable (GUP-fast
    // with FOLL_WRITE: a VMA without PROT_WRITE, e.g. after mprotect(), gives none)
    const mm = this.vm.process.mm;
    const hva = slot.userspaceAddr + (gfn - slot.baseGfn) * PAGE_SIZE;
    if (!mm.findVma(hva)?.prot.write) return -1;
    const pfn = mm.peekPfn(hva);
    return pfn === ZERO_PFN ? -1 : pfn;
  }

  get mmuInvalidateInProgress(): number {
    return this.vm.mmuInvalidate.inProgress;
  }

  // kvm_mmu_slot_gfn_write_protect()'s TDP MMU part: the model zaps L1's leaf for the gfn
  // (kvm_tdp_mmu_write_protect_gfn() clears W and MMU-writable); the refault maps it
  // read-only through the check in tdpMmuMap
  writeProtectTdpGfn(gfn: number): boolean {
    return this.vm.mmu.zapGfnRange(gfn, gfn + 1, KVM_FILTER_SHARED);
  }
}
