/**
 * A small stand-in target for testing the CLI as a process (CCMEM_TARGET_MODULE points here):
 * anonymous memory, memslot create/delete/overlap checks, read-only slots and MMIO exits.
 * It is not the model; it knows just enough to run simple memslot scenarios.
 */
import type { Outcome, ResolvedStep, Target, TargetName } from '@ccmem/scenario';

const PAGE = 4096;

interface Slot {
  id: number;
  gpa: number;
  size: number;
  hva: number;
  readonly: boolean;
}

class FakeTarget implements Target {
  private mem = new Map<number, number>(); // byte address → byte (sparse)
  private slots = new Map<number, Slot>();
  private vcpus = new Set<number>();
  private nextHva = 0x7f00_0000_0000;

  constructor(readonly name: TargetName) {}

  begin(): void {
    this.mem.clear();
    this.slots.clear();
    this.vcpus.clear();
    this.nextHva = 0x7f00_0000_0000;
  }

  end(): void {}

  supports(op: string) {
    return op.startsWith('snp_') || op.startsWith('tdx_')
      ? { ok: false as const, reason: `the fake target has no ${op}` }
      : { ok: true as const };
  }

  execute(step: ResolvedStep, ctx: { trace: boolean }): Outcome {
    const events = ctx.trace ? [] as { name: string; fields: Record<string, number | string | boolean> }[] : undefined;
    const out = this.run(step, events);
    if (events) out.events = events;
    return out;
  }

  private run(step: ResolvedStep, events?: { name: string; fields: Record<string, number | string | boolean> }[]): Outcome {
    switch (step.op) {
      case 'mmap': {
        const hva = this.nextHva;
        this.nextHva += Math.ceil(step.args.size / PAGE) * PAGE + PAGE;
        return { result: hva };
      }
      case 'write':
        this.store(step.args.addr, step.args.size, step.args.value);
        return {};
      case 'read':
        return { value: this.load(step.args.addr, step.args.size) };
      case 'create_vcpu':
        if (this.vcpus.has(step.args.id)) return { errno: 'EEXIST', detail: { check: 'kvm_vm_ioctl_create_vcpu: id in use' } };
        this.vcpus.add(step.args.id);
        return { result: step.args.id };
      case 'set_user_memory_region':
      case 'set_user_memory_region2': {
        const a = { ...step.args, guest_phys_addr: Number(step.args.guest_phys_addr), memory_size: Number(step.args.memory_size) };
        const id = a.slot & 0xffff;
        if ((a.flags ?? 0) & ~0x3) return { errno: 'EINVAL', detail: { check: 'check_memory_region_flags' } };
        if (id >= 32764) return { errno: 'EINVAL', detail: { check: 'slot id >= KVM_USER_MEM_SLOTS' } };
        if (a.memory_size % PAGE || a.guest_phys_addr % PAGE || a.userspace_addr % PAGE) {
          return { errno: 'EINVAL', detail: { check: 'kvm_set_memory_region: alignment' } };
        }
        if (a.memory_size === 0) {
          if (!this.slots.delete(id)) return { errno: 'EINVAL', detail: { check: 'delete: no such slot' } };
          events?.push({ name: 'kvm_userspace_memory_region', fields: { slot: id, change: 'DELETE' } });
          return {};
        }
        for (const s of this.slots.values()) {
          if (s.id !== id && a.guest_phys_addr < s.gpa + s.size && s.gpa < a.guest_phys_addr + a.memory_size) {
            return { errno: 'EEXIST', detail: { check: 'kvm_set_memory_region: gfn range overlaps another memslot' } };
          }
        }
        this.slots.set(id, { id, gpa: a.guest_phys_addr, size: a.memory_size, hva: a.userspace_addr, readonly: ((a.flags ?? 0) & 2) !== 0 });
        events?.push({ name: 'kvm_userspace_memory_region', fields: { slot: id, guest_phys_addr: a.guest_phys_addr, memory_size: a.memory_size } });
        return {};
      }
      case 'guest_read': {
        const s = this.slotOf(step.args.gpa);
        if (!s) return { exit: { reason: 'KVM_EXIT_MMIO', mmio: { phys_addr: step.args.gpa, len: step.args.size, is_write: false, data: 0n } } };
        events?.push({ name: 'kvm_mmu_set_spte', fields: { gfn: Math.floor(step.args.gpa / PAGE), level: 1 } });
        return { value: this.load(s.hva + step.args.gpa - s.gpa, step.args.size) };
      }
      case 'guest_write': {
        const s = this.slotOf(step.args.gpa);
        if (!s || s.readonly) {
          return { exit: { reason: 'KVM_EXIT_MMIO', mmio: { phys_addr: step.args.gpa, len: step.args.size, is_write: true, data: step.args.value } } };
        }
        this.store(s.hva + step.args.gpa - s.gpa, step.args.size, step.args.value);
        return {};
      }
      case 'complete_mmio':
        return step.args.data !== undefined ? { value: step.args.data } : {};
      default:
        return { skipped: `the fake target has no ${step.op}` };
    }
  }

  private slotOf(gpa: number): Slot | undefined {
    for (const s of this.slots.values()) if (gpa >= s.gpa && gpa < s.gpa + s.size) return s;
    return undefined;
  }

  private store(addr: number, size: number, value: bigint): void {
    for (let i = 0; i < size; i++) this.mem.set(addr + i, Number((value >> BigInt(8 * i)) & 0xffn));
  }

  private load(addr: number, size: number): bigint {
    let v = 0n;
    for (let i = size - 1; i >= 0; i--) v = (v << 8n) | BigInt(this.mem.get(addr + i) ?? 0);
    return v;
  }
}

/** CCMEM_TARGET_MODULE entry point. CCMEM_FAKE_TARGETS limits which names exist (default: model). */
export function createTarget(name: TargetName): Target | undefined {
  const names = (process.env.CCMEM_FAKE_TARGETS ?? 'model').split(',');
  return names.includes(name) ? new FakeTarget(name) : undefined;
}
