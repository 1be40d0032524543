/**
 * MemslotHooks for tests and benchmarks of the memslot engine alone: one address space,
 * KVM_MEM_READONLY supported, no KVM_MEM_PCI_HOLE, no files, no vendor hooks. `overrides`
 * replaces any of them (e.g. to record the dirty-log re-arms and TLB flushes).
 */
import type { MemslotHooks } from '../memslot/set-memory-region.js';
import { Tracer } from '../trace.js';

export function memslotHooks(overrides: Partial<MemslotHooks> = {}): MemslotHooks {
  return {
    nrAsIds: () => 1,
    hasReadonlyMem: () => true,
    pciHoleSupported: () => false,
    getFile: () => undefined,
    ownerVm: null,
    archPrepareMemoryRegion: () => null,
    flushShadowMemslot: () => {},
    archCommitMemoryRegion: () => {},
    enableDirtyLogPtMasked: () => {},
    flushRemoteTlbs: () => {},
    tracer: new Tracer(),
    ...overrides,
  };
}
