/**
 * TDX module status codes (SEAMCALL RAX / TDCALL RAX) and TDG.VP.VMCALL status codes.
 *
 * The 64-bit values come from arch/x86/kvm/vmx/tdx_errno.h and the TDX module's
 * tdx_error_codes_defs.h: class in bits 63:32 (bit 63 = error, bit 62 = non-recoverable),
 * details (operand id, ...) in bits 31:0. They exceed 2^53, so the model works with a small
 * integer code per status on its hot paths and keeps the 64-bit value in a table for display.
 */

/* Small integer codes: what every SEAMCALL of the model returns. */
export const TDX_SUCCESS = 0;
export const TDX_NON_RECOVERABLE_VCPU = 1;
export const TDX_INTERRUPTED_RESUMABLE = 2;
export const TDX_OPERAND_INVALID = 3;
export const TDX_OPERAND_BUSY = 4;
export const TDX_PREVIOUS_TLB_EPOCH_BUSY = 5;
export const TDX_RND_NO_ENTROPY = 6;
export const TDX_PAGE_METADATA_INCORRECT = 7;
export const TDX_TD_NOT_INITIALIZED = 8;
export const TDX_TD_INITIALIZED = 9;
export const TDX_TD_NOT_FINALIZED = 10;
export const TDX_TD_FINALIZED = 11;
export const TDX_LIFECYCLE_STATE_INCORRECT = 12;
export const TDX_OP_STATE_INCORRECT = 13;
export const TDX_VCPU_STATE_INCORRECT = 14;
export const TDX_VCPU_NOT_ASSOCIATED = 15;
export const TDX_TD_KEYS_NOT_CONFIGURED = 16;
export const TDX_FLUSHVP_NOT_DONE = 17;
export const TDX_EPT_WALK_FAILED = 18;
export const TDX_EPT_ENTRY_FREE = 19;
export const TDX_EPT_ENTRY_NOT_FREE = 20;
export const TDX_EPT_ENTRY_NOT_PRESENT = 21;
export const TDX_GPA_RANGE_NOT_BLOCKED = 22;
export const TDX_GPA_RANGE_ALREADY_BLOCKED = 23;
export const TDX_TLB_TRACKING_NOT_DONE = 24;
export const TDX_PAGE_ALREADY_ACCEPTED = 25;
export const TDX_PAGE_SIZE_MISMATCH = 26;
export const TDX_EPT_ENTRY_STATE_INCORRECT = 27;
export const TDX_EPT_PAGE_NOT_FREE = 28;
export const TDX_HKID_NOT_FREE = 29;

/** [name, 64-bit value] indexed by the small code above. */
const TABLE: readonly (readonly [string, bigint])[] = [
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

/** `TDX_SEAMCALL_STATUS_MASK`: the status class without the detail bits. */
export const TDX_SEAMCALL_STATUS_MASK = 0xffffffff00000000n;

/** Operand ids carried in bits 31:0 of an operand error (tdx_errno.h / the module's). */
export const OPERAND_ID_RCX = 0x01;
export const OPERAND_ID_RDX = 0x02;
export const OPERAND_ID_R8 = 0x08;
export const OPERAND_ID_TDR = 0x80;
export const OPERAND_ID_SEPT = 0x92;
export const OPERAND_ID_TD_EPOCH = 0xa9;

export function tdxStatusName(code: number): string {
  const row = TABLE[code];
  return row ? row[0] : `TDX_STATUS_${code}`;
}

/** The 64-bit RAX value of a status, with its detail bits (e.g. the operand id). */
export function tdxStatusValue(code: number, detail = 0): bigint {
  const row = TABLE[code];
  if (!row) throw new RangeError(`unknown TDX status code ${code}`);
  return row[1] | BigInt(detail >>> 0);
}

/** Code of a status name, or -1. */
export function tdxStatusCode(name: string): number {
  return TABLE.findIndex((r) => r[0] === name);
}

/** Decode a 64-bit RAX value (detail bits ignored) back to the model's code, or -1. */
export function tdxStatusFromValue(value: bigint): number {
  const cls = value & TDX_SEAMCALL_STATUS_MASK;
  return TABLE.findIndex((r) => r[1] === cls);
}

/** bit 63: an error (as opposed to success or a warning/information status). */
export function tdxStatusIsError(code: number): boolean {
  return (tdxStatusValue(code) >> 63n) === 1n;
}

/** `tdx_operand_busy()`: (err & TDX_SEAMCALL_STATUS_MASK) == TDX_OPERAND_BUSY. */
export function tdxOperandBusy(code: number): boolean {
  return code === TDX_OPERAND_BUSY;
}

export const TDX_STATUS_NAMES: readonly string[] = TABLE.map((r) => r[0]);

/* ---- TDG.VP.VMCALL status codes (R10), arch/x86/include/asm/shared/tdx.h ---- */
export const TDVMCALL_STATUS = {
  TDVMCALL_STATUS_SUCCESS: 0x0000000000000000n,
  TDVMCALL_STATUS_RETRY: 0x0000000000000001n,
  TDVMCALL_STATUS_INVALID_OPERAND: 0x8000000000000000n,
  TDVMCALL_STATUS_ALIGN_ERROR: 0x8000000000000002n,
  TDVMCALL_STATUS_SUBFUNC_UNSUPPORTED: 0x8000000000000003n,
} as const;
export type TdvmcallStatusName = keyof typeof TDVMCALL_STATUS;
