/**
 * SEV and SEV-ES uAPI constants with the kernel's names: the KVM_MEMORY_ENCRYPT_OP command ids
 * (arch/x86/include/uapi/asm/kvm.h `enum sev_cmd_id`), the PSP firmware status codes
 * (include/uapi/linux/psp-sev.h `sev_ret_code`), the guest policy bits and guest states of the
 * SEV API, VMSA features (SVM_SEV_FEAT_*) and the GHCB MSR protocol (arch/x86/include/asm/sev-common.h).
 */

/* ---- enum sev_cmd_id ---- */
export const KVM_SEV_INIT = 0;
export const KVM_SEV_ES_INIT = 1;
export const KVM_SEV_LAUNCH_START = 2;
export const KVM_SEV_LAUNCH_UPDATE_DATA = 3;
export const KVM_SEV_LAUNCH_UPDATE_VMSA = 4;
export const KVM_SEV_LAUNCH_SECRET = 5;
export const KVM_SEV_LAUNCH_MEASURE = 6;
export const KVM_SEV_LAUNCH_FINISH = 7;
export const KVM_SEV_GUEST_STATUS = 16;
export const KVM_SEV_INIT2 = 22;
export const KVM_SEV_SNP_LAUNCH_START = 100;
export const KVM_SEV_SNP_LAUNCH_UPDATE = 101;
export const KVM_SEV_SNP_LAUNCH_FINISH = 102;

/* ---- sev_ret_code: what the PSP answers (argp->error); KVM then fails the ioctl with EIO ---- */
export const SEV_RET_SUCCESS = 0x0000;
export const SEV_RET_INVALID_PLATFORM_STATE = 0x0001;
export const SEV_RET_INVALID_GUEST_STATE = 0x0002;
export const SEV_RET_INVALID_LEN = 0x0004;
export const SEV_RET_POLICY_FAILURE = 0x0007;
export const SEV_RET_INACTIVE = 0x0008;
export const SEV_RET_INVALID_ADDRESS = 0x0009;
export const SEV_RET_ASID_OWNED = 0x000c;
export const SEV_RET_INVALID_ASID = 0x000d;
export const SEV_RET_INVALID_GUEST = 0x0010;
export const SEV_RET_NAMES: Readonly<Record<number, string>> = {
  [SEV_RET_SUCCESS]: 'SEV_RET_SUCCESS',
  [SEV_RET_INVALID_PLATFORM_STATE]: 'SEV_RET_INVALID_PLATFORM_STATE',
  [SEV_RET_INVALID_GUEST_STATE]: 'SEV_RET_INVALID_GUEST_STATE',
  [SEV_RET_INVALID_LEN]: 'SEV_RET_INVALID_LEN',
  [SEV_RET_POLICY_FAILURE]: 'SEV_RET_POLICY_FAILURE',
  [SEV_RET_INACTIVE]: 'SEV_RET_INACTIVE',
  [SEV_RET_INVALID_ADDRESS]: 'SEV_RET_INVALID_ADDRESS',
  [SEV_RET_ASID_OWNED]: 'SEV_RET_ASID_OWNED',
  [SEV_RET_INVALID_ASID]: 'SEV_RET_INVALID_ASID',
  [SEV_RET_INVALID_GUEST]: 'SEV_RET_INVALID_GUEST',
};

/* ---- SEV guest policy (SEV API, "Guest Policy") ---- */
export const SEV_POLICY_NO_DBG = 1 << 0;
export const SEV_POLICY_NO_KS = 1 << 1;
export const SEV_POLICY_ES = 1 << 2;
export const SEV_POLICY_NO_SEND = 1 << 3;

/* ---- guest states (SEV API; tools/testing/selftests/kvm/include/x86/sev.h enum sev_guest_state) ---- */
export const SEV_GUEST_STATE_UNINITIALIZED = 0;
export const SEV_GUEST_STATE_LAUNCH_UPDATE = 1;
export const SEV_GUEST_STATE_LAUNCH_SECRET = 2;
export const SEV_GUEST_STATE_RUNNING = 3;

/** SEV_FW_BLOB_MAX_SIZE (include/linux/psp-sev.h): the largest LAUNCH_MEASURE buffer KVM copies */
export const SEV_FW_BLOB_MAX_SIZE = 0x4000;
/** the LAUNCH_MEASURE blob: a 32-byte measurement and a 16-byte nonce (SEV API) */
export const SEV_LAUNCH_MEASURE_LEN = 48;

/* ---- VMSA features (arch/x86/include/asm/svm.h SVM_SEV_FEAT_*) ---- */
export const SVM_SEV_FEAT_SNP_ACTIVE = 1 << 0;
export const SVM_SEV_FEAT_DEBUG_SWAP = 1 << 5;

/* ---- GHCB protocol versions KVM supports (sev.c GHCB_VERSION_*) ---- */
export const GHCB_VERSION_MAX = 2;
export const GHCB_VERSION_DEFAULT = 2;
export const GHCB_VERSION_MIN = 1;

/* ---- GHCB MSR protocol (sev-common.h) ---- */
export const GHCB_MSR_INFO_MASK = 0xfff;
export const GHCB_MSR_SEV_INFO_RESP = 0x001;
export const GHCB_MSR_SEV_INFO_REQ = 0x002;
/** CPUID request: the function in bits 32-63, the register (EAX, EBX, ECX, EDX) in bits 30-31 */
export const GHCB_MSR_CPUID_REQ = 0x004;
export const GHCB_MSR_CPUID_RESP = 0x005;
/** Preferred GHCB GPA request (SNP only): the response says "no preference" */
export const GHCB_MSR_PREF_GPA_REQ = 0x010;
export const GHCB_MSR_PREF_GPA_RESP = 0x011;
/** GHCB_MSR_PREF_GPA_NONE: bits 12-63 of the response all set */
export const GHCB_MSR_PREF_GPA_NONE = 0xf_ffff_ffff_ffffn;
export const GHCB_MSR_REG_GPA_REQ = 0x012;
export const GHCB_MSR_REG_GPA_RESP = 0x013;
export const GHCB_MSR_PSC_REQ = 0x014;
/** Hypervisor feature request: the response carries GHCB_HV_FT_SUPPORTED in bits 12-63 */
export const GHCB_MSR_HV_FT_REQ = 0x080;
export const GHCB_MSR_HV_FT_RESP = 0x081;
/** sev.c GHCB_HV_FT_SUPPORTED: GHCB_HV_FT_SNP | GHCB_HV_FT_SNP_AP_CREATION */
export const GHCB_HV_FT_SUPPORTED = 0x3;
export const GHCB_MSR_TERM_REQ = 0x100;
export const GHCB_MSR_TERM_REASON_SET_POS = 12;
export const GHCB_MSR_TERM_REASON_SET_MASK = 0xf;
export const GHCB_MSR_TERM_REASON_POS = 16;
export const GHCB_MSR_TERM_REASON_MASK = 0xff;
/** SW_EXITCODE of the GHCB's termination request (SVM_VMGEXIT_TERM_REQUEST) */
export const SVM_VMGEXIT_TERM_REQUEST = 0x8000fffe;

/** GHCB_MSR_TERM_REQ with a reason set and code, as the guest writes it to the GHCB MSR */
export function ghcbMsrTermReq(reasonSet: number, reasonCode: number): number {
  return (
    GHCB_MSR_TERM_REQ +
    (reasonSet & GHCB_MSR_TERM_REASON_SET_MASK) * 2 ** GHCB_MSR_TERM_REASON_SET_POS +
    (reasonCode & GHCB_MSR_TERM_REASON_MASK) * 2 ** GHCB_MSR_TERM_REASON_POS
  );
}

/** GHCB_MSR_SEV_INFO(max, min, cbit): the SEV information response (u64, built without bit ops) */
export function ghcbMsrSevInfo(max: number, min: number, cbit: number): number {
  return (max & 0xffff) * 2 ** 48 + (min & 0xffff) * 2 ** 32 + (cbit & 0xff) * 2 ** 24 + GHCB_MSR_SEV_INFO_RESP;
}
