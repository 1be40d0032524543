/**
 * The PSP status names users read in a failed SEV command's `detail.check` ("firmware error
 * SEV_RET_INVALID_ASID (kvm_sev_cmd.error 13)"): the names and values of the kernel's
 * `sev_ret_code` (include/uapi/linux/psp-sev.h), transcribed here from the header.
 */
import { describe, expect, it } from 'vitest';
import * as uapi from './uapi.js';

/** include/uapi/linux/psp-sev.h `sev_ret_code`, in the header's order (values counted from SEV_RET_SUCCESS = 0) */
const KERNEL_SEV_RET_CODE = [
  'SEV_RET_SUCCESS',
  'SEV_RET_INVALID_PLATFORM_STATE',
  'SEV_RET_INVALID_GUEST_STATE',
  'SEV_RET_INAVLID_CONFIG',
  'SEV_RET_INVALID_LEN',
  'SEV_RET_ALREADY_OWNED',
  'SEV_RET_INVALID_CERTIFICATE',
  'SEV_RET_POLICY_FAILURE',
  'SEV_RET_INACTIVE',
  'SEV_RET_INVALID_ADDRESS',
  'SEV_RET_BAD_SIGNATURE',
  'SEV_RET_BAD_MEASUREMENT',
  'SEV_RET_ASID_OWNED',
  'SEV_RET_INVALID_ASID',
  'SEV_RET_WBINVD_REQUIRED',
  'SEV_RET_DFFLUSH_REQUIRED',
  'SEV_RET_INVALID_GUEST',
] as const;

describe('SEV_RET_NAMES (enum sev_ret_code)', () => {
  it('every code the model answers has the kernel\'s value and, in SEV_RET_NAMES, the kernel\'s name', () => {
    const exported = uapi as unknown as Record<string, unknown>;
    const named = Object.entries(uapi.SEV_RET_NAMES);
    expect(named.length).toBe(10);
    for (const [value, name] of named) {
      expect(KERNEL_SEV_RET_CODE.indexOf(name as (typeof KERNEL_SEV_RET_CODE)[number])).toBe(Number(value));
      // the exported constant of that name has the same value
      expect(exported[name]).toBe(Number(value));
    }
  });

  it('names the codes the SEV backend can report', () => {
    expect(uapi.SEV_RET_NAMES).toEqual({
      0: 'SEV_RET_SUCCESS',
      1: 'SEV_RET_INVALID_PLATFORM_STATE',
      2: 'SEV_RET_INVALID_GUEST_STATE',
      4: 'SEV_RET_INVALID_LEN',
      7: 'SEV_RET_POLICY_FAILURE',
      8: 'SEV_RET_INACTIVE',
      9: 'SEV_RET_INVALID_ADDRESS',
      12: 'SEV_RET_ASID_OWNED',
      13: 'SEV_RET_INVALID_ASID',
      16: 'SEV_RET_INVALID_GUEST',
    });
  });
});
