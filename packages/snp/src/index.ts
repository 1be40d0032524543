// @ccmem/snp: the AMD SEV-SNP backend for @ccmem/core. This file is the package's public face.

/* -- the backend: `new Kvm({ backends: { [KVM_X86_SNP_VM]: snpBackendFactory } })` -- */
export {
  createSnpBackend, snpBackendFactory, snpHostFor, type SnpBackend, type SnpBackendOptions, type SnpBackendStats,
  KVM_SEV_SNP_PAGE_TYPE_NORMAL, KVM_SEV_SNP_PAGE_TYPE_ZERO, KVM_SEV_SNP_PAGE_TYPE_UNMEASURED, KVM_SEV_SNP_PAGE_TYPE_SECRETS, KVM_SEV_SNP_PAGE_TYPE_CPUID,
  SNP_POLICY_MASK_SMT, SNP_POLICY_MASK_RSVD_MBO, SNP_POLICY_MASK_DEBUG, SNP_POLICY_MASK_SINGLE_SOCKET, SNP_POLICY_MASK_VALID,
  SNP_PAGE_STATE_PRIVATE, SNP_PAGE_STATE_SHARED, SNP_PAGE_STATE_PSMASH, SNP_PAGE_STATE_UNSMASH,
  VMGEXIT_PSC_MAX_ENTRY, VMGEXIT_PSC_ERROR_GENERIC, VMGEXIT_PSC_ERROR_INVALID_HDR, VMGEXIT_PSC_ERROR_INVALID_ENTRY,
} from './snp-backend.js';
export {
  SNP_VM_OPTIONS, type SnpEdge, type SnpGuestRequest, type SnpPscEntry, type SnpPageLevel, type SnpVmIoctl, type SnpIoctlOut,
  type SnpInspect, type SnpVmOptions, type RmpTiming,
} from './edge.js';

/* -- the host: RMP, the instructions that change it, the kernel direct map, the launch digest -- */
export {
  SnpHost, type SnpHostOptions, type SnpHostStats, type RmpState,
  RMPUPDATE_SUCCESS, RMPUPDATE_FAIL_INPUT, RMPUPDATE_FAIL_PERMISSION, RMPUPDATE_FAIL_INUSE, RMPUPDATE_FAIL_OVERLAP,
  PSMASH_SUCCESS, PSMASH_FAIL_INPUT, PSMASH_FAIL_PERMISSION, PSMASH_FAIL_INUSE, PSMASH_FAIL_BADADDR,
  PVALIDATE_SUCCESS, PVALIDATE_FAIL_INPUT, PVALIDATE_FAIL_SIZEMISMATCH, PVALIDATE_FAIL_NOUPDATE,
  RMPADJUST_SUCCESS, RMPADJUST_FAIL_INPUT, RMPADJUST_FAIL_PERMISSION, RMPADJUST_FAIL_SIZEMISMATCH,
} from './instructions.js';
export { Rmp, RMP_MAX_ASID, type RmpEntryView } from './rmp.js';
export { DirectMap, type DirectMapPolicy, type DirectMapStats } from './directmap.js';
export { LaunchDigest, INITIAL_VMSA_GPA } from './launch-digest.js';
