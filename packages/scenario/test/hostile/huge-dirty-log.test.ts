/**
 * The scenario form of a logged memslot of 2^31 - 1 pages with KVM_DIRTY_LOG_INITIALLY_SET,
 * run through `ccmem run` in a child process: a few writes, `get_dirty_log`, `clear_dirty_log`
 * of the whole slot and `get_dirty_log` again. The model's bitmaps cost memory by what is dirty
 * (the kernel's would be 256 MiB, and a page list of the slot 2^31 entries): the run passes and
 * its peak RSS stays far below one such bitmap. A `get_dirty_log` of the full slot is a failed
 * step with a clear message (the outcome lists at most 2^20 pages), not a crash.
 */
import { describe, expect, it } from 'vitest';
import { ccmem as spawnCcmem, tempDir } from '../../../../apps/cli/test-support/ccmem-process.js';

const { file: writeFile } = tempDir('ccmem-huge-dirty-');
// prints the process's peak RSS (KiB) on stderr as it exits
const RSS = writeFile('rss.mjs', "process.on('exit', () => process.stderr.write(`maxrss ${process.resourceUsage().maxRSS}\\n`));\n");

function ccmem(file: string): { code: number | null; stdout: string; stderr: string; maxRssMiB: number } {
  const r = spawnCcmem(['run', '--invariants', 'full', file], { nodeArgs: ['--import', RSS], timeout: 120_000 });
  const m = /maxrss (\d+)/.exec(r.stderr);
  return { ...r, maxRssMiB: m ? Number(m[1]) / 1024 : Infinity };
}

const HEAD = `name: a 2^31-page logged slot
vm: { type: default }
steps:
  - enable_cap: { cap: KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, args: [[KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE, KVM_DIRTY_LOG_INITIALLY_SET]] }
  - mmap: { size: 0x7fffffff000 }
    as: ram
  - set_user_memory_region: { slot: 0, flags: [KVM_MEM_LOG_DIRTY_PAGES], guest_phys_addr: 0, memory_size: 0x7fffffff000, userspace_addr: ram }
  - create_vcpu: { id: 0 }
  - guest_write: { vcpu: 0, gpa: 0, size: 8, value: 1 }
  - guest_write: { vcpu: 0, gpa: 0x9c40000, size: 8, value: 1 }
  - guest_write: { vcpu: 0, gpa: 0x7ffffffe000, size: 8, value: 1 }
`;

describe('a 2^31-page logged slot through ccmem run', () => {
  it('INITIALLY_SET, writes, clear of the whole slot, get: passes in bounded memory', () => {
    const f = writeFile(
      'huge.yaml',
      `${HEAD}  - clear_dirty_log: { slot: 0, first_page: 0, num_pages: 0x7fffffff }
  - get_dirty_log: { slot: 0 }
    expect: { dirty_pages: [] }
  - guest_write: { vcpu: 0, gpa: 0x9c40000, size: 8, value: 2 }
  - guest_write: { vcpu: 0, gpa: 0x7ffffffe000, size: 8, value: 2 }
  - get_dirty_log: { slot: 0 }
    expect: { dirty_pages: [40000, 0x7ffffffe] }
  - clear_dirty_log: { slot: 0, first_page: 0, num_pages: 0x7fffffff, dirty_bitmap: [0x7ffffffe] }
  - get_dirty_log: { slot: 0 }
    expect: { dirty_pages: [40000] }
`,
    );
    const r = ccmem(f);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toMatch(/1 passed/);
    // one kernel-sized bitmap alone would be 256 MiB
    expect(r.maxRssMiB).toBeLessThan(256);
  });

  it('get_dirty_log of the whole slot, all dirty: a failed step with a clear message, in bounded memory', () => {
    const f = writeFile('huge-get.yaml', `${HEAD}  - get_dirty_log: { slot: 0 }\n`);
    const r = ccmem(f);
    expect(r.code, r.stdout + r.stderr).toBe(1);
    expect(r.stdout + r.stderr).toMatch(/2147483647 dirty pages are more than a step lists/);
    expect(r.stderr).not.toMatch(/^\s+at /m);
    expect(r.maxRssMiB).toBeLessThan(256);
  });
});
