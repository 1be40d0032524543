/**
 * Everything ccmem knows about this host's KVM, for `ccmem host`: the module facts from sysfs
 * (host-facts.ts) and, where /dev/kvm exists, the capabilities, VM types, the detected kernel
 * profile and the probes behind it.
 */
import {
  KVM_X86_DEFAULT_VM,
  vmTypeName,
  type KernelProfile,
} from '@ccmem/core';
import { sysfsHostReport, type SysfsHostReport } from './host-facts.js';
import { detectHostProfile, hostCapabilities, probeGuestMemfdFlagValid, probeMaxGfn } from './profile.js';
import { RealKvm } from './real-kvm.js';

export interface HostKvmReport extends SysfsHostReport {
  /** the kernel profile the model uses for `profile: host` here (null without /dev/kvm) */
  profile: KernelProfile | null;
}

export function hostKvmReport(root = '/'): HostKvmReport {
  const base: HostKvmReport = { ...sysfsHostReport(root), profile: null };
  const hidden = base.hidden;
  if (!base.device || !RealKvm.available()) return base;
  const kvm = RealKvm.open();
  try {
    const capabilities = hostCapabilities(kvm);
    const types = capabilities.KVM_CAP_VM_TYPES || 1 << KVM_X86_DEFAULT_VM;
    const vmTypes: string[] = [];
    for (let t = 0; t < 32; t++) if (types & (1 << t)) vmTypes.push(vmTypeName(t));
    const vm = kvm.createVm(KVM_X86_DEFAULT_VM);
    let maxGfn: number | null;
    let flagValid: boolean;
    try {
      maxGfn = probeMaxGfn(vm);
      flagValid = probeGuestMemfdFlagValid(vm);
    } finally {
      vm.close();
    }
    const hiddenGmem = hidden.includes('KVM_CAP_GUEST_MEMFD');
    return {
      ...base,
      capabilities,
      vmTypes,
      guestMemfd: !hiddenGmem && capabilities.KVM_CAP_GUEST_MEMFD !== 0 && flagValid,
      guestMemfdFlags: hidden.includes('KVM_CAP_GUEST_MEMFD_FLAGS') || hiddenGmem ? 0 : capabilities.KVM_CAP_GUEST_MEMFD_FLAGS ?? 0,
      maxGfn: maxGfn ?? base.maxGfn,
      maxGfnSource: maxGfn !== null ? 'probe' : base.maxGfnSource,
      profile: detectHostProfile(kvm),
    };
  } finally {
    kvm.close();
  }
}
