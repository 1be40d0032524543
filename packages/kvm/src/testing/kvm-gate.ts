/**
 * Real-KVM test blocks: run where /dev/kvm exists; elsewhere skip loudly, in every environment.
 * A skipped block is still listed: one skipped test whose name and note give the reason, and a
 * warning on stderr. `CCMEM_REQUIRE_KVM=1` (a machine that promises KVM) turns the missing device
 * into a failing test instead.
 */
import { existsSync } from 'node:fs';
import { describe, it } from 'vitest';

/** why real-KVM tests cannot run here, or null when /dev/kvm exists */
export function kvmMissingReason(): string | null {
  return existsSync('/dev/kvm') ? null : '/dev/kvm is missing on this host';
}

/** `describe(title, body)` where /dev/kvm exists; a visible skip (or a failure) elsewhere */
export function describeWithKvm(title: string, body: () => void): void {
  const reason = kvmMissingReason();
  if (reason === null) {
    describe(title, body);
    return;
  }
  if (process.env.CCMEM_REQUIRE_KVM === '1') {
    describe(title, () => {
      it('has /dev/kvm (CCMEM_REQUIRE_KVM=1)', () => {
        throw new Error(`CCMEM_REQUIRE_KVM=1 but ${reason}: "${title}" cannot run`);
      });
    });
    return;
  }
  process.stderr.write(`SKIPPED: ${title}: ${reason}\n`);
  describe(title, () => {
    it(`SKIPPED: ${reason}`, (ctx) => {
      ctx.skip(reason);
    });
  });
}
