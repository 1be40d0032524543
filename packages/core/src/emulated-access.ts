/**
 * A guest access performed by KVM's x86 instruction emulator instead of by the CPU
 * (x86_emulate_instruction() → emulator_read_write() → emulator_read_write_onepage()): the
 * emulator reads and writes guest memory through the memslot's userspace address
 * (kvm_vcpu_read_guest() / emulator_write_phys() → kvm_vcpu_write_guest()), so no SPTE is
 * made and no page fault is taken. A fragment the emulator cannot read or write that way (no
 * memslot, an invalid or read-only slot for a store, an hva that cannot be faulted in) is
 * MMIO: vcpu_mmio_read() / vcpu_mmio_write() find no in-kernel device and the fragment exits
 * to userspace as KVM_EXIT_MMIO.
 *
 * Where this happens for every access: a profile with `emulatedGuestAccesses` (measured on
 * kvm_pvm with a guest that does not use the PVM ABI: every guest instruction is counted in
 * the vCPU's `insn_emulation` stat and no `pf_taken`).
 */
import type { KvmMemorySlot } from './memslot/memslot.js';
import type { HvaToPfnOut } from './host/address-space.js';
import type { Process } from './host/process.js';
import { KVM_MEM_READONLY, KVM_MEMSLOT_INVALID, PAGE_SIZE, PG_LEVEL_4K } from './uapi.js';

export interface EmulatorVm {
  readonly process: Process;
  gfnToMemslot(gfn: number): KvmMemorySlot | null;
  /** mark_page_dirty_in_slot() */
  markPageDirty(slot: KvmMemorySlot, gfn: number): void;
}

/** an emulated fragment is MMIO (no RAM the emulator can use) */
export const EMULATED_MMIO = -1;

const out: HvaToPfnOut = { pfn: 0, writable: false, level: PG_LEVEL_4K };

/**
 * The host pfn the emulator reads (`write` false) or writes one fragment of `gpa` through, or
 * EMULATED_MMIO. A store is not done here: the caller writes the bytes, then calls
 * `emulatedWriteDone` (the dirty log and the page-track notifier).
 *
 * kvm_vcpu_read_guest() → kvm_read_guest_page(): gfn_to_hva_memslot_prot() is an error hva for
 * no slot or an invalid one; __copy_from_user() faults the page in like any user access and
 * fails where it cannot (unmapped, PROT_NONE). kvm_vcpu_write_guest() → __kvm_write_guest_page():
 * gfn_to_hva_memslot() is an error hva for a read-only slot too; __copy_to_user() needs a
 * writable mapping.
 */
export function emulatorFragmentPfn(vm: EmulatorVm, gpa: number, write: boolean): number {
  const gfn = Math.floor(gpa / PAGE_SIZE);
  const slot = vm.gfnToMemslot(gfn);
  if (!slot || slot.flags & KVM_MEMSLOT_INVALID) return EMULATED_MMIO;
  if (write && slot.flags & KVM_MEM_READONLY) return EMULATED_MMIO;
  const hva = slot.userspaceAddr + (gfn - slot.baseGfn) * PAGE_SIZE;
  if (vm.process.mm.hvaToPfnInto(hva, write, out) !== null) return EMULATED_MMIO;
  return out.pfn;
}

/** after an emulated store to RAM: mark_page_dirty_in_slot() in __kvm_write_guest_page() */
export function emulatedWriteDone(vm: EmulatorVm, gpa: number): void {
  const gfn = Math.floor(gpa / PAGE_SIZE);
  const slot = vm.gfnToMemslot(gfn);
  if (slot) vm.markPageDirty(slot, gfn);
}
