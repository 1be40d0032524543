/** `assert`: compare model state with expected values. */
import { z } from 'zod';
import { addr, num } from './fields.js';
import { defineOp } from './op.js';

export const ASSERT_WHAT = ['attributes', 'spte', 'rmp', 'sept', 'directmap', 'stats', 'memslot', 'gmem', 'sev'] as const;
export type AssertWhat = (typeof ASSERT_WHAT)[number];

/** Fields of an assert step that locate the thing inspected; every other field is an expected value. */
export const ASSERT_LOCATORS = ['what', 'gpa', 'gfn', 'pfn', 'slot', 'as_id', 'fd', 'offset', 'vcpu'] as const;

/** YAML integers arrive as bigint; expected state values become numbers when exact */
function plainValue(v: unknown): unknown {
  if (typeof v === 'bigint') return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  if (Array.isArray(v)) return v.map(plainValue);
  return v;
}
const assertValue = z
  .union([z.string(), z.number(), z.bigint(), z.boolean(), z.null(), z.array(z.unknown())])
  .transform(plainValue)
  .describe('expected value');

export const assertArgs = z
  .object({
    what: z.enum(ASSERT_WHAT),
    gpa: num().optional(),
    gfn: num().optional(),
    pfn: num().optional(),
    slot: num().optional(),
    as_id: num().optional(),
    fd: addr().optional(),
    offset: num().optional(),
    vcpu: addr().optional(),
  })
  .catchall(assertValue);

export const ASSERT_OPS = {
  assert: defineOp({ args: assertArgs, does: 'compares the state the target reports with every field that is not a locator (see below)' }),
};
