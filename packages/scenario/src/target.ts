/**
 * What the runner drives: a Target executes one resolved step at a time against the model
 * (`model`) or the machine's real KVM (`kvm`) and reports what happened as an Outcome.
 */
import type { ErrnoName, KvmRunExit, TraceEvent } from '@ccmem/core';
import type { AddrRef } from './numbers.js';
import type { OpArgs, OpName, Scenario, TargetName, VmConfig } from './schema.js';

/** What one step did. Omitted fields did not happen. */
export interface Outcome {
  /** the call failed with this errno (ioctl returned -1) */
  errno?: ErrnoName;
  /** a value read (read, guest_read, check_extension), as bigint for 64-bit guest data */
  value?: bigint | number;
  /** KVM_RUN returned to userspace with this exit (a memory-fault exit comes with errno) */
  exit?: KvmRunExit;
  /** the VMM process took a signal (e.g. SIGBUS touching private guest_memfd memory) */
  signal?: 'SIGBUS' | 'SIGSEGV';
  /** the guest took an exception itself (SNP #VC for an unvalidated page, TDX #VE); KVM was not involved */
  exception?: string;
  /** get_dirty_log: page indexes within the slot whose bit was set */
  dirty_pages?: number[];
  /** pre_fault_memory: the remaining range copied back to userspace */
  gpa?: number;
  size?: number;
  /** vendor instruction / TDCALL return code, as a number or the vendor's name */
  ret?: number | string;
  /** an fd, hva or vCPU handle that `as:` names for later steps */
  result?: number;
  /** the target cannot run this step (e.g. "missing KVM_CAP_MEMORY_ATTRIBUTES") */
  skipped?: string;
  /** kernel events the step caused (collected when the run traces) */
  events?: TraceEvent[];
  /**
   * anything else worth showing; `detail.check` is the kernel rule behind an errno
   * (KvmError.check), and `assert` steps report the inspected state here
   */
  detail?: Record<string, unknown>;
}

/** Addresses written as `name±offset` become numbers before a target sees them. */
export type Resolve<T> = T extends AddrRef
  ? number
  : T extends bigint | number | string | boolean | null | undefined
    ? T
    : T extends readonly (infer U)[]
      ? Resolve<U>[]
      : { [K in keyof T]: Resolve<T[K]> };

/** The ops a target executes: `punch_hole` reaches targets as `fallocate`. */
export type TargetOpName = Exclude<OpName, 'punch_hole'>;

/** A step with every address resolved, as handed to `Target.execute`. */
export type ResolvedStep = {
  [K in TargetOpName]: {
    /** position in the scenario's step list (concurrent steps continue the numbering) */
    readonly index: number;
    readonly op: K;
    readonly args: Resolve<OpArgs[K]>;
    /** the actor running the step, inside a `concurrent:` block */
    readonly actor?: string;
  };
}[TargetOpName];

export interface RunContext {
  readonly scenario: Scenario;
  /** the VM configuration of this run (the matrix overrides type and provider) */
  readonly vm: VmConfig;
  /** results named with `as:` so far */
  readonly names: ReadonlyMap<string, number>;
  /** collect kernel events into Outcome.events */
  readonly trace: boolean;
}

export type Support = { ok: true } | { ok: false; reason: string };

export interface Target {
  readonly name: TargetName;
  /** set up a fresh VM for `scenario` (ctx.vm); throw SkipScenario if it cannot run here */
  begin(scenario: Scenario, ctx: RunContext): void;
  /** run one step; a failed uAPI call is reported as Outcome.errno, not thrown */
  execute(step: ResolvedStep, ctx: RunContext): Outcome;
  /** tear the VM down */
  end(): void;
  /** whether this target can run an op at all (e.g. missing KVM_CAP_MEMORY_ATTRIBUTES) */
  supports?(op: TargetOpName, ctx: RunContext): Support;
  /** check a named invariant of a `concurrent:` block; returns violations in plain words */
  checkInvariant?(name: string, ctx: RunContext): string[];
}

/** Thrown by `Target.begin` when the scenario cannot run on this target (matrix status `skip`). */
export class SkipScenario extends Error {
  constructor(reason: string) {
    super(reason);
    this.name = 'SkipScenario';
  }
}
