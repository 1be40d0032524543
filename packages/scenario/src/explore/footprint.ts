/**
 * Page-granular footprints (explorer partial-order reduction) for VMs without a vendor
 * backend (default and KVM_X86_SW_PROTECTED_VM). A phase's footprint is the gfns whose state
 * it reads or changes; where it may install, split or zap a huge leaf, the footprint is the
 * whole huge page (hugeRange), so it conflicts with every 4K page under that leaf.
 */
import type { Vm } from '@ccmem/core';
import type { Footprint } from './types.js';

const PAGES_2M = 512;
const PAGES_1G = 512 * 512;

/**
 * [lo, hi) grown to the huge pages a fault, a pre-fault or a zap in it may map or zap whole:
 * 2 MiB around each end always, 1 GiB where the 1 GiB page lies inside the gfn's memslot
 * (kvm_mmu_hugepage_adjust() never maps a huge page that sticks out of its slot, and
 * kvm_arch_pre_set_memory_attributes() reads the attributes of those same huge pages).
 */
export function hugeRange(vm: Vm, lo: number, hi: number): Footprint {
  let a = lo - (lo % PAGES_2M);
  let b = hi + ((PAGES_2M - (hi % PAGES_2M)) % PAGES_2M);
  const g1 = lo - (lo % PAGES_1G);
  const s1 = vm.gfnToMemslot(lo);
  if (s1 && g1 >= s1.baseGfn && g1 + PAGES_1G <= s1.baseGfn + s1.npages) a = g1;
  const last = hi - 1;
  const g2 = last - (last % PAGES_1G);
  const s2 = last === lo ? s1 : vm.gfnToMemslot(last);
  if (s2 && g2 >= s2.baseGfn && g2 + PAGES_1G <= s2.baseGfn + s2.npages) b = Math.max(b, g2 + PAGES_1G);
  return { lo: a, hi: b, global: false };
}

/** [lo, hi) as it is */
export function pages(lo: number, hi: number, reads = 0, writes = 0): Footprint {
  return { lo, hi, global: false, ...(reads && { reads }), ...(writes && { writes }) };
}

/** hugeRange with the shared state a fault reads */
export function hugeFault(vm: Vm, lo: number, hi: number, reads: number): Footprint {
  return { ...hugeRange(vm, lo, hi), reads };
}
