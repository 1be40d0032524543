/**
 * The SEV and SEV-ES vendor backend: arch/x86/kvm/svm/sev.c for KVM_X86_SEV_VM and
 * KVM_X86_SEV_ES_VM, on the host's SevPlatform (ASIDs and PSP firmware).
 *
 * What differs from SEV-SNP for memory: there is no RMP and no guest_memfd. KVM does not know
 * which guest pages are private (kvm_arch_has_private_mem() is false, so
 * KVM_SET_MEMORY_ATTRIBUTES has nothing to set): the guest picks per access with the C-bit of
 * its own page tables and the memory controller encrypts with the ASID's key. Private memory is
 * ordinary VMM memory that userspace registers (KVM_MEMORY_ENCRYPT_REG_REGION) so KVM pins it:
 * an encrypted page must not move, because its ciphertext is bound to its physical address.
 */
import { ERRNO, KVM_X86_SEV_ES_VM, KVM_X86_SEV_VM, KVM_X86_SNP_VM, KVM_SYSTEM_EVENT_SEV_TERM, checkVmOptions, fail } from '@ccmem/core';
import type {
  BackendEnv,
  BackendFactory,
  GuestOpResult,
  HostPhysMem,
  KernelProfile,
  KvmEncRegion,
  KvmRunExit,
  MemEncryptOpFallback,
  VendorBackend,
  VendorIoctlResult,
  VmForBackend,
} from '@ccmem/core';
import { snpHostFor } from '../snp-backend.js';
import { SEV_VM_OPTIONS, type KvmSevInit, type SevEdge, type SevGuestRequest, type SevInspect, type SevIoctlOut, type SevVmIoctl, type SevVmOptions } from './edge.js';
import type { SevPlatform } from './platform.js';
import {
  GHCB_HV_FT_SUPPORTED,
  GHCB_MSR_CPUID_REQ,
  GHCB_MSR_CPUID_RESP,
  GHCB_MSR_HV_FT_REQ,
  GHCB_MSR_HV_FT_RESP,
  GHCB_MSR_INFO_MASK,
  GHCB_MSR_PREF_GPA_NONE,
  GHCB_MSR_PREF_GPA_REQ,
  GHCB_MSR_PREF_GPA_RESP,
  GHCB_MSR_PSC_REQ,
  GHCB_MSR_REG_GPA_REQ,
  GHCB_MSR_SEV_INFO_REQ,
  GHCB_MSR_TERM_REQ,
  GHCB_VERSION_DEFAULT,
  GHCB_VERSION_MAX,
  GHCB_VERSION_MIN,
  SEV_FW_BLOB_MAX_SIZE,
  SEV_RET_NAMES,
  SEV_RET_SUCCESS,
  SVM_SEV_FEAT_SNP_ACTIVE,
  ghcbMsrSevInfo,
} from './uapi.js';

const PAGE_SIZE = 4096;
const U64_LIMIT = 2 ** 64;
/** the C-bit position (CPUID 0x8000001F EBX[5:0]) the model reports in GHCB_MSR_SEV_INFO */
export const SEV_ENC_BIT = 51;

/** struct kvm_sev_info: what __sev_guest_init() sets */
export interface SevInfo {
  active: boolean;
  esActive: boolean;
  /** true from KVM_CREATE_VM of a SEV, SEV-ES or SNP VM until KVM_SEV_INIT2 succeeds */
  needInit: boolean;
  vmsaFeatures: number;
  ghcbVersion: number;
  asid: number;
}

/** a sev_mem_enc_ioctl() failure: throws KvmError with the kernel's errno */
function sevFail(code: Parameters<typeof fail>[0], check: string): never {
  fail(code, check);
}

/** __sev_guest_init()'s argument checks, in the kernel's order */
function sevGuestInitChecks(sev: SevInfo, vmType: number, createdVcpus: number, data: KvmSevInit, supportedVmsaFeatures: number): void {
  const esActive = vmType !== KVM_X86_SEV_VM;
  const validVmsaFeatures = esActive ? supportedVmsaFeatures : 0;
  const flags = data.flags ?? 0;
  const vmsaFeatures = data.vmsa_features ?? 0;
  const ghcbVersion = data.ghcb_version ?? 0;
  if (createdVcpus) sevFail('EINVAL', '__sev_guest_init: vCPUs were already created');
  if (flags) sevFail('EINVAL', `__sev_guest_init: flags 0x${flags.toString(16)} (must be 0)`);
  if (!Number.isInteger(vmsaFeatures) || vmsaFeatures < 0 || vmsaFeatures >= U64_LIMIT || hasBitsOutside(vmsaFeatures, validVmsaFeatures))
    sevFail('EINVAL', `__sev_guest_init: vmsa_features 0x${vmsaFeatures.toString(16)} not in the supported 0x${validVmsaFeatures.toString(16)}${esActive ? '' : ' (SEV has no VMSA features)'}`);
  if (ghcbVersion > GHCB_VERSION_MAX || (!esActive && ghcbVersion))
    sevFail('EINVAL', `__sev_guest_init: ghcb_version ${ghcbVersion} (max ${GHCB_VERSION_MAX}; SEV guests have no GHCB)`);
  if (sev.active) sevFail('EINVAL', '__sev_guest_init: the VM is already an SEV guest');
}

/** `value & ~mask` for u64 numbers (above 2^32, without bit operators) */
function hasBitsOutside(value: number, mask: number): boolean {
  const hi = Math.floor(value / 2 ** 32);
  const lo = value >>> 0;
  const mhi = Math.floor(mask / 2 ** 32);
  const mlo = mask >>> 0;
  return (hi & ~mhi) !== 0 || (lo & ~mlo) >>> 0 !== 0;
}

/**
 * __sev_guest_init() after its checks: the state it sets before sev_asid_new() (active,
 * es_active, vmsa_features, ghcb_version defaulting to 2 for SEV-ES, SNP_ACTIVE for SNP)
 */
function sevGuestInitApply(sev: SevInfo, vmType: number, data: KvmSevInit): void {
  sev.active = true;
  sev.esActive = vmType !== KVM_X86_SEV_VM;
  sev.vmsaFeatures = data.vmsa_features ?? 0;
  sev.ghcbVersion = data.ghcb_version ?? 0;
  // KVM_SEV_INIT2 SEV-ES guests default to version 2 of the GHCB protocol
  if (sev.esActive && !sev.ghcbVersion) sev.ghcbVersion = GHCB_VERSION_DEFAULT;
  if (vmType === KVM_X86_SNP_VM) sev.vmsaFeatures += SVM_SEV_FEAT_SNP_ACTIVE;
}

/**
 * KVM_SEV_INIT2 (arch/x86/kvm/svm/sev.c, sev_guest_init2() → __sev_guest_init()) for the SEV,
 * SEV-ES and SNP VM types: need_init and the VM type, then the argument checks (vCPUs already
 * created, flags, vmsa_features, ghcb_version, already active), then sev_asid_new() from the
 * SEV range or the SEV-ES/SNP one. Any failure leaves the VM uninitialized, without an ASID
 * (an ASID failure comes after the state is set: the kernel undoes all of it but ghcb_version).
 * `requestedAsid` is the model's choice of ASID (the SNP `asid` VM option). Returns the ASID.
 */
export function sevGuestInit2(sev: SevInfo, vmType: number, createdVcpus: number, data: KvmSevInit, platform: SevPlatform, requestedAsid?: number): number {
  if (!sev.needInit) sevFail('EINVAL', 'sev_guest_init2: the VM does not need init (KVM_SEV_INIT2 already done, or not an SEV VM type)');
  if (vmType !== KVM_X86_SEV_VM && vmType !== KVM_X86_SEV_ES_VM && vmType !== KVM_X86_SNP_VM)
    sevFail('EINVAL', 'sev_guest_init2: the VM type is not SEV, SEV-ES or SNP');
  sevGuestInitChecks(sev, vmType, createdVcpus, data, platform.supportedVmsaFeatures);
  sevGuestInitApply(sev, vmType, data);
  const esActive = sev.esActive;
  const asid = platform.asids.asidNew(esActive, requestedAsid);
  if (asid < 0) {
    // e_no_asid: vmsa_features, es_active and active are undone; ghcb_version keeps its value
    sev.vmsaFeatures = 0;
    sev.esActive = false;
    sev.active = false;
    sevFail(asid === -ERRNO.ENOTTY ? 'ENOTTY' : 'EBUSY', `sev_asid_new: no free ${esActive ? 'SEV-ES/SNP' : 'SEV'} ASID`);
  }
  sev.asid = asid;
  sev.needInit = false;
  return asid;
}

/**
 * kvm_vcpu_map() of the GHCB page can succeed: a memslot holds its gfn (the model does not check
 * that the memslot's hva is mapped)
 */
export function ghcbMappable(vm: Pick<VmForBackend, 'gfnToMemslot'>, gpa: number): boolean {
  return vm.gfnToMemslot(Math.floor(gpa / PAGE_SIZE)) !== null;
}

/**
 * The GHCB exit of an SEV-ES or SNP guest (sev_handle_vmgexit()): the MSR protocol
 * (sev_handle_vmgexit_msr_protocol()) or the GHCB page's termination request.
 * `snpMsr` handles the SNP-only MSR requests (REG_GPA, PSC); null for SEV-ES, where the kernel
 * terminates the guest instead. `ghcbMapped` says whether kvm_vcpu_map() can map the GHCB page
 * (ghcbMappable()); `ghcbRegistered` whether an SNP guest registered it.
 */
export function sevHandleVmgexit(
  sev: SevInfo,
  req: SevGuestRequest,
  snpMsr: ((value: number | bigint) => GuestOpResult) | null,
  ghcbRegistered: ((gpa: number) => boolean) | null,
  ghcbMapped: (gpa: number) => boolean,
): GuestOpResult {
  const terminate = (data0: number | bigint, why: string): GuestOpResult => {
    const exit: KvmRunExit = { reason: 'KVM_EXIT_SYSTEM_EVENT', system_event: { type: KVM_SYSTEM_EVENT_SEV_TERM, ndata: 1, data: [data0] } };
    return { exit, detail: { reason: why } };
  };
  if (req.op === 'ghcb_term_request') {
    const gpa = req.ghcb_gpa;
    // a gpa with GHCB_MSR_INFO bits is the MSR protocol, not a GHCB page (the op's caller erred)
    if (gpa % (GHCB_MSR_INFO_MASK + 1) !== 0) return { errno: 'EINVAL', detail: { reason: 'the GHCB gpa is not page aligned: that is the GHCB MSR protocol (guest_ghcb_msr)' } };
    // sev_handle_vmgexit(): "Without a GHCB, just return right back to the guest"
    if (gpa === 0) return { detail: { reason: 'vmgexit: GHCB gpa is not set: KVM resumes the guest without an exit' } };
    // kvm_vcpu_map() fails: "Without a GHCB, just return right back to the guest", before the
    // SNP registration check
    if (!ghcbMapped(gpa)) return { detail: { reason: `vmgexit: error mapping GHCB [0x${gpa.toString(16)}] (no memslot): KVM resumes the guest without an exit` } };
    if (ghcbRegistered && !ghcbRegistered(gpa)) return { errno: 'EINVAL', detail: { reason: `vmgexit: GHCB GPA 0x${gpa.toString(16)} is not registered (SNP)` } };
    return terminate(gpa, `SVM_VMGEXIT_TERM_REQUEST: reason ${req.reason_set ?? 0}:${req.reason_code ?? 0}`);
  }
  // the GHCB MSR holds 64 bits: a value above 2^53 stays a bigint, so every bit reaches the
  // request decoding and comes back unchanged
  const value = typeof req.value === 'bigint' ? exactU64(req.value) : req.value;
  if (typeof value === 'number' ? !Number.isInteger(value) || value < 0 || value >= U64_LIMIT : value < 0n || value >= U64_LIMIT_BIGINT) {
    return { errno: 'EINVAL', detail: { reason: 'the GHCB MSR value is not a u64' } };
  }
  const info = msrBits(value, 0, GHCB_MSR_INFO_MASK);
  switch (info) {
    case GHCB_MSR_SEV_INFO_REQ:
      return { ret: ghcbMsrSevInfo(sev.ghcbVersion, GHCB_VERSION_MIN, SEV_ENC_BIT) };
    case GHCB_MSR_CPUID_REQ:
      // the CPUID intercept (kvm_cpuid()) finds no entry in a vCPU without KVM_SET_CPUID2, the
      // model's only kind, and answers 0: the value (bits 32-63) is 0, the register field and the
      // other bits 12-31 stay, GHCB_MSR_CPUID_RESP in bits 0-11
      return { ret: msrBits(value, 12, 0xf_ffff) * 2 ** 12 + GHCB_MSR_CPUID_RESP };
    case GHCB_MSR_HV_FT_REQ:
      // set_ghcb_msr_bits() of GHCB_HV_FT_SUPPORTED into bits 12-63 and of the response code: for
      // SEV-ES guests too, and nothing of the request's upper bits stays
      return { ret: GHCB_HV_FT_SUPPORTED * 2 ** 12 + GHCB_MSR_HV_FT_RESP };
    case GHCB_MSR_PREF_GPA_REQ:
      if (!snpMsr) return terminate(value, `GHCB MSR request 0x${info.toString(16)} is SNP-only: the SEV-ES guest is terminated`);
      // no preferred GHCB GPA: GHCB_MSR_PREF_GPA_NONE in bits 12-63
      return { ret: (GHCB_MSR_PREF_GPA_NONE << 12n) + BigInt(GHCB_MSR_PREF_GPA_RESP) };
    case GHCB_MSR_REG_GPA_REQ:
    case GHCB_MSR_PSC_REQ:
      if (!snpMsr) return terminate(value, `GHCB MSR request 0x${info.toString(16)} is SNP-only: the SEV-ES guest is terminated`);
      return snpMsr(value);
    case GHCB_MSR_TERM_REQ: {
      const reasonSet = msrBits(value, 12, 0xf);
      const reasonCode = msrBits(value, 16, 0xff);
      return terminate(value, `GHCB_MSR_TERM_REQ: guest requested termination ${reasonSet}:${reasonCode}`);
    }
    default:
      // "Error, keep GHCB MSR value as-is"
      return { ret: value };
  }
}

const MAX_SAFE_BIGINT = BigInt(Number.MAX_SAFE_INTEGER);
const U64_LIMIT_BIGINT = 1n << 64n;

/** a 64-bit register value as a number where a number holds it exactly (below 2^53), else the bigint */
export function exactU64(v: bigint): number | bigint {
  return v <= MAX_SAFE_BIGINT ? Number(v) : v;
}

/** `(value >> shift) & mask` of a GHCB MSR value (a number below 2^64, or a bigint); `mask` below 2^31 */
export function msrBits(value: number | bigint, shift: number, mask: number): number {
  return typeof value === 'bigint' ? Number((value >> BigInt(shift)) & BigInt(mask)) : Math.floor(value / 2 ** shift) & mask;
}

interface EncRegion {
  readonly uaddr: number;
  readonly size: number;
  readonly npages: number;
  readonly pfns: Float64Array;
}

export interface SevBackendOptions extends SevVmOptions {
  readonly vmType: typeof KVM_X86_SEV_VM | typeof KVM_X86_SEV_ES_VM;
  readonly phys: HostPhysMem;
  readonly platform: SevPlatform;
  readonly profile?: KernelProfile;
}

/** The SEV / SEV-ES backend */
export interface SevBackend extends VendorBackend<SevEdge> {
  readonly platform: SevPlatform;
  /** kvm_sev_info (read-only view) */
  readonly info: Readonly<SevInfo>;
  /** sev->pages_locked */
  readonly pagesLocked: number;
}

export function createSevBackend(opts: SevBackendOptions): SevBackend {
  return new SevBackendImpl(opts);
}

class SevBackendImpl implements SevBackend {
  readonly name: string;
  readonly vmType: number;
  readonly hasPrivateMem = false;
  readonly hasReadonlyMem: boolean;
  readonly nrMemslotAsIds: number;
  readonly hasMirroredTdp = false;
  readonly gfnDirectBits = 0;
  /** kvm_arch_supports_gmem_init_shared(): !kvm_arch_has_private_mem() */
  readonly supportsGmemInitShared = true;
  readonly platform: SevPlatform;
  readonly info: SevInfo = { active: false, esActive: false, needInit: true, vmsaFeatures: 0, ghcbVersion: 0, asid: 0 };
  pagesLocked = 0;

  private vm: VmForBackend | null = null;
  private readonly phys: HostPhysMem;
  private readonly memlockPages: number;
  /** sev->handle: the firmware guest context (0 before KVM_SEV_LAUNCH_START) */
  private handle = 0;
  private policy = 0;
  /** kvm_sev_cmd.error of the last KVM_MEMORY_ENCRYPT_OP: the firmware's status (0 when it did not reach the firmware) */
  private fwError = SEV_RET_SUCCESS;
  private readonly regions: EncRegion[] = [];
  /** each vCPU's VMSA page after LAUNCH_UPDATE_VMSA (guest_state_protected) */
  private readonly vmsaPages = new Map<number, number>();
  private destroyed = false;

  constructor(opts: SevBackendOptions) {
    this.vmType = opts.vmType;
    this.name = opts.vmType === KVM_X86_SEV_VM ? 'sev' : 'sev-es';
    this.platform = opts.platform;
    this.phys = opts.phys;
    // svm_vm_init(): has_protected_state for SEV-ES; kvm_arch_nr_memslot_as_ids(), kvm_arch_has_readonly_mem()
    const protectedState = opts.vmType === KVM_X86_SEV_ES_VM;
    this.hasReadonlyMem = !protectedState;
    this.nrMemslotAsIds = protectedState || opts.profile?.smmAddressSpaces === false ? 1 : 2;
    this.memlockPages = opts.memlockLimit === undefined ? Infinity : Math.floor(opts.memlockLimit / PAGE_SIZE);
  }

  attach(vm: VmForBackend): void {
    this.vm = vm;
  }

  private get kvm(): VmForBackend {
    if (!this.vm) throw new Error('sev backend used before attach()');
    return this.vm;
  }

  /** svm_vm_init(): pre_fault_allowed = !has_private_mem */
  preFaultAllowed(): boolean {
    return true;
  }

  /** svm_vcpu_pre_run(): KVM_RUN before KVM_SEV_INIT2 is EINVAL */
  vcpuPreRun(): number {
    return this.info.needInit ? -ERRNO.EINVAL : 1;
  }

  /** KVM sees no private faults on SEV: the C-bit is the guest's, the hardware encrypts */
  faultIsPrivate(): boolean {
    return false;
  }

  private get sevGuest(): boolean {
    return this.info.active;
  }

  /* ------------------------------------------------------------ KVM_MEMORY_ENCRYPT_OP */

  /** sev_mem_enc_ioctl() */
  vmIoctl(req: SevVmIoctl): VendorIoctlResult<SevIoctlOut> {
    // sev_issue_cmd() writes argp->error; a command refused before the firmware leaves the
    // value userspace passed (0, as a VMM passes it)
    this.fwError = SEV_RET_SUCCESS;
    switch (req.cmd) {
      case 'sev_es_init':
      case 'sev_init':
        // sev_guest_init(): the deprecated commands initialize a KVM_X86_DEFAULT_VM only, and
        // this backend serves KVM_X86_SEV_VM and KVM_X86_SEV_ES_VM
        return sevFail('EINVAL', `sev_guest_init: ${req.cmd === 'sev_init' ? 'KVM_SEV_INIT' : 'KVM_SEV_ES_INIT'} on a VM of type ${this.vmType} (use KVM_SEV_INIT2)`);
      case 'sev_init2':
        return this.init2(req);
      case 'sev_launch_start':
        return this.launchStart(req);
      case 'sev_launch_update_data':
        return this.launchUpdateData(req);
      case 'sev_launch_update_vmsa':
        return this.launchUpdateVmsa();
      case 'sev_launch_measure':
        return this.launchMeasure(req);
      case 'sev_launch_finish':
        return this.launchFinish();
      case 'sev_guest_status':
        return this.guestStatus();
      default: {
        const cmd = (req as { cmd: string }).cmd;
        // snp_launch_start() / snp_launch_finish(): !sev_snp_guest → ENOTTY; snp_launch_update() → EINVAL
        if (cmd === 'snp_launch_start' || cmd === 'snp_launch_finish') sevFail('ENOTTY', `${cmd}: not an SNP guest`);
        sevFail('EINVAL', `sev_mem_enc_ioctl: unknown command ${cmd}`);
      }
    }
  }

  /** sev_guest_init2() → __sev_guest_init() */
  private init2(data: KvmSevInit): VendorIoctlResult<SevIoctlOut> {
    const asid = sevGuestInit2(this.info, this.vmType, this.kvm.nrVcpus, data, this.platform);
    this.kvm.tracer.emit('sev_guest_init', { vm_type: this.vmType, asid, vmsa_features: this.info.vmsaFeatures, ghcb_version: this.info.ghcbVersion });
    return { ret: 0 };
  }

  /** a firmware status other than success: KVM returns -EIO with argp->error */
  private fwFail(what: string, fwError: number): never {
    this.fwError = fwError;
    sevFail('EIO', `${what}: firmware error ${SEV_RET_NAMES[fwError] ?? fwError} (kvm_sev_cmd.error ${fwError})`);
  }

  /** sev_launch_start() */
  private launchStart(args: Extract<SevVmIoctl, { cmd: 'sev_launch_start' }>): VendorIoctlResult<SevIoctlOut> {
    if (!this.sevGuest) sevFail('ENOTTY', 'sev_launch_start: not an SEV guest (KVM_SEV_INIT2 first)');
    const policy = args.policy ?? 0;
    if (!Number.isInteger(policy) || policy < 0 || policy >= 2 ** 32) sevFail('EINVAL', 'sev_launch_start: policy is a u32');
    // the kernel stores the policy before asking the firmware
    this.policy = policy;
    const fw = this.platform.firmware;
    const start = fw.launchStart(policy);
    if (start.fwError !== SEV_RET_SUCCESS) this.fwFail('SEV_CMD_LAUNCH_START', start.fwError);
    const handle = start.handle!;
    const act = fw.activate(handle, this.info.asid);
    if (act.fwError !== SEV_RET_SUCCESS) {
      fw.decommission(handle);
      this.fwFail('SEV_CMD_ACTIVATE', act.fwError);
    }
    // a second LAUNCH_START: the old context is left to the firmware as the kernel does
    this.handle = handle;
    this.kvm.tracer.emit('sev_launch_start', { handle, policy, asid: this.info.asid });
    return { ret: 0, out: { handle } };
  }

  /**
   * sev_pin_memory(): the pages [uaddr, uaddr + ulen) touch, pinned; their pfns. The count is
   * the pages the range touches (an unaligned 4 KiB range pins two), not ulen / PAGE_SIZE.
   */
  private pinMemory(uaddr: number, ulen: number, longterm: boolean, who: string): { npages: number; pfns: Float64Array } {
    // `uaddr + ulen < uaddr` in unsigned long: a range that ends at 2^64 wraps to 0 too
    if (ulen === 0 || uaddr + ulen >= U64_LIMIT) sevFail('EINVAL', `${who}: sev_pin_memory: length 0 or the range wraps`);
    const first = Math.floor(uaddr / PAGE_SIZE);
    const last = Math.floor((uaddr + ulen - 1) / PAGE_SIZE);
    const npages = last - first + 1;
    const locked = this.pagesLocked + npages;
    if (locked > this.memlockPages) sevFail('ENOMEM', `${who}: sev_pin_memory: ${locked} locked pages exceed the lock limit of ${this.memlockPages}`);
    if (npages > 2 ** 31 - 1) sevFail('EINVAL', `${who}: sev_pin_memory: npages > INT_MAX`);
    const pfns = this.kvm.pinUserPages(uaddr, npages, true, longterm);
    if (pfns === null) sevFail('ENOMEM', `${who}: sev_pin_memory: failure locking ${npages} pages (pin_user_pages_fast)`);
    this.pagesLocked = locked;
    return { npages, pfns };
  }

  /** sev_launch_update_data(): pin, LAUNCH_UPDATE_DATA per physically contiguous run, unpin */
  private launchUpdateData(args: Extract<SevVmIoctl, { cmd: 'sev_launch_update_data' }>): VendorIoctlResult<SevIoctlOut> {
    if (!this.sevGuest) sevFail('ENOTTY', 'sev_launch_update_data: not an SEV guest');
    const { uaddr, len } = args;
    const { npages, pfns } = this.pinMemory(uaddr, len, false, 'sev_launch_update_data');
    try {
      let vaddr = uaddr;
      let size = len;
      for (let i = 0; size > 0; ) {
        const offset = vaddr % PAGE_SIZE;
        let pages = 1;
        while (i + pages < npages && pfns[i + pages] === pfns[i]! + pages) pages++;
        const chunk = Math.min(pages * PAGE_SIZE - offset, size);
        const data = new Uint8Array(chunk);
        for (let done = 0; done < chunk; ) {
          const page = i + Math.floor((offset + done) / PAGE_SIZE);
          const inPage = (offset + done) % PAGE_SIZE;
          const n = Math.min(PAGE_SIZE - inPage, chunk - done);
          data.set(this.phys.readBytes(pfns[page]!, inPage, n), done);
          done += n;
        }
        const r = this.platform.firmware.launchUpdateData(this.handle, offset, data);
        if (r.fwError !== SEV_RET_SUCCESS) this.fwFail('SEV_CMD_LAUNCH_UPDATE_DATA', r.fwError);
        size -= chunk;
        vaddr += chunk;
        i += pages;
      }
    } finally {
      this.pagesLocked -= npages;
    }
    this.kvm.tracer.emit('sev_launch_update_data', { uaddr, len, pages: npages });
    return { ret: 0 };
  }

  /** the model's VMSA of a vCPU: sev_features and the vCPU id, the rest zero */
  private vmsaBytes(vcpuId: number): Uint8Array {
    const page = new Uint8Array(PAGE_SIZE);
    const v = new DataView(page.buffer);
    // struct sev_es_save_area: sev_features at 0x3b0
    v.setUint32(0x3b0, this.info.vmsaFeatures >>> 0, true);
    v.setUint32(0x3b4, Math.floor(this.info.vmsaFeatures / 2 ** 32), true);
    v.setUint32(0xff0, vcpuId, true);
    return page;
  }

  /** sev_launch_update_vmsa(): each vCPU's VMSA, encrypted and measured */
  private launchUpdateVmsa(): VendorIoctlResult<SevIoctlOut> {
    if (!this.info.active || !this.info.esActive) sevFail('ENOTTY', 'sev_launch_update_vmsa: not an SEV-ES guest');
    const vm = this.kvm;
    for (let id = 0; id < vm.nrVcpus; id++) {
      const bytes = this.vmsaBytes(id);
      const r = this.platform.firmware.launchUpdateVmsa(this.handle, bytes);
      if (r.fwError !== SEV_RET_SUCCESS) this.fwFail('SEV_CMD_LAUNCH_UPDATE_VMSA', r.fwError);
      // the vCPU's VMSA page (svm->sev_es.vmsa) now holds its encrypted state
      let pfn = this.vmsaPages.get(id);
      if (pfn === undefined) {
        pfn = this.phys.allocPage();
        this.vmsaPages.set(id, pfn);
      }
      this.phys.writeBytes(pfn, 0, bytes);
    }
    vm.tracer.emit('sev_launch_update_vmsa', { vcpus: vm.nrVcpus });
    return { ret: 0 };
  }

  /** sev_launch_measure() */
  private launchMeasure(args: Extract<SevVmIoctl, { cmd: 'sev_launch_measure' }>): VendorIoctlResult<SevIoctlOut> {
    if (!this.sevGuest) sevFail('ENOTTY', 'sev_launch_measure: not an SEV guest');
    const len = args.len ?? 0;
    const uaddr = args.uaddr ?? 0;
    if (len && uaddr && len > SEV_FW_BLOB_MAX_SIZE) sevFail('EINVAL', `sev_launch_measure: len ${len} > SEV_FW_BLOB_MAX_SIZE`);
    // a NULL buffer hands the firmware a zero length
    const r = this.platform.firmware.launchMeasure(this.handle, len && uaddr ? len : 0);
    if (!len) {
      // the length query ("goto done"): params.len = data.len is copied back to userspace even
      // though the command failed, so the ioctl returns -EIO with the length filled in
      if (r.fwError !== SEV_RET_SUCCESS) {
        this.fwError = r.fwError;
        return { ret: -ERRNO.EIO, out: { len: r.len ?? 0 } };
      }
      return { ret: 0, out: { len: r.len ?? 0 } };
    }
    if (r.fwError !== SEV_RET_SUCCESS) this.fwFail('SEV_CMD_LAUNCH_MEASURE', r.fwError);
    // KVM hands the firmware a kzalloc'ed buffer of params.len bytes (len >= the blob's 48 once
    // the firmware succeeded) and copies all of it back: the blob, then zeroes up to len
    const blob = r.measurement!;
    const buf = new Uint8Array(len);
    buf.set(blob);
    // a buffer KVM cannot write: -EFAULT, and "done:" still copies params.len = data.len back
    if (!this.kvm.copyToUser(uaddr, buf)) return { ret: -ERRNO.EFAULT, out: { len: r.len! } };
    return { ret: 0, out: { len: r.len!, measurement: Buffer.from(blob).toString('hex') } };
  }

  /** sev_launch_finish() */
  private launchFinish(): VendorIoctlResult<SevIoctlOut> {
    if (!this.sevGuest) sevFail('ENOTTY', 'sev_launch_finish: not an SEV guest');
    const r = this.platform.firmware.launchFinish(this.handle);
    if (r.fwError !== SEV_RET_SUCCESS) this.fwFail('SEV_CMD_LAUNCH_FINISH', r.fwError);
    this.kvm.tracer.emit('sev_launch_finish', { handle: this.handle });
    return { ret: 0 };
  }

  /** sev_guest_status() */
  private guestStatus(): VendorIoctlResult<SevIoctlOut> {
    if (!this.sevGuest) sevFail('ENOTTY', 'sev_guest_status: not an SEV guest');
    const r = this.platform.firmware.guestStatus(this.handle);
    if (r.fwError !== SEV_RET_SUCCESS) this.fwFail('SEV_CMD_GUEST_STATUS', r.fwError);
    return { ret: 0, out: { handle: this.handle, policy: r.policy!, state: r.state! } };
  }

  /* ------------------------------------------------------------ encrypted regions */

  /** sev_mem_enc_register_region() */
  memEncRegisterRegion(range: KvmEncRegion): void {
    if (!this.sevGuest) sevFail('ENOTTY', 'sev_mem_enc_register_region: not an SEV guest');
    if (range.addr >= U64_LIMIT || range.size >= U64_LIMIT || range.addr < 0 || range.size < 0) sevFail('EINVAL', 'sev_mem_enc_register_region: addr or size > ULONG_MAX');
    const { npages, pfns } = this.pinMemory(range.addr, range.size, true, 'sev_mem_enc_register_region');
    // overlapping registrations are not refused: each pins (and counts) its pages again
    this.regions.push({ uaddr: range.addr, size: range.size, npages, pfns });
    this.kvm.tracer.emit('sev_register_region', { addr: range.addr, size: range.size, npages });
  }

  /** sev_mem_enc_unregister_region(): the region must match a registration exactly */
  memEncUnregisterRegion(range: KvmEncRegion): void {
    if (!this.sevGuest) sevFail('ENOTTY', 'sev_mem_enc_unregister_region: not an SEV guest');
    const i = this.regions.findIndex((r) => r.uaddr === range.addr && r.size === range.size);
    if (i < 0) sevFail('EINVAL', `sev_mem_enc_unregister_region: no region registered at 0x${range.addr.toString(16)} with size 0x${range.size.toString(16)} (find_enc_region)`);
    const [region] = this.regions.splice(i, 1);
    this.pagesLocked -= region!.npages;
  }

  /* ------------------------------------------------------------ guest */

  guestOp(_vcpuId: number, req: SevGuestRequest): GuestOpResult {
    if (!this.info.active) return { errno: 'EINVAL', detail: { reason: 'the VM is not an SEV guest yet (KVM_SEV_INIT2)' } };
    if (!this.info.esActive) return { errno: 'EINVAL', detail: { reason: 'an SEV guest has no GHCB: VMGEXIT exists for SEV-ES and SNP guests only' } };
    const r = sevHandleVmgexit(this.info, req, null, null, (gpa) => ghcbMappable(this.kvm, gpa));
    if (r.exit) this.kvm.tracer.emit('sev_vmgexit', { op: req.op, exit: r.exit.reason });
    return r;
  }

  /* ------------------------------------------------------------ teardown, state */

  /** sev_vm_destroy(): unpin every region, unbind and decommission, free the ASID */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    for (const pfn of this.vmsaPages.values()) this.phys.freePage(pfn);
    this.vmsaPages.clear();
    if (!this.sevGuest) return;
    for (const r of this.regions) this.pagesLocked -= r.npages;
    this.regions.length = 0;
    if (this.handle) this.platform.firmware.decommission(this.handle);
    this.platform.asids.asidFree(this.info.asid);
  }

  /** what sev_vm_destroy() should have released: pinned regions, VMSA pages, the firmware context, the ASID */
  checkAfterDestroy(): string[] {
    const out: string[] = [];
    if (this.pagesLocked !== 0 || this.regions.length !== 0) {
      out.push(`${this.pagesLocked} pages of ${this.regions.length} KVM_MEMORY_ENCRYPT_REG_REGION regions still pinned (sev_unpin_memory() did not run)`);
    }
    if (this.vmsaPages.size !== 0) out.push(`${this.vmsaPages.size} VMSA pages not freed (sev_free_vcpu())`);
    if (this.handle !== 0 && this.platform.firmware.guestStatus(this.handle).fwError === SEV_RET_SUCCESS) {
      out.push(`firmware guest context ${this.handle} still alive (no DEACTIVATE/DECOMMISSION: sev_unbind_asid())`);
    }
    if (this.info.active && this.platform.asids.isBound(this.info.asid)) out.push(`ASID ${this.info.asid} still bound (sev_asid_free() did not run)`);
    return out;
  }

  checkInvariants(): string[] {
    const out: string[] = [];
    const pinned = this.regions.reduce((n, r) => n + r.npages, 0);
    if (pinned !== this.pagesLocked) out.push(`sev pages_locked ${this.pagesLocked} != pages of the registered regions ${pinned}`);
    if (this.info.active) {
      const [min, max] = this.platform.asids.range(this.info.esActive);
      if (this.info.asid < min || this.info.asid > max) out.push(`ASID ${this.info.asid} is outside the ${this.info.esActive ? 'SEV-ES' : 'SEV'} range [${min}, ${max}]`);
    }
    return out;
  }

  inspect(query: SevInspect): unknown {
    switch (query.what) {
      case 'sev': {
        const st = this.handle ? this.platform.firmware.guestStatus(this.handle) : null;
        return {
          active: this.info.active,
          es_active: this.info.esActive,
          need_init: this.info.needInit,
          asid: this.info.asid,
          vmsa_features: this.info.vmsaFeatures,
          ghcb_version: this.info.ghcbVersion,
          handle: this.handle,
          policy: this.policy,
          state: st?.state ?? 0,
          measured_bytes: st?.measuredBytes ?? 0,
          digest: (this.handle ? this.platform.firmware.launchDigest(this.handle) : null) ?? '',
          pages_locked: this.pagesLocked,
          regions: this.regions.length,
          protected_vcpus: this.vmsaPages.size,
          error: this.fwError,
          // the same status by its name in include/uapi/linux/psp-sev.h (enum sev_ret_code)
          error_name: SEV_RET_NAMES[this.fwError] ?? String(this.fwError),
        };
      }
      case 'regions':
        return this.regions.map((r) => ({ addr: r.uaddr, size: r.size, npages: r.npages }));
      default:
        return undefined;
    }
  }
}

/**
 * The host's SEV platform, with the ASID ranges of CPUID 0x8000001F (sev_hardware_setup():
 * max_sev_asid = ECX, min_sev_asid = EDX) when a VM's options name them: the first VM of a host
 * sets them, a later VM that names other values is refused (one CPU per host).
 */
function sevPlatformFor(phys: HostPhysMem, minSevAsid: number | undefined, maxSevAsid: number | undefined): SevPlatform {
  if (minSevAsid !== undefined && (!Number.isInteger(minSevAsid) || minSevAsid < 1 || minSevAsid > 0xffff_ffff))
    fail('EINVAL', `sev: minSevAsid (min_sev_asid, CPUID 0x8000001F EDX) must be a u32 >= 1, got ${minSevAsid}`);
  if (maxSevAsid !== undefined && (!Number.isInteger(maxSevAsid) || maxSevAsid < 1 || maxSevAsid > 0xffff_ffff))
    fail('EINVAL', `sev: maxSevAsid (max_sev_asid, CPUID 0x8000001F ECX) must be a u32 >= 1 (0: the host has no SEV), got ${maxSevAsid}`);
  if ((minSevAsid === undefined) !== (maxSevAsid === undefined)) fail('EINVAL', 'sev: minSevAsid and maxSevAsid come together (CPUID 0x8000001F EDX and ECX)');
  if (minSevAsid !== undefined && maxSevAsid !== undefined && maxSevAsid < minSevAsid - 1)
    fail('EINVAL', `sev: max_sev_asid ${maxSevAsid} is below the SEV-ES ASIDs [1, min_sev_asid - 1 = ${minSevAsid - 1}]`);
  const platform = snpHostFor(phys, minSevAsid !== undefined && maxSevAsid !== undefined ? { maxSnpAsid: minSevAsid - 1, maxSevAsid } : {}).sev;
  const { asids } = platform;
  if ((minSevAsid !== undefined && asids.minSevAsid !== minSevAsid) || (maxSevAsid !== undefined && asids.maxSevAsid !== maxSevAsid))
    fail('EINVAL', `sev: the host already has min_sev_asid ${asids.minSevAsid} and max_sev_asid ${asids.maxSevAsid} (a host fact: every VM of a host must agree)`);
  return platform;
}

function sevFactory(vmType: typeof KVM_X86_SEV_VM | typeof KVM_X86_SEV_ES_VM): BackendFactory<SevEdge> {
  return (options: Readonly<SevVmOptions>, env: BackendEnv): SevBackend => {
    checkVmOptions(options, SEV_VM_OPTIONS, vmType === KVM_X86_SEV_VM ? 'sev' : 'sev-es');
    const { memlockLimit, minSevAsid, maxSevAsid } = options;
    if (memlockLimit !== undefined && (!Number.isInteger(memlockLimit) || memlockLimit < 0)) fail('EINVAL', 'sev: memlockLimit must be a byte count');
    const platform = sevPlatformFor(env.phys, minSevAsid, maxSevAsid);
    // sev_hardware_setup(): "Has the system been allocated ASIDs for SEV-ES?" - with
    // min_sev_asid 1 SEV-ES stays off and KVM_X86_SEV_ES_VM is not a supported VM type
    if (vmType === KVM_X86_SEV_ES_VM && platform.asids.minSevAsid === 1) fail('EINVAL', 'KVM_CREATE_VM: the host has no SEV-ES ASIDs (min_sev_asid is 1), so no SEV-ES VMs');
    return createSevBackend({
      vmType,
      phys: env.phys,
      platform,
      ...(env.profile && { profile: env.profile }),
      ...(memlockLimit !== undefined && { memlockLimit }),
    });
  };
}

/** `new Kvm({ backends: { [KVM_X86_SEV_VM]: sevBackendFactory, [KVM_X86_SEV_ES_VM]: sevEsBackendFactory } })` */
export const sevBackendFactory: BackendFactory<SevEdge> = sevFactory(KVM_X86_SEV_VM);
export const sevEsBackendFactory: BackendFactory<SevEdge> = sevFactory(KVM_X86_SEV_ES_VM);

/**
 * sev_mem_enc_ioctl() of a VM without SEV state (a default or SW-protected VM on an AMD host):
 * KVM_SEV_INIT2 is EINVAL (need_init is false), the launch commands are ENOTTY (not an SEV
 * guest), unknown commands EINVAL. The deprecated KVM_SEV_INIT / KVM_SEV_ES_INIT, which turn a
 * default VM into an SEV guest, are not modelled (ENOTTY, saying so).
 */
export const sevMemEncryptOpFallback: MemEncryptOpFallback = (_vm, req) => {
  switch (req.cmd) {
    case 'sev_init2':
      sevFail('EINVAL', 'sev_guest_init2: the VM does not need init (not a SEV, SEV-ES or SNP VM type)');
    // eslint-disable-next-line no-fallthrough
    case 'sev_init':
    case 'sev_es_init':
      sevFail('ENOTTY', 'model: KVM_SEV_INIT / KVM_SEV_ES_INIT of a default VM are not modelled (KVM_SEV_INIT2 on a SEV VM type is)');
    // eslint-disable-next-line no-fallthrough
    case 'sev_launch_start':
    case 'sev_launch_update_data':
    case 'sev_launch_update_vmsa':
    case 'sev_launch_measure':
    case 'sev_launch_finish':
    case 'sev_guest_status':
    case 'snp_launch_start':
    case 'snp_launch_finish':
      sevFail('ENOTTY', `${req.cmd}: not an SEV guest`);
    // eslint-disable-next-line no-fallthrough
    default:
      sevFail('EINVAL', `sev_mem_enc_ioctl: ${req.cmd} on a VM that is not an SEV guest`);
  }
};
