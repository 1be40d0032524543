import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { READONLY_SLOT_SCENARIO } from '../../../test-support/readonly-slot-scenario.js';
import { ccmem as spawnCcmem, fakeTargetEnv, tempDir } from '../test-support/ccmem-process.js';

/** `ccmem <args>` in a child process against the fake targets */
const ccmem = (args: string[], env: Record<string, string> = {}) => spawnCcmem(args, { env: fakeTargetEnv(env) });

const { dir, file } = tempDir('ccmem-cli-');

const GOOD = file('good.yaml', READONLY_SLOT_SCENARIO);
const FAILING = file(
  'failing.yaml',
  `name: wrong expectation
vm: { type: default }
steps:
  - mmap: { size: 2MiB }
    as: ram
  - set_user_memory_region2: { slot: 0, guest_phys_addr: 0x100000, memory_size: 2MiB, userspace_addr: ram }
  - set_user_memory_region2: { slot: 1, guest_phys_addr: 0x100000, memory_size: 2MiB, userspace_addr: ram }
    expect: { errno: EINVAL }
`,
);
const BROKEN = file(
  'broken.yaml',
  `name: broken
vm: { type: default }
steps:
  - set_user_memory_region2: { slot: 0, guest_phys_addr: 0x100000, memory_size: 2MiB, userspace_adr: 0 }
`,
);

describe('ccmem (spawned)', () => {
  it('run: exit 0 when every expectation holds', () => {
    const r = ccmem(['run', GOOD]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('✓ readonly slot write exits to userspace');
    expect(r.stdout).toContain('1 passed, 0 failed');
  });

  it('run --json: exactly one JSON document with the documented shape', () => {
    const r = ccmem(['run', GOOD, FAILING, '--json']);
    expect(r.code).toBe(1);
    const doc = JSON.parse(r.stdout);
    expect(Object.keys(doc)).toEqual(['scenarios', 'passed', 'failed', 'skipped']);
    expect(doc.passed).toBe(1);
    expect(doc.failed).toBe(1);
    expect(doc.scenarios).toHaveLength(2);
    const [good, bad] = doc.scenarios;
    expect(good).toMatchObject({ file: GOOD, name: 'readonly slot write exits to userspace', target: 'model', pass: true });
    for (const s of good.steps) expect(s).toEqual(expect.objectContaining({ index: expect.any(Number), op: expect.any(String), pass: true, outcome: expect.any(Object), expected: expect.any(Object) }));
    expect(good.steps[4].outcome.value).toBe('0xcafef00d');
    expect(good.steps[5].outcome.exit).toEqual({ reason: 'KVM_EXIT_MMIO', mmio: { phys_addr: 0x100000, len: 4, is_write: true, data: '0xdeadbeef' } });
    expect(good.steps[6].expected).toEqual({ errno: 'EEXIST' });
    expect(bad.pass).toBe(false);
    expect(bad.steps[2]).toMatchObject({ pass: false, outcome: { errno: 'EEXIST' }, expected: { errno: 'EINVAL' } });
    expect(bad.steps[2].rule).toMatch(/overlaps another memslot/);
  });

  it('run: a failing step says expected, happened and the kernel rule; exit 1', () => {
    const r = ccmem(['run', FAILING]);
    expect(r.code).toBe(1);
    expect(r.stdout).toContain('✗ wrong expectation');
    expect(r.stdout).toMatch(/step 2 set_user_memory_region2 line 7/);
    expect(r.stdout).toContain('expected: errno EINVAL');
    expect(r.stdout).toContain('happened: errno EEXIST');
    expect(r.stdout).toMatch(/kernel rule: .*overlaps another memslot/);
  });

  it('run: an invalid file exits 2 naming file, line, column and field', () => {
    const r = ccmem(['run', GOOD, BROKEN]);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain(`${BROKEN}:4:87: steps[0].set_user_memory_region2.userspace_adr: unknown field "userspace_adr"`);
    const j = ccmem(['run', BROKEN, '--json']);
    expect(j.code).toBe(2);
    expect(JSON.parse(j.stdout).errors[0]).toEqual({
      file: BROKEN,
      line: 4,
      column: 87,
      field: 'steps[0].set_user_memory_region2.userspace_adr',
      message: 'unknown field "userspace_adr"',
    });
    expect(ccmem(['run', join(dir, 'missing.yaml')]).stderr).toMatch(/missing\.yaml:1:1: cannot read file \(ENOENT\)/);
  });

  it('run --trace writes the events of every step', () => {
    const out = join(dir, 'trace.json');
    expect(ccmem(['run', GOOD, '--trace', out]).code).toBe(0);
    const trace = JSON.parse(readFileSync(out, 'utf8'));
    const steps = trace.scenarios[0].steps;
    expect(steps[2]).toEqual({ index: 2, op: 'set_user_memory_region2', events: [{ name: 'kvm_userspace_memory_region', fields: { slot: 0, guest_phys_addr: 0x100000, memory_size: 0x200000 } }] });
  });

  it('run --target kvm without a kvm target is a clear error', () => {
    const r = ccmem(['run', GOOD, '--target', 'kvm']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/kvm target not available/);
  });

  it('matrix --json over a scenario directory', () => {
    const mdir = join(dir, 'suite', 'memslots');
    mkdirSync(mdir, { recursive: true });
    writeFileSync(join(mdir, 'good.yaml'), readFileSync(GOOD, 'utf8').replace('vm: { type: default }', 'vm: { type: default }\napplies_to: { vm_types: [default, sw-protected] }'));
    writeFileSync(join(mdir, 'failing.yaml'), readFileSync(FAILING, 'utf8'));
    const r = ccmem(['matrix', '--json', '--dir', join(dir, 'suite')], { CCMEM_FAKE_TARGETS: 'model,kvm' });
    expect(r.code).toBe(1);
    const doc = JSON.parse(r.stdout);
    expect(Object.keys(doc)).toEqual(['rows', 'passed', 'failed', 'skipped', 'totals']);
    expect(doc.totals).toEqual({
      vm_type: { default: { passed: 2, failed: 2, skipped: 0 }, 'sw-protected': { passed: 2, failed: 0, skipped: 0 } },
      target: { model: { passed: 2, failed: 1, skipped: 0 }, kvm: { passed: 2, failed: 1, skipped: 0 } },
    });
    expect(doc.rows).toHaveLength(6);
    expect(doc.rows[0]).toMatchObject({ scenario: 'wrong expectation', vm_type: 'default', provider: 'guest_memfd', target: 'model', status: 'fail' });
    expect(doc).toMatchObject({ passed: 4, failed: 2, skipped: 0 });
    const filtered = ccmem(['matrix', '--json', '--dir', join(dir, 'suite'), '--filter', 'sw-protected']);
    expect(filtered.code).toBe(0);
    expect(JSON.parse(filtered.stdout)).toMatchObject({ passed: 1, failed: 0, skipped: 0 });
  });

  it('matrix piped prints plain lines without colour', () => {
    const r = ccmem(['matrix', '--dir', join(dir, 'suite'), '--filter', 'sw-protected']);
    expect(r.code).toBe(0);
    expect(r.stdout.split('\n')[0]).toBe('status  vm type       provider     target  scenario');
    expect(r.stdout).toMatch(/^pass    sw-protected  guest_memfd  model   readonly slot write exits to userspace$/m);
    expect(r.stdout).not.toMatch(/\x1b\[/);
  });

  it('matrix without a model target exits 2 with a clear message', () => {
    const r = ccmem(['matrix'], { CCMEM_FAKE_TARGETS: 'kvm' });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/model target not available/);
  });

  it('explain shows each step and its kernel events', () => {
    const r = ccmem(['explain', GOOD]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/2 set_user_memory_region2/);
    expect(r.stdout).toMatch(/kvm_userspace_memory_region slot=0 guest_phys_addr=0x100000 memory_size=0x200000/);
    expect(r.stdout).toMatch(/→ exit KVM_EXIT_MMIO/);
  });

  it('--help works on every command', () => {
    for (const cmd of [[], ['run'], ['matrix'], ['explain'], ['diff'], ['explore']]) {
      const r = ccmem([...cmd, '--help']);
      expect(r.code, cmd.join(' ')).toBe(0);
      expect(r.stdout).toMatch(/Usage: ccmem/);
    }
  });

  it('diff compares model and kvm: agreeing targets exit 0, a target that differs is reported step by step', () => {
    const d = ccmem(['diff', GOOD, '--json'], { CCMEM_FAKE_TARGETS: 'model,kvm' });
    expect(d.code).toBe(0);
    expect(JSON.parse(d.stdout)).toMatchObject({ agreed: 1, disagreed: 0, skipped: 0, scenarios: [{ agree: true, differences: [], skipped: [] }] });
    // the kvm stand-in now lets the guest write a read-only slot: step 5 differs, nothing else
    const x = ccmem(['diff', GOOD, '--json'], { CCMEM_FAKE_TARGETS: 'model,kvm', CCMEM_FAKE_KVM_DIFFERS: '1' });
    expect(x.code).toBe(1);
    const doc = JSON.parse(x.stdout);
    expect(doc).toMatchObject({ agreed: 0, disagreed: 1, skipped: 0 });
    expect(doc.scenarios[0].agree).toBe(false);
    expect(doc.scenarios[0].differences.map((s: { index: number; op: string }) => [s.index, s.op])).toEqual([[5, 'guest_write']]);
    expect(doc.scenarios[0].differences[0].fields).toEqual(['exit: KVM_EXIT_MMIO vs nothing']);
    const human = ccmem(['diff', GOOD], { CCMEM_FAKE_TARGETS: 'model,kvm', CCMEM_FAKE_KVM_DIFFERS: '1' });
    expect(human.code).toBe(1);
    expect(human.stdout).toMatch(/step 5 guest_write: exit: KVM_EXIT_MMIO vs nothing/);
  });

  it('explore: a built-in exploration passes; with the retry check switched off it finds and shrinks a violation', () => {
    const ok = ccmem(['explore', '--builtin', 'fault-vs-conversion', '--json']);
    expect(ok.code).toBe(0);
    const report = JSON.parse(ok.stdout);
    expect(Object.keys(report).sort()).toEqual(['as_expected', 'bound', 'complete', 'expect', 'mode', 'name', 'pass', 'result', 'schedules', 'stats', 'stopReason', 'violations']);
    expect(report).toMatchObject({ expect: 'pass', as_expected: true });
    expect(report).toMatchObject({ complete: true, result: 'pass', stopReason: 'complete', bound: 8 });
    expect(report).toMatchObject({ name: 'fault-vs-conversion', mode: 'exhaustive', pass: true, violations: [] });
    expect(report.schedules).toBeGreaterThan(100);
    const bad = ccmem(['explore', '--builtin', 'fault-vs-conversion', '--skip-retry-check', '--json']);
    expect(bad.code).toBe(1);
    const r = JSON.parse(bad.stdout);
    expect(r.pass).toBe(false);
    expect(r.violations[0].violation).toMatch(/maps pfn .* but its backing is/);
    expect(r.violations[0].schedule.split('.').length).toBeLessThanOrEqual(4);
    const replay = ccmem(['explore', '--builtin', 'fault-vs-conversion', '--skip-retry-check', '--replay', r.violations[0].schedule, '--json']);
    expect(replay.code).toBe(1);
    expect(JSON.parse(replay.stdout).violations[0].violation).toBe(r.violations[0].violation);
    const missing = ccmem(['explore', '--builtin', 'no-such-exploration']);
    expect(missing.code).toBe(2);
  });
});
