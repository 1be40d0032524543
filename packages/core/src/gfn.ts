/**
 * gpa → gfn, and the gfn bits that mark a shared alias (arch/x86/kvm/mmu.h): a TDX guest sees
 * each private page twice, at its gfn and at gfn | kvm_gfn_direct_bits() (the shared bit);
 * KVM keys memslots, attributes and the mirror root by the gfn without that bit.
 */
import type { VendorBackend } from './backend.js';
import { PAGE_SIZE } from './uapi.js';

/** What the helpers need of a VM: its backend, whose gfnDirectBits is 0 without an alias. */
export interface DirectBitsVm {
  readonly backend: Pick<VendorBackend, 'gfnDirectBits'> | null;
}

/** gpa_to_gfn() */
export function gpaToGfn(gpa: number): number {
  return Math.floor(gpa / PAGE_SIZE);
}

/** kvm_gfn_direct_bits(): kvm->arch.gfn_direct_bits, 0 for VMs without a shared alias */
export function kvmGfnDirectBits(kvm: DirectBitsVm): number {
  return kvm.backend === null ? 0 : kvm.backend.gfnDirectBits;
}

/** kvm_is_gfn_alias(): `gfn` carries the direct bits (the TDX shared alias) */
export function kvmIsGfnAlias(kvm: DirectBitsVm, gfn: number): boolean {
  const direct = kvmGfnDirectBits(kvm);
  // direct is one power-of-two bit above 2^32: test it without 32-bit bitwise operators
  return direct !== 0 && Math.floor(gfn / direct) % 2 === 1;
}

/** kvm_is_addr_direct(): the gpa goes through the direct root (no direct bits, or they are set) */
export function kvmIsAddrDirect(kvm: DirectBitsVm, gpa: number): boolean {
  return kvmGfnDirectBits(kvm) === 0 || kvmIsGfnAlias(kvm, gpaToGfn(gpa));
}

/** gpa_to_gfn(gpa) & ~kvm_gfn_direct_bits(kvm) (kvm_mmu_do_page_fault): a gfn both aliases share */
export function kvmGpaToGfn(kvm: DirectBitsVm, gpa: number): number {
  const gfn = gpaToGfn(gpa);
  return kvmIsGfnAlias(kvm, gfn) ? gfn - kvmGfnDirectBits(kvm) : gfn;
}
