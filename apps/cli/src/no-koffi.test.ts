import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = new URL('../../../', import.meta.url).pathname;
const NO_KOFFI = join(ROOT, 'apps/cli/test-support/no-koffi.mjs');

/** the CLI with `koffi` unresolvable: only the kvm target may need it */
function ccmemWithoutKoffi(args: string[]) {
  const r = spawnSync(process.execPath, ['--conditions=@ccmem/source', '--import', 'tsx', '--import', NO_KOFFI, 'apps/cli/src/bin.ts', ...args], {
    cwd: ROOT,
    encoding: 'utf8',
    env: { ...process.env, NO_COLOR: '1' },
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

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
