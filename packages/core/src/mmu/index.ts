/** The TDP MMU data structures: SPTE encoding, page-walk iterator, page tables and roots. */
export * from './mmu-internal.js';
export * from './spte.js';
export { SptPool, CHUNK_SHIFT, TABLES_PER_CHUNK, WORDS_PER_TABLE } from './spt-pool.js';
export { TdpIter, PAGES_PER_LEVEL, spteIndex, gfnRoundForLevel } from './tdp-iter.js';
export {
  TdpMmu,
  filterToRootTypes,
  type ExternalSptHooks,
  type MmuTracer,
  type TdpMmuOptions,
  type TdpMapRequest,
  type TdpWalkResult,
  type TdpLeaf,
  type LeafCallback,
  type TdpMmuStats,
} from './tdp-mmu.js';
/** Guest paging and the shadow MMU (docs/shadow-mmu.md). */
export * from './guest-paging.js';
export {
  GuestWalker,
  type GuestPteMemory,
  type GpteHalves,
  gpteToGfn,
  pt64Index,
  permissionFault,
  isRsvdBitsSet,
  gpteAccess64,
  eptGpteAccess,
  PT_PRESENT_MASK,
  PT_WRITABLE_MASK,
  PT_USER_MASK,
  PT_ACCESSED_MASK,
  PT_DIRTY_MASK,
  PT_PAGE_SIZE_MASK,
  PT64_NX_HI,
  VMX_EPT_READABLE_MASK,
  VMX_EPT_WRITABLE_MASK,
  VMX_EPT_EXECUTABLE_MASK,
  VMX_EPT_ACCESS_BIT,
  VMX_EPT_DIRTY_BIT,
} from './paging-tmpl.js';
export { GuestPageTableBuilder, type GuestPteFlags, type GuestPtMemory } from './guest-pt-builder.js';
export { ShadowMmu, type GuestPteReader, type ShadowMmuStats, type ShadowMmuHost, type ShadowMmuOptions, type ShadowVcpuContext, type ShadowWarning, kvmPageTableHashfn } from './shadow/shadow-mmu.js';
export { VcpuPaging, ShadowAccessOp, type GvaAccess } from './shadow/vcpu-paging.js';
export { Rmap, PTE_LIST_EXT } from './shadow/rmap.js';
export { VmGuestMemory } from './shadow/guest-memory.js';
export { checkShadowMmu } from './shadow/shadow-invariants.js';
export * from './shadow/mmu-page.js';
