// @ccmem/tdx: the Intel TDX backend for @ccmem/core. This file is the package's public face.

/* -- the backend: `new Kvm({ backends: { [KVM_X86_TDX_VM]: tdxBackendFactory } })` -- */
export {
  TdxBackend, createTdxBackend, tdxBackendFactory, type TdxBackendOptions, type TdxBackendStats,
  KVM_TDX_MEASURE_MEMORY_REGION, KVM_SUPPORTED_TD_ATTRS, TDX_MAP_GPA_MAX_LEN, PFERR_PRIVATE_ACCESS,
} from './tdx-backend.js';
export {
  TDX_VM_OPTIONS, type TdxEdge, type TdxGuestRequest, type TdxVmIoctl, type TdxVcpuIoctl, type TdxIoctlOut, type TdxInspect,
  type TdxVmOptions, type TdxGpaw,
} from './edge.js';

/* -- the TDX module: the platform's HKIDs and each TD's state -- */
export { TdxModule, TdxTd, TDX_TD_ATTR_SEPT_VE_DISABLE, type TdxModuleOptions, type TdState, type TdLifecycle, type SeamcallName } from './tdx-module.js';
export { SEPT_FREE, SEPT_BLOCKED, SEPT_PENDING, SEPT_PENDING_BLOCKED, SEPT_PRESENT, septStateName } from './sept.js';

/* -- SEAMCALL and TDVMCALL status codes -- */
export {
  TDX_SUCCESS, TDX_OPERAND_BUSY, TDX_STATUS_NAMES, TDVMCALL_STATUS, type TdvmcallStatusName,
  tdxStatusName, tdxStatusValue, tdxStatusCode, tdxStatusFromValue, tdxStatusIsError,
} from './status.js';
