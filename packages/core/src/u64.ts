/**
 * u64 uAPI fields. A caller passes a JS number (exact below 2^53) or a bigint (exact up to
 * 2^64 - 1); the ioctl's overflow and alignment checks run on the exact value, and the value
 * becomes a number only once it is known to be page aligned (every multiple of 4096 below 2^64
 * is an exact double), so nothing past the uAPI edge needs BigInt.
 */
export type U64 = number | bigint;

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

/** `a + b` wraps around 2^64 (the kernel's `a + b < a` on u64) */
export function u64AddWraps(a: bigint, b: bigint): boolean {
  return a + b >= TWO_64;
}

/** `v` is a multiple of 4096 */
export function u64PageAligned(v: bigint): boolean {
  return (v & 4095n) === 0n;
}
