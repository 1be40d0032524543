/**
 * Field types of scenario files (zod). Each carries a short label (`.describe`) that the
 * generated op tables of docs/scenarios.md print: n = number, v = 64-bit value, addr = number
 * or name±offset, flags = flag list or number.
 */
import { z } from 'zod';
import { formatHex, NumberSyntaxError, parseAddrExpr, parseFlags, parseFlagsExact, parseNumber, parseU64, parseU64Exact, type AddrExpr, type FlagKind } from '../numbers.js';

type Ctx = { issues: { push(issue: { code: 'custom'; message: string; input: unknown }): void } };

/** a required field parsed by `parse`; its errors become zod issues */
export function field<T>(what: string, parse: (v: unknown) => T) {
  return z.unknown().transform((v, ctx): T => {
    if (v === undefined || v === null) {
      (ctx as unknown as Ctx).issues.push({ code: 'custom', message: `required: ${what}`, input: v });
      return z.NEVER;
    }
    try {
      return parse(v);
    } catch (e) {
      (ctx as unknown as Ctx).issues.push({ code: 'custom', message: (e as Error).message, input: v });
      return z.NEVER;
    }
  });
}

/** one of a few sizes, written as a number (`4KiB`, `0x200000`) */
function sizeOf<const T extends number>(what: string, sizes: readonly T[], label: string, must: string) {
  return field(what, (v) => {
    const n = parseNumber(v);
    if (!(sizes as readonly number[]).includes(n)) throw new Error(`${must}, got ${n}`);
    return n as T;
  }).describe(label);
}

/** `v` fits an unsigned field of `bits` bits, else a NumberSyntaxError naming the width */
function fitWidth(v: bigint, bits: number): void {
  if (v >= 1n << BigInt(bits)) throw new NumberSyntaxError(`${formatHex(v)} does not fit in this field's ${bits} bits (u${bits})`);
}

/** a u16 / u32 uAPI field (slot ids, as_id, the `slot` field, u32 flags): wider values are an error */
export const uint = (bits: 16 | 32) =>
  field(`a u${bits}`, (v) => {
    const n = parseU64(v);
    fitWidth(n, bits);
    return Number(n);
  }).describe(`u${bits}`);

/** u64 uAPI field as a JS number: `4096`, `0x1000`, `2MiB`. */
export const num = () => field('a number', (v) => parseNumber(v)).describe('n');
/** an exact u64 uAPI field (a range the kernel checks for overflow): a number below 2^53, a bigint above */
export const u64Exact = () => field('a u64', (v) => parseU64Exact(v)).describe('u64');
/** guest data value, all 64 bits */
export const u64 = () => field('a 64-bit value', (v) => parseU64(v)).describe('v');
/** address or handle: a number or `name±offset` naming an earlier step's result */
export const addr = () => field('an address or name', (v): AddrExpr => parseAddrExpr(v, { signed: true })).describe('addr');
/** a host frame number, or the name of a step's result (`frame+0x200`): never negative */
export const pfn = () => field('a frame number or name', (v): AddrExpr => parseAddrExpr(v)).describe('pfn');
/** flags: a list of kernel names or a number; a u32 flags field (`bits: 32`) refuses wider values */
export const flags = (kind: FlagKind, bits: 32 | 64 = 64) =>
  field(`${kind} flags`, (v) => {
    if (bits === 32) fitWidth(parseFlagsExactBig(v, kind), 32);
    return parseFlags(v, kind);
  }).describe(`${kind} flags`);
/** u64 flags kept exact (a number below 2^53, a bigint above), for fields the kernel checks bit by bit */
export const flagsU64 = (kind: FlagKind) => field(`${kind} flags`, (v) => parseFlagsExact(v, kind)).describe(`${kind} flags`);
const parseFlagsExactBig = (v: unknown, kind: FlagKind) => BigInt(parseFlagsExact(v, kind));
/** one kernel constant (a name or a number) */
export const constant = (kind: FlagKind) =>
  field(`a ${kind} name or number`, (v) => {
    if (Array.isArray(v)) throw new Error(`expected one ${kind} name or a number, not a list`);
    return parseFlags(v, kind);
  }).describe(`${kind} name or n`);
/** access size of a load/store */
export const accessSize = () => sizeOf('an access size', [1, 2, 4, 8], '1/2/4/8', 'access size must be 1, 2, 4 or 8');
/** page size of a vendor guest operation */
export const pageSize = () => sizeOf('a page size', [4096, 2 * 1024 * 1024], '4KiB/2MiB', 'page_size must be 4KiB or 2MiB');
/** MAP_HUGETLB page size (anonymous memory only) */
export const hugepage = () => sizeOf('a huge page size', [2 * 1024 * 1024], '2MiB', 'hugepage must be 2MiB');
export const numList = () => z.array(num());
export const bool = () => z.boolean();
