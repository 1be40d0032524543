/** Model handlers: the dirty ring (harvest, KVM_RESET_DIRTY_RINGS, the ring's mmap, KVM_RUN again). */
import { KVM_DIRTY_GFN_F_DIRTY, KVM_DIRTY_GFN_F_RESET, KVM_DIRTY_LOG_PAGE_OFFSET, PAGE_SIZE } from '@ccmem/core';
import type { GuestAccessResult } from '@ccmem/core';
import type { Outcome } from '../target.js';
import { accessOutcome, type ModelHandlers, type ModelRun } from './run.js';
import { RESET_FETCH_GPA } from './files.js';

/** mmap(2) bits (asm-generic/mman) */
const PROT_READ = 0x1;
const PROT_WRITE = 0x2;
const MAP_SHARED = 0x01;

/**
 * The tiny guest's touch loop (`mov [rbx], cl; add rbx, 4096; cmp rbx, rdx; jb loop`): one byte
 * at the start of every page from `next`, each store a guest access of this KVM_RUN. A ring-full
 * exit leaves the loop where it is; any other exit ends it.
 */
function touchLoop(m: ModelRun, vcpuId: number, t: { next: number; end: number; value: bigint }, first: GuestAccessResult | null): Outcome {
  const vcpu = m.vcpu(vcpuId);
  const pending = m.dirtyTouches;
  pending.delete(vcpuId);
  let r = first;
  for (;;) {
    if (r === null) r = vcpu.access({ gpa: t.next, size: 1, kind: 'write', value: t.value });
    if (r.exit?.reason === 'KVM_EXIT_DIRTY_RING_FULL') {
      pending.set(vcpuId, t);
      return accessOutcome(r);
    }
    if (r.exit !== undefined || r.errno !== undefined || r.exception !== undefined) return accessOutcome(r);
    t.next += PAGE_SIZE;
    if (t.next >= t.end) return {};
    r = null;
  }
}

export const DIRTY_RING_HANDLERS = {
  harvest_dirty_ring(a, m) {
    const vcpu = m.vcpu(a.vcpu);
    const ring = vcpu.dirtyRing;
    // no ring: the mapping has no pages behind it (kvm_vcpu_fault() → VM_FAULT_SIGBUS)
    if (ring === null) return { signal: 'SIGBUS', detail: { check: 'kvm_vcpu_fault: the VM has no dirty ring' } };
    const idx = m.dirtyFetchIndexes;
    let i = idx.get(vcpu.id) ?? 0;
    const max = a.max ?? Infinity;
    const dirty_gfns: { slot: number; offset: number }[] = [];
    // dirty_ring_collect_one(): while the entry's flags are exactly KVM_DIRTY_GFN_F_DIRTY
    while (dirty_gfns.length < max && ring.flagsAt(i) === KVM_DIRTY_GFN_F_DIRTY) {
      const e = ring.entry(i);
      dirty_gfns.push({ slot: e.slot, offset: e.offset });
      ring.setFlags(i, KVM_DIRTY_GFN_F_RESET);
      i = (i + 1) >>> 0;
    }
    idx.set(vcpu.id, i);
    return { dirty_gfns, dirty_pages: [...new Set(dirty_gfns.map((g) => g.offset))], value: dirty_gfns.length };
  },
  reset_dirty_rings: (_a, m) => ({ value: m.vm.resetDirtyRings() }),
  mmap_dirty_ring(a, m) {
    const vcpu = m.vcpu(a.vcpu);
    const pages = Math.max(m.vm.dirtyRingSize, PAGE_SIZE) / PAGE_SIZE;
    vcpu.mmapCheck(KVM_DIRTY_LOG_PAGE_OFFSET, pages, a.prot ?? PROT_READ | PROT_WRITE, a.flags ?? MAP_SHARED);
    return {};
  },
  guest_touch(a, m) {
    m.guestVcpu(a.vcpu);
    return touchLoop(m, a.vcpu, { next: a.gpa, end: a.gpa + a.size, value: BigInt((a.value ?? 1) & 0xff) }, null);
  },
  run_vcpu(a, m) {
    const vcpu = m.guestVcpu(a.vcpu);
    const t = m.dirtyTouches.get(a.vcpu);
    if (t) return touchLoop(m, a.vcpu, t, vcpu.run());
    const r = vcpu.run();
    if (Object.keys(r).length > 0) return accessOutcome(r);
    // nothing was interrupted: the vCPU runs from where it is, which the model knows only for a
    // vCPU in its reset state (its first fetch, at the reset vector)
    const f = vcpu.access({ gpa: RESET_FETCH_GPA, size: 1, kind: 'fetch', private: false });
    if (f.value !== undefined && f.exit === undefined) return { skipped: 'the model executes no guest code: the reset vector fetched RAM' };
    return accessOutcome(f);
  },
} satisfies ModelHandlers;
