/**
 * What the SEV-SNP backend offers at the uAPI edge, as types (`SnpEdge`): the guest's RMP
 * instructions and page-state changes, the KVM_SEV_SNP_* sub-commands of
 * KVM_MEMORY_ENCRYPT_OP (arch/x86/kvm/svm/sev.c, include/uapi/linux/kvm.h), what `inspect`
 * answers, and the VM options.
 */
import type { PG_LEVEL_2M, PG_LEVEL_4K, VendorEdge } from '@ccmem/core';
import type { DirectMapPolicy } from './directmap.js';
import type { KvmSevInit, SevGuestRequest } from './sev/edge.js';

/** The page-size operand of PVALIDATE / RMPADJUST (rCX bit 0): PG_LEVEL_4K or PG_LEVEL_2M. */
export type SnpPageLevel = typeof PG_LEVEL_4K | typeof PG_LEVEL_2M;

/**
 * One entry of a GHCB page-state-change buffer (struct psc_entry). The fields are what the
 * guest wrote: `operation` is SNP_PAGE_STATE_* (or garbage the host must refuse), `pagesize`
 * 0 for 4K and 1 for 2M.
 */
export interface SnpPscEntry {
  readonly gfn: number;
  readonly operation: number;
  readonly pagesize?: 0 | 1;
  readonly cur_page?: number;
}

/** A guest operation of an SNP guest (`vcpu.guestOp(req)`). */
export type SnpGuestRequest =
  /** PVALIDATE: validate (or rescind) the private page at `gpa` */
  | { readonly op: 'pvalidate'; readonly gpa: number; readonly level: SnpPageLevel; readonly validate: boolean }
  /** RMPADJUST (from VMPL0): set VMPL `vmpl`'s permission mask and the VMSA bit of a page */
  | { readonly op: 'rmpadjust'; readonly gpa: number; readonly level: SnpPageLevel; readonly vmpl: number; readonly perms: number; readonly vmsa?: boolean }
  /** GHCB MSR protocol page-state change (GHCB_MSR_PSC_REQ) of one 4K page */
  | { readonly op: 'psc_msr'; readonly gpa: number; readonly operation: number }
  /** VMGEXIT(SVM_VMGEXIT_PSC) with a GHCB buffer of entries */
  | { readonly op: 'psc'; readonly entries: readonly SnpPscEntry[]; readonly cur_entry?: number; readonly end_entry?: number }
  /** the GHCB MSR protocol and the GHCB termination request, as for SEV-ES */
  | SevGuestRequest;

/** KVM_MEMORY_ENCRYPT_OP on an SNP VM fd */
export type SnpVmIoctl =
  /** KVM_SEV_INIT2 (struct kvm_sev_init) */
  | ({ readonly cmd: 'sev_init2' } & KvmSevInit)
  /** struct kvm_sev_snp_launch_start (policy default: RSVD_MBO | SMT) */
  | { readonly cmd: 'snp_launch_start'; readonly policy?: number; readonly flags?: number }
  /** struct kvm_sev_snp_launch_update */
  | { readonly cmd: 'snp_launch_update'; readonly gfn_start: number; readonly uaddr: number; readonly len: number; readonly type: number; readonly flags?: number }
  /** struct kvm_sev_snp_launch_finish (host_data is not measured by the model) */
  | { readonly cmd: 'snp_launch_finish'; readonly flags?: number; readonly host_data?: string };

/** What an SNP ioctl writes back: LAUNCH_UPDATE's progress, LAUNCH_FINISH's measurement. */
export interface SnpIoctlOut {
  readonly gfn_start?: number;
  readonly uaddr?: number;
  readonly len?: number;
  readonly type?: number;
  readonly flags?: number;
  readonly launch_digest?: string;
  readonly vmsa_pfns?: readonly number[];
}

/** `backend.inspect(query)` of the SNP backend */
export type SnpInspect =
  | { readonly what: 'rmp'; readonly pfn: number }
  | { readonly what: 'rmp'; readonly gpa: number }
  | { readonly what: 'directmap'; readonly pfn: number }
  | { readonly what: 'stats' }
  | { readonly what: 'launch' }
  /** kvm_sev_info as KVM_SEV_INIT2 set it */
  | { readonly what: 'sev' };

/** When the RMP gives a page to the guest (see snp-backend.ts) */
export type RmpTiming = 'prepare' | 'set-attributes';

/** The VM options of an SNP VM (`kvm.createVm({ type: KVM_X86_SNP_VM, options })`). */
export interface SnpVmOptions {
  /** 'split' (default, upstream adjust_direct_map) or 'unmap' (the earlier host series) */
  readonly directmap?: DirectMapPolicy;
  /** 'prepare' (default, upstream sev_gmem_prepare) or 'set-attributes' (seed thread 002) */
  readonly rmpTiming?: RmpTiming;
  /** ASID to use (must be free and in the SNP range); default: the lowest free one */
  readonly asid?: number;
}

/** every key of SnpVmOptions, for the run-time check */
export const SNP_VM_OPTIONS: readonly (keyof SnpVmOptions)[] = ['directmap', 'rmpTiming', 'asid'];

export interface SnpEdge extends VendorEdge {
  readonly guestRequest: SnpGuestRequest;
  readonly vmIoctl: SnpVmIoctl;
  readonly vcpuIoctl: never;
  readonly ioctlOut: SnpIoctlOut;
  readonly inspect: SnpInspect;
  readonly options: SnpVmOptions;
}
