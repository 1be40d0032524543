/**
 * One registry entry: the op's argument schema, normalisation, needs, explorer footprint and
 * documentation line, read by the schema, the targets and the docs (docs/scenarios.md,
 * "Adding an operation").
 */
import type { DirectBitsVm } from '@ccmem/core';
import type { z } from 'zod';
import type { AddrRef } from '../numbers.js';

/** Addresses written as `name±offset` become numbers before a target sees them. */
export type Resolve<T> = T extends AddrRef
  ? number
  : T extends bigint | number | string | boolean | null | undefined
    ? T
    : T extends readonly (infer U)[]
      ? Resolve<U>[]
      : { [K in keyof T]: Resolve<T[K]> };

/** VM type names as KVM_CAP_VM_TYPES bit numbers name them (@ccmem/core's) */
import type { VmTypeName } from '@ccmem/core';
export type { VmTypeName };

/** What a kernel must offer to run an op: KVM_CHECK_EXTENSION answers. */
export interface OpNeeds {
  /** capabilities that must be non-zero */
  readonly caps?: readonly `KVM_CAP_${string}`[];
  /** VM types of which KVM_CAP_VM_TYPES must offer at least one */
  readonly vmTypes?: readonly VmTypeName[];
}

/** the explorer's view of a VM, enough to turn a gpa into a gfn (kvmGpaToGfn of @ccmem/core) */
export type FootprintVm = DirectBitsVm;

/**
 * The gfns an op's first phase may change (the explorer's partial-order reduction and checks).
 * An op without one touches the whole VM: every gfn, the memslots and the locks.
 */
export interface OpFootprint<A> {
  /** [lo, hi) */
  gfns(args: A, vm: FootprintVm): readonly [number, number];
  /** the phase may map or zap whole 2 MiB leaves around them */
  readonly huge?: boolean;
}

export interface OpSpec<S extends z.ZodType = z.ZodType> {
  /** the step's arguments (strict: an unknown field is an error) */
  readonly args: S;
  /** what the op does, one line of docs/scenarios.md */
  readonly does: string;
  /** what the outcome carries: the result `as:` names, a value, an exit */
  readonly result?: string;
  /** what the kernel must offer (checked by the real-KVM target) */
  readonly needs?: OpNeeds;
  /** rewrite the resolved arguments into what targets see (e.g. the uAPI slot encoding) */
  readonly normalize?: (args: Resolve<z.output<S>>) => Record<string, unknown>;
  readonly footprint?: OpFootprint<Resolve<z.output<S>>>;
}

/** One registry entry; the schema's type flows into `normalize` and `footprint`. */
export function defineOp<S extends z.ZodType>(spec: OpSpec<S>): OpSpec<S> {
  return spec;
}

/**
 * An op that reaches targets as another op (`punch_hole` is `fallocate` with a fixed mode):
 * targets have no handler for it, and `normalize` gives the other op's arguments.
 */
export function defineAlias<S extends z.ZodType, const B extends string>(
  becomes: B,
  spec: OpSpec<S> & { normalize: NonNullable<OpSpec<S>['normalize']> },
): OpSpec<S> & { readonly becomes: B } {
  return { ...spec, becomes };
}
