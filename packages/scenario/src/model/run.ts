/**
 * What a model handler works on (one scenario run): the VM, its process, the scenario's VM
 * configuration and the generic hypercalls userspace has yet to complete; and how the model's
 * results become step outcomes.
 */
import { errnoName, fail, type GuestAccessResult, type GuestOpResult, type KvmFile, type Vcpu, type Vm } from '@ccmem/core';
import type { DeviceMemoryRegion } from '@ccmem/gmem';
import type { SnpBackend } from '@ccmem/snp';
import { TdxBackend } from '@ccmem/tdx';
import type { ModelKvm, ModelVm } from '../model-target.js';
import type { VmConfig } from '../schema.js';
import type { HandlerTable, Outcome } from '../target.js';
import { GenericHypercalls } from './hypercall.js';
import { retAlias, type RetFamily } from './vendor-ret.js';

/** a vCPU of the model's VM (typed with every vendor's edge) */
export type ModelVcpu = Vcpu<ModelVm extends Vm<infer E> ? E : never>;

export class ModelRun {
  readonly hypercalls = new GenericHypercalls();
  /** the regions device fds exported (`provider: device_fd`), for the device's own teardown */
  readonly deviceRegions: DeviceMemoryRegion[] = [];
  /** VMs created by `create_vm`, by fd */
  readonly otherVms = new Map<number, ModelVm>();
  /** KVM_SET_NR_MMU_PAGES of each VM, by fd */
  readonly nrMmuPages = new Map<number, number>();
  /** the VMM's dirty-ring fetch index per vCPU (the selftests' `ring_buf_idx`): where its last harvest stopped */
  readonly dirtyFetchIndexes = new Map<number, number>();
  /** a guest_touch loop a KVM_EXIT_DIRTY_RING_FULL interrupted, per vCPU: the page it stopped at */
  readonly dirtyTouches = new Map<number, { next: number; end: number; value: bigint }>();

  constructor(
    readonly kvm: ModelKvm,
    readonly vm: ModelVm,
    readonly config: VmConfig,
  ) {}

  vcpu(id: number): ModelVcpu {
    const v = this.vm.vcpu(id);
    if (!v) fail('EBADF', `vCPU ${id} was not created (KVM_CREATE_VCPU)`);
    // a vCPU ioctl on a closed vCPU fd: fdget() finds nothing
    if (v.released) fail('EBADF', `vCPU ${id}'s fd was closed`);
    return v;
  }

  /**
   * The vCPU of a guest op. docs/scenarios.md: a guest op on a vCPU with an MMIO read pending
   * completes that read with 0 first (KVM_RUN re-enters through complete_emulated_mmio()).
   */
  guestVcpu(id: number): ModelVcpu {
    const v = this.vcpu(id);
    // (every remaining fragment of a page-crossing access, too)
    for (let i = 0; v.mmioNeeded && i < 16; i++) v.completeMmio(0n);
    return v;
  }

  /** the VM a VM op names with `vm:` (a `create_vm` result or the VM's own fd), or the scenario's */
  vmOf(fd: number | undefined): ModelVm {
    const want = fd ?? this.vm.fd;
    const vm = want === this.vm.fd ? this.vm : this.otherVms.get(want);
    // a VM ioctl on a closed VM fd: fdget() finds nothing (EBADF), though the VM may live on
    if (vm && this.kvm.process.getFile(want) === vm) return vm;
    if (vm) fail('EBADF', `fd ${want} (a VM) was closed`);
    const f = this.kvm.process.getFile(want);
    // a VM ioctl on an fd that is not a VM: the file has no ->unlocked_ioctl of KVM's (ENOTTY)
    fail(f ? 'ENOTTY' : 'EBADF', f ? `fd ${want} is a ${f.kind} fd, not a VM` : `fd ${want} is not open`);
  }

  /** the scenario VM's SEV-SNP backend, for a model-only `op` that needs one (`EINVAL` otherwise) */
  snpBackend(op: string): SnpBackend {
    const b = this.vm.backend;
    if (b?.name !== 'snp') fail('EINVAL', `${op}: the VM is not an SEV-SNP VM`);
    return b as unknown as SnpBackend;
  }

  /** the scenario VM's TDX backend, for a model-only `op` that needs one (`EINVAL` otherwise) */
  tdxBackend(op: string): TdxBackend {
    const b = this.vm.backend;
    if (!(b instanceof TdxBackend)) fail('EINVAL', `${op}: the VM is not a TDX VM`);
    return b;
  }

  file(fd: number): KvmFile {
    const f = this.kvm.process.getFile(fd);
    if (!f) fail('EBADF', `fd ${fd} is not open`);
    return f;
  }
}

/** handlers of one op family */
export type ModelHandlers = Partial<HandlerTable<ModelRun>>;

export function accessOutcome(r: GuestAccessResult): Outcome {
  const out: Outcome = {};
  if (r.errno !== undefined) out.errno = r.errno;
  if (r.exit !== undefined) out.exit = r.exit;
  if (r.value !== undefined) out.value = r.value;
  if (r.exception !== undefined) out.exception = r.exception.vector;
  const detail: Record<string, unknown> = {};
  if (r.reason !== undefined) detail.check = r.reason;
  if (r.exception !== undefined) detail.exception = r.exception;
  if (Object.keys(detail).length) out.detail = detail;
  return out;
}

export function guestOpOutcome(r: GuestOpResult, family: RetFamily): Outcome {
  const out: Outcome = {};
  if (r.errno !== undefined) out.errno = r.errno;
  if (r.exit !== undefined) out.exit = r.exit;
  const detail: Record<string, unknown> = { ...(r.detail ?? {}) };
  if (r.ret !== undefined) {
    out.ret = r.ret;
    const alias = retAlias(r.ret, family);
    if (alias !== undefined) detail.ret_alias = alias;
  }
  if (typeof detail.reason === 'string' && detail.check === undefined) detail.check = detail.reason;
  // a TDVMCALL's R11 output (MapGPA's gpa to resume from)
  if (typeof detail.r11 === 'number') {
    out.r11 = detail.r11;
    delete detail.r11;
  }
  // a GHCB page state change: the header's cur_entry as the host left it in the guest's buffer
  if (typeof detail.cur_entry === 'number') out.params = { cur_entry: detail.cur_entry };
  if (Object.keys(detail).length) out.detail = detail;
  return out;
}

/** a KVM_MEMORY_ENCRYPT_OP result: ret < 0 is the ioctl failing with that errno */
export function ioctlOutcome(r: { ret: number; out?: object }): Outcome {
  const detail: Record<string, unknown> = { ...(r.out ?? {}) };
  if (r.ret < 0) {
    return { errno: errnoName(-r.ret) ?? 'EIO', detail: { ...detail, check: `KVM_MEMORY_ENCRYPT_OP returned ${r.ret}` } };
  }
  return Object.keys(detail).length ? { detail } : {};
}
