/**
 * `/dev/kvm` and the VMM process around it: system-wide KVM_CHECK_EXTENSION, KVM_CREATE_VM,
 * and the host (physical memory, the VMM's address space and fd table).
 *
 * Vendor backends and memory providers are plugged in here, because @ccmem/core never
 * imports them: `new Kvm({ guestMemfd: guestMemfdFactory, backends: { [KVM_X86_SNP_VM]: ... } })`.
 */
import { fail } from './errno.js';
import type { BackendEnv, BackendFactory, GuestMemfdFactory, KernelProfile, NoVendorEdge, VendorBackend, VendorEdge, VendorIoctlResult } from './backend.js';
import { KVM_X86_DEFAULT_VM, KVM_X86_SEV_ES_VM, KVM_X86_SEV_VM, KVM_X86_SNP_VM, KVM_X86_SW_PROTECTED_VM, KVM_X86_TDX_VM, VM_TYPES } from './uapi.js';
import { profileByName, UPSTREAM_PROFILE } from './profile.js';
import { Tracer } from './trace.js';
import { Process } from './host/process.js';
import { checkExtension, Vm } from './vm.js';

/**
 * The widest factory type: requests and options are parameters, so `never` admits every typed
 * factory (`BackendFactory<SnpEdge>`, ...); results stay as wide as VendorEdge's.
 */
interface AnyVendorEdge extends VendorEdge {
  readonly guestRequest: never;
  readonly vmIoctl: never;
  readonly vcpuIoctl: never;
  readonly inspect: never;
  readonly options: never;
}

/** Vendor backend factories by VM type (KVM_X86_SNP_VM, KVM_X86_TDX_VM). */
export interface BackendFactories {
  readonly [type: number]: BackendFactory<AnyVendorEdge>;
}

/** A Kvm without vendor backends (only the default and SW-protected VM types). */
export type NoBackends = Record<never, never>;

/** The edge of a factory (`BackendFactory<SnpEdge>` → `SnpEdge`). */
export type EdgeOf<F> = F extends BackendFactory<infer E> ? E : never;

/**
 * The edge of a VM of type `T` on a Kvm with backends `B`: the factory's for a literal type
 * with one, none for the built-in types, and any of them when `T` is only known at run time.
 */
export type VmEdge<B extends BackendFactories, T extends number> = number extends T
  ? NoVendorEdge | EdgeOf<B[keyof B]>
  : T extends keyof B
    ? EdgeOf<B[T]>
    : NoVendorEdge;

export interface KvmOptions<B extends BackendFactories = NoBackends> {
  /** kernel profile, by object or name ("upstream", "linux-6.18"); default upstream */
  profile?: KernelProfile | string;
  /** guest_memfd provider (from @ccmem/gmem) */
  guestMemfd?: GuestMemfdFactory;
  /** vendor backends by VM type (from @ccmem/snp, @ccmem/tdx) */
  backends?: B;
  process?: Process;
  tracer?: Tracer;
  /**
   * The vendor module's KVM_MEMORY_ENCRYPT_OP for VMs whose type has no backend (svm's
   * sev_mem_enc_ioctl() answers every VM type on an AMD host, e.g. KVM_SEV_INIT2 on a default
   * VM is EINVAL). Without it such a VM answers ENOTTY (no mem_enc_ioctl).
   */
  memEncryptOpFallback?: MemEncryptOpFallback;
}

/** KVM_MEMORY_ENCRYPT_OP of a VM without a vendor backend: `req` is whatever the caller passed */
export type MemEncryptOpFallback = (vm: { readonly vmType: number; readonly nrVcpus: number }, req: { readonly cmd: string }) => VendorIoctlResult;

export interface CreateVmOptions<B extends BackendFactories = NoBackends, T extends number = number> {
  /** KVM_X86_*_VM */
  type?: T;
  /** options for the vendor backend (SNP directmap policy, TDX huge pages, ...); unknown keys are EINVAL */
  options?: Readonly<VmEdge<B, T>['options']>;
  /** TDP root level; 5-level paging maps 52-bit gpas */
  rootLevel?: 4 | 5;
}

export class Kvm<B extends BackendFactories = NoBackends> {
  readonly profile: KernelProfile;
  readonly process: Process;
  readonly tracer: Tracer;
  private readonly guestMemfd: GuestMemfdFactory | null;
  private readonly backends: B;
  private readonly memEncryptOpFallback: MemEncryptOpFallback | null;
  private disposed = false;

  constructor(opts: KvmOptions<B> = {}) {
    const p = typeof opts.profile === 'string' ? profileByName(opts.profile) : opts.profile;
    if (opts.profile !== undefined && !p) throw new Error(`unknown kernel profile: ${String(opts.profile)}`);
    this.profile = p ?? UPSTREAM_PROFILE;
    this.process = opts.process ?? new Process();
    this.tracer = opts.tracer ?? new Tracer();
    this.guestMemfd = opts.guestMemfd ?? null;
    this.backends = opts.backends ?? ({} as B);
    this.memEncryptOpFallback = opts.memEncryptOpFallback ?? null;
  }

  /** KVM_CAP_VM_TYPES: the profile's types that this Kvm can actually run */
  get vmTypes(): number {
    let types = (1 << KVM_X86_DEFAULT_VM) | (1 << KVM_X86_SW_PROTECTED_VM);
    for (const t of Object.keys(this.backends)) types |= 1 << Number(t);
    // kvm_caps.supported_vm_types: SW_PROTECTED needs the TDP MMU (kvm_is_vm_type_supported),
    // SEV needs NPT (sev_hardware_setup), SNP and TDX the TDP MMU as well (the mirror root,
    // guest_memfd faults): with the shadow MMU only the default VM type remains
    const tdp = this.profile.tdpEnabled ?? true;
    const tdpMmu = tdp && (this.profile.tdpMmu ?? true);
    if (!tdpMmu) types &= ~((1 << KVM_X86_SW_PROTECTED_VM) | (1 << KVM_X86_SNP_VM) | (1 << KVM_X86_TDX_VM));
    if (!tdp) types &= ~((1 << KVM_X86_SEV_VM) | (1 << KVM_X86_SEV_ES_VM));
    // sev_hardware_setup(): SEV-ES (and SNP with it) needs MMIO caching (#NPF(RSVD) → #VC)
    if (this.profile.mmioCaching === false) types &= ~((1 << KVM_X86_SEV_ES_VM) | (1 << KVM_X86_SNP_VM));
    return types & this.profile.vmTypes;
  }

  /** KVM_CHECK_EXTENSION on /dev/kvm */
  checkExtension(cap: number): number {
    return checkExtension(cap, null, { profile: this.profile, guestMemfd: this.guestMemfd, vmTypes: this.vmTypes });
  }

  /** KVM_CREATE_VM: EINVAL for a VM type this host does not offer */
  createVm<T extends number = typeof KVM_X86_DEFAULT_VM>(opts: CreateVmOptions<B, T> = {}): Vm<VmEdge<B, T>> {
    if (this.disposed) throw new Error('Kvm.createVm: disposed');
    const type: number = opts.type ?? KVM_X86_DEFAULT_VM;
    if (!Number.isInteger(type) || type < 0 || type > 31 || !(this.vmTypes & (1 << type)))
      fail('EINVAL', `KVM_CREATE_VM: VM type ${vmTypeName(type)} is not supported (KVM_CAP_VM_TYPES)`);
    const factory = this.backends[type] as BackendFactory<VendorEdge> | undefined;
    if (!factory && type !== KVM_X86_DEFAULT_VM && type !== KVM_X86_SW_PROTECTED_VM)
      fail('EINVAL', `KVM_CREATE_VM: no backend for VM type ${vmTypeName(type)}`);
    const options: object = opts.options ?? {};
    const env: BackendEnv = { phys: this.process.phys, profile: this.profile };
    let backend: VendorBackend<VmEdge<B, T>> | null = null;
    if (factory) backend = factory(options, env) as VendorBackend<VmEdge<B, T>>;
    else checkVmOptions(options, [], vmTypeName(type));
    const vm = new Vm<VmEdge<B, T>>({
      type,
      profile: this.profile,
      process: this.process,
      backend,
      guestMemfd: this.guestMemfd,
      tracer: this.tracer,
      // the shadow MMU maps any 52-bit gpa (kvm_mmu_max_gfn()): give the model's tables the room
      rootLevel: opts.rootLevel ?? (this.profile.tdpEnabled === false ? 5 : 4),
    });
    vm.kvmVmTypes = this.vmTypes;
    vm.memEncryptOpFallback = this.memEncryptOpFallback;
    vm.fd = this.process.installFd(vm);
    this.tracer.emit('kvm_create_vm', { type, vm: vm.id });
    return vm;
  }

  /**
   * Throws the whole host away at once, without any teardown (no release, no kvm_destroy_vm):
   * the page tables of every VM still open and the process's memory give their buffers back
   * for reuse by later Kvm instances, so a program that builds and drops many small VMs (the
   * explorer) does not allocate them again. Nothing of this Kvm, its process or its VMs may
   * be used afterwards.
   */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const file of this.process.openFiles()) {
      // the TdpMmu's table pool (private to the MMU: reached by name, for teardown only)
      if (file instanceof Vm) file.mmu.dispose();
    }
    this.process.dispose();
  }
}

/**
 * The run-time check of a VM's options: every key must be one the backend knows (a misspelled
 * `rmptiming` would otherwise be silently ignored). Throws KvmError(EINVAL) naming the known ones.
 */
export function checkVmOptions(options: object, known: readonly string[], who: string): void {
  for (const key of Object.keys(options)) {
    if (!known.includes(key)) {
      const list = known.length ? `known options: ${known.join(', ')}` : 'this VM type takes no options';
      fail('EINVAL', `KVM_CREATE_VM: unknown ${who} VM option '${key}' (${list})`);
    }
  }
}

export function vmTypeName(type: number): string {
  return Object.entries(VM_TYPES).find(([, v]) => v === type)?.[0] ?? String(type);
}
