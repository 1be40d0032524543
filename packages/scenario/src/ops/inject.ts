/**
 * Injected firmware failures (model only): the TDX module answering a SEAMCALL with
 * TDX_OPERAND_BUSY, the CPU's RMPUPDATE or PSMASH returning a failure code, so that a scenario
 * checks how KVM and the host kernel handle a refusal they cannot provoke through the uAPI.
 */
import type { SeamcallName } from '@ccmem/tdx';
import { z } from 'zod';
import { parseNumber } from '../numbers.js';
import { field } from './fields.js';
import { defineOp } from './op.js';

/** the SEAMCALLs the TDX module model can answer with TDX_OPERAND_BUSY (its begin() path) */
export const INJECTABLE_SEAMCALLS = [
  'TDH.MEM.PAGE.ADD',
  'TDH.MEM.SEPT.ADD',
  'TDH.MEM.PAGE.AUG',
  'TDH.MEM.RANGE.BLOCK',
  'TDH.MEM.TRACK',
  'TDH.MEM.PAGE.REMOVE',
  'TDH.MEM.PAGE.DEMOTE',
  'TDH.MR.EXTEND',
  'TDH.MR.FINALIZE',
  'TDH.PHYMEM.PAGE.WBINVD',
  'TDH.PHYMEM.PAGE.RECLAIM',
  'TDH.VP.FLUSH',
  'TDH.MNG.VPFLUSHDONE',
  'TDH.PHYMEM.CACHE.WB',
  'TDH.MNG.KEY.FREEID',
] as const satisfies readonly SeamcallName[];

/**
 * The failure codes of RMPUPDATE and PSMASH (AMD APM vol. 3, the instructions' RAX results;
 * arch/x86/include/asm/sev.h RMPUPDATE_FAIL_OVERLAP, PSMASH_FAIL_INUSE). SUCCESS is not
 * injectable: an injected result never touches the RMP.
 */
export const RMP_INSN_FAILURES = {
  rmpupdate: { FAIL_INPUT: 1, FAIL_PERMISSION: 2, FAIL_INUSE: 3, FAIL_OVERLAP: 4 },
  psmash: { FAIL_INPUT: 1, FAIL_PERMISSION: 2, FAIL_INUSE: 3, FAIL_BADADDR: 4 },
} as const;
export type RmpInsn = keyof typeof RMP_INSN_FAILURES;

/** a failure code: the firmware's name (`FAIL_INUSE`, also `RMPUPDATE_FAIL_INUSE`) or its number */
const failureCode = () =>
  field('a failure code', (v): string | number => {
    if (typeof v === 'string' && /^[A-Z_]+$/.test(v)) return v;
    return parseNumber(v);
  }).describe('code name or n');

/** the number of a failure code of `insn` (a name, with or without the `RMPUPDATE_` / `PSMASH_` prefix, or a number); undefined when it has none */
export function rmpFailureCode(insn: RmpInsn, code: string | number): number | undefined {
  const codes: Readonly<Record<string, number>> = RMP_INSN_FAILURES[insn];
  if (typeof code === 'number') return Object.values(codes).includes(code) ? code : undefined;
  const prefix = `${insn.toUpperCase()}_`;
  const name = code.startsWith(prefix) ? code.slice(prefix.length) : code;
  return Object.prototype.hasOwnProperty.call(codes, name) ? codes[name] : undefined;
}

/** the most injections one step queues (RMPUPDATE and PSMASH keep one queue entry each) */
export const MAX_INJECTIONS = 4096;

/** a count of SEAMCALLs or instructions: an integer from `min` to MAX_INJECTIONS */
const count = (min: 0 | 1) =>
  field(`a count (${min}-${MAX_INJECTIONS})`, (v) => {
    const n = parseNumber(v);
    if (!Number.isInteger(n) || n < min || n > MAX_INJECTIONS) throw new Error(`must be an integer from ${min} to ${MAX_INJECTIONS}, got ${n}`);
    return n;
  }).describe('n');

export const INJECT_OPS = {
  tdx_inject_busy: defineOp({
    args: z.strictObject({ leaf: z.enum(INJECTABLE_SEAMCALLS).optional(), count: count(1).optional(), after: count(0).optional() }),
    does:
      'model only: the TDX module answers the next `count` (default 1) SEAMCALLs of `leaf` (default: any leaf) with `TDX_OPERAND_BUSY`, after `after` (default 0) of them ran normally; replaces an injection still pending',
    result: '`pending`: the injected answers not given yet',
    needs: { vmTypes: ['KVM_X86_TDX_VM'] },
  }),
  snp_inject_fail: defineOp({
    args: z
      .strictObject({ insn: z.enum(['rmpupdate', 'psmash']), code: failureCode(), times: count(1).optional(), after: count(0).optional() })
      .superRefine((a, ctx) => {
        if (rmpFailureCode(a.insn, a.code) === undefined) {
          const known = Object.entries(RMP_INSN_FAILURES[a.insn]).map(([k, n]) => `${k} (${n})`).join(', ');
          ctx.addIssue({ code: 'custom', path: ['code'], message: `${a.insn} has no failure code ${String(a.code)} (it has ${known})` });
        }
      }),
    does:
      'model only: the next `times` (default 1) `insn` instructions (RMPUPDATE or PSMASH) return the failure `code` (`FAIL_INPUT`, `FAIL_PERMISSION`, `FAIL_INUSE`, `FAIL_OVERLAP` (RMPUPDATE), `FAIL_BADADDR` (PSMASH), or its number) without touching the RMP, after `after` (default 0) ran normally; queued behind an injection still pending',
    result: '`code`; `pending`: the queue of this instruction (the normal runs `after` asks for included)',
    needs: { vmTypes: ['KVM_X86_SNP_VM'] },
  }),
};
