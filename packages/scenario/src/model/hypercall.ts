/**
 * KVM_HC_MAP_GPA_RANGE issued by the guest with VMMCALL/VMCALL (SEV-SNP guests reach it
 * through the GHCB's VMMCALL exit): the generic x86 hypercall path, arch/x86/kvm/x86.c
 * __kvm_emulate_hypercall() and complete_hypercall_exit(). TDX guests use
 * TDG.VP.VMCALL<MapGPA> instead, which @ccmem/tdx implements (tdx_map_gpa).
 */
import {
  KVM_EXIT_HYPERCALL_LONG_MODE,
  KVM_HC_MAP_GPA_RANGE,
  PAGE_SIZE,
  type GuestOpResult,
  type Vm,
} from '@ccmem/core';

/** include/uapi/linux/kvm_para.h: KVM_ENOSYS 1000, KVM_EINVAL 22 (returned negated in RAX) */
export const KVM_ENOSYS = 1000;
export const KVM_EINVAL = 22;

/** The hypercalls each vCPU left with userspace (vcpu->arch.complete_userspace_io). */
export class GenericHypercalls {
  private readonly pending = new Map<number, number>();

  /** whether `vcpuId` waits for userspace to complete a generic hypercall */
  isPending(vcpuId: number): boolean {
    return this.pending.has(vcpuId);
  }

  /**
   * __kvm_emulate_hypercall(KVM_HC_MAP_GPA_RANGE, gpa, npages, attrs) from a 64-bit guest at
   * CPL 0: -KVM_ENOSYS unless KVM_CAP_EXIT_HYPERCALL enabled it; -KVM_EINVAL for an unaligned
   * gpa, npages 0 or a wrapping range; else KVM_EXIT_HYPERCALL with args [gpa, npages, attrs]
   * and flags KVM_EXIT_HYPERCALL_LONG_MODE.
   */
  mapGpaRange(vm: Vm, vcpuId: number, gpa: number, npages: number, attrs: number): GuestOpResult {
    if (!vm.userExitOnHypercall(KVM_HC_MAP_GPA_RANGE)) {
      return { ret: -KVM_ENOSYS, detail: { reason: 'KVM_CAP_EXIT_HYPERCALL does not include KVM_HC_MAP_GPA_RANGE' } };
    }
    const gfn = Math.floor(gpa / PAGE_SIZE);
    if (gpa % PAGE_SIZE !== 0 || npages === 0 || gfn + npages >= 2 ** 52) {
      return { ret: -KVM_EINVAL, detail: { reason: 'gpa not page aligned, npages 0, or the range wraps' } };
    }
    this.pending.set(vcpuId, KVM_HC_MAP_GPA_RANGE);
    vm.tracer.emit('kvm_hypercall', { nr: KVM_HC_MAP_GPA_RANGE, a0: gpa, a1: npages, a2: attrs });
    return {
      exit: {
        reason: 'KVM_EXIT_HYPERCALL',
        hypercall: { nr: KVM_HC_MAP_GPA_RANGE, args: [gpa, npages, attrs], ret: 0, flags: KVM_EXIT_HYPERCALL_LONG_MODE },
      },
    };
  }

  /** complete_hypercall_exit(): RAX = hypercall.ret, the guest continues after VMCALL */
  complete(vcpuId: number, ret: number): GuestOpResult | null {
    if (!this.pending.has(vcpuId)) return null;
    this.pending.delete(vcpuId);
    return { ret };
  }
}
