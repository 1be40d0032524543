/**
 * What the TDX backend offers at the uAPI edge, as types (`TdxEdge`): the guest's
 * TDG.MEM.PAGE.ACCEPT and TDG.VP.VMCALL<MapGPA>, the KVM_TDX_* sub-commands of
 * KVM_MEMORY_ENCRYPT_OP (arch/x86/kvm/vmx/tdx.c, arch/x86/include/uapi/asm/kvm.h), what
 * `inspect` answers, and the VM options.
 */
import type { PG_LEVEL_2M, PG_LEVEL_4K, VendorEdge } from '@ccmem/core';

/** A guest operation of a TD (`vcpu.guestOp(req)`). */
export type TdxGuestRequest =
  /** TDG.MEM.PAGE.ACCEPT of the private page at `gpa` (level default PG_LEVEL_4K) */
  | { readonly op: 'accept'; readonly gpa: number; readonly level?: typeof PG_LEVEL_4K | typeof PG_LEVEL_2M }
  /** TDG.VP.VMCALL<MapGPA>(gpa, size): the shared bit of `gpa` says which way */
  | { readonly op: 'map_gpa'; readonly gpa: number; readonly size: number }
  /** model only: an interrupt is pending (MapGPA stops with TDVMCALL_STATUS_RETRY) */
  | { readonly op: 'pending_interrupt'; readonly pending: boolean };

/** GPAW: 48 (4-level EPT, shared bit 47) or 52 (5-level EPT, shared bit 51) */
export type TdxGpaw = 48 | 52;

/** KVM_MEMORY_ENCRYPT_OP on a TD's VM fd */
export type TdxVmIoctl =
  /** struct kvm_tdx_init_vm (attributes default: SEPT_VE_DISABLE; gpaw must match the VM option) */
  | { readonly cmd: 'tdx_init_vm'; readonly attributes?: number; readonly xfam?: number; readonly gpaw?: number }
  | { readonly cmd: 'tdx_finalize_vm' };

/** KVM_MEMORY_ENCRYPT_OP on a TD's vCPU fd */
export type TdxVcpuIoctl =
  | { readonly cmd: 'tdx_init_vcpu' }
  /** struct kvm_tdx_init_mem_region; flags KVM_TDX_MEASURE_MEMORY_REGION */
  | { readonly cmd: 'tdx_init_mem_region'; readonly source_addr: number; readonly gpa: number; readonly nr_pages: number; readonly flags?: number };

/** What a TDX ioctl writes back: INIT_VM's choices, FINALIZE's MRTD, INIT_MEM_REGION's progress. */
export interface TdxIoctlOut {
  readonly hkid?: number;
  readonly gpaw?: number;
  readonly gfn_direct_bits?: number;
  readonly mrtd?: string;
  readonly source_addr?: number;
  readonly gpa?: number;
  readonly nr_pages?: number;
}

/** `backend.inspect(query)` of the TDX backend */
export type TdxInspect = { readonly what: 'sept'; readonly gpa: number } | { readonly what: 'td' } | { readonly what: 'stats' };

/** The VM options of a TD (`kvm.createVm({ type: KVM_X86_TDX_VM, options })`). */
export interface TdxVmOptions {
  /** map private memory at 2 MiB (the TDX huge-page series; not upstream). Default off: 4 KiB. */
  readonly hugePages?: boolean;
  /** the GPAW, chosen when the VM is created (KVM_TDX_INIT_VM may only confirm it); default 48 */
  readonly gpaw?: TdxGpaw;
}

/** every key of TdxVmOptions, for the run-time check */
export const TDX_VM_OPTIONS: readonly (keyof TdxVmOptions)[] = ['hugePages', 'gpaw'];

export interface TdxEdge extends VendorEdge {
  readonly guestRequest: TdxGuestRequest;
  readonly vmIoctl: TdxVmIoctl;
  readonly vcpuIoctl: TdxVcpuIoctl;
  readonly ioctlOut: TdxIoctlOut;
  readonly inspect: TdxInspect;
  readonly options: TdxVmOptions;
}
