/**
 * Scenario fields have the kernel's widths: a value that does not fit its uAPI field is a
 * located parse error, never a silently truncated or coerced value.
 */
import { describe, expect, it } from 'vitest';
import { tryParseScenario } from '../../src/parse.js';
import { runScenario } from '../../src/runner.js';
import { createModelTarget } from '../../src/model-target.js';
import { clearBitmap, dirtyPageList, MAX_LISTED_DIRTY_PAGES } from '../../src/dirty-pages.js';

const HEAD = 'name: t\nvm: { type: sw-protected }\nsteps:\n';

function errorsOf(steps: string): { line: number; path: string; message: string }[] {
  const r = tryParseScenario(HEAD + steps, 'f.yaml');
  if (r.ok) return [];
  return r.errors.map((e) => ({ line: e.line, path: e.field, message: e.message }));
}

describe('field widths at parse time', () => {
  it.each([
    ['slot: 0x1_0000_0000', 'slot', /u32/],
    ['slot: 1, as_id: 0x10000', 'as_id', /u16/],
    ['slot: 0x10001, as_id: 1', 'slot', /with as_id/],
    ['slot: 1, flags: 0x1_0000_0000', 'flags', /u32/],
    ['slot: 1.5', 'slot', /not an integer/],
    ['slot: -1', 'slot', /negative/],
  ])('set_user_memory_region { %s } is a located error', (fields, field, message) => {
    const errs = errorsOf(`  - set_user_memory_region: { ${fields}, guest_phys_addr: 0, memory_size: 4KiB }\n`);
    expect(errs.length).toBeGreaterThan(0);
    const e = errs.find((x) => x.path.endsWith(field))!;
    expect(e, JSON.stringify(errs)).toBeDefined();
    expect(e.line).toBe(4);
    expect(e.message).toMatch(message);
  });

  it('dirty-log slots, as_id and num_pages have their widths', () => {
    expect(errorsOf('  - get_dirty_log: { slot: 0x1_0000_0000 }\n')[0]?.message).toMatch(/u32/);
    expect(errorsOf('  - clear_dirty_log: { slot: 0, first_page: 0, num_pages: 0x1_0000_0000 }\n')[0]?.message).toMatch(/u32/);
    expect(errorsOf('  - get_dirty_log: { slot: 0, as_id: 0x1_0000 }\n')[0]?.message).toMatch(/u16/);
  });

  it('attributes are an exact u64: 0x1_0000_0008 reaches the model whole and is EINVAL', () => {
    const r = tryParseScenario(`${HEAD}  - set_memory_attributes: { address: 0, size: 4KiB, attributes: 0x1_0000_0008 }\n    expect: { errno: EINVAL }\n  - set_memory_attributes: { address: 0, size: 4KiB, attributes: 0xffff_ffff_ffff_ffff }\n    expect: { errno: EINVAL }\n`, 'f.yaml');
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    const res = runScenario(r.scenario, createModelTarget());
    expect(res.steps.filter((s) => s.op !== 'exit').map((s) => s.outcome.errno)).toEqual(['EINVAL', 'EINVAL']);
    expect(res.pass).toBe(true);
  });
});

describe('dirty page lists are bounded', () => {
  it('lists set bits below npages without one value per page of the slot', () => {
    const b = new Uint8Array(16);
    b[0] = 0b101;
    b[9] = 0x80;
    b[15] = 0xff;
    expect(dirtyPageList(b)).toEqual([0, 2, 79, 120, 121, 122, 123, 124, 125, 126, 127]);
    expect(dirtyPageList(b, 122)).toEqual([0, 2, 79, 120, 121]);
  });

  it('a log with more set bits than a step lists is a clear error, not a runtime abort', () => {
    const huge = new Uint8Array((MAX_LISTED_DIRTY_PAGES + 64) / 8).fill(0xff);
    expect(() => dirtyPageList(huge)).toThrow(/more than a step lists/);
  });

  it('a whole-slot clear bitmap is sized by the slot, not by num_pages', () => {
    expect(clearBitmap(2 ** 32 - 1, undefined, 64).length).toBe(64);
    const b = clearBitmap(70, undefined, 1 << 20);
    expect(b.length).toBe(16);
    expect(dirtyPageList(b)).toEqual(Array.from({ length: 70 }, (_, i) => i));
  });

  it('INITIALLY_SET on a 2^25-page slot: get_dirty_log fails the step cleanly, clear_dirty_log works', () => {
    const r = tryParseScenario(`name: big
vm: { type: default }
steps:
  - enable_cap: { cap: KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, args: [[KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE, KVM_DIRTY_LOG_INITIALLY_SET]] }
  - mmap: { size: 128GiB }
    as: ram
  - set_user_memory_region: { slot: 1, flags: [KVM_MEM_LOG_DIRTY_PAGES], guest_phys_addr: 0, memory_size: 128GiB, userspace_addr: ram }
  - clear_dirty_log: { slot: 1, first_page: 0, num_pages: 0x2000000 }
  - get_dirty_log: { slot: 1 }
    expect: { dirty_pages: [] }
  - set_user_memory_region: { slot: 2, flags: [KVM_MEM_LOG_DIRTY_PAGES], guest_phys_addr: 128GiB, memory_size: 128GiB, userspace_addr: ram }
  - get_dirty_log: { slot: 2 }
`, 'big.yaml');
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    const res = runScenario(r.scenario, createModelTarget());
    expect(res.steps.slice(0, 5).every((s) => s.pass)).toBe(true);
    const last = res.steps[6]!;
    expect(last.pass).toBe(false);
    expect(last.mismatches.join()).toMatch(/more than a step lists/);
  });
});
