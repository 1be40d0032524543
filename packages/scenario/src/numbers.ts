/**
 * Number syntax of scenario files.
 *
 *  - integers in decimal (`4096`) or hex (`0x1000`), with `_` separators (`0x1_0000_0000`);
 *  - an optional binary size suffix: `KiB`, `MiB`, `GiB`, `TiB` (`2MiB`, `0x2 MiB`);
 *  - address expressions `name`, `name+offset`, `name-offset`, where `name` is the `as:` name
 *    of an earlier step's result (an hva, an fd, a vCPU);
 *  - flags as a list of kernel constant names (`[KVM_MEM_READONLY]`) or a number.
 *
 * uAPI u64 fields become JS numbers (exact below 2^53; larger gpas/hvas are rejected by the
 * kernel anyway), guest data values become bigint so all 64 bits survive.
 */
import {
  CAPS,
  MPOL_DEFAULT,
  MPOL_PREFERRED,
  MPOL_BIND,
  MPOL_INTERLEAVE,
  MPOL_LOCAL,
  MPOL_PREFERRED_MANY,
  MPOL_WEIGHTED_INTERLEAVE,
  MPOL_MF_STRICT,
  MPOL_MF_MOVE,
  MPOL_MF_MOVE_ALL,
  MADV_NORMAL,
  MADV_RANDOM,
  MADV_SEQUENTIAL,
  MADV_WILLNEED,
  MADV_DONTNEED,
  MADV_REMOVE,
  MADV_HUGEPAGE,
  MADV_NOHUGEPAGE,
  MADV_COLLAPSE,
  DE_VECTOR,
  DF_VECTOR,
  TS_VECTOR,
  NP_VECTOR,
  SS_VECTOR,
  GP_VECTOR,
  PF_VECTOR,
  FALLOC_FL_KEEP_SIZE,
  FALLOC_FL_PUNCH_HOLE,
  GUEST_MEMFD_FLAG_HUGETLB,
  GUEST_MEMFD_FLAG_INIT_SHARED,
  GUEST_MEMFD_FLAG_MMAP,
  GUESTMEM_HUGETLB_FLAG_2MB,
  KVM_DIRTY_LOG_INITIALLY_SET,
  KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE,
  KVM_EXIT_HYPERCALL_LONG_MODE,
  KVM_MAP_GPA_RANGE_DECRYPTED,
  KVM_MAP_GPA_RANGE_ENCRYPTED,
  KVM_MAP_GPA_RANGE_PAGE_SZ_1G,
  KVM_MAP_GPA_RANGE_PAGE_SZ_2M,
  KVM_MAP_GPA_RANGE_PAGE_SZ_4K,
  KVM_MEMORY_ATTRIBUTE_PRIVATE,
  KVM_MEMORY_EXIT_FLAG_PRIVATE,
  MEMSLOT_FLAGS,
} from '@ccmem/core';

export class NumberSyntaxError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'NumberSyntaxError';
  }
}

const U64_MAX = (1n << 64n) - 1n;

const SUFFIXES: Record<string, bigint> = {
  KiB: 1n << 10n,
  MiB: 1n << 20n,
  GiB: 1n << 30n,
  TiB: 1n << 40n,
};

const LITERAL_RE = /^(-)?\s*(0x[0-9a-fA-F](?:_?[0-9a-fA-F])*|[0-9](?:_?[0-9])*)\s*(KiB|MiB|GiB|TiB)?$/;

/** True when `text` is a number literal (with optional size suffix), not a name expression. */
export function isNumberLiteral(text: string): boolean {
  return LITERAL_RE.test(text.trim());
}

/**
 * Parse a number literal or YAML integer into a bigint (may be negative).
 * Accepts bigint and safe-integer numbers as they come out of the YAML parser.
 */
export function parseBigInt(input: unknown): bigint {
  if (typeof input === 'bigint') return input;
  if (typeof input === 'number') {
    if (!Number.isInteger(input)) throw new NumberSyntaxError(`${input} is not an integer`);
    if (!Number.isSafeInteger(input)) {
      throw new NumberSyntaxError(`${input} is not exact as a number; write it as a hex string`);
    }
    return BigInt(input);
  }
  if (typeof input !== 'string') {
    throw new NumberSyntaxError(`expected a number, got ${describe(input)}`);
  }
  const m = LITERAL_RE.exec(input.trim());
  if (!m) {
    throw new NumberSyntaxError(
      `"${input}" is not a number (decimal or 0x hex, optional _ separators and KiB/MiB/GiB/TiB suffix)`,
    );
  }
  const digits = m[2]!.replaceAll('_', '');
  let v = BigInt(digits);
  if (m[3]) v *= SUFFIXES[m[3]]!;
  return m[1] ? -v : v;
}

/** An unsigned 64-bit value (guest data, u64 uAPI fields that need all bits). */
export function parseU64(input: unknown): bigint {
  const v = parseBigInt(input);
  if (v < 0n) throw new NumberSyntaxError(`${formatHex(v)} is negative; expected an unsigned value`);
  if (v > U64_MAX) throw new NumberSyntaxError(`${formatHex(v)} does not fit in 64 bits`);
  return v;
}

/**
 * An exact u64 uAPI field (docs/scenarios.md lists them): a JS number when it is below 2^53,
 * else a bigint, so the model's overflow and alignment checks see every bit.
 */
export function parseU64Exact(input: unknown): number | bigint {
  const v = parseU64(input);
  return v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
}

/**
 * An unsigned number as a JS number: u64 uAPI fields (addresses, sizes, offsets). A value
 * above 2^53 must be exact as a double (a page-aligned address is); anything else would lose
 * its low bits, and is an error instead.
 */
export function parseNumber(input: unknown, opts: { signed?: boolean } = {}): number {
  const v = opts.signed ? parseBigInt(input) : parseU64(input);
  if (opts.signed && (v > U64_MAX || v < -(1n << 63n))) {
    throw new NumberSyntaxError(`${v} does not fit in 64 bits`);
  }
  const n = Number(v);
  if (BigInt(n) !== v) throw new NumberSyntaxError(`${formatHex(v)} is not exact as a number in this field (above 2^53 only multiples of a power of two are)`);
  return n;
}

/* ------------------------------------------------------------------------------------------ */
/* Address expressions                                                                        */
/* ------------------------------------------------------------------------------------------ */

/** A reference to a named result plus a byte offset: `ram+0x10` → { ref: 'ram', offset: 16 }. */
export interface AddrRef {
  readonly ref: string;
  readonly offset: number;
}

/** An address or handle as written in a scenario: a number, or a named result ± offset. */
export type AddrExpr = number | AddrRef;

const NAME_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;
const EXPR_RE = /^([A-Za-z_][A-Za-z0-9_]*)\s*(?:([+-])\s*(.+))?$/;

export function isValidName(name: string): boolean {
  return NAME_RE.test(name);
}

/** Parse `0x1000`, `4KiB`, `ram`, `ram+0x10`, `ram - 4KiB`. */
export function parseAddrExpr(input: unknown, opts: { signed?: boolean } = {}): AddrExpr {
  if (typeof input === 'string' && !isNumberLiteral(input)) {
    const m = EXPR_RE.exec(input.trim());
    if (!m) {
      throw new NumberSyntaxError(`"${input}" is neither a number nor a name+offset expression`);
    }
    let offset = 0;
    if (m[2]) {
      const off = parseNumber(m[3]);
      offset = m[2] === '-' ? -off : off;
    }
    return { ref: m[1]!, offset };
  }
  return parseNumber(input, opts);
}

export function isAddrRef(v: unknown): v is AddrRef {
  return typeof v === 'object' && v !== null && typeof (v as AddrRef).ref === 'string';
}

/** Resolve an address expression against the named results of earlier steps. */
export function resolveAddr(expr: AddrExpr, names: ReadonlyMap<string, number>): number {
  if (typeof expr === 'number') return expr;
  const base = names.get(expr.ref);
  if (base === undefined) throw new NumberSyntaxError(`no earlier step is named "${expr.ref}" (as: ${expr.ref})`);
  return base + expr.offset;
}

export function formatAddrExpr(expr: AddrExpr): string {
  if (typeof expr === 'number') return formatHex(expr);
  if (expr.offset === 0) return expr.ref;
  return expr.offset < 0 ? `${expr.ref}-${formatHex(-expr.offset)}` : `${expr.ref}+${formatHex(expr.offset)}`;
}

/* ------------------------------------------------------------------------------------------ */
/* Flag names                                                                                 */
/* ------------------------------------------------------------------------------------------ */

/** mmap(2) constants (x86-64 Linux). */
export const PROT_READ = 0x1;
export const PROT_WRITE = 0x2;
export const PROT_EXEC = 0x4;
export const MAP_SHARED = 0x01;
export const MAP_PRIVATE = 0x02;

/**
 * Name tables per flag field kind. Packages add their own names with `registerFlagNames`
 * (e.g. vendor page types); a name is only accepted in fields of its own kind.
 */
const FLAG_TABLES = new Map<string, Map<string, number>>();

export type FlagKind =
  | 'memslot'
  | 'guest_memfd'
  | 'fallocate'
  | 'attributes'
  | 'dirty_log_caps'
  | 'cap'
  | 'prot'
  | 'map'
  | 'memory_fault'
  | 'hypercall'
  | 'map_gpa_range'
  | 'enable_cap_args'
  | 'snp_page_type'
  | 'tdx_init_mem_region'
  | 'madvise'
  | 'mpol'
  | 'mbind'
  | 'vector'
  | (string & {});

export function registerFlagNames(kind: FlagKind, names: Readonly<Record<string, number>>): void {
  let table = FLAG_TABLES.get(kind);
  if (!table) FLAG_TABLES.set(kind, (table = new Map()));
  for (const [name, value] of Object.entries(names)) table.set(name, value);
}

export function flagNames(kind: FlagKind): ReadonlyMap<string, number> {
  return FLAG_TABLES.get(kind) ?? new Map();
}

registerFlagNames('memslot', MEMSLOT_FLAGS);
registerFlagNames('guest_memfd', { GUEST_MEMFD_FLAG_MMAP, GUEST_MEMFD_FLAG_INIT_SHARED, GUEST_MEMFD_FLAG_HUGETLB, GUESTMEM_HUGETLB_FLAG_2MB });
registerFlagNames('fallocate', { FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE });
registerFlagNames('attributes', { KVM_MEMORY_ATTRIBUTE_PRIVATE });
registerFlagNames('dirty_log_caps', { KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE, KVM_DIRTY_LOG_INITIALLY_SET });
registerFlagNames('enable_cap_args', { KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE, KVM_DIRTY_LOG_INITIALLY_SET });
/* arch/x86/include/uapi/asm/kvm.h: enum kvm_sev_snp_page_type */
registerFlagNames('snp_page_type', {
  KVM_SEV_SNP_PAGE_TYPE_NORMAL: 0x1,
  KVM_SEV_SNP_PAGE_TYPE_ZERO: 0x3,
  KVM_SEV_SNP_PAGE_TYPE_UNMEASURED: 0x4,
  KVM_SEV_SNP_PAGE_TYPE_SECRETS: 0x5,
  KVM_SEV_SNP_PAGE_TYPE_CPUID: 0x6,
});
/* arch/x86/include/uapi/asm/kvm.h: struct kvm_tdx_init_mem_region flags */
registerFlagNames('tdx_init_mem_region', { KVM_TDX_MEASURE_MEMORY_REGION: 1 << 0 });
registerFlagNames('cap', CAPS);
registerFlagNames('prot', { PROT_READ, PROT_WRITE, PROT_EXEC });
registerFlagNames('map', { MAP_SHARED, MAP_PRIVATE });
registerFlagNames('memory_fault', { KVM_MEMORY_EXIT_FLAG_PRIVATE });
registerFlagNames('mpol', { MPOL_DEFAULT, MPOL_PREFERRED, MPOL_BIND, MPOL_INTERLEAVE, MPOL_LOCAL, MPOL_PREFERRED_MANY, MPOL_WEIGHTED_INTERLEAVE });
registerFlagNames('mbind', { MPOL_MF_STRICT, MPOL_MF_MOVE, MPOL_MF_MOVE_ALL });
registerFlagNames('madvise', { MADV_NORMAL, MADV_RANDOM, MADV_SEQUENTIAL, MADV_WILLNEED, MADV_DONTNEED, MADV_REMOVE, MADV_HUGEPAGE, MADV_NOHUGEPAGE, MADV_COLLAPSE });
registerFlagNames('vector', { DE_VECTOR, UD_VECTOR: 6, DF_VECTOR, TS_VECTOR, NP_VECTOR, SS_VECTOR, GP_VECTOR, PF_VECTOR });
registerFlagNames('hypercall', { KVM_EXIT_HYPERCALL_LONG_MODE });
registerFlagNames('map_gpa_range', {
  KVM_MAP_GPA_RANGE_PAGE_SZ_4K,
  KVM_MAP_GPA_RANGE_PAGE_SZ_2M,
  KVM_MAP_GPA_RANGE_PAGE_SZ_1G,
  KVM_MAP_GPA_RANGE_DECRYPTED,
  KVM_MAP_GPA_RANGE_ENCRYPTED,
});

/**
 * Flags: a number, a single name, or a list of names and numbers, OR-ed together.
 * Flag words are at most 64 bits; the result is a JS number (exact up to bit 52).
 */
export function parseFlags(input: unknown, kind: FlagKind): number {
  return Number(parseFlagsBig(input, kind));
}

/** Flags as an exact u64: a number below 2^53, a bigint above. */
export function parseFlagsExact(input: unknown, kind: FlagKind): number | bigint {
  const v = parseFlagsBig(input, kind);
  return v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
}

function parseFlagsBig(input: unknown, kind: FlagKind): bigint {
  const table = flagNames(kind);
  const one = (item: unknown): bigint => {
    if (typeof item === 'string' && !isNumberLiteral(item)) {
      const v = table.get(item.trim());
      if (v === undefined) {
        const known = [...table.keys()].join(', ');
        throw new NumberSyntaxError(`unknown ${kind} flag "${item}"${known ? ` (known: ${known})` : ''}`);
      }
      return BigInt(v);
    }
    return parseU64(item);
  };
  if (Array.isArray(input)) return input.reduce<bigint>((acc, item) => acc | one(item), 0n);
  return one(input);
}

/** Names of the set bits of `value` in `kind`, unknown bits as hex. */
export function describeFlags(kind: FlagKind, value: number): string[] {
  const out: string[] = [];
  let rest = BigInt(value);
  for (const [name, v] of flagNames(kind)) {
    const b = BigInt(v);
    if (b !== 0n && (rest & b) === b) {
      out.push(name);
      rest &= ~b;
    }
  }
  if (rest !== 0n) out.push(formatHex(rest));
  return out;
}

/* ------------------------------------------------------------------------------------------ */

export function formatHex(v: number | bigint): string {
  const b = typeof v === 'bigint' ? v : BigInt(Math.trunc(v));
  return b < 0n ? `-0x${(-b).toString(16)}` : `0x${b.toString(16)}`;
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  return typeof v === 'object' ? 'a mapping' : `${typeof v} ${String(v)}`;
}
