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
