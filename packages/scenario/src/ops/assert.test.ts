/**
 * The `assert` op's arguments: locators, expected values (YAML's bigints as numbers when exact,
 * at any depth) and the fields each kind of state reports.
 */
import { describe, expect, it } from 'vitest';
import { ASSERT_FIELDS, ASSERT_LOCATORS, assertArgs } from './assert.js';

describe('assert: expected values', () => {
  it('a bigint within the safe integers becomes a number, one beyond them stays a bigint', () => {
    const max = BigInt(Number.MAX_SAFE_INTEGER);
    const min = BigInt(Number.MIN_SAFE_INTEGER);
    const a = assertArgs.parse({ what: 'stats', vcpus: max, asid: min, tlb_flushes: 7n, pages_4k: max + 1n, pages_2m: min - 1n });
    expect(a).toMatchObject({ vcpus: Number.MAX_SAFE_INTEGER, asid: Number.MIN_SAFE_INTEGER, tlb_flushes: 7 });
    expect(typeof a.vcpus).toBe('number');
    expect(typeof a.asid).toBe('number');
    expect(a.pages_4k).toBe(max + 1n);
    expect(a.pages_2m).toBe(min - 1n);
  });

  it('inside lists and mappings too', () => {
    const a = assertArgs.parse({ what: 'stats', host: { rmpupdates: 3n, nested: { deep: 1n, big: 2n ** 60n } }, bugReasons: [1n, 2n ** 60n, 'x'] });
    expect(a.host).toStrictEqual({ rmpupdates: 3, nested: { deep: 1, big: 2n ** 60n } });
    expect(a.bugReasons).toStrictEqual([1, 2n ** 60n, 'x']);
  });

  it('other values are kept as written', () => {
    const a = assertArgs.parse({ what: 'spte', gfn: 1, present: true, level: 2, private: null, mirror: 'no' });
    expect(a).toStrictEqual({ what: 'spte', gfn: 1, present: true, level: 2, private: null, mirror: 'no' });
  });
});

describe('assert: fields each kind of state reports', () => {
  it('a field the state does not report is a custom issue at that field, listing what it reports and the locators', () => {
    const r = assertArgs.safeParse({ what: 'attributes', gfn: 1, present: true });
    expect(r.success).toBe(false);
    if (r.success) return;
    expect(r.error.issues).toHaveLength(1);
    const issue = r.error.issues[0]!;
    expect(issue.code).toBe('custom');
    expect(issue.path).toEqual(['present']);
    expect(issue.message).toBe(
      'assert attributes reports no field "present" (it reports attributes, private; locators: gpa, gfn, pfn, slot, as_id, fd, offset, vcpu)',
    );
  });

  it('locators and reported fields pass for every kind', () => {
    for (const [what, fields] of Object.entries(ASSERT_FIELDS)) {
      const args: Record<string, unknown> = { what };
      for (const f of fields) args[f] = 1;
      for (const l of ASSERT_LOCATORS.slice(1)) if (!(l in args)) args[l] = 1;
      expect(assertArgs.safeParse(args).success, what).toBe(true);
    }
  });
});
