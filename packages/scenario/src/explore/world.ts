/**
 * A "world": one VM built from a scenario's `steps` (through the model target), plus the
 * actors of its `concurrent:` block. Each actor step becomes a resumable kernel operation
 * whose phases the scheduler interleaves (guest accesses: walk → faultin → map [→ vendor];
 * pre-faults, attribute changes, memslot changes and hole punches: their kernel phases), or
 * one atomic action through the model target; the table BEGIN says which for every op.
 *
 * A phase that cannot take a lock another actor's unfinished operation holds
 * (kvm->slots_lock, the guest_memfd invalidate lock) does nothing and counts as a spin.
 */
import {
  checkVmInvariants,
  FALLOC_FL_PUNCH_HOLE,
  GuestAccessOp,
  PAGE_SIZE,
  PreFaultMemoryOp,
  KVM_MEMSLOT_INVALID,
  RET_PF_FIXED,
  SlotsLockBusyError,
  isKvmError,
  kvmGpaToGfn,
  recordTrace,
  type GuestAccessResult,
  type KernelOp,
  type TraceEvent,
} from '@ccmem/core';
import { GuestMemfd, InvalidateLockBusyError } from '@ccmem/gmem';
import { createModelTarget, type ModelKvm, type ModelTarget, type ModelVm } from '../model-target.js';
import { resolveStep, effectiveVm } from '../runner.js';
import { opSpec, type TargetOpName } from '../ops/index.js';
import type { OpFootprint } from '../ops/op.js';
import type { Scenario, Step } from '../schema.js';
import type { ArgsOf, Outcome, ResolvedStep, RunContext } from '../target.js';
import type { CheckRange, Footprint } from './types.js';
import { CHECK_ALL, GLOBAL, SHARED_INVALIDATE, SHARED_MEMSLOTS } from './types.js';
import { hugeFault, hugeRange, pages } from './footprint.js';
import { GraphSnapshot, reachable } from './snapshot.js';

/** the outcome of one finished actor step */
export interface ActorStepRecord {
  actor: string;
  index: number;
  op: string;
  outcome: Outcome;
  /** scheduler clock when the step's first phase ran and when it finished */
  start: number;
  end: number;
  /** gfn range the step touched ([lo, hi)), for data checks */
  lo: number;
  hi: number;
  /** vendor #NPFs (SNP RMP faults) a guest access took */
  vendorFaults: number;
  /** guest data: written value / read value */
  value?: bigint;
}

/** align a gfn range out to 2 MiB (a fault may map a 2M page; the SNP directmap works in 2M) */
function range2M(lo: number, hi: number): Footprint {
  return { lo: lo - (lo % 512), hi: hi + ((512 - (hi % 512)) % 512), global: false };
}

type ActiveOp =
  | { kind: 'access'; op: GuestAccessOp }
  | { kind: 'prefault'; op: PreFaultMemoryOp }
  | { kind: 'attributes'; op: KernelOp<void>; lo: number; hi: number }
  | { kind: 'memslot'; op: KernelOp<void> & { old?: unknown }; lo: number; hi: number }
  | { kind: 'punch'; op: { phase: string; step(): boolean }; record: number };

/** a resumable kernel op an actor step began, and the gfns [lo, hi) it touches */
interface Begun {
  active: ActiveOp;
  lo: number;
  hi: number;
}
/** begin `op` for `actor`; null: the step runs atomically after all (e.g. no such vCPU) */
type Begin<K extends TargetOpName> = (args: ArgsOf<K>, actor: Actor) => Begun | null;

function beginAccess(kind: 'read' | 'write' | 'fetch'): Begin<'guest_read' | 'guest_write' | 'guest_fetch'> {
  return (a: { vcpu: number; gpa: number; size?: number; value?: bigint; private?: boolean }, actor) => {
    const w = actor.world;
    const vcpu = w.vm.vcpu(a.vcpu);
    if (!vcpu) return null;
    w.currentVcpu.set(actor.index, a.vcpu);
    const op = vcpu.beginAccess(
      { gpa: a.gpa, size: a.size ?? 1, kind, ...(a.value !== undefined && { value: a.value }), private: a.private ?? false },
      { maxRetries: Infinity },
    );
    return { active: { kind: 'access', op }, lo: op.gfn, hi: op.gfn + 1 };
  };
}

function beginMemslot(v2: boolean): Begin<'set_user_memory_region' | 'set_user_memory_region2'> {
  return (a: ArgsOf<'set_user_memory_region'> & { guest_memfd?: number; guest_memfd_offset?: number | bigint }, actor) => {
    const vm = actor.world.vm;
    // another VM's memslots (`vm:`) run atomically through the model target
    if (vm.dead || (a as { vm?: number }).vm !== undefined) return null;
    const region = {
      slot: a.slot,
      flags: a.flags ?? 0,
      guest_phys_addr: a.guest_phys_addr,
      memory_size: a.memory_size,
      userspace_addr: a.userspace_addr ?? 0,
      ...(a.guest_memfd !== undefined && { guest_memfd: a.guest_memfd }),
      ...(a.guest_memfd_offset !== undefined && { guest_memfd_offset: a.guest_memfd_offset }),
    };
    const op = vm.memslots.beginSetUserMemoryRegion(region, { v2 });
    const old = op.old;
    const lo = Math.min(Number(region.guest_phys_addr) / PAGE_SIZE, old ? old.baseGfn : Infinity);
    const hi = Math.max((Number(region.guest_phys_addr) + Number(region.memory_size)) / PAGE_SIZE, old ? old.baseGfn + old.npages : 0);
    return { active: { kind: 'memslot', op, lo, hi }, lo, hi };
  };
}

/**
 * How the explorer runs each op: as a resumable kernel op whose phases the scheduler
 * interleaves, or `atomic` (one phase through the model target).
 */
const BEGIN: { readonly [K in TargetOpName]: Begin<K> | 'atomic' } = {
  guest_read: beginAccess('read'),
  guest_write: beginAccess('write'),
  guest_fetch: beginAccess('fetch'),
  pre_fault_memory(a, actor) {
    const w = actor.world;
    const vcpu = w.vm.vcpu(a.vcpu);
    if (!vcpu) return null;
    w.currentVcpu.set(actor.index, a.vcpu);
    const lo = Math.floor(Number(a.gpa) / PAGE_SIZE);
    return { active: { kind: 'prefault', op: new PreFaultMemoryOp(vcpu, { gpa: a.gpa, size: a.size, flags: a.flags ?? 0 }) }, lo, hi: lo + Math.ceil(Number(a.size) / PAGE_SIZE) };
  },
  set_memory_attributes(a, actor) {
    const op = actor.world.vm.beginSetMemoryAttributes({ address: a.address, size: a.size, attributes: a.attributes, flags: a.flags ?? 0 });
    const lo = Number(a.address) / PAGE_SIZE;
    const hi = (Number(a.address) + Number(a.size)) / PAGE_SIZE;
    return { active: { kind: 'attributes', op, lo, hi }, lo, hi };
  },
  set_user_memory_region: beginMemslot(false),
  set_user_memory_region2: beginMemslot(true),
  // a hole punch (punch_hole, or fallocate with FALLOC_FL_PUNCH_HOLE) on a guest_memfd
  fallocate(a, actor) {
    const w = actor.world;
    const f = w.kvm.process.getFile(a.fd);
    if (!(a.mode & FALLOC_FL_PUNCH_HOLE) || !(f instanceof GuestMemfd)) return null;
    const op = f.beginPunchHole(a.offset, a.len);
    w.punches.push({ file: f, start: a.offset / PAGE_SIZE, end: (a.offset + a.len) / PAGE_SIZE, actor: actor.name, done: -1 });
    return { active: { kind: 'punch', op, record: w.punches.length - 1 }, lo: 0, hi: 0 };
  },
  mmap: 'atomic', munmap: 'atomic', read: 'atomic', write: 'atomic', close: 'atomic',
  // guest paging: one phase each (the shadow MMU's resumable access is not interleaved yet)
  set_sregs: 'atomic', guest_page_table: 'atomic', guest_load_cr3: 'atomic', guest_invlpg: 'atomic',
  guest_read_gva: 'atomic', guest_write_gva: 'atomic', enter_guest_mode: 'atomic', leave_guest_mode: 'atomic',
  l2_read: 'atomic', l2_write: 'atomic',
  create_guest_memfd: 'atomic', gmem_poison: 'atomic', device_revoke: 'atomic', get_dirty_log: 'atomic',
  clear_dirty_log: 'atomic', check_extension: 'atomic', enable_cap: 'atomic', create_vcpu: 'atomic',
  complete_mmio: 'atomic', complete_hypercall: 'atomic', snp_launch_start: 'atomic',
  snp_launch_update: 'atomic', snp_launch_finish: 'atomic', guest_pvalidate: 'atomic', guest_psc: 'atomic',
  guest_psc_msr: 'atomic', guest_rmpadjust: 'atomic', tdx_init_vm: 'atomic', tdx_init_vcpu: 'atomic',
  tdx_init_mem_region: 'atomic', tdx_finalize_vm: 'atomic', guest_accept: 'atomic',
  snp_rmp_insn: 'atomic', snp_host_access: 'atomic', tdx_seamcall: 'atomic', tdx_pending_interrupt: 'atomic', tdx_inject_busy: 'atomic', snp_inject_fail: 'atomic',
  guest_map_gpa_range: 'atomic', sev_init2: 'atomic', sev_init: 'atomic', sev_launch_start: 'atomic',
  sev_launch_update_data: 'atomic', sev_launch_update_vmsa: 'atomic', sev_launch_measure: 'atomic', sev_launch_finish: 'atomic',
  sev_guest_status: 'atomic', memory_encrypt_reg_region: 'atomic', memory_encrypt_unreg_region: 'atomic',
  guest_ghcb_msr: 'atomic', guest_ghcb_terminate: 'atomic', assert: 'atomic',
  fd_read: 'atomic', fd_write: 'atomic', fstat: 'atomic', memfd_create: 'atomic', open_dev_kvm: 'atomic',
  madvise: 'atomic', mprotect: 'atomic', create_vm: 'atomic', vm_fd: 'atomic', vcpu_fd: 'atomic', set_nr_mmu_pages: 'atomic',
  run_vcpu: 'atomic', set_idt: 'atomic', guest_exception: 'atomic', mbind: 'atomic', get_mempolicy: 'atomic', move_pages: 'atomic',
  // the dirty ring: the VMM's harvest, KVM_RESET_DIRTY_RINGS (under slots_lock), one KVM_RUN
  harvest_dirty_ring: 'atomic', reset_dirty_rings: 'atomic', mmap_dirty_ring: 'atomic', guest_touch: 'atomic',
};

export class Actor {
  /** index of the next step */
  next = 0;
  active: ActiveOp | null = null;
  /** the last phase made no progress (fault retried, lock busy) */
  spinning = false;
  /** clock of this actor's last phase */
  lastRun = -1;
  private stepStart = 0;
  private stepLo = 0;
  private stepHi = 0;

  constructor(
    readonly world: World,
    readonly index: number,
    readonly name: string,
    readonly steps: Step[],
    /** scenario-wide index of the actor's first step (concurrent steps continue the numbering) */
    readonly firstIndex: number,
  ) {}

  get finished(): boolean {
    return this.next >= this.steps.length && this.active === null;
  }

  /** the footprint of the phase this actor runs next (partial-order reduction) */
  footprint(): Footprint {
    const a = this.active;
    const w = this.world;
    if (a === null) {
      const step = this.steps[this.next]!;
      return w.stepFootprint(step, this.resolved(step));
    }
    if (w.pageGranular) return this.pageFootprint(a);
    // as in pageFootprint, every access reads the memslot generation that a memslot change
    // writes (kvm_memslots()->generation, which MMIO SPTEs carry); attribute invalidations are
    // global here, so SHARED_INVALIDATE is not needed
    switch (a.kind) {
      case 'access':
        return { ...range2M(a.op.gfn, a.op.gfn + 1), reads: SHARED_MEMSLOTS };
      case 'prefault': {
        const g = Math.floor(a.op.range.gpa / PAGE_SIZE);
        return { ...range2M(g, g + Math.max(1, Math.ceil(a.op.range.size / PAGE_SIZE))), reads: SHARED_MEMSLOTS };
      }
      case 'attributes':
        return a.op.phase === 'invalidate' || a.op.phase === 'post' ? GLOBAL : range2M(a.lo, a.hi);
      case 'memslot':
        return a.op.phase === 'zap' && w.vm.vmType === 0 ? GLOBAL : { ...range2M(a.lo, a.hi), writes: SHARED_MEMSLOTS };
      case 'punch':
        return GLOBAL;
    }
  }

  /**
   * Page-granular footprints (World.pageGranular, explore/footprint.ts): a guest read's walk
   * reads the leaf over its gfn; a write's walk may make a huge leaf writable (fast_page_fault);
   * faultin resolves the gfn's pfn after snapshotting the invalidation sequence; map installs or
   * splits a huge leaf and reads the attributes of its huge page; an attribute change converts
   * [lo, hi) and its invalidate zaps the huge leaves over the ends and moves the invalidation
   * state (as does post, kvm_mmu_invalidate_end()).
   */
  private pageFootprint(a: ActiveOp): Footprint {
    const vm = this.world.vm;
    switch (a.kind) {
      case 'access': {
        const g = a.op.gfn;
        if (a.op.phase === 'walk') return a.op.write ? { ...hugeRange(vm, g, g + 1), reads: SHARED_MEMSLOTS } : pages(g, g + 1, SHARED_MEMSLOTS);
        if (a.op.phase === 'faultin') return pages(g, g + 1, SHARED_INVALIDATE | SHARED_MEMSLOTS);
        return hugeFault(vm, g, g + 1, SHARED_INVALIDATE | SHARED_MEMSLOTS);
      }
      case 'prefault': {
        const g = Math.floor(a.op.range.gpa / PAGE_SIZE);
        return hugeFault(vm, g, g + Math.max(1, Math.ceil(a.op.range.size / PAGE_SIZE)), SHARED_INVALIDATE | SHARED_MEMSLOTS);
      }
      case 'attributes':
        if (a.op.phase === 'invalidate') return { ...hugeRange(vm, a.lo, a.hi), reads: SHARED_MEMSLOTS, writes: SHARED_INVALIDATE };
        if (a.op.phase === 'post') return pages(a.lo, a.hi, 0, SHARED_INVALIDATE);
        return pages(a.lo, a.hi);
      case 'memslot':
        return a.op.phase === 'zap' && vm.vmType === 0 ? GLOBAL : { ...range2M(a.lo, a.hi), writes: SHARED_MEMSLOTS };
      case 'punch':
        return GLOBAL;
    }
  }

  /**
   * The gfns whose SPTEs, attributes or backing the next phase can change: the range the
   * explorer re-checks after it (GLOBAL: the whole VM). Narrower than the footprint: a fault
   * maps or zaps only the leaf that covers its gfn (a huge leaf is checked whole, since the
   * walk visits every leaf overlapping the range), and an attribute change's invalidate/post
   * zap only [lo, hi) while moving the invalidation counters (a VM-wide rule, always checked).
   */
  checkRange(): CheckRange {
    const a = this.active;
    if (a === null) {
      const step = this.steps[this.next]!;
      return this.world.stepCheckRange(this.resolved(step));
    }
    switch (a.kind) {
      case 'access':
        // walk (A/D bits, the fast-path write unprotect of the leaf at gfn) and faultin (the
        // pfn) change nothing but the leaf covering gfn; map (and the SNP vendor step) may
        // split a huge leaf or zap the 2M range: the whole footprint
        return a.op.phase === 'walk' || a.op.phase === 'faultin'
          ? { lo: a.op.gfn, hi: a.op.gfn + 1, global: false, memslots: false }
          : { ...this.footprint(), memslots: false };
      case 'prefault':
        return { ...this.footprint(), memslots: false };
      case 'attributes':
        return { lo: a.lo, hi: a.hi, global: false, memslots: false };
      case 'memslot':
        return a.op.phase === 'zap' && this.world.vm.vmType === 0 ? CHECK_ALL : { lo: a.lo, hi: a.hi, global: false, memslots: true };
      case 'punch':
        return CHECK_ALL;
    }
  }

  private resolvedCache: { next: number; names: number; rs: ResolvedStep } | null = null;

  /** the next step with its `as` names resolved (cached until a name is bound) */
  private resolved(step: Step): ResolvedStep {
    const c = this.resolvedCache;
    const w = this.world;
    if (c !== null && c.next === this.next && c.names === w.namesVersion) return c.rs;
    const rs = resolveStep(step, this.firstIndex + this.next, w.names, this.name);
    this.resolvedCache = { next: this.next, names: w.namesVersion, rs };
    return rs;
  }

  /** run one phase; returns violations noticed by the phase itself */
  runPhase(clock: number): void {
    this.lastRun = clock;
    if (this.active === null) {
      const step = this.steps[this.next]!;
      const rs = this.resolved(step);
      this.stepStart = clock;
      if (!this.begin(step, rs)) return; // lock busy: nothing happened
    }
    const a = this.active!;
    const w = this.world;
    this.spinning = false;
    switch (a.kind) {
      case 'access': {
        const wasMap = a.op.phase === 'map';
        const done = a.op.step();
        if (a.op.phase === 'walk' && a.op.spinning) this.spinning = true;
        if (wasMap) this.checkMapped(a.op.lastFaultResult);
        if (done) this.finishStep(accessOutcome(a.op.result()), a.op.vendorFaults, a.op);
        return;
      }
      case 'prefault': {
        const before = a.op.range.size;
        const wasMap = a.op.phase === 'map';
        const done = a.op.step();
        if (wasMap) this.checkMapped(RET_PF_FIXED);
        if (!done && a.op.phase === 'chunk' && a.op.range.size === before && wasMap) this.spinning = true;
        if (done) {
          const err = a.op.result();
          this.finishStep({ ...(err && { errno: err }), gpa: a.op.range.gpa, size: a.op.range.size }, 0, null);
        }
        return;
      }
      case 'attributes':
      case 'memslot': {
        // kvm_swap_active_memslots() waits in synchronize_srcu() for every vCPU inside
        // kvm->srcu: a fault between exit and re-entry, a whole KVM_PRE_FAULT_MEMORY
        if (a.kind === 'memslot' && (a.op.phase === 'invalidate' || a.op.phase === 'commit') && w.srcuReaders(this) > 0) {
          this.spinning = true;
          return;
        }
        if (a.op.step()) {
          let out: Outcome = {};
          try {
            a.op.result();
          } catch (e) {
            if (isKvmError(e)) out = { errno: e.code };
            else throw e;
          }
          this.finishStep(out, 0, null);
        }
        return;
      }
      case 'punch':
        if (!a.op.step()) this.finishStep({}, 0, null);
        return;
    }
  }

  /** a fault or pre-fault installed an SPTE: it must not map into a slot being deleted */
  private checkMapped(r: number): void {
    if (r !== RET_PF_FIXED) return;
    const f = this.world.vcpuOf(this)?.fault;
    if (!f || !f.slot) return;
    const cur = this.world.vm.gfnToMemslot(f.gfn);
    if (this.world.vm.mmu.leafAt(f.gfn, f.isPrivate) && (!cur || (cur.flags & KVM_MEMSLOT_INVALID) !== 0)) {
      this.world.phaseViolations.push(`${this.name}: an SPTE for gfn 0x${f.gfn.toString(16)} was installed into a memslot that is deleted or being deleted`);
    }
  }

  private begin(step: Step, rs: ResolvedStep): boolean {
    const begin = BEGIN[rs.op] as Begin<TargetOpName> | 'atomic';
    try {
      const begun = begin === 'atomic' ? null : begin(rs.args as never, this);
      if (begun === null) return this.atomic(step, rs);
      this.active = begun.active;
      this.stepLo = begun.lo;
      this.stepHi = begun.hi;
      return true;
    } catch (e) {
      if (e instanceof InvalidateLockBusyError || e instanceof SlotsLockBusyError) {
        this.spinning = true;
        return false;
      }
      if (isKvmError(e)) {
        this.stepLo = this.stepHi = 0;
        this.finishStep({ errno: e.code, detail: { check: e.check } }, 0, null);
        return false;
      }
      throw e;
    }
  }

  /** one phase: the whole step through the model target */
  private atomic(step: Step, rs: ResolvedStep): boolean {
    const w = this.world;
    this.spinning = false;
    let outcome: Outcome;
    try {
      outcome = w.target.execute(rs, w.ctx);
    } catch (e) {
      if (isKvmError(e)) outcome = { errno: e.code };
      else throw e;
    }
    if (step.as !== undefined && outcome.result !== undefined) {
      w.names.set(step.as, outcome.result);
      w.namesVersion++;
    }
    this.stepLo = this.stepHi = 0;
    this.finishStep(outcome, 0, null);
    return false;
  }

  private finishStep(outcome: Outcome, vendorFaults: number, access: GuestAccessOp | null): void {
    const w = this.world;
    const step = this.steps[this.next]!;
    const rec: ActorStepRecord = {
      actor: this.name,
      index: this.firstIndex + this.next,
      op: step.op,
      outcome,
      start: this.stepStart,
      end: this.lastRun,
      lo: this.stepLo,
      hi: this.stepHi,
      vendorFaults,
    };
    if (access) {
      if (access.write && outcome.errno === undefined && outcome.exit === undefined && !outcome.detail) rec.value = access.value;
      else if (outcome.value !== undefined) rec.value = BigInt(outcome.value);
    }
    const a = this.active;
    if (a?.kind === 'punch') w.punches[a.record]!.done = this.lastRun;
    w.records.push(rec);
    w.onStepDone?.(rec, step);
    this.active = null;
    this.next++;
  }
}

function accessOutcome(r: GuestAccessResult): Outcome {
  const out: Outcome = {};
  if (r.errno !== undefined) out.errno = r.errno;
  if (r.exit !== undefined) out.exit = r.exit;
  if (r.value !== undefined) out.value = r.value;
  if (r.exception !== undefined) out.detail = { exception: r.exception };
  return out;
}

export interface PunchRecord {
  file: GuestMemfd;
  start: number;
  end: number;
  actor: string;
  /** clock when the punch finished (-1 while running) */
  done: number;
}

export interface WorldOptions {
  /** fault-injection switches set on the VM after setup */
  faultInjection?: { skipRetryCheck?: boolean };
  /** TDX: make the next `count` SEAMCALLs (of `leaf`, if given) return TDX_OPERAND_BUSY */
  tdxBusy?: { count: number; leaf?: string };
  /**
   * The earlier reduction, for comparison: every footprint 2 MiB-aligned, an attribute
   * change's invalidate/post global (World.pageGranular false).
   */
  coarseFootprints?: boolean;
}

/**
 * The whole-VM invariant check after the setup steps. The model is deterministic (a schedule
 * replays exactly), so the setup of a scenario always ends in the same state: it is checked
 * once per scenario object and the result reused by every later run.
 */
const setupChecks = new WeakMap<Scenario, readonly string[]>();
function setupCheck(scenario: Scenario, vm: ModelVm): readonly string[] {
  let v = setupChecks.get(scenario);
  if (v === undefined) {
    v = vm.alive ? checkVmInvariants(vm) : [];
    setupChecks.set(scenario, v);
  }
  return v;
}

/** Thrown when the scenario's setup `steps` fail: the exploration file is invalid for this build. */
export class SetupError extends Error {}

export class World {
  readonly target: ModelTarget;
  readonly ctx: RunContext;
  readonly names = new Map<string, number>();
  /** bumped whenever an actor binds a name (`as:`) */
  namesVersion = 0;
  readonly kvm: ModelKvm;
  readonly vm: ModelVm;
  readonly actors: Actor[] = [];
  readonly records: ActorStepRecord[] = [];
  readonly punches: PunchRecord[] = [];
  /** violations a phase noticed itself (e.g. an SPTE installed into a deleted slot) */
  readonly phaseViolations: string[] = [];
  /** actor index → the vCPU id of its current step */
  readonly currentVcpu = new Map<number, number>();
  onStepDone: ((rec: ActorStepRecord, step: Step) => void) | null = null;
  /** what `checkVmInvariants` (the whole VM) reported right after the setup steps */
  readonly setupViolations: readonly string[];
  private trace: { events: TraceEvent[]; stop: () => void } | null = null;
  private readonly coarseFootprints: boolean;

  constructor(
    readonly scenario: Scenario,
    opts: WorldOptions = {},
  ) {
    // the setup steps run without the target's per-step invariant check: the whole VM is
    // checked once after them (the explorer reports what that finds like any phase's check)
    const target = createModelTarget({ checkEachStep: false });
    this.target = target;
    const vmCfg = effectiveVm(scenario);
    this.ctx = { scenario, vm: vmCfg, names: this.names, trace: false };
    target.begin(scenario, this.ctx);
    scenario.steps.forEach((step, i) => {
      const rs = resolveStep(step, i, this.names);
      let outcome: Outcome;
      try {
        outcome = target.execute(rs, this.ctx);
      } catch (e) {
        if (isKvmError(e)) outcome = { errno: e.code };
        else throw e;
      }
      const expectErr = step.expect.errno;
      if (outcome.errno !== undefined && expectErr !== outcome.errno) {
        throw new SetupError(`setup step ${i} (${step.op}) failed with ${outcome.errno}`);
      }
      if (step.as !== undefined && outcome.result !== undefined) this.names.set(step.as, outcome.result);
    });
    this.kvm = target.kvm!;
    this.vm = target.vm!;
    this.setupViolations = setupCheck(scenario, this.vm);
    this.coarseFootprints = opts.coarseFootprints === true;
    if (opts.faultInjection?.skipRetryCheck) this.vm.faultInjection.skipRetryCheck = true;
    if (opts.tdxBusy) {
      const td = (this.vm.backend as unknown as { td?: { injectOperandBusy(count: number, leaf?: string): void } }).td;
      td?.injectOperandBusy(opts.tdxBusy.count, opts.tdxBusy.leaf as never);
    }
    let index = scenario.steps.length;
    for (const [name, steps] of Object.entries(scenario.concurrent?.actors ?? {})) {
      this.actors.push(new Actor(this, this.actors.length, name, steps, index));
      index += steps.length;
    }
  }

  /**
   * The run is over: its host (Kvm, process, VM page tables) gives its buffers back for the
   * next run's VM (Kvm.dispose()). Nothing of this world may be used afterwards.
   */
  dispose(): void {
    this.trace?.stop();
    this.trace = null;
    this.kvm.dispose();
  }

  /** record the kernel events from now on */
  startTrace(): void {
    this.trace = recordTrace(this.kvm.tracer);
  }

  /** the kernel events recorded since startTrace() so far (the run goes on recording) */
  get tracedEvents(): readonly TraceEvent[] {
    return this.trace?.events ?? [];
  }

  stopTrace(): TraceEvent[] {
    const t = this.trace;
    this.trace = null;
    if (!t) return [];
    t.stop();
    return t.events;
  }

  /** actors inside a kvm->srcu read-side section other than `except` */
  srcuReaders(except: Actor): number {
    let n = 0;
    for (const a of this.actors) {
      if (a === except || !a.active) continue;
      const act = a.active;
      if (act.kind === 'prefault') n++;
      else if (act.kind === 'access' && act.op.phase !== 'walk' && act.op.phase !== 'done') n++;
    }
    return n;
  }

  vcpuOf(actor: Actor) {
    const id = this.currentVcpu.get(actor.index);
    return id === undefined ? undefined : this.vm.vcpu(id);
  }

  /**
   * Without a vendor backend, footprints are page-granular (Actor.pageFootprint). A vendor's
   * hooks (SNP's RMP updates and PSMASH, TDX SEAMCALLs and their TD-wide state) act on 2 MiB
   * ranges or the whole TD: there every access is 2 MiB-granular and an attribute change's
   * invalidate/post is global.
   */
  get pageGranular(): boolean {
    return this.vm.backend === null && !this.coarseFootprints;
  }

  /** the footprint of a step's first phase, before it begins */
  stepFootprint(step: Step, rs: ResolvedStep): Footprint {
    void step;
    const r = this.stepCheckRange(rs);
    if (r.global) return r;
    if (!this.pageGranular) return { ...range2M(r.lo, r.hi), reads: SHARED_MEMSLOTS };
    // the first phase: a read's walk, an attribute change's checks (prepare), else a phase
    // that may make writable, map or zap a huge leaf
    if (rs.op === 'guest_read') return pages(r.lo, r.hi, SHARED_MEMSLOTS);
    if (rs.op === 'set_memory_attributes') return pages(r.lo, r.hi);
    return hugeFault(this.vm, r.lo, r.hi, SHARED_INVALIDATE | SHARED_MEMSLOTS);
  }

  /** the gfns a step's first phase can change (see Actor.checkRange): the op's registry footprint */
  stepCheckRange(rs: ResolvedStep): CheckRange {
    const fp = opSpec(rs.op).footprint as OpFootprint<ResolvedStep['args']> | undefined;
    if (!fp) return CHECK_ALL;
    const [lo, hi] = fp.gfns(rs.args, this.vm);
    return { ...(fp.huge ? range2M(lo, hi) : { lo, hi, global: false }), memslots: false };
  }
}

/**
 * One world for every run of an exploration: built from the setup steps once, recorded
 * (GraphSnapshot), and put back to that state before each later run instead of being rebuilt.
 * The model is deterministic, so the setup always ends in the same state. After a run that
 * destroyed part of the recorded world (a VM whose page-table buffers went back to the module
 * pools), or a run that threw, the search builds a new world for every run, as before.
 */
export class ReusedWorld {
  private world: World | null = null;
  private snapshot: GraphSnapshot | null = null;
  private used = false;
  /** false once a run on the reused world threw or disposed part of it: the runs build new worlds (runOnce) */
  enabled = true;

  constructor(
    readonly scenario: Scenario,
    readonly opts: WorldOptions = {},
  ) {}

  /**
   * The world in its state right after the setup steps (built on first use), or null when the
   * last run disposed part of it: then reuse is off for the rest of the search (a search whose
   * runs destroy the VM would otherwise build two worlds per run).
   */
  take(): World | null {
    if (this.world !== null && this.used) {
      if (!this.snapshot!.restorable) {
        this.dispose();
        this.enabled = false;
        return null;
      }
      this.snapshot!.restore();
    }
    if (this.world === null) {
      const w = new World(this.scenario, this.opts);
      // what a second world built from the same steps reaches too is not this world's: the
      // scenario, module-level tables and scratch buffers. New worlds share those as they are,
      // so the snapshot leaves them out (neither records, seals nor restores them).
      const probe = new World(this.scenario, this.opts);
      const shared = reachable(probe);
      probe.dispose();
      this.snapshot = new GraphSnapshot(w, shared);
      this.world = w;
    }
    this.used = true;
    return this.world;
  }

  /** no more reuse (runOnce: a run on the reused world threw) */
  disable(): void {
    this.enabled = false;
    // not World.dispose(): the world may be half-way through a step; the garbage collector takes it
    this.world = null;
    this.snapshot = null;
  }

  /** gives the world's buffers back (World.dispose()); a later take() builds a new one */
  dispose(): void {
    this.world?.dispose();
    this.world = null;
    this.snapshot = null;
    this.used = false;
  }
}
