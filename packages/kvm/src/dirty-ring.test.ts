import { describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import {
  KVM_CAP_DIRTY_LOG_RING,
  KVM_CAP_DIRTY_LOG_RING_ACQ_REL,
  KVM_DIRTY_GFN_F_DIRTY,
  KVM_DIRTY_GFN_F_RESET,
  KVM_MEM_LOG_DIRTY_PAGES,
} from '@ccmem/core';
import { errnoOf } from '../../core/src/testing/errno-of.js';
import { RealKvm } from './real-kvm.js';
import { installGuest } from './guest.js';
import { MAP_PRIVATE, MAP_SHARED, PROT_EXEC, PROT_READ, PROT_WRITE } from './libc.js';
import { mmap, munmap } from './host-memory.js';
import { probeDirtyRing } from './profile.js';

const hasKvm = existsSync('/dev/kvm');
if (!hasKvm) console.warn('dirty-ring.test.ts: /dev/kvm is missing on this host: the real dirty ring tests are SKIPPED');

/** KVM_CHECK_EXTENSION(KVM_CAP_DIRTY_LOG_RING) asked directly, independently of the code under test */
function hostHasRing(): boolean {
  if (!hasKvm) return false;
  const kvm = RealKvm.open();
  try {
    return kvm.checkExtension(KVM_CAP_DIRTY_LOG_RING) > 0;
  } finally {
    kvm.close();
  }
}
const hasRing = hostHasRing();
if (hasKvm && !hasRing) console.warn('dirty-ring.test.ts: this host has no KVM_CAP_DIRTY_LOG_RING: the real dirty ring tests are SKIPPED');

describe.skipIf(!hasRing)('the real dirty ring (needs /dev/kvm with KVM_CAP_DIRTY_LOG_RING)', () => {
  it('reports the largest ring for both caps and refuses a bad size, a second enable and a late enable', () => {
    const kvm = RealKvm.open();
    try {
      expect(kvm.checkExtension(KVM_CAP_DIRTY_LOG_RING)).toBe(65536 * 16);
      expect(kvm.checkExtension(KVM_CAP_DIRTY_LOG_RING_ACQ_REL)).toBe(65536 * 16);
      const vm = kvm.createVm();
      expect(errnoOf(() => vm.enableCap({ cap: KVM_CAP_DIRTY_LOG_RING, args: [3 * 4096] }))).toBe('EINVAL');
      expect(errnoOf(() => vm.enableCap({ cap: KVM_CAP_DIRTY_LOG_RING, args: [2 << 20] }))).toBe('E2BIG');
      expect(errnoOf(() => vm.enableCap({ cap: KVM_CAP_DIRTY_LOG_RING, args: [1 << 20] }))).toBeUndefined();
      expect(errnoOf(() => vm.enableCap({ cap: KVM_CAP_DIRTY_LOG_RING, args: [1 << 20] }))).toBe('EINVAL');
      vm.close();
      const late = kvm.createVm();
      late.createVcpu(0);
      expect(errnoOf(() => late.enableCap({ cap: KVM_CAP_DIRTY_LOG_RING, args: [1 << 20] }))).toBe('EINVAL');
      expect(errnoOf(() => late.resetDirtyRings())).toBe('EINVAL');
      late.close();
    } finally {
      kvm.close();
    }
  });

  it('a guest write pushes { slot, offset } into the vCPU ring; the VMM harvests; a reset counts and re-protects', () => {
    const kvm = RealKvm.open();
    const vm = kvm.createVm();
    const size = 0x10_0000;
    const hva = mmap({ length: size });
    try {
      vm.enableCap({ cap: KVM_CAP_DIRTY_LOG_RING, args: [1 << 16] });
      vm.setUserMemoryRegion({ slot: 3, flags: KVM_MEM_LOG_DIRTY_PAGES, guest_phys_addr: 0x4000_0000, memory_size: size, userspace_addr: hva });
      const vcpu = vm.createVcpu(0);
      const guest = installGuest(vm, vcpu);
      guest.guestAccess({ kind: 'write', gpa: 0x4000_5000, size: 8, value: 1n });
      guest.guestAccess({ kind: 'write', gpa: 0x4000_0000, size: 8, value: 1n });
      const w = vcpu.dirtyRingWords()!;
      expect([w[0], w[1], w[2], w[3]]).toEqual([KVM_DIRTY_GFN_F_DIRTY, 3, 5, 0]);
      expect([w[4], w[5], w[6]]).toEqual([KVM_DIRTY_GFN_F_DIRTY, 3, 0]);
      expect(w[8]).toBe(0);
      expect(vm.resetDirtyRings()).toBe(0); // nothing harvested
      w[0] = KVM_DIRTY_GFN_F_RESET;
      expect(vm.resetDirtyRings()).toBe(1);
      expect(w[0]).toBe(0); // kvm_dirty_gfn_set_invalid()
      // the reset re-protected page 5: written again, it is pushed again
      guest.guestAccess({ kind: 'write', gpa: 0x4000_5000, size: 8, value: 2n });
      expect([w[8], w[9], w[10]]).toEqual([KVM_DIRTY_GFN_F_DIRTY, 3, 5]);
      expect(vcpu.tryMapDirtyRing(PROT_READ, MAP_PRIVATE)).toBe('EINVAL');
      expect(vcpu.tryMapDirtyRing(PROT_READ | PROT_EXEC, MAP_SHARED)).not.toBeNull();
      expect(vcpu.tryMapDirtyRing(PROT_READ | PROT_WRITE, MAP_SHARED)).toBeNull();
      guest.uninstall();
    } finally {
      vm.close();
      kvm.close();
      munmap(hva, size);
    }
  });

  it('probeDirtyRing() reports the host dirty ring facts the profile records', () => {
    const kvm = RealKvm.open();
    try {
      const facts = probeDirtyRing(kvm);
      expect(facts.dirtyRing).toBe(true);
      expect([0, 512]).toContain(facts.cpuDirtyLogSize);
      expect(typeof facts.dirtyRingRelogsEachRun).toBe('boolean');
      expect(typeof facts.dirtyRingSoftFullAtLimit).toBe('boolean');
    } finally {
      kvm.close();
    }
  });
});
