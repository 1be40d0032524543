/**
 * The host's kernel profile, from real checks: KVM_CHECK_EXTENSION on a default VM, plus a
 * probe of the errno an overlapping guest_memfd binding gets (EINVAL before kernel commit
 * 7ea987a9, EEXIST after). Also which capability a model operation needs, so a scenario step
 * the host cannot run is reported as skipped with the capability's name.
 */
import { readFileSync } from 'node:fs';
import { release } from 'node:os';
import {
  CAPS,
  KVM_CAP_GUEST_MEMFD,
  KVM_CAP_GUEST_MEMFD_FLAGS,
  KVM_CAP_MAX_VCPUS,
  KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2,
  KVM_CAP_MEMORY_ATTRIBUTES,
  KVM_CAP_MULTI_ADDRESS_SPACE,
  KVM_CAP_PRE_FAULT_MEMORY,
  KVM_CAP_USER_MEMORY2,
  KVM_CAP_VM_TYPES,
  GUEST_MEMFD_FLAG_INIT_SHARED,
  GUEST_MEMFD_FLAG_MMAP,
  KVM_MEM_GUEST_MEMFD,
  KVM_X86_DEFAULT_VM,
  KVM_X86_SEV_ES_VM,
  KVM_X86_SEV_VM,
  KVM_X86_SNP_VM,
  KVM_X86_SW_PROTECTED_VM,
  KVM_X86_TDX_VM,
  isKvmError,
  type KernelProfile,
} from '@ccmem/core';
import { close, mmap, munmap, write } from './host-memory.js';
import { installGuest } from './guest.js';
import { RealKvm, type RealVm } from './real-kvm.js';

/** KVM_CHECK_EXTENSION of every capability @ccmem/core names, asked of a default VM. */
export function hostCapabilities(kvm?: RealKvm): Record<string, number> {
  const own = !kvm;
  const k = kvm ?? RealKvm.open();
  const vm = k.createVm(KVM_X86_DEFAULT_VM);
  try {
    const out: Record<string, number> = {};
    for (const [name, cap] of Object.entries(CAPS)) out[name] = vm.checkExtension(cap);
    return out;
  } finally {
    vm.close();
    if (own) k.close();
  }
}

/**
 * Bind two gmem slots to the same file offset and return the errno of the second bind
 * (null when the host has no guest_memfd or the bind unexpectedly succeeded).
 */
export function probeGmemBindOverlapErrno(vm: RealVm): string | null {
  if (!vm.checkExtension(KVM_CAP_GUEST_MEMFD) || !vm.checkExtension(KVM_CAP_USER_MEMORY2)) return null;
  const size = 0x2000;
  const hva = mmap({ length: size });
  let gmem = -1;
  try {
    gmem = vm.createGuestMemfd({ size, flags: 0 });
    const base = { flags: KVM_MEM_GUEST_MEMFD, memory_size: 0x1000, userspace_addr: hva, guest_memfd: gmem, guest_memfd_offset: 0 };
    vm.setUserMemoryRegion2({ ...base, slot: 0, guest_phys_addr: 0 });
    try {
      vm.setUserMemoryRegion2({ ...base, slot: 1, guest_phys_addr: 0x1000 });
      vm.setUserMemoryRegion2({ ...base, slot: 1, guest_phys_addr: 0x1000, memory_size: 0 });
      return null;
    } catch (e) {
      if (isKvmError(e)) return e.code;
      throw e;
    } finally {
      vm.setUserMemoryRegion2({ ...base, slot: 0, guest_phys_addr: 0, memory_size: 0 });
    }
  } finally {
    if (gmem >= 0) close(gmem);
    munmap(hva, size);
  }
}

/**
 * Whether a guest's shared access to a slot bound to an mmap-able guest_memfd is served from
 * the guest_memfd (KVM_MEMSLOT_GMEM_ONLY) or, as on kernels whose fault path ignores that flag,
 * through userspace_addr. The slot's hva holds a marker and the guest_memfd page is fresh
 * (zero): the tiny guest's read tells which one the kernel used. null when the host cannot say
 * (no guest_memfd mmap on a default VM).
 */
export function probeGmemOnlySharedFaults(kvm: RealKvm): boolean | null {
  const vm = kvm.createVm(KVM_X86_DEFAULT_VM);
  const flags = GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED;
  try {
    if (!vm.checkExtension(KVM_CAP_GUEST_MEMFD) || (vm.checkExtension(KVM_CAP_GUEST_MEMFD_FLAGS) & flags) !== flags) return null;
    const hva = mmap({ length: 0x1000 });
    const gmem = vm.createGuestMemfd({ size: 0x1000, flags });
    try {
      const marker = 0x5a5a_5a5a_5a5a_5a5an;
      write(hva, 8, marker);
      const gpa = 0x1_0000_0000;
      vm.setUserMemoryRegion2({ slot: 0, flags: KVM_MEM_GUEST_MEMFD, guest_phys_addr: gpa, memory_size: 0x1000, userspace_addr: hva, guest_memfd: gmem, guest_memfd_offset: 0 });
      const guest = installGuest(vm, vm.createVcpu(0));
      let r;
      try {
        r = guest.guestAccess({ kind: 'read', gpa, size: 8 });
      } finally {
        guest.uninstall();
      }
      if (r.value === marker) return false;
      if (r.value === 0n) return true;
      return null;
    } finally {
      vm.close();
      close(gmem);
      munmap(hva, 0x1000);
    }
  } finally {
    vm.close();
  }
}

/**
 * Whether a guest access whose hva cannot be faulted in (a PROT_NONE mapping) exits with
 * KVM_EXIT_MMIO (emulated) rather than KVM_RUN failing EFAULT with KVM_EXIT_MEMORY_FAULT.
 */
export function probeUnfaultableHvaEmulatesMmio(kvm: RealKvm): boolean | null {
  const vm = kvm.createVm(KVM_X86_DEFAULT_VM);
  const hva = mmap({ length: 0x1000, prot: 0 });
  try {
    const gpa = 0x1_0000_0000;
    vm.setUserMemoryRegion({ slot: 0, flags: 0, guest_phys_addr: gpa, memory_size: 0x1000, userspace_addr: hva });
    const guest = installGuest(vm, vm.createVcpu(0));
    let r;
    try {
      r = guest.guestAccess({ kind: 'read', gpa, size: 8 });
    } finally {
      guest.uninstall();
    }
    if (r.exit?.reason === 'KVM_EXIT_MMIO') return true;
    if (r.errno === 'EFAULT') return false;
    return null;
  } finally {
    vm.close();
    munmap(hva, 0x1000);
  }
}

/** a kvm.ko bool module parameter (/sys/module/kvm/parameters/<name>: Y or N), or null */
function readKvmBoolParam(name: string): boolean | null {
  try {
    const v = readFileSync(`/sys/module/kvm/parameters/${name}`, 'utf8').trim();
    return v === 'Y' || v === '1' ? true : v === 'N' || v === '0' ? false : null;
  } catch {
    return null;
  }
}

/** The profile this host's kernel follows, named `host-<uname -r>`. */
export function detectHostProfile(kvm?: RealKvm): KernelProfile {
  const own = !kvm;
  const k = kvm ?? RealKvm.open();
  const vm = k.createVm(KVM_X86_DEFAULT_VM);
  try {
    const multi = vm.checkExtension(KVM_CAP_MULTI_ADDRESS_SPACE);
    const overlap = probeGmemBindOverlapErrno(vm);
    const vmTypes = k.checkExtension(KVM_CAP_VM_TYPES);
    return Object.freeze({
      name: `host-${release()}`,
      gmemBindOverlapErrno: overlap === 'EEXIST' ? 'EEXIST' : 'EINVAL',
      smmAddressSpaces: multi > 1,
      multiAddressSpaceCap: multi,
      memoryAttributes: vm.checkExtension(KVM_CAP_MEMORY_ATTRIBUTES) !== 0,
      preFaultMemory: vm.checkExtension(KVM_CAP_PRE_FAULT_MEMORY) !== 0,
      // a kernel without KVM_CAP_VM_TYPES still offers the default VM type
      vmTypes: vmTypes || 1 << KVM_X86_DEFAULT_VM,
      gmemFlagsDefaultVm: vm.checkExtension(KVM_CAP_GUEST_MEMFD_FLAGS),
      // KVM_MEM_PCI_HOLE was an RFC that never merged: no kernel offers it
      pciHole: false,
      gmemOnlySharedFaults: probeGmemOnlySharedFaults(k) ?? true,
      unfaultableHvaEmulatesMmio: probeUnfaultableHvaEmulatesMmio(k) ?? false,
      // CONFIG_KVM_GUEST_MEMFD: the capability exists only in such builds
      guestMemfd: k.checkExtension(KVM_CAP_GUEST_MEMFD) !== 0,
      // x86 answers KVM_CAP_PRE_FAULT_MEMORY with tdp_enabled (kvm_vm_ioctl_check_extension)
      tdpMmu: vm.checkExtension(KVM_CAP_PRE_FAULT_MEMORY) !== 0,
      maxVcpus: k.checkExtension(KVM_CAP_MAX_VCPUS),
      mmioCaching: readKvmBoolParam('mmio_caching') ?? true,
    } satisfies KernelProfile);
  } finally {
    vm.close();
    if (own) k.close();
  }
}

const VM_TYPE_OF_OP_PREFIX: ReadonlyArray<[string, number, string]> = [
  ['snp_', KVM_X86_SNP_VM, 'KVM_X86_SNP_VM'],
  ['sev_es_', KVM_X86_SEV_ES_VM, 'KVM_X86_SEV_ES_VM'],
  ['sev_', KVM_X86_SEV_VM, 'KVM_X86_SEV_VM'],
  ['tdx_', KVM_X86_TDX_VM, 'KVM_X86_TDX_VM'],
  ['tdg_', KVM_X86_TDX_VM, 'KVM_X86_TDX_VM'],
  ['sw_protected_', KVM_X86_SW_PROTECTED_VM, 'KVM_X86_SW_PROTECTED_VM'],
];

const CAP_OF_OP: Readonly<Record<string, [number, string]>> = {
  set_memory_attributes: [KVM_CAP_MEMORY_ATTRIBUTES, 'KVM_CAP_MEMORY_ATTRIBUTES'],
  pre_fault_memory: [KVM_CAP_PRE_FAULT_MEMORY, 'KVM_CAP_PRE_FAULT_MEMORY'],
  create_guest_memfd: [KVM_CAP_GUEST_MEMFD, 'KVM_CAP_GUEST_MEMFD'],
  set_user_memory_region2: [KVM_CAP_USER_MEMORY2, 'KVM_CAP_USER_MEMORY2'],
  clear_dirty_log: [KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, 'KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2'],
};

/**
 * The capability (or VM type) a model operation needs that this host lacks, or null when the
 * host can run it. `caps` is hostCapabilities()'s answer; `vmType` the VM type the step uses.
 * Operations are the model's snake_case step names (set_memory_attributes, pre_fault_memory,
 * snp_launch_update, tdx_init_mem_region, ...).
 */
export function missingCapabilityFor(op: string, caps: Readonly<Record<string, number>>, vmType?: number): string | null {
  const need = CAP_OF_OP[op];
  if (need && !caps[need[1]]) return need[1];
  const types = caps.KVM_CAP_VM_TYPES || 1 << KVM_X86_DEFAULT_VM;
  for (const [prefix, type, name] of VM_TYPE_OF_OP_PREFIX) {
    if (op.startsWith(prefix) && !(types & (1 << type))) return name;
  }
  if (vmType !== undefined && !(types & (1 << vmType))) {
    const name = Object.entries({ KVM_X86_DEFAULT_VM, KVM_X86_SW_PROTECTED_VM, KVM_X86_SEV_VM, KVM_X86_SEV_ES_VM, KVM_X86_SNP_VM, KVM_X86_TDX_VM }).find(
      ([, t]) => t === vmType,
    )?.[0];
    return name ?? `VM type ${vmType}`;
  }
  return null;
}
