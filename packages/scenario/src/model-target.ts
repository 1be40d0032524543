/**
 * The `model` target: every scenario op runs on the ccmem model (@ccmem/core with the
 * guest_memfd / device-fd providers and the SEV-SNP and TDX backends).
 *
 * - A failed uAPI call (KvmError) is reported as `errno` with `detail.check`, the kernel rule;
 *   a VMM access the host answers with a signal (HostSignal) as `signal`. Nothing is thrown
 *   for uAPI failures.
 * - After every step `checkVmInvariants(vm)` runs; violations that appeared in this step are
 *   reported in `detail.invariants`, and the runner fails such a step. With
 *   `createModelTarget({ checkEachStep: false })` the per-step check is skipped; the caller
 *   then runs `checkVmInvariants` itself (the explorer checks once after its setup steps).
 * - With `ctx.trace`, the kernel events of each step are returned in `events`.
 */
import {
  checkVmInvariants,
  errnoName,
  fail,
  GUEST_MEMFD_FLAG_MMAP,
  HostSignal,
  isKvmError,
  Kvm,
  KVM_X86_DEFAULT_VM,
  KVM_X86_SNP_VM,
  KVM_X86_SW_PROTECTED_VM,
  KVM_X86_TDX_VM,
  PAGE_SIZE,
  profileByName,
  recordTrace,
  withPciHole,
  type GuestAccessResult,
  type GuestOpResult,
  type KvmFile,
  type MappingBacking,
  type Vcpu,
  type Vm,
} from '@ccmem/core';
import { createDeviceFd, DeviceFdFile, guestMemfdFactory, GuestMemfd } from '@ccmem/gmem';
import { snpBackendFactory } from '@ccmem/snp';
import { tdxBackendFactory } from '@ccmem/tdx';
import { MAP_PRIVATE, MAP_SHARED, PROT_READ, PROT_WRITE } from './numbers.js';
import { RUN_INVARIANT_NAMES, type Scenario, type VmConfig, type VmType } from './schema.js';
import { SkipScenario, type Outcome, type ResolvedStep, type RunContext, type Support, type Target, type TargetOpName } from './target.js';
import { GenericHypercalls } from './model/hypercall.js';
import { inspectState } from './model/inspect.js';
import { retAlias, type RetFamily } from './model/vendor-ret.js';

const VM_TYPE_NUMBERS: Readonly<Record<VmType, number>> = {
  default: KVM_X86_DEFAULT_VM,
  'sw-protected': KVM_X86_SW_PROTECTED_VM,
  snp: KVM_X86_SNP_VM,
  tdx: KVM_X86_TDX_VM,
};

/** scenario profile → the model's kernel profile (docs/scenarios.md, "Profiles") */
export function modelProfileName(profile: VmConfig['profile']): string {
  return profile === 'host' ? 'linux-6.18' : 'upstream';
}

/** the vendor backend options of a scenario's `vm` block */
export function backendOptions(vm: VmConfig): Record<string, unknown> {
  if (vm.type === 'snp') {
    return { ...(vm.directmap !== undefined && { directmap: vm.directmap }), ...(vm.rmp_timing !== undefined && { rmpTiming: vm.rmp_timing }) };
  }
  if (vm.type === 'tdx') {
    return { ...(vm.huge_pages !== undefined && { hugePages: vm.huge_pages }), ...(vm.gpaw !== undefined && { gpaw: vm.gpaw }) };
  }
  return {};
}

const GUEST_OPS = new Set<TargetOpName>([
  'guest_read',
  'guest_write',
  'guest_fetch',
  'guest_pvalidate',
  'guest_psc',
  'guest_psc_msr',
  'guest_rmpadjust',
  'guest_accept',
  'guest_map_gpa_range',
]);

export interface ModelTarget extends Target {
  /** the model of the current scenario (between begin and end) */
  readonly kvm: Kvm | null;
  readonly vm: Vm | null;
}

export interface ModelTargetOptions {
  /**
   * Run `checkVmInvariants(vm)` after every step and report new violations in
   * `detail.invariants` (default true). The explorer turns it off for the setup steps of each
   * run and checks the whole VM once after them.
   */
  checkEachStep?: boolean;
}

export function createModelTarget(opts: ModelTargetOptions = {}): ModelTarget {
  return new ModelTargetImpl(opts.checkEachStep ?? true);
}

class ModelTargetImpl implements ModelTarget {
  readonly name = 'model' as const;
  kvm: Kvm | null = null;
  vm: Vm | null = null;
  private config: VmConfig | null = null;
  private hypercalls = new GenericHypercalls();
  /** invariant violations already reported (only new ones fail a step) */
  private reported = new Set<string>();

  constructor(private readonly checkEachStep: boolean) {}

  begin(_scenario: Scenario, ctx: RunContext): void {
    const cfg = ctx.vm;
    const profile = modelProfileName(cfg.profile);
    const kvm = new Kvm({
      // KVM_MEM_PCI_HOLE is an explicit opt-in, never part of a kernel profile
      profile: cfg.pci_hole === true ? withPciHole(profileByName(profile)!) : profile,
      guestMemfd: guestMemfdFactory,
      backends: { [KVM_X86_SNP_VM]: snpBackendFactory, [KVM_X86_TDX_VM]: tdxBackendFactory },
    });
    const type = VM_TYPE_NUMBERS[cfg.type];
    if (!(kvm.vmTypes & (1 << type))) {
      throw new SkipScenario(`the ${profile} kernel profile has no ${cfg.type} VMs (KVM_CAP_VM_TYPES)`);
    }
    this.kvm = kvm;
    this.vm = kvm.createVm({ type, options: backendOptions(cfg), ...(cfg.type === 'tdx' && { rootLevel: cfg.gpaw === 52 ? 5 : 4 }) });
    this.config = cfg;
    this.hypercalls = new GenericHypercalls();
    this.reported = new Set();
  }

  end(): void {
    this.kvm = null;
    this.vm = null;
    this.config = null;
  }

  supports(op: TargetOpName, _ctx: RunContext): Support {
    // a kernel profile without CONFIG_KVM_GUEST_MEMFD has no KVM_CREATE_GUEST_MEMFD (the real-KVM
    // target skips the same way when the host lacks KVM_CAP_GUEST_MEMFD)
    if (op === 'create_guest_memfd' && this.kvm?.profile.guestMemfd === false && this.config?.provider !== 'device_fd') {
      return { ok: false, reason: `missing KVM_CAP_GUEST_MEMFD (the ${this.kvm.profile.name} kernel profile has no CONFIG_KVM_GUEST_MEMFD)` };
    }
    return { ok: true };
  }

  /** named invariants of `concurrent:` blocks: each runs the model's invariant checker */
  checkInvariant(name: string, _ctx: RunContext): string[] {
    const vm = this.requireVm();
    if (!KNOWN_INVARIANTS.has(name)) return [`unknown invariant "${name}" (known: ${[...KNOWN_INVARIANTS].join(', ')})`];
    return checkVmInvariants(vm);
  }

  execute(step: ResolvedStep, ctx: RunContext): Outcome {
    const kvm = this.kvm;
    if (!kvm || !this.vm) throw new Error('model target: execute() before begin()');
    const trace = ctx.trace ? recordTrace(kvm.tracer) : null;
    let outcome: Outcome;
    try {
      outcome = this.run(step);
    } catch (e) {
      if (isKvmError(e)) outcome = { errno: e.code, detail: { check: e.check } };
      else if (e instanceof HostSignal) outcome = { signal: e.signal, detail: { addr: e.addr } };
      else throw e;
    } finally {
      trace?.stop();
    }
    const fresh = this.checkEachStep ? this.newViolations() : [];
    if (fresh.length) outcome.detail = { ...outcome.detail, invariants: fresh };
    if (trace) outcome.events = trace.events;
    return outcome;
  }

  /* ------------------------------------------------------------------------------------ */

  private requireVm(): Vm {
    if (!this.vm) throw new Error('model target: no VM (begin() not called)');
    return this.vm;
  }

  private newViolations(): string[] {
    const vm = this.requireVm();
    if (!vm.alive) return [];
    const now = checkVmInvariants(vm);
    const fresh = now.filter((v) => !this.reported.has(v));
    this.reported = new Set(now);
    return fresh;
  }

  private vcpu(id: number): Vcpu {
    const v = this.requireVm().vcpu(id);
    if (!v) fail('EBADF', `vCPU ${id} was not created (KVM_CREATE_VCPU)`);
    return v;
  }

  private file(fd: number): KvmFile {
    const f = this.kvm!.process.getFile(fd);
    if (!f) fail('EBADF', `fd ${fd} is not open`);
    return f;
  }

  private run(step: ResolvedStep): Outcome {
    const kvm = this.kvm!;
    const vm = this.requireVm();
    const mm = kvm.process.mm;
    if (GUEST_OPS.has(step.op)) this.completePendingMmio((step.args as { vcpu: number }).vcpu);

    switch (step.op) {
      /* -- the VMM process -- */
      case 'mmap': {
        const a = step.args;
        const prot = a.prot ?? PROT_READ | PROT_WRITE;
        const flags = a.flags ?? MAP_SHARED;
        const type = flags & (MAP_SHARED | MAP_PRIVATE);
        if (type !== MAP_SHARED && type !== MAP_PRIVATE) fail('EINVAL', 'mmap: exactly one of MAP_SHARED and MAP_PRIVATE');
        let backing: MappingBacking | undefined;
        if (a.fd !== undefined) {
          const f = this.file(a.fd) as KvmFile & Partial<MappingBacking>;
          if (typeof f.checkMmap !== 'function' || typeof f.faultPage !== 'function') fail('ENODEV', `mmap: a ${f.kind} fd cannot be mapped`);
          backing = f as MappingBacking;
        }
        const hva = mm.mmap({
          length: a.size,
          prot: { read: (prot & PROT_READ) !== 0, write: (prot & PROT_WRITE) !== 0 },
          shared: type === MAP_SHARED,
          ...(backing && { backing }),
          ...(a.offset !== undefined && { fileOffset: a.offset }),
          ...(a.hugepage !== undefined && { hugepage: '2M' as const }),
        });
        return { result: hva };
      }
      case 'munmap':
        mm.munmap(step.args.addr, step.args.size);
        return {};
      case 'read':
        return { value: mm.read(step.args.addr, step.args.size) };
      case 'write':
        mm.write(step.args.addr, step.args.size, step.args.value);
        return {};
      case 'close':
        kvm.process.close(step.args.fd);
        return {};

      /* -- memory providers -- */
      case 'create_guest_memfd': {
        const flags = step.args.flags ?? 0;
        if (this.config!.provider === 'device_fd') {
          // the device exports a region of the requested size; GUEST_MEMFD_FLAG_MMAP stands
          // for a region the VMM may map (hostAccessible)
          if (flags & ~GUEST_MEMFD_FLAG_MMAP) fail('EINVAL', 'device fd: only GUEST_MEMFD_FLAG_MMAP has a device equivalent');
          const file = createDeviceFd(vm, { size: step.args.size, hostAccessible: (flags & GUEST_MEMFD_FLAG_MMAP) !== 0 });
          return { result: kvm.process.installFd(file) };
        }
        return { result: vm.createGuestMemfd({ size: step.args.size, flags }) };
      }
      case 'fallocate': {
        const f = this.file(step.args.fd);
        // vfs_fallocate(): a file without ->fallocate is EOPNOTSUPP
        if (!(f instanceof GuestMemfd)) fail('EOPNOTSUPP', `fallocate: a ${f.kind} fd has no fallocate`);
        f.fallocate(step.args.mode, step.args.offset, step.args.len);
        return {};
      }
      case 'gmem_poison': {
        const f = this.file(step.args.fd);
        if (!(f instanceof GuestMemfd)) fail('EINVAL', `gmem_poison: a ${f.kind} fd is not a guest_memfd`);
        const poisoned = f.poison(Math.floor(step.args.offset / PAGE_SIZE));
        return { detail: { poisoned } };
      }
      case 'device_revoke': {
        const f = this.file(step.args.fd);
        if (!(f instanceof DeviceFdFile)) fail('EINVAL', `device_revoke: a ${f.kind} fd is not a device fd`);
        f.revoke();
        return {};
      }

      /* -- VM ioctls -- */
      case 'set_user_memory_region': {
        const a = step.args;
        vm.setUserMemoryRegion({ slot: a.slot, flags: a.flags ?? 0, guest_phys_addr: a.guest_phys_addr, memory_size: a.memory_size, userspace_addr: a.userspace_addr });
        return {};
      }
      case 'set_user_memory_region2': {
        const a = step.args;
        vm.setUserMemoryRegion2({
          slot: a.slot,
          flags: a.flags ?? 0,
          guest_phys_addr: a.guest_phys_addr,
          memory_size: a.memory_size,
          userspace_addr: a.userspace_addr,
          guest_memfd_offset: a.guest_memfd_offset ?? 0,
          guest_memfd: a.guest_memfd ?? 0,
        });
        return {};
      }
      case 'set_memory_attributes': {
        const a = step.args;
        vm.setMemoryAttributes({ address: a.address, size: a.size, attributes: a.attributes, flags: a.flags ?? 0 });
        return {};
      }
      case 'get_dirty_log': {
        const bitmap = vm.getDirtyLog({ slot: step.args.slot });
        const dirty_pages: number[] = [];
        for (let i = 0; i < bitmap.length; i++) {
          const byte = bitmap[i]!;
          if (byte === 0) continue;
          for (let b = 0; b < 8; b++) if (byte & (1 << b)) dirty_pages.push(i * 8 + b);
        }
        return { dirty_pages };
      }
      case 'clear_dirty_log': {
        const a = step.args;
        const numPages = a.num_pages >>> 0;
        // the user buffer: DIV_ROUND_UP(num_pages, 64) longs, bit 0 = first_page
        const bytes = new Uint8Array(Math.ceil(numPages / 64) * 8);
        const bits = a.dirty_bitmap ?? Array.from({ length: numPages }, (_, i) => i);
        for (const bit of bits) if (bit >= 0 && bit < bytes.length * 8) bytes[bit >>> 3]! |= 1 << (bit & 7);
        vm.clearDirtyLog({ slot: a.slot, first_page: a.first_page, num_pages: a.num_pages, dirty_bitmap: bytes });
        return {};
      }
      case 'check_extension':
        return { value: step.args.on === 'system' ? kvm.checkExtension(step.args.cap) : vm.checkExtension(step.args.cap) };
      case 'enable_cap':
        vm.enableCap({ cap: step.args.cap, flags: step.args.flags ?? 0, args: step.args.args ?? [] });
        return {};
      case 'create_vcpu':
        return { result: vm.createVcpu(step.args.id).id };

      /* -- vCPU: guest accesses and exits -- */
      case 'guest_read': {
        const a = step.args;
        return accessOutcome(this.vcpu(a.vcpu).access({ gpa: a.gpa, size: a.size, kind: 'read', private: a.private ?? false }));
      }
      case 'guest_write': {
        const a = step.args;
        return accessOutcome(this.vcpu(a.vcpu).access({ gpa: a.gpa, size: a.size, kind: 'write', value: a.value, private: a.private ?? false }));
      }
      case 'guest_fetch': {
        const a = step.args;
        return accessOutcome(this.vcpu(a.vcpu).access({ gpa: a.gpa, size: 1, kind: 'fetch', private: a.private ?? false }));
      }
      case 'complete_mmio': {
        const vcpu = this.vcpu(step.args.vcpu);
        // KVM_RUN after a KVM_EXIT_MMIO: a read takes kvm_run.mmio.data; a write is done;
        // either may exit again for the next fragment of a page-crossing access
        if (vcpu.mmioNeeded) return accessOutcome(vcpu.completeMmio(step.args.data ?? 0n));
        return {};
      }
      case 'complete_hypercall': {
        const vcpu = this.vcpu(step.args.vcpu);
        const generic = this.hypercalls.complete(vcpu.id, step.args.ret);
        if (generic) return guestOpOutcome(generic, 'hypercall');
        const r = vcpu.completeHypercall(step.args.ret);
        if (r === null) return { detail: { reason: 'no hypercall was pending: KVM_RUN re-entered the guest' } };
        return guestOpOutcome(r, vm.vmType === KVM_X86_TDX_VM ? 'tdx' : 'other');
      }
      case 'pre_fault_memory': {
        const a = step.args;
        const range = { gpa: a.gpa, size: a.size, flags: a.flags ?? 0 };
        try {
          this.vcpu(a.vcpu).preFaultMemory(range);
        } catch (e) {
          // the remaining range is copied back even when the ioctl fails
          if (isKvmError(e)) return { errno: e.code, gpa: Number(range.gpa), size: Number(range.size), detail: { check: e.check } };
          throw e;
        }
        return { gpa: Number(range.gpa), size: Number(range.size) };
      }

      /* -- SEV-SNP -- */
      case 'snp_launch_start':
        return ioctlOutcome(vm.memoryEncryptOp('snp_launch_start', { policy: step.args.policy, flags: step.args.flags ?? 0 }));
      case 'snp_launch_update': {
        const a = step.args;
        return ioctlOutcome(vm.memoryEncryptOp('snp_launch_update', { gfn_start: a.gfn_start, len: a.len, type: a.type, uaddr: a.uaddr ?? 0, flags: a.flags ?? 0 }));
      }
      case 'snp_launch_finish':
        return ioctlOutcome(vm.memoryEncryptOp('snp_launch_finish', { flags: step.args.flags ?? 0, ...(step.args.host_data !== undefined && { host_data: step.args.host_data }) }));
      case 'guest_pvalidate': {
        const a = step.args;
        const r = this.vcpu(a.vcpu).guestOp({ op: 'pvalidate', args: { gpa: a.gpa, size: a.page_size === 2 * 1024 * 1024 ? '2M' : '4K', validate: a.validate } });
        return guestOpOutcome(r, 'pvalidate');
      }
      case 'guest_rmpadjust': {
        const a = step.args;
        const args = { gpa: a.gpa, size: a.page_size === 2 * 1024 * 1024 ? '2M' : '4K', vmpl: a.vmpl, perms: a.perms, vmsa: a.vmsa === true };
        return guestOpOutcome(this.vcpu(a.vcpu).guestOp({ op: 'rmpadjust', args }), 'other');
      }
      case 'guest_psc_msr':
        return guestOpOutcome(this.vcpu(step.args.vcpu).guestOp({ op: 'psc_msr', args: { gpa: step.args.gpa, op: step.args.operation } }), 'other');
      case 'guest_psc': {
        const a = step.args;
        const entries = a.entries.map((e) => ({ gfn: Math.floor(e.gpa / PAGE_SIZE), op: e.operation, pagesize: e.page_size === 2 * 1024 * 1024 ? '2M' : '4K' }));
        return guestOpOutcome(this.vcpu(a.vcpu).guestOp({ op: 'psc', args: { entries } }), 'other');
      }

      /* -- TDX -- */
      case 'tdx_init_vm':
        return ioctlOutcome(vm.memoryEncryptOp('tdx_init_vm', { ...(step.args.attributes !== undefined && { attributes: step.args.attributes }), ...(step.args.xfam !== undefined && { xfam: step.args.xfam }) }));
      case 'tdx_finalize_vm':
        return ioctlOutcome(vm.memoryEncryptOp('tdx_finalize_vm', {}));
      case 'tdx_init_vcpu':
        return ioctlOutcome(this.vcpu(step.args.vcpu).memoryEncryptOp('tdx_init_vcpu', {}));
      case 'tdx_init_mem_region': {
        const a = step.args;
        return ioctlOutcome(
          this.vcpu(a.vcpu).memoryEncryptOp('tdx_init_mem_region', { source_addr: a.source_addr, gpa: a.gpa, nr_pages: a.nr_pages, flags: a.flags ?? 0 }),
        );
      }
      case 'guest_accept': {
        const a = step.args;
        const level = a.page_size === 2 * 1024 * 1024 ? 2 : 1;
        return guestOpOutcome(this.vcpu(a.vcpu).guestOp({ op: 'accept', args: { gpa: a.gpa, level } }), 'tdx');
      }

      /* -- both vendors -- */
      case 'guest_map_gpa_range': {
        const a = step.args;
        const vcpu = this.vcpu(a.vcpu);
        if (vm.vmType === KVM_X86_TDX_VM) {
          // TDG.VP.VMCALL<MapGPA>: the shared bit of the gpa says which way
          return guestOpOutcome(vcpu.guestOp({ op: 'map_gpa', args: { gpa: a.gpa, size: a.npages * PAGE_SIZE } }), 'tdx');
        }
        if (vm.dead) return { errno: 'EIO', detail: { check: `KVM_RUN: the VM is dead (${vm.deadReason})` } };
        return guestOpOutcome(this.hypercalls.mapGpaRange(vm, vcpu.id, a.gpa, a.npages, a.attributes ?? 0), 'hypercall');
      }

      /* -- model state -- */
      case 'assert': {
        const a = step.args as Record<string, unknown>;
        const state = inspectState(vm, kvm.process, {
          what: a.what as never,
          ...(['gpa', 'gfn', 'pfn', 'slot', 'as_id', 'fd', 'offset', 'vcpu'] as const).reduce<Record<string, number>>((acc, k) => {
            if (typeof a[k] === 'number') acc[k] = a[k];
            return acc;
          }, {}),
        });
        return { detail: state };
      }
    }
  }

  /** docs/scenarios.md: a guest op on a vCPU with an MMIO read pending completes it with 0 */
  private completePendingMmio(vcpuId: number): void {
    const vcpu = this.requireVm().vcpu(vcpuId);
    // (every remaining fragment of a page-crossing access, too)
    for (let i = 0; vcpu?.mmioNeeded && i < 16; i++) vcpu.completeMmio(0n);
  }
}

/** names a `concurrent:` block may list; each runs the full invariant checker */
const KNOWN_INVARIANTS = new Set(RUN_INVARIANT_NAMES);

function accessOutcome(r: GuestAccessResult): Outcome {
  const out: Outcome = {};
  if (r.errno !== undefined) out.errno = r.errno;
  if (r.exit !== undefined) out.exit = r.exit;
  if (r.value !== undefined) out.value = r.value;
  if (r.exception !== undefined) out.exception = r.exception.vector;
  const detail: Record<string, unknown> = {};
  if (r.reason !== undefined) detail.check = r.reason;
  if (r.exception !== undefined) detail.exception = r.exception;
  if (Object.keys(detail).length) out.detail = detail;
  return out;
}

function guestOpOutcome(r: GuestOpResult, family: RetFamily): Outcome {
  const out: Outcome = {};
  if (r.errno !== undefined) out.errno = r.errno;
  if (r.exit !== undefined) out.exit = r.exit;
  const detail: Record<string, unknown> = { ...(r.detail ?? {}) };
  if (r.ret !== undefined) {
    out.ret = r.ret;
    const alias = retAlias(r.ret, family);
    if (alias !== undefined) detail.ret_alias = alias;
  }
  if (typeof detail.reason === 'string' && detail.check === undefined) detail.check = detail.reason;
  if (Object.keys(detail).length) out.detail = detail;
  return out;
}

/** a KVM_MEMORY_ENCRYPT_OP result: ret < 0 is the ioctl failing with that errno */
function ioctlOutcome(r: { ret: number; out?: Readonly<Record<string, unknown>> }): Outcome {
  const detail: Record<string, unknown> = { ...(r.out ?? {}) };
  if (r.ret < 0) {
    const name = errnoOf(-r.ret);
    return { errno: name, detail: { ...detail, check: `KVM_MEMORY_ENCRYPT_OP returned ${r.ret}` } };
  }
  return Object.keys(detail).length ? { detail } : {};
}

function errnoOf(n: number): NonNullable<Outcome['errno']> {
  return errnoName(n) ?? 'EIO';
}
