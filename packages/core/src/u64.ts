/**
 * u64 uAPI fields. A caller passes a JS number (exact below 2^53) or a bigint (exact up to
 * 2^64 - 1); the ioctl's overflow and alignment checks run on the exact value, and the value
 * becomes a number only once it is known to be page aligned (every multiple of 4096 below 2^64
 * is an exact double), so nothing past the uAPI edge needs BigInt.
 */
export type U64 = number | bigint;

import { KvmError } from './errno.js';

const TWO_64 = 1n << 64n;

/** the exact value of a u64 field; RangeError for a value that is not a u64 */
export function u64Value(v: U64, name: string): bigint {
  if (typeof v === 'bigint') {
    if (v < 0n || v >= TWO_64) throw new RangeError(`${name} is not a u64: ${v}`);
    return v;
  }
  if (!Number.isInteger(v) || v < 0 || v >= 2 ** 64) throw new RangeError(`${name} is not a u64: ${v}`);
  return BigInt(v);
}

/**
 * `v` as a number when it is a number holding a non-negative integer below 2^53, else -1.
 * Such values are exact as doubles, so the u64 checks can run on numbers: `v % 4096` is
 * exact and a sum of two of them (below 2^54) never wraps around 2^64. Callers take this
 * path first and fall back to u64Value() for bigints and everything else, so the common
 * call allocates no BigInt.
 */
export function u64SafeNumber(v: U64): number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 ? v : -1;
}

/** `a + b` wraps around 2^64 (the kernel's `a + b < a` on u64) */
export function u64AddWraps(a: bigint, b: bigint): boolean {
  return a + b >= TWO_64;
}

/** `v` is a multiple of 4096 */
export function u64PageAligned(v: bigint): boolean {
  return (v & 4095n) === 0n;
}

/**
 * A field of an ioctl's argument struct as the kernel would read it: a u64 (number or bigint).
 * A non-integer, NaN, negative or too-wide value cannot be put into the struct at all, so the
 * call fails with KvmError EINVAL naming the field, before anything runs.
 */
export function uapiU64(v: unknown, ioctl: string, field: string): bigint {
  if (typeof v === 'bigint' ? v >= 0n && v < TWO_64 : typeof v === 'number' && Number.isInteger(v) && v >= 0 && v < 2 ** 64) {
    return BigInt(v as number | bigint);
  }
  throw new KvmError('EINVAL', `${ioctl}: ${field} is not a u64 (${describeValue(v)})`);
}

/** an unsigned field of `bits` bits (u8/u16/u32) of an ioctl's struct, as a number; else EINVAL */
export function uapiUint(v: unknown, bits: 8 | 16 | 32, ioctl: string, field: string): number {
  if (typeof v === 'number' && Number.isInteger(v) && v >= 0 && v < 2 ** bits) return v;
  if (typeof v === 'bigint' && v >= 0n && v < 1n << BigInt(bits)) return Number(v);
  throw new KvmError('EINVAL', `${ioctl}: ${field} is not a u${bits} (${describeValue(v)})`);
}

function describeValue(v: unknown): string {
  return typeof v === 'bigint' ? `${v}n` : typeof v === 'number' ? String(v) : typeof v;
}
