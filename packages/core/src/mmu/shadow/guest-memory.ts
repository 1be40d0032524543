/**
 * Guest page tables as KVM reads and writes them: through the memslot's userspace address
 * (kvm_vcpu_gfn_to_hva_prot() + __get_user() / __try_cmpxchg_user() in paging_tmpl.h,
 * kvm_vcpu_read_guest_atomic() in mmu.c). No fault is taken on the guest's side: a gpte in a
 * gfn without a memslot, or whose host page cannot be read, fails the read.
 */
import type { KvmMemorySlot } from '../../memslot/memslot.js';
import type { HvaToPfnOut } from '../../host/address-space.js';
import type { Process } from '../../host/process.js';
import { KVM_MEM_READONLY, KVM_MEMSLOT_INVALID, PAGE_SIZE, PG_LEVEL_4K } from '../../uapi.js';
import type { GpteHalves, GuestPteMemory } from '../paging-tmpl.js';

export interface GuestMemoryVm {
  readonly process: Process;
  gfnToMemslot(gfn: number): KvmMemorySlot | null;
  /** mark_page_dirty_in_slot() */
  markPageDirty(slot: KvmMemorySlot, gfn: number): void;
}

const TWO_32 = 2 ** 32;

export class VmGuestMemory implements GuestPteMemory {
  private readonly out: HvaToPfnOut = { pfn: 0, writable: false, level: PG_LEVEL_4K };
  constructor(private readonly vm: GuestMemoryVm) {}

  /** the hva of `gpa`, or -1 without a usable memslot */
  hvaOf(gpa: number): number {
    const gfn = Math.floor(gpa / PAGE_SIZE);
    const slot = this.vm.gfnToMemslot(gfn);
    if (!slot || slot.flags & KVM_MEMSLOT_INVALID) return -1;
    return slot.userspaceAddr + (gfn - slot.baseGfn) * PAGE_SIZE + (gpa % PAGE_SIZE);
  }

  /** the host pfn behind `gpa` (faulting it in like GUP does), or -1 */
  pfnOf(gpa: number, write: boolean): number {
    const hva = this.hvaOf(gpa);
    if (hva < 0) return -1;
    if (this.vm.process.mm.hvaToPfnInto(hva, write, this.out) !== null) return -1;
    return this.out.pfn;
  }

  readGpte(gpa: number, out: GpteHalves): boolean {
    const pfn = this.pfnOf(gpa, false);
    if (pfn < 0) return false;
    const v = this.vm.process.phys.readValue(pfn, gpa % PAGE_SIZE, 8);
    if (v === 0n) {
      out.lo = 0;
      out.hi = 0;
    } else {
      const n = Number(v & 0xffffffffn);
      out.lo = n | 0;
      out.hi = Number(v >> 32n) | 0;
    }
    return true;
  }

  gptWritable(gfn: number): boolean {
    const slot = this.vm.gfnToMemslot(gfn);
    return !!slot && !(slot.flags & KVM_MEM_READONLY);
  }

  cmpxchgGpte(gpa: number, oldLo: number, oldHi: number, newLo: number, newHi: number): number {
    const pfn = this.pfnOf(gpa, true);
    if (pfn < 0) return -14; // -EFAULT
    const off = gpa % PAGE_SIZE;
    const phys = this.vm.process.phys;
    const cur = phys.readValue(pfn, off, 8);
    const old = (BigInt(oldHi >>> 0) << 32n) | BigInt(oldLo >>> 0);
    if (cur !== old) return 1;
    phys.writeValue(pfn, off, 8, (BigInt(newHi >>> 0) << 32n) | BigInt(newLo >>> 0));
    const gfn = Math.floor(gpa / PAGE_SIZE);
    const slot = this.vm.gfnToMemslot(gfn);
    if (slot) this.vm.markPageDirty(slot, gfn);
    return 0;
  }

  /** a 64-bit store by the VMM / the test harness into guest memory (no MMU involvement) */
  write64(gpa: number, lo: number, hi: number): void {
    const pfn = this.pfnOf(gpa, true);
    if (pfn < 0) throw new RangeError(`gpa 0x${gpa.toString(16)} is not backed by a memslot`);
    this.vm.process.phys.writeValue(pfn, gpa % PAGE_SIZE, 8, BigInt(hi >>> 0) * BigInt(TWO_32) + BigInt(lo >>> 0));
  }
}
