/**
 * The `model` target: every scenario op runs on the ccmem model (@ccmem/core with the
 * guest_memfd / device-fd providers and the SEV-SNP and TDX backends).
 *
 * - A failed uAPI call (KvmError) is reported as `errno` with `detail.check`, the kernel rule;
 *   a VMM access the host answers with a signal (HostSignal) as `signal`. Nothing is thrown
 *   for uAPI failures.
 * - `checkVmInvariants(vm)` runs after steps as `invariants` says (InvariantMode): after every
 *   step (`full`), on a schedule that keeps long scenarios linear (`step`, the default), or
 *   never (`off`); violations that appeared since the last check are reported in
 *   `detail.invariants`, and the runner fails such a step. The explorer turns the per-step
 *   check off and runs `checkVmInvariants` itself once after its setup steps.
 * - With `ctx.trace`, the kernel events of each step are returned in `events`.
 */
import {
  HOST_FALLBACK_PROFILE,
  profileByName,
  withPciHole,
  type KernelProfile,
  checkVmInvariants,
  HostSignal,
  isKvmError,
  Kvm,
  KVM_X86_SEV_ES_VM,
  KVM_X86_SEV_VM,
  Process,
  KVM_X86_SNP_VM,
  KVM_X86_TDX_VM,
  recordTrace,
  type Vm,
  type VmEdge,
} from '@ccmem/core';
import { guestMemfdFactory } from '@ccmem/gmem';
import { sevBackendFactory, sevEsBackendFactory, sevMemEncryptOpFallback, snpBackendFactory } from '@ccmem/snp';
import { tdxBackendFactory } from '@ccmem/tdx';
import { VM_TYPE_NUMBERS } from './ops/needs.js';
import { RUN_INVARIANT_NAMES, VM_TYPE_NAMES, type Scenario, type VmConfig } from './schema.js';
import { dispatch, SkipScenario, type HandlerTable, type Outcome, type ResolvedStep, type RunContext, type Support, type Target, type TargetOpName } from './target.js';
import { unmetRequirement } from './requires.js';
import { HOST_HANDLERS } from './model/host.js';
import { KVM_IOCTL_HANDLERS } from './model/kvm-ioctls.js';
import { ModelRun } from './model/run.js';
import { VENDOR_HANDLERS } from './model/vendor.js';
import { SEV_HANDLERS } from './model/sev.js';
import { HOST_INSN_HANDLERS } from './model/host-insn.js';
import { INJECT_HANDLERS } from './model/inject.js';
import { PAGING_HANDLERS } from './model/paging.js';
import { FILE_HANDLERS } from './model/files.js';
import { DIRTY_RING_HANDLERS } from './model/dirty-ring.js';

/** how the model runs each op: one entry per op (the compiler names a missing one) */
const MODEL_HANDLERS = { ...HOST_HANDLERS, ...FILE_HANDLERS, ...KVM_IOCTL_HANDLERS, ...DIRTY_RING_HANDLERS, ...PAGING_HANDLERS, ...VENDOR_HANDLERS, ...SEV_HANDLERS, ...HOST_INSN_HANDLERS, ...INJECT_HANDLERS } satisfies HandlerTable<ModelRun>;

/**
 * scenario profile → the model's kernel profile (docs/scenarios.md, "Profiles"): a named profile
 * is itself; `host` is this host's detected profile where the caller has one (the kvm target's),
 * else HOST_FALLBACK_PROFILE; no profile is upstream.
 */
export function modelProfile(profile: VmConfig['profile'], hostProfile?: KernelProfile): KernelProfile {
  if (profile === 'host') return hostProfile ?? HOST_FALLBACK_PROFILE;
  return profileByName(profile ?? 'upstream')!;
}

/** the name of modelProfile() */
export function modelProfileName(profile: VmConfig['profile'], hostProfile?: KernelProfile): string {
  return modelProfile(profile, hostProfile).name;
}

/** the vendor backends of the model, by VM type */
const MODEL_BACKENDS = {
  [KVM_X86_SEV_VM]: sevBackendFactory,
  [KVM_X86_SEV_ES_VM]: sevEsBackendFactory,
  [KVM_X86_SNP_VM]: snpBackendFactory,
  [KVM_X86_TDX_VM]: tdxBackendFactory,
};
/** the model's /dev/kvm, and a VM of any type on it (typed with every vendor's edge) */
export type ModelKvm = Kvm<typeof MODEL_BACKENDS>;
export type ModelVm = Vm<VmEdge<typeof MODEL_BACKENDS, number>>;

/** the vendor backend options of a scenario's `vm` block */
export function backendOptions(vm: VmConfig): NonNullable<Parameters<ModelKvm['createVm']>[0]>['options'] {
  if (vm.type === 'snp') {
    return { ...(vm.directmap !== undefined && { directmap: vm.directmap }), ...(vm.rmp_timing !== undefined && { rmpTiming: vm.rmp_timing }) };
  }
  if (vm.type === 'sev' || vm.type === 'sev-es') {
    return {
      ...(vm.memlock_limit !== undefined && { memlockLimit: vm.memlock_limit }),
      ...(vm.min_sev_asid !== undefined && { minSevAsid: vm.min_sev_asid }),
      ...(vm.max_sev_asid !== undefined && { maxSevAsid: vm.max_sev_asid }),
    };
  }
  if (vm.type === 'tdx') {
    return { ...(vm.huge_pages !== undefined && { hugePages: vm.huge_pages }), ...(vm.gpaw !== undefined && { gpaw: vm.gpaw }) };
  }
  return {};
}

/**
 * A VMM (QEMU's sev_snp_kvm_init()) issues KVM_SEV_INIT2 on an SNP VM right after KVM_CREATE_VM,
 * before any vCPU: the setup of an `snp` scenario does the same, unless one of its steps issues
 * `sev_init2` on it (then the scenario decides when, or whether it comes too late). SEV and
 * SEV-ES scenarios always write the step.
 */
export function vmmInitsSnp(scenario: Scenario, vm: VmConfig): boolean {
  if (vm.type !== 'snp') return false;
  const steps = [scenario.steps, ...Object.values(scenario.concurrent?.actors ?? {})];
  return !steps.some((list) => list.some((s) => s.op === 'sev_init2' && s.args.vm === undefined));
}

export interface ModelTarget extends Target {
  /** the model of the current scenario (between begin and end) */
  readonly kvm: ModelKvm | null;
  readonly vm: ModelVm | null;
  /** Vm.mmuStats() of the current VM */
  stats(): Record<string, number>;
}

/**
 * When the model's invariant checker runs (`ccmem run --invariants`, docs/scenarios.md):
 *  - `full`: after every step (the checker's cost grows with the VM, so a scenario with tens of
 *    thousands of memslots is quadratic);
 *  - `step`: after each of the first INVARIANT_EVERY_STEP_LIMIT steps, then after every
 *    INVARIANT_EVERY_STEP_LIMIT-th step and after the scenario's last step: every run is checked,
 *    a long one in linear time (a violation is reported at the first check that sees it);
 *  - `off`: never.
 */
export type InvariantMode = 'full' | 'step' | 'off';
export const INVARIANT_MODES: readonly InvariantMode[] = ['full', 'step', 'off'];
/** `step` mode: steps checked one by one before the schedule thins out */
export const INVARIANT_EVERY_STEP_LIMIT = 1000;

export interface ModelTargetOptions {
  /** when the invariant checker runs (default `step`) */
  invariants?: InvariantMode;
  /**
   * false: never run `checkVmInvariants(vm)` per step (as `invariants: 'off'`); the explorer
   * turns it off for the setup steps of each run and checks the whole VM once after them.
   */
  checkEachStep?: boolean;
  /**
   * The kernel profile `profile: host` follows: the detected profile of this host's KVM (the
   * kvm target's `profile`) when the model is compared with it; HOST_FALLBACK_PROFILE otherwise.
   */
  hostProfile?: KernelProfile;
}

export function createModelTarget(opts: ModelTargetOptions = {}): ModelTarget {
  const mode: InvariantMode = opts.checkEachStep === false ? 'off' : (opts.invariants ?? 'step');
  return new ModelTargetImpl(mode, opts.hostProfile);
}

class ModelTargetImpl implements ModelTarget {
  readonly name = 'model' as const;
  kvm: ModelKvm | null = null;
  vm: ModelVm | null = null;
  private run: ModelRun | null = null;
  /** invariant violations already reported (only new ones fail a step) */
  private reported = new Set<string>();

  /** steps executed since begin() */
  private executed = 0;
  /** index of the scenario's last step (sequential and concurrent) */
  private lastIndex = -1;

  constructor(
    private readonly invariants: InvariantMode,
    private readonly hostProfile: KernelProfile | undefined,
  ) {}

  begin(_scenario: Scenario, ctx: RunContext): void {
    const cfg = ctx.vm;
    const base = modelProfile(cfg.profile, this.hostProfile);
    // KVM_MEM_PCI_HOLE is an explicit opt-in, never part of a kernel profile
    const kernelProfile = cfg.pci_hole === true ? withPciHole(base) : base;
    const profile = kernelProfile.name;
    const kvm = new Kvm({
      profile: kernelProfile,
      process: new Process(undefined, { numaNodes: cfg.numa_nodes ?? 1 }),
      guestMemfd: guestMemfdFactory,
      backends: MODEL_BACKENDS,
      // the model's KVM_MEMORY_ENCRYPT_OP on default and SW-protected VMs is svm's sev_mem_enc_ioctl()
      memEncryptOpFallback: sevMemEncryptOpFallback,
    });
    const type = VM_TYPE_NUMBERS[VM_TYPE_NAMES[cfg.type]];
    if (!(kvm.vmTypes & (1 << type))) {
      throw new SkipScenario(`the ${profile} kernel profile has no ${cfg.type} VMs (KVM_CAP_VM_TYPES)`);
    }
    const unmet = unmetRequirement(_scenario.requires, kernelProfile);
    if (unmet) throw new SkipScenario(unmet);
    this.kvm = kvm;
    this.vm = kvm.createVm({ type, options: backendOptions(cfg), ...(cfg.type === 'tdx' && { rootLevel: cfg.gpaw === 52 ? 5 : 4 }) });
    if (vmmInitsSnp(_scenario, cfg)) this.vm.memoryEncryptOp({ cmd: 'sev_init2' });
    this.run = new ModelRun(kvm, this.vm, cfg);
    this.reported = new Set();
    this.executed = 0;
    this.lastIndex = _scenario.steps.length + Object.values(_scenario.concurrent?.actors ?? {}).reduce((n, a) => n + a.length, 0) - 1;
  }

  /**
   * The VMM process exits (Process.exit(): do_exit()), so each VM goes through kvm_destroy_vm()
   * once its last reference (its fd, its guest_memfd files) is gone. Returns what it left behind.
   */
  exit(): string[] {
    const run = this.run;
    const kvm = this.kvm;
    if (!run || !kvm) throw new Error('model target: exit() before begin()');
    const { process } = kvm;
    process.exit();
    const out: string[] = [];
    for (const vm of [run.vm, ...run.otherVms.values()]) {
      // the scenario's VM speaks plainly; a `create_vm` VM is named by its fd
      const who = vm === run.vm ? '' : `VM fd ${vm.fd}: `;
      if (vm.alive) out.push(`${who || 'the VM '}outlived the VMM: a reference to it was never dropped`);
      const left = vm.backend?.checkAfterDestroy?.() ?? [];
      for (const v of left.slice(0, EXIT_REPORT_LIMIT)) out.push(`${who}${v}`);
      if (left.length > EXIT_REPORT_LIMIT) out.push(`${who}... and ${left.length - EXIT_REPORT_LIMIT} more`);
    }
    // the exporting device outlives the VMM; its regions go when the device is unbound
    for (const region of run.deviceRegions) region.destroy();
    const pages = process.phys.allocatedPages;
    if (pages !== 0) out.push(`${pages} host page${pages === 1 ? '' : 's'} still allocated after the VMM exited`);
    return out;
  }

  end(): void {
    this.kvm = null;
    this.vm = null;
    this.run = null;
  }

  supports(op: TargetOpName): Support {
    // a kernel profile without CONFIG_KVM_GUEST_MEMFD has no KVM_CREATE_GUEST_MEMFD (the real-KVM
    // target skips the same way when the host lacks KVM_CAP_GUEST_MEMFD)
    const kvm = this.kvm;
    if (op === 'create_guest_memfd' && kvm?.profile.guestMemfd === false && this.run?.config.provider !== 'device_fd') {
      return { ok: false, reason: `missing KVM_CAP_GUEST_MEMFD (the ${kvm.profile.name} kernel profile has no CONFIG_KVM_GUEST_MEMFD)` };
    }
    return { ok: true };
  }

  /** the binary stats' MMU part (Vm.mmuStats(): both MMUs' leaves, the shadow MMU's counters) */
  stats(): Record<string, number> {
    return this.requireVm().mmuStats();
  }

  /** named invariants of `concurrent:` blocks: each runs the model's invariant checker */
  checkInvariant(name: string, _ctx: RunContext): string[] {
    const vm = this.requireVm();
    if (!KNOWN_INVARIANTS.has(name)) return [`unknown invariant "${name}" (known: ${[...KNOWN_INVARIANTS].join(', ')})`];
    return checkVmInvariants(vm);
  }

  execute(step: ResolvedStep, ctx: RunContext): Outcome {
    const run = this.run;
    if (!run) throw new Error('model target: execute() before begin()');
    const trace = ctx.trace ? recordTrace(run.kvm.tracer) : null;
    let outcome: Outcome;
    try {
      outcome = dispatch(MODEL_HANDLERS, step, run);
    } catch (e) {
      if (isKvmError(e)) outcome = { errno: e.code, detail: { check: e.check } };
      else if (e instanceof HostSignal) outcome = { signal: e.signal, detail: { addr: e.addr } };
      else throw e;
    } finally {
      trace?.stop();
    }
    this.executed++;
    const fresh = this.checkDue(step.index) ? this.newViolations() : [];
    if (fresh.length) outcome.detail = { ...outcome.detail, invariants: fresh };
    if (trace) outcome.events = trace.events;
    return outcome;
  }

  /* ------------------------------------------------------------------------------------ */

  private requireVm(): ModelVm {
    if (!this.vm) throw new Error('model target: no VM (begin() not called)');
    return this.vm;
  }

  /** whether the invariant checker runs after this step (InvariantMode) */
  private checkDue(index: number): boolean {
    switch (this.invariants) {
      case 'full':
        return true;
      case 'off':
        return false;
      case 'step':
        return this.executed <= INVARIANT_EVERY_STEP_LIMIT || this.executed % INVARIANT_EVERY_STEP_LIMIT === 0 || index >= this.lastIndex;
    }
  }

  private newViolations(): string[] {
    const vm = this.requireVm();
    if (!vm.alive) return [];
    const now = checkVmInvariants(vm);
    const fresh = now.filter((v) => !this.reported.has(v));
    this.reported = new Set(now);
    return fresh;
  }
}

/** the most leaks the exit reports per VM (one sentence each); the rest are counted */
const EXIT_REPORT_LIMIT = 8;

/** names a `concurrent:` block may list; each runs the full invariant checker */
const KNOWN_INVARIANTS = new Set(RUN_INVARIANT_NAMES);
