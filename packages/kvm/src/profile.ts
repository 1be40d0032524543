/**
 * The host's kernel profile, from real checks: KVM_CHECK_EXTENSION on a default VM, plus a
 * probe of the errno an overlapping guest_memfd binding gets (EINVAL before kernel commit
 * 7ea987a9, EEXIST after).
 */
import { release } from 'node:os';
import {
  CAPS,
  KVM_CAP_DIRTY_LOG_RING,
  KVM_DIRTY_GFN_F_DIRTY,
  KVM_DIRTY_RING_RSVD_ENTRIES,
  KVM_MEM_LOG_DIRTY_PAGES,
  KVM_CAP_GUEST_MEMFD,
  KVM_CAP_GUEST_MEMFD_FLAGS,
  KVM_CAP_MAX_VCPUS,
  KVM_CAP_PRE_FAULT_MEMORY,
  KVM_CAP_USER_MEMORY2,
  GUEST_MEMFD_FLAG_INIT_SHARED,
  GUEST_MEMFD_FLAG_MMAP,
  KVM_MEM_GUEST_MEMFD,
  KVM_X86_DEFAULT_VM,
  isKvmError,
  type KernelProfile,
} from '@ccmem/core';
import { close, mmap, munmap, read, write } from './host-memory.js';
import { installGuest, type TinyGuest } from './guest.js';
import { RealKvm, type RealVm } from './real-kvm.js';
import type { RealVcpu } from './vcpu.js';
import { hiddenCapabilities, readKvmModuleFacts } from './host-facts.js';

/** The tiny guest on `vcpu` of `vm`: `run(guest)`, then the guest's own slot is removed again. */
function runTinyGuest<T>(vm: RealVm, vcpu: RealVcpu, run: (guest: TinyGuest) => T): T {
  const guest = installGuest(vm, vcpu);
  try {
    return run(guest);
  } finally {
    guest.uninstall();
  }
}

/**
 * A default VM whose slot 0 is `length` bytes of fresh anonymous memory (mapped with `prot`,
 * read/write by default) at `gpa`: `body(vm, hva)`, then the VM is closed and the memory unmapped.
 */
function withSlotVm<T>(kvm: RealKvm, slot: { length: number; gpa: number; flags?: number; prot?: number }, body: (vm: RealVm, hva: number) => T): T {
  const vm = kvm.createVm(KVM_X86_DEFAULT_VM);
  const hva = mmap({ length: slot.length, ...(slot.prot !== undefined && { prot: slot.prot }) });
  try {
    vm.setUserMemoryRegion({ slot: 0, flags: slot.flags ?? 0, guest_phys_addr: slot.gpa, memory_size: slot.length, userspace_addr: hva });
    return body(vm, hva);
  } finally {
    vm.close();
    munmap(hva, slot.length);
  }
}

/**
 * The largest gfn a memslot may reach on this host (kvm_arch_prepare_memory_region():
 * `base_gfn + npages - 1 > kvm_mmu_max_gfn()` is EINVAL): the widest 2^bits gpa space whose
 * last 64 KiB a slot is accepted at, found by bisection over 32..57 bits. null when even 2^32
 * is refused.
 */
export function probeMaxGfn(vm: RealVm): number | null {
  const size = 0x10000;
  const hva = mmap({ length: size });
  const accepts = (bits: number): boolean => {
    const region = { slot: 0, flags: 0, guest_phys_addr: 2 ** bits - size, memory_size: size, userspace_addr: hva };
    try {
      vm.setUserMemoryRegion(region);
    } catch (e) {
      if (isKvmError(e) && e.code === 'EINVAL') return false;
      throw e;
    }
    vm.setUserMemoryRegion({ ...region, memory_size: 0 });
    return true;
  };
  try {
    if (!accepts(32)) return null;
    let lo = 32;
    let hi = 58;
    while (hi - lo > 1) {
      const mid = (lo + hi) >> 1;
      if (accepts(mid)) lo = mid;
      else hi = mid;
    }
    return 2 ** (lo - 12) - 1;
  } finally {
    munmap(hva, size);
  }
}

/**
 * Whether KVM_MEM_GUEST_MEMFD is a valid memslot flag here (check_memory_region_flags(): it is
 * only with CONFIG_KVM_GUEST_MEMFD). With the flag valid, a bad fd is EBADF (kvm_gmem_bind());
 * without it, the flag itself is EINVAL before any fd is looked at.
 */
export function probeGuestMemfdFlagValid(vm: RealVm): boolean {
  if (!vm.checkExtension(KVM_CAP_USER_MEMORY2)) return false;
  try {
    vm.setUserMemoryRegion2({ slot: 0, flags: KVM_MEM_GUEST_MEMFD, guest_phys_addr: 0, memory_size: 0x1000, userspace_addr: 0, guest_memfd: 0xffff_ffff, guest_memfd_offset: 0 });
  } catch (e) {
    if (isKvmError(e)) return e.code !== 'EINVAL';
    throw e;
  }
  // accepted: delete it again (cannot happen with fd -1, but leave the VM as it was)
  vm.setUserMemoryRegion2({ slot: 0, flags: KVM_MEM_GUEST_MEMFD, guest_phys_addr: 0, memory_size: 0, userspace_addr: 0, guest_memfd: 0xffff_ffff, guest_memfd_offset: 0 });
  return true;
}

/**
 * KVM_CHECK_EXTENSION of every capability @ccmem/core names, asked of a default VM. A
 * capability named in `CCMEM_KVM_HIDE` answers 0 (hiddenCapabilities()).
 */
export function hostCapabilities(kvm?: RealKvm): Record<string, number> {
  const own = !kvm;
  const k = kvm ?? RealKvm.open();
  const vm = k.createVm(KVM_X86_DEFAULT_VM);
  const hidden = hiddenCapabilities();
  try {
    const out: Record<string, number> = {};
    for (const [name, cap] of Object.entries(CAPS)) out[name] = hidden.has(name) ? 0 : vm.checkExtension(cap);
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
      const r = runTinyGuest(vm, vm.createVcpu(0), (guest) => guest.guestAccess({ kind: 'read', gpa, size: 8 }));
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
  const gpa = 0x1_0000_0000;
  return withSlotVm(kvm, { length: 0x1000, gpa, prot: 0 }, (vm) => {
    const r = runTinyGuest(vm, vm.createVcpu(0), (guest) => guest.guestAccess({ kind: 'read', gpa, size: 8 }));
    if (r.exit?.reason === 'KVM_EXIT_MMIO') return true;
    if (r.errno === 'EFAULT') return false;
    return null;
  });
}

/**
 * Whether the guest's accesses run in KVM's instruction emulator rather than on the CPU: the
 * tiny guest reads one RAM page twice, and the second read (the page is mapped by then, if
 * anything maps it) still counts emulated instructions in the vCPU's `insn_emulation` stat
 * (KVM_GET_STATS_FD). On hardware virtualization a repeated RAM load emulates nothing. null
 * when the host has no binary stats.
 */
export function probeEmulatedGuestAccesses(kvm: RealKvm): boolean | null {
  const vm = kvm.createVm(KVM_X86_DEFAULT_VM);
  const hva = mmap({ length: 0x1000 });
  try {
    const gpa = 0x1_0000_0000;
    vm.setUserMemoryRegion({ slot: 0, flags: 0, guest_phys_addr: gpa, memory_size: 0x1000, userspace_addr: hva });
    const vcpu = vm.createVcpu(0);
    return runTinyGuest(vm, vcpu, (guest) => {
      guest.guestAccess({ kind: 'read', gpa, size: 8 });
      const before = vcpu.stats().insn_emulation;
      guest.guestAccess({ kind: 'read', gpa, size: 8 });
      const after = vcpu.stats().insn_emulation;
      if (before === undefined || after === undefined) return null;
      return after > before;
    });
  } catch {
    return null;
  } finally {
    vm.close();
    munmap(hva, 0x1000);
  }
}

/**
 * Whether KVM_GET_STATS_FD's pages_4k / pages_2m / pages_1g count the MMU's leaves: a guest
 * read of a fresh page must leave at least one leaf counted (kvm_update_page_stats(); the PVM
 * module's shadow MMU keeps them at 0).
 */
export function probePageStats(kvm: RealKvm): boolean | null {
  const gpa = 0x1_0000_0000;
  return withSlotVm(kvm, { length: 0x1000, gpa }, (vm) => {
    const r = runTinyGuest(vm, vm.createVcpu(0), (guest) => guest.guestAccess({ kind: 'read', gpa, size: 8 }));
    if (r.value === undefined) return null;
    // read once the guest's own slot is gone: only the leaves of slot 0 are left to count
    const st = vm.stats();
    return (st.pages_4k ?? 0) + (st.pages_2m ?? 0) + (st.pages_1g ?? 0) > 0;
  });
}

/**
 * The dirty ring of this host: whether it has one, the entries kvm_cpu_dirty_log_size()
 * reserves (a one-page ring is EINVAL when PML reserves 512 more), and whether a page the guest
 * writes in two KVM_RUNs is logged twice (dirtyRingRelogsEachRun).
 */
export function probeDirtyRing(kvm: RealKvm): Pick<KernelProfile, 'dirtyRing' | 'cpuDirtyLogSize' | 'dirtyRingRelogsEachRun' | 'dirtyRingSoftFullAtLimit'> {
  if (!kvm.checkExtension(KVM_CAP_DIRTY_LOG_RING)) return { dirtyRing: false };
  const vm = kvm.createVm(KVM_X86_DEFAULT_VM);
  const hva = mmap({ length: 0x200000 });
  try {
    let cpuDirtyLogSize = 0;
    try {
      vm.enableCap({ cap: KVM_CAP_DIRTY_LOG_RING, args: [4096] });
    } catch (e) {
      if (!isKvmError(e) || e.code !== 'EINVAL') throw e;
      // 256 entries cannot keep the reserved ones: VMX PML's 512 (PML_LOG_NR_ENTRIES)
      cpuDirtyLogSize = 512;
      vm.enableCap({ cap: KVM_CAP_DIRTY_LOG_RING, args: [2 ** Math.ceil(Math.log2((KVM_DIRTY_RING_RSVD_ENTRIES + cpuDirtyLogSize) * 16))] });
    }
    const gpa = 0x4000_0000;
    vm.setUserMemoryRegion({ slot: 0, flags: KVM_MEM_LOG_DIRTY_PAGES, guest_phys_addr: gpa, memory_size: 0x200000, userspace_addr: hva });
    const vcpu = vm.createVcpu(0);
    runTinyGuest(vm, vcpu, (guest) => {
      guest.guestAccess({ kind: 'write', gpa, size: 8, value: 1n });
      guest.guestAccess({ kind: 'write', gpa, size: 8, value: 2n });
    });
    const words = vcpu.dirtyRingWords()!;
    let pushed = 0;
    while (pushed < 4 && words[pushed * 4] === KVM_DIRTY_GFN_F_DIRTY) pushed++;
    return { dirtyRing: true, cpuDirtyLogSize, dirtyRingRelogsEachRun: pushed > 1, dirtyRingSoftFullAtLimit: probeSoftFullAtLimit(kvm) };
  } finally {
    vm.close();
    munmap(hva, 0x200000);
  }
}

/**
 * Twice: a 16 KiB ring (1024 entries, soft limit 1024 - reserved) and a guest loop that writes
 * 2048 pages in one KVM_RUN; true when both runs exit with KVM_EXIT_DIRTY_RING_FULL right after
 * the push that reached the soft limit, before the store to that page.
 */
function probeSoftFullAtLimit(kvm: RealKvm): boolean {
  const size = 0x800000;
  for (let attempt = 0; attempt < 2; attempt++) {
    const vm = kvm.createVm(KVM_X86_DEFAULT_VM);
    const hva = mmap({ length: size });
    try {
      try {
        vm.enableCap({ cap: KVM_CAP_DIRTY_LOG_RING, args: [16384] });
      } catch (e) {
        if (isKvmError(e)) return false;
        throw e;
      }
      const gpa = 0x4000_0000;
      vm.setUserMemoryRegion({ slot: 0, flags: KVM_MEM_LOG_DIRTY_PAGES, guest_phys_addr: gpa, memory_size: size, userspace_addr: hva });
      const vcpu = vm.createVcpu(0);
      const r = runTinyGuest(vm, vcpu, (guest) => guest.touchRange(gpa, size, 7n));
      const words = vcpu.dirtyRingWords()!;
      let pushed = 0;
      while (pushed < 1024 && words[pushed * 4] === KVM_DIRTY_GFN_F_DIRTY) pushed++;
      const limitPages = pushed; // the page of the last push has not been stored
      const stored = read(hva + (limitPages - 1) * 4096, 1) === 7n;
      if (r.exit?.reason !== 'KVM_EXIT_DIRTY_RING_FULL' || pushed >= 1024 || stored) return false;
      if (pushed !== 1024 - KVM_DIRTY_RING_RSVD_ENTRIES && pushed !== 1024 - KVM_DIRTY_RING_RSVD_ENTRIES - 512) return false;
    } finally {
      vm.close();
      munmap(hva, size);
    }
  }
  return true;
}

/**
 * Whether a guest read of a dirty-logged page the VMM has written (a writable host page) is
 * logged: KVM_GET_DIRTY_LOG after one read.
 */
export function probeReadFaultLogsWritablePage(kvm: RealKvm): boolean | null {
  const gpa = 0x4000_0000;
  return withSlotVm(kvm, { length: 0x10000, gpa, flags: KVM_MEM_LOG_DIRTY_PAGES }, (vm, hva) => {
    write(hva + 0x1000, 8, 0x1234n);
    const r = runTinyGuest(vm, vm.createVcpu(0), (guest) => guest.guestAccess({ kind: 'read', gpa: gpa + 0x1000, size: 8 }));
    if (r.value !== 0x1234n) return null;
    return (vm.getDirtyLog({ slot: 0 })[0]! & 0x2) !== 0;
  });
}

/** The profile this host's kernel follows, named `host-<uname -r>`. */
export function detectHostProfile(kvm?: RealKvm): KernelProfile {
  const own = !kvm;
  const k = kvm ?? RealKvm.open();
  // the capabilities as hostCapabilities() answers them: CCMEM_KVM_HIDE hides some
  const caps = hostCapabilities(k);
  const vm = k.createVm(KVM_X86_DEFAULT_VM);
  try {
    const multi = caps.KVM_CAP_MULTI_ADDRESS_SPACE ?? 0;
    const gmem = (caps.KVM_CAP_GUEST_MEMFD ?? 0) !== 0;
    const overlap = gmem ? probeGmemBindOverlapErrno(vm) : null;
    const vmTypes = caps.KVM_CAP_VM_TYPES ?? 0;
    const facts = readKvmModuleFacts();
    const maxGfn = probeMaxGfn(vm);
    return Object.freeze({
      name: `host-${release()}`,
      gmemBindOverlapErrno: overlap === 'EEXIST' ? 'EEXIST' : 'EINVAL',
      smmAddressSpaces: multi > 1,
      multiAddressSpaceCap: multi,
      memoryAttributes: (caps.KVM_CAP_MEMORY_ATTRIBUTES ?? 0) !== 0,
      preFaultMemory: (caps.KVM_CAP_PRE_FAULT_MEMORY ?? 0) !== 0,
      // a kernel without KVM_CAP_VM_TYPES still offers the default VM type
      vmTypes: vmTypes || 1 << KVM_X86_DEFAULT_VM,
      gmemFlagsDefaultVm: gmem ? (caps.KVM_CAP_GUEST_MEMFD_FLAGS ?? 0) : 0,
      // KVM_MEM_PCI_HOLE was an RFC that never merged: no kernel offers it
      pciHole: false,
      gmemOnlySharedFaults: (gmem ? probeGmemOnlySharedFaults(k) : null) ?? true,
      unfaultableHvaEmulatesMmio: probeUnfaultableHvaEmulatesMmio(k) ?? false,
      emulatedGuestAccesses: probeEmulatedGuestAccesses(k) ?? false,
      // CONFIG_KVM_GUEST_MEMFD: the capability, and KVM_MEM_GUEST_MEMFD a valid memslot flag
      guestMemfd: gmem && probeGuestMemfdFlagValid(vm),
      // x86 answers KVM_CAP_PRE_FAULT_MEMORY with tdp_enabled (kvm_vm_ioctl_check_extension);
      // sysfs says the same where the vendor module is known (host-facts.ts)
      tdpEnabled: facts.tdpEnabled ?? vm.checkExtension(KVM_CAP_PRE_FAULT_MEMORY) !== 0,
      // kvm.tdp_mmu (kvm_configure_mmu(): tdp_mmu_enabled = tdp_mmu_allowed && tdp_enabled)
      tdpMmu: (facts.tdpEnabled ?? true) && facts.params.tdp_mmu !== 'N',
      ...(maxGfn !== null && (facts.tdpEnabled ?? true) && { hostMaxPhyAddr: Math.log2(maxGfn + 1) + 12 }),
      maxVcpus: caps.KVM_CAP_MAX_VCPUS || k.checkExtension(KVM_CAP_MAX_VCPUS),
      ...(facts.onlineCpus !== null && { onlineCpus: facts.onlineCpus }),
      mmioCaching: facts.mmioCaching ?? true,
      pageStats: probePageStats(k) ?? true,
      ...probeDirtyRing(k),
      readFaultLogsWritablePage: probeReadFaultLogsWritablePage(k) ?? true,
    } satisfies KernelProfile);
  } finally {
    vm.close();
    if (own) k.close();
  }
}
