/**
 * What the SEV and SEV-ES backend offers at the uAPI edge, as types (`SevEdge`): the KVM_SEV_*
 * sub-commands of KVM_MEMORY_ENCRYPT_OP (arch/x86/kvm/svm/sev.c sev_mem_enc_ioctl()), the
 * guest's GHCB requests, what `inspect` answers, and the VM options.
 */
import type { VendorEdge } from '@ccmem/core';

/** struct kvm_sev_init (KVM_SEV_INIT2); the pad fields are not checked by the kernel */
export interface KvmSevInit {
  readonly vmsa_features?: number;
  readonly flags?: number;
  readonly ghcb_version?: number;
}

/** KVM_MEMORY_ENCRYPT_OP on a SEV or SEV-ES VM fd */
export type SevVmIoctl =
  /** KVM_SEV_INIT / KVM_SEV_ES_INIT: the deprecated init of a KVM_X86_DEFAULT_VM */
  | { readonly cmd: 'sev_init' }
  | { readonly cmd: 'sev_es_init' }
  /** KVM_SEV_INIT2 */
  | ({ readonly cmd: 'sev_init2' } & KvmSevInit)
  /** struct kvm_sev_launch_start (the DH and session blobs are not modelled) */
  | { readonly cmd: 'sev_launch_start'; readonly policy?: number; readonly handle?: number }
  /** struct kvm_sev_launch_update_data */
  | { readonly cmd: 'sev_launch_update_data'; readonly uaddr: number; readonly len: number }
  | { readonly cmd: 'sev_launch_update_vmsa' }
  /** struct kvm_sev_launch_measure: `len` 0 asks for the length */
  | { readonly cmd: 'sev_launch_measure'; readonly uaddr?: number; readonly len?: number }
  | { readonly cmd: 'sev_launch_finish' }
  | { readonly cmd: 'sev_guest_status' };

/** What a SEV ioctl writes back */
export interface SevIoctlOut {
  /** KVM_SEV_LAUNCH_START: the firmware's guest handle */
  readonly handle?: number;
  /** KVM_SEV_LAUNCH_MEASURE: the blob's length; KVM_SEV_GUEST_STATUS: policy and state */
  readonly len?: number;
  readonly measurement?: string;
  readonly policy?: number;
  readonly state?: number;
  /** kvm_sev_cmd.error: the firmware status (SEV_RET_*) */
  readonly error?: number;
}

/** A guest operation of an SEV-ES (or SNP) guest: the GHCB protocol */
export type SevGuestRequest =
  /** wrmsr(MSR_AMD64_SEV_ES_GHCB, value); VMGEXIT (the GHCB MSR protocol) */
  | { readonly op: 'ghcb_msr'; readonly value: number | bigint }
  /** VMGEXIT with SW_EXITCODE = SVM_VMGEXIT_TERM_REQUEST in the GHCB page at `ghcb_gpa` */
  | { readonly op: 'ghcb_term_request'; readonly ghcb_gpa: number; readonly reason_set?: number; readonly reason_code?: number };

/** `backend.inspect(query)` of the SEV backend */
export type SevInspect = { readonly what: 'sev' } | { readonly what: 'regions' };

/** The VM options of a SEV or SEV-ES VM */
export interface SevVmOptions {
  /** RLIMIT_MEMLOCK of the VMM in bytes, for sev_pin_memory(); default: no limit (CAP_IPC_LOCK) */
  readonly memlockLimit?: number;
  /**
   * The host's min_sev_asid (CPUID 0x8000001F EDX): SEV guests use [min_sev_asid, max_sev_asid],
   * SEV-ES and SNP guests [1, min_sev_asid - 1]. A host fact: the first VM of a host sets it, a
   * later VM must agree. Given with `maxSevAsid`; default 100.
   */
  readonly minSevAsid?: number;
  /** The host's max_sev_asid (CPUID 0x8000001F ECX), >= min_sev_asid - 1; default 509. */
  readonly maxSevAsid?: number;
}

export const SEV_VM_OPTIONS: readonly (keyof SevVmOptions)[] = ['memlockLimit', 'minSevAsid', 'maxSevAsid'];

export interface SevEdge extends VendorEdge {
  readonly guestRequest: SevGuestRequest;
  readonly vmIoctl: SevVmIoctl;
  readonly vcpuIoctl: never;
  readonly ioctlOut: SevIoctlOut;
  readonly inspect: SevInspect;
  readonly options: SevVmOptions;
}
