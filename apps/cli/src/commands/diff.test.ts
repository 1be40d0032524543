import { expect, it } from 'vitest';
import { describeWithKvm } from '../../../../packages/kvm/src/testing/kvm-gate.js';
import { ccmemInProcess } from '../../test-support/ccmem-in-process.js';
import { tempDir } from '../../test-support/ccmem-process.js';

const { file } = tempDir('ccmem-diff-');

const AGREES = file(
  'agrees.yaml',
  `name: overlap and a guest read
vm: { type: default }
steps:
  - mmap: { size: 8KiB }
    as: ram
  - write: { addr: ram, size: 4, value: 0x1234 }
  - set_user_memory_region: { slot: 0, guest_phys_addr: 0x100000, memory_size: 8KiB, userspace_addr: ram }
  - set_user_memory_region: { slot: 1, guest_phys_addr: 0x101000, memory_size: 4KiB, userspace_addr: ram }
    expect: { errno: EINVAL }
  - create_vcpu: { id: 0 }
  - guest_read: { vcpu: 0, gpa: 0x100000, size: 4 }
    expect: { value: 0x9999 }
  - set_memory_attributes: { address: 0x100000, size: 4KiB, attributes: [KVM_MEMORY_ATTRIBUTE_PRIVATE] }
`,
);

const UPSTREAM_ONLY = file(
  'upstream.yaml',
  `name: SMM address space (upstream)
vm: { type: default, profile: upstream }
steps:
  - mmap: { size: 4KiB }
    as: ram
  - set_user_memory_region2: { slot: 0, as_id: 1, guest_phys_addr: 0, memory_size: 4KiB, userspace_addr: ram }
`,
);

describeWithKvm('ccmem diff on real KVM (needs /dev/kvm)', () => {
  it('compares outcomes, not expectations; --json has the documented shape', async () => {
    // the file's expectations are wrong on purpose (EINVAL, 0x9999): diff ignores them
    const r = await ccmemInProcess(['diff', AGREES, UPSTREAM_ONLY, '--json']);
    expect(r.code).toBe(0);
    const doc = JSON.parse(r.stdout);
    expect(Object.keys(doc)).toEqual(['scenarios', 'agreed', 'disagreed', 'skipped']);
    expect(doc).toMatchObject({ agreed: 1, disagreed: 0, skipped: 1 });
    expect(doc.scenarios[0]).toEqual({
      file: AGREES,
      name: 'overlap and a guest read',
      agree: true,
      differences: [],
      skipped: ['step 6 (set_memory_attributes): missing KVM_CAP_MEMORY_ATTRIBUTES'],
      compared: 6,
      stats_compared: 0,
    });
    expect(doc.scenarios[1].skipped[0]).toMatch(/upstream profile/);
  });

  it('a disagreement exits 1 with a readable diff (a model target that answers differently)', async () => {
    const { createModelTarget } = await import('@ccmem/scenario');
    const { registerTarget } = await import('../targets.js');
    // a model whose guest reads return one more than they should
    registerTarget('model', () => {
      const t = createModelTarget();
      const execute = t.execute.bind(t);
      return Object.assign(t, {
        execute: (step: Parameters<typeof execute>[0], ctx: Parameters<typeof execute>[1]) => {
          const o = execute(step, ctx);
          return step.op === 'guest_read' && typeof o.value === 'bigint' ? { ...o, value: o.value + 1n } : o;
        },
      });
    });
    const r = await ccmemInProcess(['diff', AGREES]);
    expect(r.code).toBe(1);
    const text = r.stdout;
    expect(text).toMatch(/≠ overlap and a guest read/);
    expect(text).toMatch(/step 5 guest_read: value: 0x1235 vs 0x1234/);
    expect(text).toMatch(/model: value 0x1235/);
    expect(text).toMatch(/kvm: {3}value 0x1234/);
    expect(text).toMatch(/0 agree, 1 disagree/);
  });
});
