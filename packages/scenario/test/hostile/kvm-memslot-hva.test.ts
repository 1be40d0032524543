/**
 * A memslot whose userspace_addr lies on this process's own memory would let the guest read
 * and write ccmem's heap: the kvm target refuses it (a skipped step naming why) and reserves
 * the free parts of a memslot's hva range so the runtime cannot move in later.
 */
import { readFileSync } from 'node:fs';
import { expect, it } from 'vitest';
import { describeWithKvm } from '../../../kvm/src/testing/kvm-gate.js';
import { parseScenario } from '../../src/parse.js';
import { runScenario } from '../../src/runner.js';
import { createKvmTarget } from '../../src/kvm-target.js';

/** the start of a readable mapping of this process (the node binary's first page) */
function ownMapping(): number {
  const line = readFileSync('/proc/self/maps', 'utf8').split('\n').find((l) => / r..p /.test(l))!;
  return parseInt(line.split('-')[0]!, 16);
}

describeWithKvm('kvm target: memslots on memory the scenario did not map (needs /dev/kvm)', () => {
  it('a slot over this process memory is skipped (the scenario stops there), the guest never reaches it', () => {
    const hva = ownMapping();
    const sc = parseScenario(`name: foreign hva
vm: { type: default }
steps:
  - set_user_memory_region: { slot: 1, guest_phys_addr: 0x100000, memory_size: 4KiB, userspace_addr: 0x${hva.toString(16)} }
  - create_vcpu: { id: 0 }
  - guest_read: { vcpu: 0, gpa: 0x100000, size: 8 }
`);
    const r = runScenario(sc, createKvmTarget());
    expect(r.steps[0]!.outcome.skipped).toMatch(/did not map/);
    expect(r.steps.some((s) => s.outcome.value !== undefined)).toBe(false);
  });

  it('a slot over a free range reserves it: the guest finds no memory there', () => {
    const sc = parseScenario(`name: free hva
vm: { type: default }
steps:
  - set_user_memory_region: { slot: 1, guest_phys_addr: 0x100000, memory_size: 4KiB, userspace_addr: 0x100000000 }
  - create_vcpu: { id: 0 }
  - guest_read: { vcpu: 0, gpa: 0x100000, size: 8 }
`);
    const r = runScenario(sc, createKvmTarget());
    expect(r.steps[0]!.outcome).toEqual({});
    // the reservation is PROT_NONE: the guest's load gets no data (an EFAULT memory fault or,
    // on kernels that treat an inaccessible hva as emulated MMIO, an MMIO exit)
    expect(r.steps[2]!.outcome.value).toBeUndefined();
    expect(r.steps[2]!.outcome.errno === 'EFAULT' || r.steps[2]!.outcome.exit?.reason === 'KVM_EXIT_MMIO').toBe(true);
  });
});
