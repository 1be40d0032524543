/**
 * NUMA memory policy of the VMM process (mm/mempolicy.c): mbind(2), get_mempolicy(2) with
 * MPOL_F_ADDR, and the node each page was allocated on, which move_pages(2) reports.
 *
 * The host has `nodes` online memory nodes (node 0 .. nodes-1); every page the model allocates
 * without a policy is on node 0 (the task's local node). A file with ->set_policy
 * (guest_memfd's kvm_gmem_set_policy(), shmem) keeps a shared policy by page index
 * (mpol_set_shared_policy()), which its page allocation follows; anonymous memory keeps the
 * policy per VMA range (here: per page of the address space).
 */
import { fail } from '../errno.js';

/* include/uapi/linux/mempolicy.h */
export const MPOL_DEFAULT = 0;
export const MPOL_PREFERRED = 1;
export const MPOL_BIND = 2;
export const MPOL_INTERLEAVE = 3;
export const MPOL_LOCAL = 4;
export const MPOL_PREFERRED_MANY = 5;
export const MPOL_WEIGHTED_INTERLEAVE = 6;
export const MPOL_MAX = 7;
export const MPOL_F_STATIC_NODES = 1 << 15;
export const MPOL_F_RELATIVE_NODES = 1 << 14;
export const MPOL_F_NUMA_BALANCING = 1 << 13;
const MPOL_MODE_FLAGS = MPOL_F_STATIC_NODES | MPOL_F_RELATIVE_NODES | MPOL_F_NUMA_BALANCING;
export const MPOL_MF_STRICT = 1 << 0;
export const MPOL_MF_MOVE = 1 << 1;
export const MPOL_MF_MOVE_ALL = 1 << 2;
const MPOL_MF_VALID = MPOL_MF_STRICT | MPOL_MF_MOVE | MPOL_MF_MOVE_ALL;

/** a memory policy: its mode and nodemask (a bitmask of node numbers) */
export interface MemPolicy {
  readonly mode: number;
  readonly nodes: number;
}

/** the policy get_mempolicy() reports where none is set: MPOL_DEFAULT, no nodes */
export const DEFAULT_POLICY: MemPolicy = { mode: MPOL_DEFAULT, nodes: 0 };

/**
 * sanitize_mpol_flags() + mpol_new() + mpol_set_nodemask() of mbind(2)/set_mempolicy(2):
 * the policy to install, or null for MPOL_DEFAULT (remove the policy). Throws KvmError(EINVAL).
 * `online` is the bitmask of online memory nodes (cpuset_current_mems_allowed & N_MEMORY).
 */
export function mpolNew(modeArg: number, nodes: number, online: number): MemPolicy | null {
  const flags = modeArg & MPOL_MODE_FLAGS;
  const mode = sanitizeMpolMode(modeArg);
  if (mode === MPOL_DEFAULT) {
    if (nodes !== 0) fail('EINVAL', 'mpol_new: MPOL_DEFAULT with a nodemask');
    return null;
  }
  if (mode === MPOL_LOCAL) {
    if (nodes !== 0 || flags & (MPOL_F_STATIC_NODES | MPOL_F_RELATIVE_NODES)) fail('EINVAL', 'mpol_new: MPOL_LOCAL with a nodemask');
    return { mode, nodes: 0 };
  }
  if (mode === MPOL_PREFERRED && nodes === 0) {
    if (flags & (MPOL_F_STATIC_NODES | MPOL_F_RELATIVE_NODES)) fail('EINVAL', 'mpol_new: MPOL_PREFERRED without nodes and with a nodes flag');
    return { mode: MPOL_LOCAL, nodes: 0 };
  }
  if (nodes === 0) fail('EINVAL', 'mpol_new: an empty nodemask');
  // mpol_set_nodemask(): only online memory nodes count; the mode's create() refuses an empty set
  const allowed = nodes & online;
  if (allowed === 0) fail('EINVAL', 'mpol_set_nodemask: no node of the mask is online (create: nodes_empty)');
  if (mode === MPOL_PREFERRED) return { mode, nodes: allowed & -allowed }; // the first node
  return { mode, nodes: allowed };
}

/** sanitize_mpol_flags(): the mode without its flags; EINVAL for a mode >= MPOL_MAX */
export function sanitizeMpolMode(modeArg: number): number {
  const mode = modeArg & ~MPOL_MODE_FLAGS;
  if (mode < 0 || mode >= MPOL_MAX) fail('EINVAL', `sanitize_mpol_flags: mode ${mode} >= MPOL_MAX`);
  return mode;
}

/** mbind(2)'s own argument checks before the policy (do_mbind()), in order */
export function checkMbindArgs(start: number, flags: number): void {
  if (flags & ~MPOL_MF_VALID) fail('EINVAL', 'do_mbind: unknown MPOL_MF_* flags');
  if (flags & MPOL_MF_MOVE_ALL) fail('EPERM', 'do_mbind: MPOL_MF_MOVE_ALL needs CAP_SYS_NICE');
  if (start % 4096 !== 0) fail('EINVAL', 'do_mbind: start not page aligned');
}

/** the node a page allocated under `pol` lands on, for page index `index` (alloc_pages_mpol()) */
export function policyNode(pol: MemPolicy | undefined, index: number): number {
  if (!pol || pol.mode === MPOL_LOCAL || pol.mode === MPOL_DEFAULT) return 0;
  const nodes: number[] = [];
  for (let n = 0; n < 31; n++) if (pol.nodes & (1 << n)) nodes.push(n);
  if (nodes.length === 0) return 0;
  // interleave by the index in the file / address space (interleave_nid(): ilx % nnodes)
  if (pol.mode === MPOL_INTERLEAVE || pol.mode === MPOL_WEIGHTED_INTERLEAVE) return nodes[index % nodes.length]!;
  // BIND / PREFERRED(_MANY): the first allowed node (the local node 0 when it is in the mask)
  return nodes[0]!;
}

/**
 * A shared policy tree (struct shared_policy): policies by page-index range, the newest
 * replacing what it covers (mpol_set_shared_policy()). Sparse: one entry per range set.
 */
export class SharedPolicy {
  private ranges: { start: number; end: number; pol: MemPolicy }[] = [];

  /** set `pol` on [start, end), or remove the policy there (null: MPOL_DEFAULT) */
  set(start: number, end: number, pol: MemPolicy | null): void {
    const out: { start: number; end: number; pol: MemPolicy }[] = [];
    for (const r of this.ranges) {
      if (r.end <= start || r.start >= end) {
        out.push(r);
        continue;
      }
      if (r.start < start) out.push({ start: r.start, end: start, pol: r.pol });
      if (r.end > end) out.push({ start: end, end: r.end, pol: r.pol });
    }
    if (pol) out.push({ start, end, pol });
    this.ranges = out.sort((a, b) => a.start - b.start);
  }

  /** mpol_shared_policy_lookup(): the policy at `index`, or undefined */
  lookup(index: number): MemPolicy | undefined {
    for (const r of this.ranges) if (index >= r.start && index < r.end) return r.pol;
    return undefined;
  }

  get empty(): boolean {
    return this.ranges.length === 0;
  }
}
