/**
 * Hostile input to the `ccmem` command: every bad file, usage or environment is exit 2 with a
 * located or plain error (never a stack trace), inputs are bounded (file size, steps, YAML
 * aliases, non-regular files), and nothing-ran is never exit 0 unless --allow-empty.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ccmem, STACK_FRAME, tempDir } from './support.js';

const t = tempDir('ccmem-hostile-input-');
const HEAD = 'name: t\nvm: { type: default }\nsteps:\n';
const GOOD = t.file('good.yaml', `${HEAD}  - mmap: { size: 4KiB }\n    as: ram\n  - write: { addr: ram, size: 8, value: 1 }\n`);

/** exit 2, no stack trace, and (with --json) an errors document */
function expectInvalid(r: ReturnType<typeof ccmem>, message: RegExp): void {
  expect(r.signal).toBeNull();
  expect(r.stderr).not.toMatch(STACK_FRAME);
  expect(r.code, r.stdout + r.stderr).toBe(2);
  expect(r.stdout + r.stderr).toMatch(message);
}

describe('bounded input', () => {
  it('a billion-laughs file is a located error, not a ReferenceError', () => {
    const levels = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]'];
    for (let i = 1; i < 9; i++) {
      const p = String.fromCharCode(96 + i);
      levels.push(`${String.fromCharCode(97 + i)}: &${String.fromCharCode(97 + i)} [${Array(9).fill(`*${p}`).join(',')}]`);
    }
    const f = t.file('laughs.yaml', `${levels.join('\n')}\n${HEAD}`);
    const r = ccmem(['run', '--json', f]);
    expectInvalid(r, /aliases expand to more than/);
    const doc = JSON.parse(r.stdout) as { errors: { line: number; message: string }[] };
    expect(doc.errors[0]!.line).toBe(2);
  });

  it('a benign file that reuses one anchor 150 times runs', () => {
    const steps = Array.from({ length: 150 }, () => '  - check_extension: { cap: *cap }').join('\n');
    const f = t.file('anchors.yaml', `x: &cap KVM_CAP_USER_MEMORY2\n${HEAD}${steps}\n`.replace('x: &cap', 'description: &cap'));
    const r = ccmem(['run', f]);
    expect(r.stderr).toBe('');
    expect(r.code, r.stdout + r.stderr).toBe(0);
  });

  it('a FIFO with no writer, /dev/zero and a directory are refused at once', () => {
    const fifo = join(t.dir, 'fifo.yaml');
    execFileSync('mkfifo', [fifo]);
    expectInvalid(ccmem(['run', fifo], { timeout: 20_000 }), /not a regular file/);
    expectInvalid(ccmem(['run', '/dev/zero'], { timeout: 20_000 }), /not a regular file/);
    // a directory stands for the scenario files below it; the FIFO and the alias bomb there are
    // refused as they are on their own
    expectInvalid(ccmem(['run', t.dir], { timeout: 20_000 }), /fifo\.yaml:1:1: not a regular file/);
  });

  it('file size and step count have limits, overridable by flags', () => {
    const steps = Array.from({ length: 50 }, () => '  - check_extension: { cap: KVM_CAP_USER_MEMORY2 }').join('\n');
    const f = t.file('fifty.yaml', `${HEAD}${steps}\n`);
    const r = ccmem(['run', '--max-steps', '40', f]);
    expectInvalid(r, /more than 40 steps \(--max-steps\)/);
    expect(r.stderr).toMatch(/fifty\.yaml:44:/);
    expectInvalid(ccmem(['run', '--max-file-size', '1KiB', f]), /more than the limit of 1024/);
    expect(ccmem(['run', '--max-steps', '50', f]).code).toBe(0);
    expectInvalid(ccmem(['run', '--max-steps', 'lots', f]), /--max-steps lots/);
  });

  it('files are read within a time bound (--read-timeout): a FIFO without writer given to merge is exit 2, not a hang', () => {
    // merge accepts pipes (<(cat a.json)), so it opens the FIFO: open(2) blocks until a writer
    // comes, and none does
    const fifo = join(t.dir, 'shard.json');
    execFileSync('mkfifo', [fifo]);
    const r = ccmem(['merge', '--read-timeout', '300ms', fifo], { timeout: 30_000 });
    expectInvalid(r, /shard\.json: not read within 300 ms \(--read-timeout\)/);
    // the option is checked like the other limits
    expectInvalid(ccmem(['run', '--read-timeout', 'soon', GOOD]), /--read-timeout soon: needs a duration/);
    expectInvalid(ccmem(['run', '--read-timeout', '0', GOOD]), /--read-timeout 0: must be at least 1ms/);
    expect(ccmem(['run', '--read-timeout', '30s', GOOD]).code).toBe(0);
  });

  it('--trace to an unwritable path is a clean error that keeps the --json results', () => {
    const r = ccmem(['run', '--json', '--trace', '/nonexistent/dir/trace.json', GOOD]);
    expectInvalid(r, /cannot write the trace file/);
    const doc = JSON.parse(r.stdout) as { passed: number };
    expect(doc.passed).toBe(1);
  });
});

describe('exit codes', () => {
  it('a kvm target that cannot run is exit 2 for run and diff; the matrix says why it has no kvm column', () => {
    const env = { CCMEM_KVM_DEVICE: join(t.dir, 'no-such-kvm') };
    expectInvalid(ccmem(['run', '--target', 'kvm', GOOD], { env }), /kvm target cannot run here: .*missing/);
    expectInvalid(ccmem(['diff', GOOD], { env }), /kvm target cannot run here/);
    // a regular file is no KVM device (as an unreadable /dev/kvm, it cannot be used)
    expectInvalid(ccmem(['run', '--target', 'kvm', GOOD], { env: { CCMEM_KVM_DEVICE: GOOD } }), /not a character device/);
    const m = ccmem(['matrix', '--json', '--filter', 'KVM_GET_DIRTY_LOG', '--invariants', 'off'], { env });
    expect(m.code, m.stderr).toBe(0);
    expect((JSON.parse(m.stdout) as { kvm_column?: { skipped: string } }).kvm_column?.skipped).toMatch(/missing/);
  });

  it('nothing ran is exit 2 unless --allow-empty: a filter matching nothing, an empty directory, all skipped', () => {
    expectInvalid(ccmem(['matrix', '--no-kvm', '--filter', 'no-such-scenario-anywhere']), /nothing ran: no row matches/);
    expect(ccmem(['matrix', '--no-kvm', '--filter', 'no-such-scenario-anywhere', '--allow-empty']).code).toBe(0);
    const empty = join(t.dir, 'empty');
    mkdirSync(empty);
    expectInvalid(ccmem(['matrix', '--no-kvm', '--dir', empty]), /nothing ran/);
    // a profile without SNP VMs: the model skips the scenario
    const skipped = t.file('skipped.yaml', 'name: s\nvm: { type: snp, profile: linux-6.18-pvm }\nsteps:\n  - create_vcpu: { id: 0 }\n');
    expectInvalid(ccmem(['run', skipped]), /nothing ran: every scenario was skipped/);
    expect(ccmem(['run', '--allow-empty', skipped]).code).toBe(0);
  });

  it('an exploration whose actors name missing vCPUs is a located error', () => {
    const f = t.file(
      'explore.yaml',
      `name: e
vm: { type: default }
steps:
  - create_vcpu: { id: 0 }
concurrent:
  actors:
    a:
      - guest_read: { vcpu: 0, gpa: 0x1000, size: 1 }
    b:
      - guest_read: { vcpu: 7, gpa: 0x1000, size: 1 }
`,
    );
    const r = ccmem(['explore', '--json', f]);
    expectInvalid(r, /no step creates vCPU 7/);
    expect(r.stderr).toMatch(/explore\.yaml:10:/);
  });

  it('an error inside an exploration file points at its own line', () => {
    const f = t.file(
      'explore-bad.yaml',
      `explore:
  mode: exhaustive
name: e
vm: { type: default }
steps:
  - create_vcpu: { id: 0 }
concurrent:
  actors:
    a:
      - guest_read: { vcpu: 0, gpa: 0x1000, size: 3 }
`,
    );
    const r = ccmem(['explore', f]);
    expectInvalid(r, /access size/);
    expect(r.stderr).toMatch(/explore-bad\.yaml:10:/);
  });
});
