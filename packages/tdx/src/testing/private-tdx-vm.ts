/** Test support for the TDX backend's tests (not published). */
import { KVM_CAP_EXIT_HYPERCALL, KVM_HC_MAP_GPA_RANGE, KVM_MEMORY_ATTRIBUTE_PRIVATE, KVM_MEM_GUEST_MEMFD, KVM_X86_TDX_VM, Kvm } from '@ccmem/core';
import { guestMemfdFactory } from '@ccmem/gmem';
import type { TdxVmOptions } from '../edge.js';
import { KVM_TDX_MEASURE_MEMORY_REGION, tdxBackendFactory, type TdxBackend } from '../tdx-backend.js';

const P = 4096;
/** the pages of the one guest_memfd slot */
export const NPAGES = 1024;

/**
 * A TDX VM before KVM_TDX_INIT_VM, with private gfns [base/P, base/P + NPAGES) in one guest_memfd
 * slot, KVM_HC_MAP_GPA_RANGE exits enabled and two pages of source memory. It has no vCPU yet:
 * tdx_vcpu_create() refuses KVM_CREATE_VCPU (EIO) until the TD is initialized.
 */
export function uninitializedTdxVm(opts: TdxVmOptions = {}, base = 0) {
  const kvm = new Kvm({ guestMemfd: guestMemfdFactory, backends: { [KVM_X86_TDX_VM]: tdxBackendFactory } });
  const vm = kvm.createVm({ type: KVM_X86_TDX_VM, options: opts, rootLevel: opts.gpaw === 52 ? 5 : 4 });
  const b = vm.backend as TdxBackend;
  const size = NPAGES * P;
  const gmemFd = vm.createGuestMemfd({ size, flags: 0 });
  const hva = kvm.process.mm.mmap({ length: size, prot: { read: true, write: true }, shared: true });
  vm.setUserMemoryRegion2({ slot: 0, flags: KVM_MEM_GUEST_MEMFD, guest_phys_addr: base, memory_size: size, userspace_addr: hva, guest_memfd: gmemFd, guest_memfd_offset: 0 });
  vm.setMemoryAttributes({ address: base, size, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE, flags: 0 });
  vm.enableCap({ cap: KVM_CAP_EXIT_HYPERCALL, args: [1 << KVM_HC_MAP_GPA_RANGE] });
  const src = kvm.process.mm.mmap({ length: 2 * P, prot: { read: true, write: true }, shared: false });
  return { kvm, phys: kvm.process.phys, b, vm, gmemFd, src };
}

/**
 * uninitializedTdxVm(), then KVM_TDX_INIT_VM (with `initVm`'s attributes / GPAW) and vCPUs 0 and 1
 * (created, not yet KVM_TDX_INIT_VCPU'd): the TD is TD_STATE_INITIALIZED.
 */
export function privateTdxVm(opts: TdxVmOptions = {}, base = 0, initVm: { attributes?: number; gpaw?: number } = {}) {
  const t = uninitializedTdxVm(opts, base);
  t.vm.memoryEncryptOp({ cmd: 'tdx_init_vm', ...initVm });
  const vcpu = t.vm.createVcpu(0);
  t.vm.createVcpu(1);
  return { ...t, vcpu };
}

/**
 * INIT_VCPU(0, 1) → INIT_MEM_REGION (2 pages at `gpa`, measured, from the source pages,
 * first filled with `fill` when given) → FINALIZE; returns FINALIZE's result.
 */
export function buildTd(t: ReturnType<typeof privateTdxVm>, opts: { gpa?: number; fill?: number } = {}) {
  const { kvm, vm, src } = t;
  vm.vcpus[0]!.memoryEncryptOp({ cmd: 'tdx_init_vcpu' });
  vm.vcpus[1]!.memoryEncryptOp({ cmd: 'tdx_init_vcpu' });
  if (opts.fill !== undefined) kvm.process.mm.writeBytes(src, new Uint8Array(P).fill(opts.fill));
  const r = vm.vcpus[0]!.memoryEncryptOp({ cmd: 'tdx_init_mem_region', source_addr: src, gpa: opts.gpa ?? 0, nr_pages: 2, flags: KVM_TDX_MEASURE_MEMORY_REGION });
  if (r.ret !== 0) throw new Error(`KVM_TDX_INIT_MEM_REGION: ret ${r.ret}`);
  return vm.memoryEncryptOp({ cmd: 'tdx_finalize_vm' });
}
