/**
 * A small stand-in target for testing the CLI as a process (CCMEM_TARGET_MODULE points here):
 * anonymous memory, memslot create/delete/overlap checks, read-only slots and MMIO exits.
 * It is not the model; it knows just enough to run simple memslot scenarios. It lives outside
 * src/ so that it is not published.
 */
import { dispatch, tableSupport, unsupported, type HandlerTable, type Outcome, type ResolvedStep, type Target, type TargetName, type TargetOpName } from '@ccmem/scenario';

const PAGE = 4096;
const NONE = unsupported('the fake target does not model this op');

type Events = { name: string; fields: Record<string, number | string | boolean> }[];

interface Slot {
  id: number;
  gpa: number;
  size: number;
  hva: number;
  readonly: boolean;
}

class FakeTarget implements Target {
  readonly mem = new Map<number, number>(); // byte address → byte (sparse)
  readonly slots = new Map<number, Slot>();
  readonly vcpus = new Set<number>();
  nextHva = 0x7f00_0000_0000;

  constructor(readonly name: TargetName) {}

  begin(): void {
    this.mem.clear();
    this.slots.clear();
    this.vcpus.clear();
    this.nextHva = 0x7f00_0000_0000;
  }

  end(): void {}

  supports(op: TargetOpName) {
    return tableSupport(HANDLERS, op);
  }

  execute(step: ResolvedStep, ctx: { trace: boolean }): Outcome {
    const events: Events | undefined = ctx.trace ? [] : undefined;
    const out = dispatch(HANDLERS, step, { t: this, events });
    if (events) out.events = events;
    return out;
  }

  slotOf(gpa: number): Slot | undefined {
    for (const s of this.slots.values()) if (gpa >= s.gpa && gpa < s.gpa + s.size) return s;
    return undefined;
  }

  store(addr: number, size: number, value: bigint): void {
    for (let i = 0; i < size; i++) this.mem.set(addr + i, Number((value >> BigInt(8 * i)) & 0xffn));
  }

  load(addr: number, size: number): bigint {
    let v = 0n;
    for (let i = size - 1; i >= 0; i--) v = (v << 8n) | BigInt(this.mem.get(addr + i) ?? 0);
    return v;
  }
}

const HANDLERS = {
  mmap(a, { t }) {
    const hva = t.nextHva;
    t.nextHva += Math.ceil(a.size / PAGE) * PAGE + PAGE;
    return { result: hva };
  },
  write(a, { t }) {
    t.store(a.addr, a.size, a.value);
    return {};
  },
  read: (a, { t }) => ({ value: t.load(a.addr, a.size) }),
  create_vcpu(a, { t }) {
    if (t.vcpus.has(a.id)) return { errno: 'EEXIST', detail: { check: 'kvm_vm_ioctl_create_vcpu: id in use' } };
    t.vcpus.add(a.id);
    return { result: a.id };
  },
  set_user_memory_region: setMemoryRegion,
  set_user_memory_region2: setMemoryRegion,
  guest_read(a, { t, events }) {
    const s = t.slotOf(a.gpa);
    if (!s) return { exit: { reason: 'KVM_EXIT_MMIO', mmio: { phys_addr: a.gpa, len: a.size, is_write: false, data: 0n } } };
    events?.push({ name: 'kvm_mmu_set_spte', fields: { gfn: Math.floor(a.gpa / PAGE), level: 1 } });
    return { value: t.load(s.hva + a.gpa - s.gpa, a.size) };
  },
  guest_write(a, { t }) {
    const s = t.slotOf(a.gpa);
    // CCMEM_FAKE_KVM_DIFFERS=1: the `kvm` stand-in ignores read-only slots, so `ccmem diff` has a
    // real difference to find
    const readonly = s?.readonly === true && !(t.name === 'kvm' && process.env.CCMEM_FAKE_KVM_DIFFERS === '1');
    if (!s || readonly) return { exit: { reason: 'KVM_EXIT_MMIO', mmio: { phys_addr: a.gpa, len: a.size, is_write: true, data: a.value } } };
    t.store(s.hva + a.gpa - s.gpa, a.size, a.value);
    return {};
  },
  complete_mmio: (a) => (a.data !== undefined ? { value: a.data } : {}),
  munmap: NONE, close: NONE, create_guest_memfd: NONE, fallocate: NONE, gmem_poison: NONE, device_revoke: NONE,
  set_memory_attributes: NONE, get_dirty_log: NONE, clear_dirty_log: NONE, check_extension: NONE, enable_cap: NONE,
  guest_fetch: NONE, complete_hypercall: NONE, pre_fault_memory: NONE,
  set_sregs: NONE, guest_page_table: NONE, guest_load_cr3: NONE, guest_invlpg: NONE, guest_read_gva: NONE,
  guest_write_gva: NONE, enter_guest_mode: NONE, leave_guest_mode: NONE, l2_read: NONE, l2_write: NONE,
  snp_launch_start: NONE, snp_launch_update: NONE, snp_launch_finish: NONE,
  guest_pvalidate: NONE, guest_psc: NONE, guest_psc_msr: NONE, guest_rmpadjust: NONE,
  tdx_init_vm: NONE, tdx_init_vcpu: NONE, tdx_init_mem_region: NONE, tdx_finalize_vm: NONE, guest_accept: NONE,
  snp_rmp_insn: NONE, snp_host_access: NONE, tdx_seamcall: NONE, tdx_pending_interrupt: NONE, tdx_inject_busy: NONE, snp_inject_fail: NONE,
  guest_map_gpa_range: NONE, sev_init2: NONE, sev_init: NONE, sev_launch_start: NONE, sev_launch_update_data: NONE,
  sev_launch_update_vmsa: NONE, sev_launch_measure: NONE, sev_launch_finish: NONE, sev_guest_status: NONE,
  memory_encrypt_reg_region: NONE, memory_encrypt_unreg_region: NONE, guest_ghcb_msr: NONE, guest_ghcb_terminate: NONE,
  assert: NONE,
  fd_read: NONE, fd_write: NONE, fstat: NONE, memfd_create: NONE, open_dev_kvm: NONE, madvise: NONE, mprotect: NONE,
  mbind: NONE, get_mempolicy: NONE, move_pages: NONE, create_vm: NONE, vm_fd: NONE, vcpu_fd: NONE, set_nr_mmu_pages: NONE, run_vcpu: NONE, set_idt: NONE, guest_exception: NONE,
  harvest_dirty_ring: NONE, reset_dirty_rings: NONE, mmap_dirty_ring: NONE, guest_touch: NONE,
} satisfies HandlerTable<{ t: FakeTarget; events: Events | undefined }>;

function setMemoryRegion(
  exact: { slot: number; flags?: number; guest_phys_addr: number | bigint; memory_size: number | bigint; userspace_addr: number },
  { t, events }: { t: FakeTarget; events: Events | undefined },
): Outcome {
  // the exact u64 fields as numbers: this stand-in only handles small addresses
  const a = { ...exact, guest_phys_addr: Number(exact.guest_phys_addr), memory_size: Number(exact.memory_size) };
  const id = a.slot & 0xffff;
  if ((a.flags ?? 0) & ~0x3) return { errno: 'EINVAL', detail: { check: 'check_memory_region_flags' } };
  if (id >= 32764) return { errno: 'EINVAL', detail: { check: 'slot id >= KVM_USER_MEM_SLOTS' } };
  if (a.memory_size % PAGE || a.guest_phys_addr % PAGE || a.userspace_addr % PAGE) {
    return { errno: 'EINVAL', detail: { check: 'kvm_set_memory_region: alignment' } };
  }
  if (a.memory_size === 0) {
    if (!t.slots.delete(id)) return { errno: 'EINVAL', detail: { check: 'delete: no such slot' } };
    events?.push({ name: 'kvm_userspace_memory_region', fields: { slot: id, change: 'DELETE' } });
    return {};
  }
  for (const s of t.slots.values()) {
    if (s.id !== id && a.guest_phys_addr < s.gpa + s.size && s.gpa < a.guest_phys_addr + a.memory_size) {
      return { errno: 'EEXIST', detail: { check: 'kvm_set_memory_region: gfn range overlaps another memslot' } };
    }
  }
  t.slots.set(id, { id, gpa: a.guest_phys_addr, size: a.memory_size, hva: a.userspace_addr, readonly: ((a.flags ?? 0) & 2) !== 0 });
  events?.push({ name: 'kvm_userspace_memory_region', fields: { slot: id, guest_phys_addr: a.guest_phys_addr, memory_size: a.memory_size } });
  return {};
}

/** CCMEM_TARGET_MODULE entry point. CCMEM_FAKE_TARGETS limits which names exist (default: model). */
export function createTarget(name: TargetName): Target | undefined {
  const names = (process.env.CCMEM_FAKE_TARGETS ?? 'model').split(',');
  return names.includes(name) ? new FakeTarget(name) : undefined;
}
