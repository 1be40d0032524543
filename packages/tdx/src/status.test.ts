import { describe, expect, it } from 'vitest';
import {
  OPERAND_ID_RCX,
  TDX_EPT_WALK_FAILED,
  TDX_GPA_RANGE_ALREADY_BLOCKED,
  TDX_OPERAND_BUSY,
  TDX_STATUS_NAMES,
  tdxOperandBusy,
  tdxStatusCode,
  tdxStatusFromValue,
  tdxStatusIsError,
  tdxStatusName,
  tdxStatusValue,
} from './status.js';

describe('TDX status codes', () => {
  it('keep the 64-bit values of tdx_errno.h', () => {
    expect(tdxStatusValue(TDX_OPERAND_BUSY)).toBe(0x8000020000000000n);
    expect(tdxStatusValue(TDX_EPT_WALK_FAILED, OPERAND_ID_RCX)).toBe(0xc0000b0000000001n);
    expect(tdxStatusName(tdxStatusCode('TDX_EPT_ENTRY_STATE_INCORRECT'))).toBe('TDX_EPT_ENTRY_STATE_INCORRECT');
  });
  it('round-trip every code through its 64-bit value, detail bits ignored', () => {
    TDX_STATUS_NAMES.forEach((_n, code) => expect(tdxStatusFromValue(tdxStatusValue(code, 0x92))).toBe(code));
  });
  it('classify errors, warnings and busy', () => {
    expect(tdxStatusIsError(TDX_OPERAND_BUSY)).toBe(true);
    expect(tdxStatusIsError(TDX_GPA_RANGE_ALREADY_BLOCKED)).toBe(false);
    expect(tdxOperandBusy(TDX_OPERAND_BUSY)).toBe(true);
    expect(tdxOperandBusy(tdxStatusCode('TDX_PREVIOUS_TLB_EPOCH_BUSY'))).toBe(false);
  });
});

/**
 * The status names and 64-bit class values of arch/x86/kvm/vmx/tdx_errno.h and the TDX module's
 * tdx_error_codes_defs.h, written out here on their own: the names are what users read in bug
 * reasons, traces and `ret` fields.
 */
const SPEC: readonly (readonly [string, bigint])[] = [
  ['TDX_SUCCESS', 0x0000000000000000n],
  ['TDX_NON_RECOVERABLE_VCPU', 0x4000000100000000n],
  ['TDX_INTERRUPTED_RESUMABLE', 0x8000000300000000n],
  ['TDX_OPERAND_INVALID', 0xc000010000000000n],
  ['TDX_OPERAND_BUSY', 0x8000020000000000n],
  ['TDX_PREVIOUS_TLB_EPOCH_BUSY', 0x8000020100000000n],
  ['TDX_RND_NO_ENTROPY', 0x8000020300000000n],
  ['TDX_PAGE_METADATA_INCORRECT', 0xc000030000000000n],
  ['TDX_TD_NOT_INITIALIZED', 0xc000060000000000n],
  ['TDX_TD_INITIALIZED', 0xc000060100000000n],
  ['TDX_TD_NOT_FINALIZED', 0xc000060200000000n],
  ['TDX_TD_FINALIZED', 0xc000060300000000n],
  ['TDX_LIFECYCLE_STATE_INCORRECT', 0xc000060700000000n],
  ['TDX_OP_STATE_INCORRECT', 0xc000060800000000n],
  ['TDX_VCPU_STATE_INCORRECT', 0xc000070000000000n],
  ['TDX_VCPU_NOT_ASSOCIATED', 0x8000070200000000n],
  ['TDX_TD_KEYS_NOT_CONFIGURED', 0x8000081000000000n],
  ['TDX_FLUSHVP_NOT_DONE', 0x8000082400000000n],
  ['TDX_EPT_WALK_FAILED', 0xc0000b0000000000n],
  ['TDX_EPT_ENTRY_FREE', 0xc0000b0100000000n],
  ['TDX_EPT_ENTRY_NOT_FREE', 0xc0000b0200000000n],
  ['TDX_EPT_ENTRY_NOT_PRESENT', 0xc0000b0300000000n],
  ['TDX_GPA_RANGE_NOT_BLOCKED', 0xc0000b0600000000n],
  ['TDX_GPA_RANGE_ALREADY_BLOCKED', 0x00000b0700000000n],
  ['TDX_TLB_TRACKING_NOT_DONE', 0xc0000b0800000000n],
  ['TDX_PAGE_ALREADY_ACCEPTED', 0x00000b0a00000000n],
  ['TDX_PAGE_SIZE_MISMATCH', 0xc0000b0b00000000n],
  ['TDX_EPT_ENTRY_STATE_INCORRECT', 0xc0000b0d00000000n],
  ['TDX_EPT_PAGE_NOT_FREE', 0xc0000b0e00000000n],
  ['TDX_HKID_NOT_FREE', 0xc000082000000000n],
];

describe('TDX status names', () => {
  it('name every status class of tdx_errno.h by its kernel name', () => {
    expect(TDX_STATUS_NAMES).toEqual(SPEC.map(([n]) => n));
    for (const [name, value] of SPEC) {
      const code = tdxStatusFromValue(value | 0x92n);
      expect(tdxStatusName(code)).toBe(name);
      expect(tdxStatusCode(name)).toBe(code);
      expect(tdxStatusValue(code)).toBe(value);
    }
  });
  it('a code outside the table has a generic name and no 64-bit value', () => {
    expect(tdxStatusName(SPEC.length)).toBe(`TDX_STATUS_${SPEC.length}`);
    expect(() => tdxStatusValue(SPEC.length)).toThrow(RangeError);
    expect(() => tdxStatusValue(-1)).toThrow(/unknown TDX status code -1/);
    expect(tdxStatusCode('TDX_NO_SUCH_STATUS')).toBe(-1);
    expect(tdxStatusFromValue(0xc0000b0f00000000n)).toBe(-1);
  });
});
