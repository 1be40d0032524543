import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  describeFlags,
  formatAddrExpr,
  parseAddrExpr,
  parseBigInt,
  parseFlags,
  parseNumber,
  parseU64,
  parseU64Exact,
  registerFlagNames,
  resolveAddr,
} from './numbers.js';

describe('numbers', () => {
  it('parses decimal, hex, separators and binary suffixes', () => {
    expect(parseNumber('4096')).toBe(4096);
    expect(parseNumber('0x200000')).toBe(0x200000);
    expect(parseNumber('2MiB')).toBe(0x200000);
    expect(parseNumber('2 MiB')).toBe(0x200000);
    expect(parseNumber('0x2MiB')).toBe(0x200000);
    expect(parseNumber('4KiB')).toBe(4096);
    expect(parseNumber('1GiB')).toBe(2 ** 30);
    expect(parseNumber('8TiB')).toBe(8 * 2 ** 40);
    expect(parseNumber('0x1_0000_0000')).toBe(2 ** 32);
    expect(parseNumber('1_000')).toBe(1000);
    expect(parseNumber(12n)).toBe(12);
    expect(parseNumber(7)).toBe(7);
  });

  it('keeps all 64 bits of guest values', () => {
    expect(parseU64('0xdeadbeefcafef00d')).toBe(0xdeadbeefcafef00dn);
    expect(parseU64(0xffff_ffff_ffff_ffffn)).toBe(2n ** 64n - 1n);
    expect(() => parseU64('0x1_0000_0000_0000_0000')).toThrow(/64 bits/);
    expect(() => parseU64('-1')).toThrow(/negative/);
  });

  it('rejects what is not a number', () => {
    for (const bad of ['', 'x', '2MB', '0x', '1__0', '_1', '1.5', 'MiB', '0xg']) {
      expect(() => parseBigInt(bad), bad).toThrow();
    }
    expect(() => parseBigInt(1.5)).toThrow(/integer/);
    expect(() => parseBigInt(true)).toThrow(/expected a number/);
    expect(() => parseBigInt(2 ** 60)).toThrow(/exact/);
  });

  it('signed numbers allow -1 (e.g. an invalid fd)', () => {
    expect(parseNumber('-1', { signed: true })).toBe(-1);
    expect(() => parseNumber('-1')).toThrow();
  });

  it('round-trips any u64 through its hex spelling', () => {
    fc.assert(
      fc.property(fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), (v) => {
        expect(parseU64(`0x${v.toString(16)}`)).toBe(v);
        expect(parseU64(v.toString())).toBe(v);
      }),
    );
  });

  it('address expressions resolve against named results', () => {
    expect(parseAddrExpr('ram')).toEqual({ ref: 'ram', offset: 0 });
    expect(parseAddrExpr('ram+0x10')).toEqual({ ref: 'ram', offset: 16 });
    expect(parseAddrExpr('ram - 4KiB')).toEqual({ ref: 'ram', offset: -4096 });
    expect(parseAddrExpr('0x1000')).toBe(0x1000);
    expect(parseAddrExpr('2MiB')).toBe(0x200000);
    expect(() => parseAddrExpr('ram+')).toThrow();
    expect(() => parseAddrExpr('ram*2')).toThrow();
    const names = new Map([['ram', 0x7f0000000000]]);
    expect(resolveAddr(parseAddrExpr('ram+2MiB'), names)).toBe(0x7f0000200000);
    expect(() => resolveAddr(parseAddrExpr('rom'), names)).toThrow(/rom/);
    expect(formatAddrExpr({ ref: 'ram', offset: -16 })).toBe('ram-0x10');
  });

  it('flags are kernel names or numbers, OR-ed, per field kind', () => {
    expect(parseFlags(['KVM_MEM_READONLY'], 'memslot')).toBe(2);
    expect(parseFlags(['KVM_MEM_LOG_DIRTY_PAGES', 'KVM_MEM_READONLY'], 'memslot')).toBe(3);
    expect(parseFlags('KVM_MEM_GUEST_MEMFD', 'memslot')).toBe(4);
    expect(parseFlags(0x8, 'memslot')).toBe(8);
    expect(parseFlags(['KVM_MEM_READONLY', '0x100'], 'memslot')).toBe(0x102);
    expect(parseFlags(['FALLOC_FL_PUNCH_HOLE', 'FALLOC_FL_KEEP_SIZE'], 'fallocate')).toBe(3);
    expect(parseFlags(['GUEST_MEMFD_FLAG_MMAP', 'GUEST_MEMFD_FLAG_INIT_SHARED'], 'guest_memfd')).toBe(3);
    expect(parseFlags('KVM_MEMORY_ATTRIBUTE_PRIVATE', 'attributes')).toBe(8);
    expect(parseFlags('KVM_CAP_USER_MEMORY2', 'cap')).toBe(231);
    expect(() => parseFlags(['KVM_MEM_READONLY'], 'fallocate')).toThrow(/unknown fallocate flag "KVM_MEM_READONLY"/);
    expect(describeFlags('memslot', 3)).toEqual(['KVM_MEM_LOG_DIRTY_PAGES', 'KVM_MEM_READONLY']);
  });

  it('the name tables are extensible', () => {
    registerFlagNames('test_kind', { TEST_FLAG_A: 1, TEST_FLAG_B: 4 });
    expect(parseFlags(['TEST_FLAG_A', 'TEST_FLAG_B'], 'test_kind')).toBe(5);
  });
});

describe('parseU64Exact', () => {
  it('is a number below 2^53 and a bigint above, with every bit kept', () => {
    expect(parseU64Exact('0x1000')).toBe(4096);
    expect(parseU64Exact(2 ** 53 - 1)).toBe(2 ** 53 - 1);
    expect(parseU64Exact('0x20_0000_0000_0000')).toBe(2n ** 53n);
    expect(parseU64Exact('0x20_0000_0000_0001')).toBe(2n ** 53n + 1n);
    expect(parseU64Exact('0xffff_ffff_ffff_ffff')).toBe(2n ** 64n - 1n);
    expect(() => parseU64Exact('0x1_0000_0000_0000_0000')).toThrow(/64 bits/);
    expect(() => parseU64Exact(-1)).toThrow(/negative/);
  });
});
