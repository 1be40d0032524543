/**
 * What the runner drives: a Target executes one resolved step at a time against the model
 * (`model`) or the machine's real KVM (`kvm`) and reports what happened as an Outcome.
 */
import type { ErrnoName, KvmRunExit, TraceEvent } from '@ccmem/core';
import type { OpArgs, TargetOpName } from './ops/index.js';
import type { Resolve } from './ops/op.js';
import type { Scenario, TargetName, VmConfig } from './schema.js';

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
  /** move_pages: per page its node, or a negative errno */
  status?: number[];
  /** fstat: the file's size and block size; whether its inode differs from the `distinct_from` fds' */
  stat?: { st_size: number; st_blksize: number; distinct_inode?: boolean };
  /** get_dirty_log: page indexes within the slot whose bit was set (harvest_dirty_ring: the entries' offsets) */
  dirty_pages?: number[];
  /** harvest_dirty_ring: the entries collected, in ring order (`slot` = as_id << 16 | id) */
  dirty_gfns?: { slot: number; offset: number }[];
  /**
   * the VM's MMU statistics after the step, by the names KVM_GET_STATS_FD gives them
   * (`pages_4k`, `mmu_pte_write`, ...), when the run collects them (`RunOptions.stats`, or a
   * step that expects `stats`)
   */
  stats?: Record<string, number>;
  /**
   * pre_fault_memory: the remaining range copied back to userspace; tdx_init_mem_region: `gpa`
   * and `nr_pages` of the region copied back (what is left of it)
   */
  gpa?: number;
  size?: number;
  nr_pages?: number;
  /** a TDVMCALL's R11 output: TDG.VP.VMCALL<MapGPA> gives the gpa to resume from on a failure or retry */
  r11?: number;
  /** vendor instruction / TDCALL return code, as a number or the vendor's name (a bigint above 2^53) */
  ret?: number | string | bigint;
  /**
   * the argument struct an ioctl copied back to userspace, by the uAPI's field names (the
   * `struct kvm_sev_snp_launch_update` of KVM_SEV_SNP_LAUNCH_UPDATE), or the GHCB buffer a
   * guest's page state change left (`cur_entry` of its header)
   */
  params?: Record<string, number>;
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

export type { Resolve, TargetOpName };

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
  /** attach the VM's MMU statistics to every step's outcome (Outcome.stats) */
  readonly stats?: boolean;
}

export type Support = { ok: true } | { ok: false; reason: string };

export interface Target {
  readonly name: TargetName;
  /** set up a fresh VM for `scenario` (ctx.vm); throw SkipScenario if it cannot run here */
  begin(scenario: Scenario, ctx: RunContext): void;
  /** run one step; a failed uAPI call is reported as Outcome.errno, not thrown */
  execute(step: ResolvedStep, ctx: RunContext): Outcome;
  /**
   * the VMM process exits after the scenario's last step: every mapping and fd goes, so the VM
   * is destroyed; returns what it left behind (leaked references, pages, keys), one sentence each
   */
  exit?(ctx: RunContext): string[];
  /** tear the VM down */
  end(): void;
  /** whether this target can run an op at all (e.g. missing KVM_CAP_MEMORY_ATTRIBUTES) */
  supports?(op: TargetOpName, ctx: RunContext): Support;
  /** the VM's MMU statistics now, by the kernel's KVM_GET_STATS_FD names */
  stats?(): Record<string, number>;
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

/* ------------------------------------------------------------------------------------------ */
/* Handler tables: one entry per op, so the compiler names every op a target lacks             */
/* ------------------------------------------------------------------------------------------ */

/** the resolved arguments of one op */
export type ArgsOf<K extends TargetOpName> = Resolve<OpArgs[K]>;

/** A target's entry for an op it cannot do; the runner reports such a step as skipped. */
export interface Unsupported {
  readonly unsupported: string;
}
export function unsupported(reason: string): Unsupported {
  return { unsupported: reason };
}
export function isUnsupported(h: unknown): h is Unsupported {
  return typeof h === 'object' && h !== null && 'unsupported' in h;
}

/** `{ [op]: handler | unsupported(reason) }` over every op a target sees */
export type HandlerTable<C> = { readonly [K in TargetOpName]: ((args: ArgsOf<K>, c: C) => Outcome) | Unsupported };

/** run a step through its table entry; an unsupported entry is a skip with its reason */
export function dispatch<C>(table: HandlerTable<C>, step: ResolvedStep, c: C): Outcome {
  const h = table[step.op] as ((args: unknown, c: C) => Outcome) | Unsupported;
  return isUnsupported(h) ? { skipped: h.unsupported } : h(step.args, c);
}

/** `supports()` of a target with a handler table: its unsupported entries */
export function tableSupport<C>(table: HandlerTable<C>, op: TargetOpName): Support {
  const h = table[op];
  return isUnsupported(h) ? { ok: false, reason: h.unsupported } : { ok: true };
}
