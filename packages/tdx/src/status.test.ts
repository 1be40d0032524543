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
