/**
 * An SNP VM for the package's tests: the real core `Kvm` and VM with the SNP backend and a real
 * guest_memfd provider (a dev-dependency), set up as a VMM does: KVM_CREATE_VM, KVM_SEV_INIT2
 * (before any vCPU exists), one guest_memfd memslot at 4 GiB, then the vCPUs.
 * Not published (package.json `files` leaves out src/**\/testing/**).
 */
import {
  FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, GUEST_MEMFD_FLAG_HUGETLB, GUESTMEM_HUGETLB_FLAG_2MB, KVM_MEM_GUEST_MEMFD, KVM_X86_SNP_VM, Kvm, PAGE_SIZE,
} from '@ccmem/core';
import { GuestMemfd, guestMemfdFactory } from '@ccmem/gmem';
import type { SnpVmOptions } from '../edge.js';
import { snpBackendFactory, type SnpBackend } from '../snp-backend.js';

export const GiB = 2 ** 30;
export const MiB = 2 ** 20;
/** the memslot's base: gpa 4 GiB, a 1G-aligned gfn */
export const GPA0 = 4 * GiB;
export const GFN0 = GPA0 / PAGE_SIZE;

export interface SnpVmSetup {
  options?: SnpVmOptions;
  /** vCPUs to create (default 1) */
  vcpus?: number;
  /** kernel profile name (default 'upstream') */
  profile?: string;
  /** guest_memfd and memslot size (default 4 MiB) */
  size?: number;
  /** 2 MiB guest_memfd folios (GUEST_MEMFD_FLAG_HUGETLB | GUESTMEM_HUGETLB_FLAG_2MB) */
  huge?: boolean;
  /** skip KVM_SEV_INIT2 (the VM keeps need_init) */
  noInit2?: boolean;
}

/** a `new Kvm` that knows the SNP VM type and guest_memfd */
export function snpKvm(profile = 'upstream') {
  return new Kvm({ profile, guestMemfd: guestMemfdFactory, backends: { [KVM_X86_SNP_VM]: snpBackendFactory } });
}

export function snpVm(setup: SnpVmSetup = {}) {
  const kvm = snpKvm(setup.profile);
  const vm = kvm.createVm({ type: KVM_X86_SNP_VM, options: setup.options ?? {} });
  if (!setup.noInit2) vm.memoryEncryptOp({ cmd: 'sev_init2' });
  const size = setup.size ?? 4 * MiB;
  const fd = vm.createGuestMemfd({ size, flags: setup.huge ? GUEST_MEMFD_FLAG_HUGETLB | GUESTMEM_HUGETLB_FLAG_2MB : 0 });
  const hva = kvm.process.mm.mmap({ length: size, prot: { read: true, write: true }, shared: false });
  vm.setUserMemoryRegion2({ slot: 1, flags: KVM_MEM_GUEST_MEMFD, guest_phys_addr: GPA0, memory_size: size, userspace_addr: hva, guest_memfd: fd, guest_memfd_offset: 0 });
  const vcpu = vm.createVcpu(0);
  for (let i = 1; i < (setup.vcpus ?? 1); i++) vm.createVcpu(i);
  const b = vm.backend as SnpBackend;
  /** fallocate(PUNCH_HOLE | KEEP_SIZE) on the guest_memfd: kvm_gmem_invalidate → sev_gmem_invalidate */
  const punchHole = (offset: number, len: number): void => {
    const file = kvm.process.getFile(fd);
    if (!(file instanceof GuestMemfd)) throw new Error(`fd ${fd} is not a guest_memfd`);
    file.fallocate(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, len);
  };
  return { kvm, vm, vcpu, b, host: b.host, hva, fd, punchHole };
}
