import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT, ccmem } from '../test-support/ccmem-process.js';

const NO_KOFFI = join(ROOT, 'apps/cli/test-support/no-koffi.mjs');

/** the CLI with `koffi` unresolvable: only the kvm target may need it */
const ccmemWithoutKoffi = (args: string[]) => ccmem(args, { nodeArgs: ['--import', NO_KOFFI] });

describe('the model needs no koffi (spawned with koffi unresolvable)', () => {
  it('the hook works: the kvm target cannot load', () => {
    const r = ccmemWithoutKoffi(['run', join(ROOT, 'packages/scenario/scenarios/memslots/overlap-eexist.yaml'), '--target', 'kvm']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/koffi is unresolvable/);
  });

  it('ccmem run of a built-in scenario on the model', () => {
    const r = ccmemWithoutKoffi(['run', join(ROOT, 'packages/scenario/scenarios/memslots/overlap-eexist.yaml')]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('1 passed, 0 failed');
  });

  it('ccmem matrix --no-kvm', () => {
    const r = ccmemWithoutKoffi(['matrix', '--no-kvm']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/\d+ passed, 0 failed/);
    expect(r.stdout).not.toMatch(/ kvm /);
  });

  it('ccmem explore --builtin fault-vs-conversion', () => {
    // (--no-progress: a slow machine would print a progress line on stderr every 5 s)
    const r = ccmemWithoutKoffi(['explore', '--builtin', 'fault-vs-conversion', '--no-progress']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/✓ fault-vs-conversion: exhaustive bound 8, complete: \d+ schedules/);
  });
});
