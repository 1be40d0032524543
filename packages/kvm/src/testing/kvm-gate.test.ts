import { describe, expect, it, vi } from 'vitest';

// this file pretends the host has no /dev/kvm
vi.mock('node:fs', async (importOriginal) => {
  const fs = await importOriginal<typeof import('node:fs')>();
  return { ...fs, existsSync: (p: string) => (p === '/dev/kvm' ? false : fs.existsSync(p)) };
});

const { describeWithKvm, kvmMissingReason } = await import('./kvm-gate.js');

describe('describeWithKvm without /dev/kvm', () => {
  it('names the reason', () => {
    expect(kvmMissingReason()).toBe('/dev/kvm is missing on this host');
  });
});

// without CCMEM_REQUIRE_KVM the block is one skipped test naming the reason; its body never runs
if (process.env.CCMEM_REQUIRE_KVM !== '1') {
  describeWithKvm('a real-KVM block', () => {
    it('never runs here', () => {
      throw new Error('the body of a real-KVM block ran without /dev/kvm');
    });
  });
}
