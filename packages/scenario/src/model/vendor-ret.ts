/**
 * Vendor return codes come as a number or the vendor's name (docs/scenarios.md: `ret`).
 * The model target reports what the backend returned and, in `detail.ret_alias`, the other
 * spelling, so `ret: 6` and `ret: FAIL_SIZEMISMATCH` both match a PVALIDATE size mismatch.
 */
import { TDVMCALL_STATUS, tdxStatusCode, tdxStatusValue } from '@ccmem/tdx';
import { PVALIDATE_FAIL_INPUT, PVALIDATE_FAIL_NOUPDATE, PVALIDATE_FAIL_SIZEMISMATCH, PVALIDATE_SUCCESS } from '@ccmem/snp';
import { KVM_EINVAL, KVM_ENOSYS } from './hypercall.js';

/** PVALIDATE return codes (AMD APM vol. 3, PVALIDATE) */
const PVALIDATE_NAMES: Readonly<Record<number, string>> = {
  [PVALIDATE_SUCCESS]: 'SUCCESS',
  [PVALIDATE_FAIL_INPUT]: 'FAIL_INPUT',
  [PVALIDATE_FAIL_SIZEMISMATCH]: 'FAIL_SIZEMISMATCH',
  [PVALIDATE_FAIL_NOUPDATE]: 'FAIL_NOUPDATE',
};

const HYPERCALL_NAMES: Readonly<Record<number, string>> = {
  0: 'SUCCESS',
  [-KVM_ENOSYS]: 'KVM_ENOSYS',
  [-KVM_EINVAL]: 'KVM_EINVAL',
};

export type RetFamily = 'pvalidate' | 'hypercall' | 'tdx' | 'other';

/** the other spelling of a vendor return code, when there is one */
export function retAlias(ret: number | string | bigint, family: RetFamily): number | string | bigint | undefined {
  if (typeof ret === 'bigint') return undefined;
  if (typeof ret === 'number') {
    if (family === 'pvalidate') return PVALIDATE_NAMES[ret];
    if (family === 'hypercall') return HYPERCALL_NAMES[ret];
    return undefined;
  }
  // TDCALL / TDVMCALL statuses: the 64-bit value the guest sees in RAX / R10
  if (ret in TDVMCALL_STATUS) return TDVMCALL_STATUS[ret as keyof typeof TDVMCALL_STATUS];
  const tdx = tdxStatusCode(ret);
  if (tdx >= 0) return tdxStatusValue(tdx);
  for (const table of [PVALIDATE_NAMES, HYPERCALL_NAMES]) {
    const hit = Object.entries(table).find(([, name]) => name === ret);
    if (hit) return Number(hit[0]);
  }
  return undefined;
}
