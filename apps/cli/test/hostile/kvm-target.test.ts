/**
 * The kvm target runs `read` / `write` steps as loads and stores inside the ccmem process: a
 * step the mapping's protection refuses must come back as the SIGSEGV outcome the model gives,
 * and `munmap` must never unmap memory the scenario did not map, or ccmem dies.
 */
import { expect, it } from 'vitest';
import { describeWithKvm } from '../../../../packages/kvm/src/testing/kvm-gate.js';
import { ccmem, STACK_FRAME, tempDir } from './support.js';

const t = tempDir('ccmem-hostile-kvm-');
const scenario = (name: string, steps: string) => t.file(`${name}.yaml`, `name: ${name}\nvm: { type: default }\nsteps:\n${steps}`);

const READONLY_WRITE = scenario(
  'readonly-write',
  `  - mmap: { size: 4KiB, prot: [PROT_READ] }
    as: ram
  - write: { addr: ram, size: 8, value: 1 }
    expect: { signal: SIGSEGV }
  - read: { addr: ram, size: 8 }
    expect: { value: 0 }
`,
);
const NONE_READ = scenario(
  'none-read',
  `  - mmap: { size: 8KiB, prot: 0 }
    as: ram
  - read: { addr: ram+4KiB, size: 4 }
    expect: { signal: SIGSEGV }
  - write: { addr: ram, size: 1, value: 1 }
    expect: { signal: SIGSEGV }
`,
);
const UNMAP_ALL = scenario(
  'unmap-everything',
  `  - mmap: { size: 4KiB }
    as: ram
  - munmap: { addr: 0x10000, size: 0x7ffffffe0000 }
  - read: { addr: ram, size: 8 }
    expect: { signal: SIGSEGV }
  - munmap: { addr: 0x10001, size: 4KiB }
    expect: { errno: EINVAL }
`,
);

describeWithKvm('kvm target: host accesses never kill ccmem (needs /dev/kvm)', () => {
  it.each([
    ['a write to a PROT_READ mapping', READONLY_WRITE],
    ['a read of a PROT_NONE mapping', NONE_READ],
  ])('%s is the SIGSEGV outcome on run --target kvm', (_what, file) => {
    const r = ccmem(['run', '--target', 'kvm', '--json', file]);
    expect(r.signal).toBeNull();
    expect(r.stderr).not.toMatch(STACK_FRAME);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const json = JSON.parse(r.stdout) as { results: { pass: boolean }[] } | { pass: boolean }[];
    expect(JSON.stringify(json)).toContain('SIGSEGV');
  });

  it('diff agrees with the model on them', () => {
    for (const file of [READONLY_WRITE, NONE_READ]) {
      const r = ccmem(['diff', file]);
      expect(r.signal).toBeNull();
      expect(r.code, r.stdout + r.stderr).toBe(0);
    }
  });

  it('munmap over the whole address space unmaps only what the scenario mapped', () => {
    const r = ccmem(['run', '--target', 'kvm', UNMAP_ALL]);
    expect(r.signal).toBeNull();
    expect(r.stderr).not.toMatch(STACK_FRAME);
    expect(r.code, r.stdout + r.stderr).toBe(0);
  });
});
