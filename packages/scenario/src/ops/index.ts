/**
 * The registry of scenario operations: one entry per op, one file per op family. The schema
 * (schema.ts), the targets' handler tables, the explorer and the op tables of
 * docs/scenarios.md are all derived from it.
 */
import type { z } from 'zod';
import { ASSERT_OPS } from './assert.js';
import { ATTRIBUTE_OPS } from './attributes.js';
import { DIRTY_LOG_OPS } from './dirty-log.js';
import { FILE_OPS } from './files.js';
import { DIRTY_RING_OPS } from './dirty-ring.js';
import { GMEM_OPS } from './gmem.js';
import { GUEST_OPS } from './guest.js';
import { INJECT_OPS } from './inject.js';
import { MAP_GPA_OPS } from './map-gpa.js';
import { MEMSLOT_OPS } from './memslots.js';
import { PAGING_OPS } from './paging.js';
import { PRE_FAULT_OPS } from './pre-fault.js';
import { PROCESS_OPS } from './process.js';
import { SEV_OPS } from './sev.js';
import { SNP_OPS } from './snp.js';
import { TDX_OPS } from './tdx.js';
import { VM_OPS } from './vm.js';
import type { OpSpec } from './op.js';

/** the families, in the order of the docs (their keys name the docs' marker comments) */
export const OP_FAMILIES = {
  process: PROCESS_OPS,
  files: FILE_OPS,
  gmem: GMEM_OPS,
  memslots: MEMSLOT_OPS,
  attributes: ATTRIBUTE_OPS,
  'dirty-log': DIRTY_LOG_OPS,
  'dirty-ring': DIRTY_RING_OPS,
  vm: VM_OPS,
  guest: GUEST_OPS,
  'pre-fault': PRE_FAULT_OPS,
  paging: PAGING_OPS,
  sev: SEV_OPS,
  snp: SNP_OPS,
  tdx: TDX_OPS,
  'map-gpa': MAP_GPA_OPS,
  inject: INJECT_OPS,
  assert: ASSERT_OPS,
} as const;
export type OpFamily = keyof typeof OP_FAMILIES;

export const OPS = {
  ...PROCESS_OPS,
  ...FILE_OPS,
  ...GMEM_OPS,
  ...MEMSLOT_OPS,
  ...ATTRIBUTE_OPS,
  ...DIRTY_LOG_OPS,
  ...DIRTY_RING_OPS,
  ...VM_OPS,
  ...GUEST_OPS,
  ...PRE_FAULT_OPS,
  ...PAGING_OPS,
  ...SEV_OPS,
  ...SNP_OPS,
  ...TDX_OPS,
  ...MAP_GPA_OPS,
  ...INJECT_OPS,
  ...ASSERT_OPS,
};

export type OpName = keyof typeof OPS;
export const OP_NAMES = Object.keys(OPS) as OpName[];
export type OpArgs = { [K in OpName]: z.output<(typeof OPS)[K]['args']> };

/** ops that reach targets as another op (`punch_hole` → `fallocate`) */
type AliasOpName = { [K in OpName]: (typeof OPS)[K] extends { becomes: string } ? K : never }[OpName];
/** The ops a target executes: every op but the aliases. */
export type TargetOpName = Exclude<OpName, AliasOpName>;

export function isOpName(name: string): name is OpName {
  return Object.prototype.hasOwnProperty.call(OPS, name);
}

/** the registry entry of an op, seen through the common OpSpec type */
export function opSpec(op: OpName): OpSpec & { readonly becomes?: TargetOpName } {
  return OPS[op] as unknown as OpSpec & { readonly becomes?: TargetOpName };
}
