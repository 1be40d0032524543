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

/* -- SEV and SEV-ES: `new Kvm({ backends: { [KVM_X86_SEV_VM]: sevBackendFactory, [KVM_X86_SEV_ES_VM]: sevEsBackendFactory } })` -- */
export {
  createSevBackend, sevBackendFactory, sevEsBackendFactory, sevMemEncryptOpFallback, SEV_ENC_BIT,
  type SevBackend, type SevBackendOptions, type SevInfo,
} from './sev/sev-backend.js';
export { SEV_VM_OPTIONS, type SevEdge, type SevVmIoctl, type SevIoctlOut, type SevGuestRequest, type SevInspect, type SevVmOptions, type KvmSevInit } from './sev/edge.js';
export { SevPlatform, SevAsids, SevFirmware, type SevPlatformOptions, type SevAsidsOptions, type SevFwResult } from './sev/platform.js';
export {
  KVM_SEV_INIT, KVM_SEV_ES_INIT, KVM_SEV_INIT2, KVM_SEV_LAUNCH_START, KVM_SEV_LAUNCH_UPDATE_DATA, KVM_SEV_LAUNCH_UPDATE_VMSA, KVM_SEV_LAUNCH_MEASURE,
  KVM_SEV_LAUNCH_FINISH, KVM_SEV_GUEST_STATUS, KVM_SEV_SNP_LAUNCH_START,
  SEV_RET_SUCCESS, SEV_RET_INVALID_GUEST_STATE, SEV_RET_INVALID_LEN, SEV_RET_INVALID_ADDRESS, SEV_RET_ASID_OWNED, SEV_RET_INVALID_ASID, SEV_RET_INVALID_GUEST, SEV_RET_NAMES,
  SEV_POLICY_NO_DBG, SEV_POLICY_NO_KS, SEV_POLICY_ES, SEV_POLICY_NO_SEND,
  SEV_GUEST_STATE_UNINITIALIZED, SEV_GUEST_STATE_LAUNCH_UPDATE, SEV_GUEST_STATE_LAUNCH_SECRET, SEV_GUEST_STATE_RUNNING,
  SEV_FW_BLOB_MAX_SIZE, SEV_LAUNCH_MEASURE_LEN, SVM_SEV_FEAT_SNP_ACTIVE, SVM_SEV_FEAT_DEBUG_SWAP,
  GHCB_VERSION_MIN, GHCB_VERSION_MAX, GHCB_VERSION_DEFAULT, GHCB_MSR_SEV_INFO_REQ, GHCB_MSR_SEV_INFO_RESP, GHCB_MSR_REG_GPA_REQ, GHCB_MSR_PSC_REQ,
  GHCB_MSR_TERM_REQ, SVM_VMGEXIT_TERM_REQUEST, ghcbMsrTermReq, ghcbMsrSevInfo,
} from './sev/uapi.js';
