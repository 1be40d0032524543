import { describe, expect, it } from 'vitest';
import { Kvm } from './kvm.js';
import { LINUX_6_18_PVM_PROFILE, UPSTREAM_PROFILE, withPciHole } from './profile.js';
import type { GuestMemfdFactory } from './backend.js';
import { checkVmInvariants } from './invariants.js';
import { errnoOf } from './testing/errno-of.js';
import { probeVm } from './testing/probe-vm.js';
import { FakeGmem } from './testing/fake-gmem.js';
import { ERRNO } from './errno.js';
import { recordTrace } from './trace.js';
import {
  KVM_CAP_GUEST_MEMFD,
  KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2,
  KVM_CAP_MEMORY_ATTRIBUTES,
  KVM_CAP_MULTI_ADDRESS_SPACE,
  KVM_CAP_NR_MEMSLOTS,
  KVM_CAP_PCI_HOLE_MEM,
  KVM_CAP_PRE_FAULT_MEMORY,
  KVM_CAP_READONLY_MEM,
  KVM_CAP_USER_MEMORY2,
  KVM_CAP_VM_TYPES,
  KVM_CAP_EXIT_HYPERCALL,
  KVM_CAP_MAX_VCPU_ID,
  KVM_CAP_MAX_VCPUS,
  KVM_CAP_NR_VCPUS,
  KVM_MEM_GUEST_MEMFD,
  KVM_MEM_PCI_HOLE,
  KVM_MEM_LOG_DIRTY_PAGES,
  KVM_MEM_READONLY,
  KVM_MEMORY_ATTRIBUTE_PRIVATE,
  KVM_X86_DEFAULT_VM,
  KVM_X86_SNP_VM,
  KVM_X86_SW_PROTECTED_VM,
} from './uapi.js';


describe('KVM_CHECK_EXTENSION', () => {
  it('upstream profile: system-wide and per-VM answers', () => {
    const kvm = new Kvm();
    expect(kvm.checkExtension(KVM_CAP_NR_MEMSLOTS)).toBe(32764);
    expect(kvm.checkExtension(KVM_CAP_USER_MEMORY2)).toBe(1);
    expect(kvm.checkExtension(KVM_CAP_MULTI_ADDRESS_SPACE)).toBe(2);
    expect(kvm.checkExtension(KVM_CAP_MEMORY_ATTRIBUTES)).toBe(KVM_MEMORY_ATTRIBUTE_PRIVATE);
    expect(kvm.checkExtension(KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2)).toBe(3);
    expect(kvm.checkExtension(KVM_CAP_VM_TYPES)).toBe((1 << KVM_X86_DEFAULT_VM) | (1 << KVM_X86_SW_PROTECTED_VM));
    expect(kvm.checkExtension(KVM_CAP_PRE_FAULT_MEMORY)).toBe(1);
    expect(kvm.checkExtension(KVM_CAP_PCI_HOLE_MEM)).toBe(0); // the unmerged RFC is an opt-in
    expect(kvm.checkExtension(KVM_CAP_GUEST_MEMFD)).toBe(0); // no provider plugged in
    expect(kvm.checkExtension(KVM_CAP_EXIT_HYPERCALL)).toBe(1 << 12);
    expect(kvm.checkExtension(0xdead)).toBe(0);
    const vm = kvm.createVm();
    expect(vm.checkExtension(KVM_CAP_MEMORY_ATTRIBUTES)).toBe(0); // default VM: no private memory
    expect(vm.checkExtension(KVM_CAP_READONLY_MEM)).toBe(1);
    const sw = kvm.createVm({ type: KVM_X86_SW_PROTECTED_VM });
    expect(sw.checkExtension(KVM_CAP_MEMORY_ATTRIBUTES)).toBe(KVM_MEMORY_ATTRIBUTE_PRIVATE);
    expect(sw.checkExtension(KVM_CAP_MULTI_ADDRESS_SPACE)).toBe(1);
  });

  it('kvm_arch_nr_memslot_as_ids(): a SW_PROTECTED VM has one address space (private memory, no SMM)', () => {
    const kvm = new Kvm();
    const vm = kvm.createVm();
    const sw = kvm.createVm({ type: KVM_X86_SW_PROTECTED_VM });
    expect(vm.nrMemslotAsIds).toBe(2);
    expect(sw.nrMemslotAsIds).toBe(1);
    const hva = kvm.process.mm.mmap({ length: 0x200000, prot: { read: true, write: true }, shared: false });
    const region = { slot: 0 | (1 << 16), flags: 0, guest_phys_addr: 0x100000, memory_size: 0x200000, userspace_addr: hva };
    vm.setUserMemoryRegion2(region);
    expect(errnoOf(() => sw.setUserMemoryRegion2(region))).toBe('EINVAL');
    expect(errnoOf(() => sw.getDirtyLog({ slot: 1 << 16 }))).toBe('EINVAL');
  });

  it('linux-6.18-pvm profile matches the PVM host it was measured on', () => {
    const kvm = new Kvm({ profile: 'linux-6.18-pvm' });
    expect(kvm.checkExtension(KVM_CAP_MULTI_ADDRESS_SPACE)).toBe(0);
    expect(kvm.checkExtension(KVM_CAP_MEMORY_ATTRIBUTES)).toBe(0);
    expect(kvm.checkExtension(KVM_CAP_PRE_FAULT_MEMORY)).toBe(0);
    expect(kvm.checkExtension(KVM_CAP_VM_TYPES)).toBe(1);
    expect(kvm.checkExtension(KVM_CAP_PCI_HOLE_MEM)).toBe(0);
    expect(errnoOf(() => kvm.createVm({ type: KVM_X86_SW_PROTECTED_VM }))).toBe('EINVAL');
    const vm = kvm.createVm();
    expect(errnoOf(() => vm.setMemoryAttributes({ address: 0, size: 4096, attributes: 0 }))).toBe('ENOTTY');
  });
});

describe('KVM_CREATE_VM / KVM_CREATE_VCPU / KVM_ENABLE_CAP', () => {
  it('unsupported VM types are EINVAL', () => {
    const kvm = new Kvm();
    expect(errnoOf(() => kvm.createVm({ type: KVM_X86_SNP_VM }))).toBe('EINVAL'); // no backend plugged in
    expect(errnoOf(() => kvm.createVm({ type: 99 }))).toBe('EINVAL');
  });

  it('vCPU ids: out of range EINVAL, duplicate EEXIST', () => {
    const vm = new Kvm().createVm();
    vm.createVcpu(0);
    expect(errnoOf(() => vm.createVcpu(0))).toBe('EEXIST');
    expect(errnoOf(() => vm.createVcpu(16384))).toBe('EINVAL'); // KVM_MAX_VCPUS 4096 * KVM_VCPU_ID_RATIO
    expect(vm.nrVcpus).toBe(1);
  });

  it("the vendor's vcpu_create runs after the id checks and before the duplicate-id check; a refusal changes nothing", () => {
    const asked: number[] = [];
    let refuse = 0;
    const { vm } = probeVm({
      vcpuCreate: (id) => {
        asked.push(id);
        return refuse;
      },
    });
    expect(errnoOf(() => vm.createVcpu(16384))).toBe('EINVAL'); // the id check comes first
    expect(asked).toEqual([]);
    vm.createVcpu(0);
    refuse = -ERRNO.EIO;
    // kvm_arch_vcpu_create() answers before kvm_get_vcpu_by_id(): EIO, not EEXIST
    expect(errnoOf(() => vm.createVcpu(0))).toBe('EIO');
    expect(errnoOf(() => vm.createVcpu(1))).toBe('EIO');
    expect(asked).toEqual([0, 0, 1]);
    expect(vm.nrVcpus).toBe(1);
    expect(vm.vcpu(1)).toBeUndefined();
    refuse = -ERRNO.ENOMEM;
    expect(errnoOf(() => vm.createVcpu(1))).toBe('ENOMEM');
    refuse = 0;
    expect(errnoOf(() => vm.createVcpu(0))).toBe('EEXIST');
    expect(vm.createVcpu(1).id).toBe(1);
    expect(vm.nrVcpus).toBe(2);
  });

  it('each vCPU fd holds a reference to the VM (kvm_get_kvm() in kvm_vm_ioctl_create_vcpu(), kvm_put_kvm() in kvm_vcpu_release())', () => {
    const kvm = new Kvm();
    const vm = kvm.createVm();
    const rec = recordTrace(kvm.tracer);
    const events = () => rec.events.map((e) => e.name);
    const v0 = vm.createVcpu(0);
    const v1 = vm.createVcpu(1);
    // create_vcpu_fd(): an anon-inode fd at the lowest free descriptor, after the VM's
    expect([vm.fd, v0.fd, v1.fd]).toEqual([3, 4, 5]);
    expect(kvm.process.getFile(v0.fd)).toBe(v0);
    expect(v0.kind).toBe('kvm-vcpu');
    // a refused KVM_CREATE_VCPU installs no fd and takes no reference
    expect(errnoOf(() => vm.createVcpu(0))).toBe('EEXIST');
    expect(kvm.process.openFds()).toEqual([3, 4, 5]);
    kvm.process.close(vm.fd);
    // the VM lives on: its ioctls are EBADF, its vCPUs still run
    expect(vm.alive).toBe(true);
    expect(errnoOf(() => vm.createVcpu(2))).toBe('EBADF');
    expect(v0.run()).toEqual({});
    kvm.process.close(v1.fd);
    expect(vm.alive).toBe(true);
    expect(v1.released).toBe(true);
    expect(v0.released).toBe(false);
    expect(events()).not.toContain('kvm_destroy_vm');
    // the last reference goes with the last vCPU fd: kvm_destroy_vm()
    kvm.process.close(v0.fd);
    expect(vm.alive).toBe(false);
    expect(events().filter((n) => n === 'kvm_destroy_vm')).toHaveLength(1);
  });

  it('closing the vCPU fds first leaves the VM to its own fd', () => {
    const kvm = new Kvm();
    const vm = kvm.createVm();
    const v = vm.createVcpu(0);
    kvm.process.close(v.fd);
    expect(vm.alive).toBe(true);
    // the vCPU object stays in the VM (kvm_destroy_vcpus() frees it with the VM)
    expect(vm.vcpu(0)).toBe(v);
    expect(errnoOf(() => vm.createVcpu(0))).toBe('EEXIST');
    vm.release();
    expect(vm.alive).toBe(false);
  });

  it('KVM_ENABLE_CAP: manual dirty-log protect and exit-hypercall argument checks', () => {
    const vm = new Kvm().createVm();
    expect(errnoOf(() => vm.enableCap({ cap: KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, args: [4] }))).toBe('EINVAL');
    expect(errnoOf(() => vm.enableCap({ cap: KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, args: [1], flags: 1 }))).toBe('EINVAL');
    vm.enableCap({ cap: KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, args: [3] });
    expect(errnoOf(() => vm.enableCap({ cap: KVM_CAP_EXIT_HYPERCALL, args: [1 << 3] }))).toBe('EINVAL');
    vm.enableCap({ cap: KVM_CAP_EXIT_HYPERCALL, args: [1 << 12] });
    expect(vm.exitHypercalls).toBe(1 << 12);
    expect(errnoOf(() => vm.enableCap({ cap: 12345 }))).toBe('EINVAL');
  });

  it('kvm_destroy_vm() frees every memslot: each guest_memfd binding is dropped once (kvm_free_memslots())', () => {
    const kvm = new Kvm();
    const vm = kvm.createVm({ type: KVM_X86_SW_PROTECTED_VM });
    const files = [0, 1].map(() => new FakeGmem(vm, 2 * 2 ** 20));
    files.forEach((f, slot) => {
      const fd = kvm.process.installFd(f);
      vm.setUserMemoryRegion2({ slot, flags: KVM_MEM_GUEST_MEMFD, guest_phys_addr: slot * 2 ** 21, memory_size: 2 ** 21, userspace_addr: 0, guest_memfd: fd, guest_memfd_offset: 0 });
    });
    // a slot without guest_memfd has nothing to unbind
    vm.setUserMemoryRegion2({ slot: 2, flags: 0, guest_phys_addr: 2 ** 22, memory_size: 4096, userspace_addr: kvm.process.mm.mmap({ length: 4096, prot: { read: true, write: true }, shared: false }) });
    expect(files.map((f) => f.bindings.size)).toEqual([512, 512]);
    kvm.process.exit();
    expect(vm.alive).toBe(false);
    expect(files.map((f) => [f.unbinds, f.bindings.size])).toEqual([[1, 0], [1, 0]]);
  });

  it('a dead VM answers EIO to every ioctl', () => {
    const vm = new Kvm().createVm();
    vm.markBugged('test');
    expect(errnoOf(() => vm.createVcpu(1))).toBe('EIO');
    expect(errnoOf(() => vm.setUserMemoryRegion2({ slot: 0, flags: 0, guest_phys_addr: 0, memory_size: 0, userspace_addr: 0 }))).toBe('EIO');
  });
});

describe('kernel profile fields', () => {
  const rw = { read: true, write: true };
  const ram = (kvm: Kvm, length: number) => kvm.process.mm.mmap({ length, prot: rw, shared: false });
  // a provider that must never be reached: the flag check comes first
  const unreachable: GuestMemfdFactory = {
    supportedFlags: () => 0,
    create: () => {
      throw new Error('create() reached');
    },
  };

  it('check_memory_region_flags(): KVM_MEM_GUEST_MEMFD needs CONFIG_KVM_GUEST_MEMFD, before the fd is looked at', () => {
    const region = { slot: 0, flags: KVM_MEM_GUEST_MEMFD, guest_phys_addr: 0x100000, memory_size: 0x200000, userspace_addr: 0, guest_memfd: 1000 };
    const up = new Kvm({ guestMemfd: unreachable });
    expect(up.checkExtension(KVM_CAP_GUEST_MEMFD)).toBe(1);
    expect(errnoOf(() => up.createVm().setUserMemoryRegion2(region))).toBe('EBADF');
    const host = new Kvm({ profile: 'linux-6.18-pvm-no-gmem', guestMemfd: unreachable });
    expect(host.checkExtension(KVM_CAP_GUEST_MEMFD)).toBe(0);
    const vm = host.createVm();
    expect(vm.checkExtension(KVM_CAP_GUEST_MEMFD)).toBe(0);
    expect(errnoOf(() => vm.setUserMemoryRegion2(region))).toBe('EINVAL');
    expect(errnoOf(() => vm.createGuestMemfd({ size: 0x200000, flags: 0 }))).toBe('ENOTTY');
  });

  it('kvm_mmu_max_gfn(): host MAXPHYADDR with TDP, 52 bits with the shadow MMU', () => {
    for (const [profile, bits] of [
      [UPSTREAM_PROFILE, 48],
      [{ ...UPSTREAM_PROFILE, hostMaxPhyAddr: 46 }, 46],
      [LINUX_6_18_PVM_PROFILE, 52],
    ] as const) {
      const kvm = new Kvm({ profile });
      const vm = kvm.createVm();
      const hva = ram(kvm, 0x10000);
      expect(vm.maxGfn).toBe(2 ** (bits - 12) - 1);
      const end = 2 ** bits;
      vm.setUserMemoryRegion2({ slot: 0, flags: 0, guest_phys_addr: end - 0x10000, memory_size: 0x10000, userspace_addr: hva });
      expect(errnoOf(() => vm.setUserMemoryRegion2({ slot: 1, flags: 0, guest_phys_addr: end, memory_size: 0x1000, userspace_addr: hva }))).toBe('EINVAL');
      // MOVE is checked too
      expect(errnoOf(() => vm.setUserMemoryRegion2({ slot: 0, flags: 0, guest_phys_addr: end - 0xf000, memory_size: 0x10000, userspace_addr: hva }))).toBe('EINVAL');
    }
  });

  it('upstream rejects KVM_MEM_PCI_HOLE (bit 15); withPciHole() opts in to the RFC', () => {
    const region = { slot: 0, flags: KVM_MEM_PCI_HOLE, guest_phys_addr: 0x100000, memory_size: 0x200000, userspace_addr: 0 };
    expect(errnoOf(() => new Kvm().createVm().setUserMemoryRegion2(region))).toBe('EINVAL');
    const kvm = new Kvm({ profile: withPciHole(UPSTREAM_PROFILE) });
    expect(kvm.checkExtension(KVM_CAP_PCI_HOLE_MEM)).toBe(1);
    kvm.createVm().setUserMemoryRegion2(region);
    expect(UPSTREAM_PROFILE.pciHole).toBe(false);
  });

  it('KVM_CAP_NR_VCPUS / MAX_VCPUS / MAX_VCPU_ID and KVM_CREATE_VCPU follow KVM_MAX_VCPUS', () => {
    const up = new Kvm();
    expect(up.checkExtension(KVM_CAP_NR_VCPUS)).toBe(64);
    expect(up.checkExtension(KVM_CAP_MAX_VCPUS)).toBe(4096);
    expect(up.checkExtension(KVM_CAP_MAX_VCPU_ID)).toBe(16384);
    const host = new Kvm({ profile: 'linux-6.18' });
    expect(host.checkExtension(KVM_CAP_MAX_VCPUS)).toBe(1024);
    expect(host.checkExtension(KVM_CAP_MAX_VCPU_ID)).toBe(4096);
    const vm = host.createVm();
    expect(errnoOf(() => vm.createVcpu(4096))).toBe('EINVAL');
    vm.createVcpu(4095);
    // the online CPUs, capped at KVM_MAX_VCPUS
    expect(new Kvm({ profile: { ...UPSTREAM_PROFILE, onlineCpus: 8192 } }).checkExtension(KVM_CAP_NR_VCPUS)).toBe(4096);
    // created_vcpus >= max_vcpus
    const small = new Kvm({ profile: { ...UPSTREAM_PROFILE, maxVcpus: 2 } }).createVm();
    small.createVcpu(0);
    small.createVcpu(7);
    expect(errnoOf(() => small.createVcpu(1))).toBe('EINVAL');
  });
});

describe('kvm_mmu_slot_apply_flags(): turning dirty logging on and off', () => {
  const MiB2 = 0x200000;
  function hugeVm(flags = 0) {
    const kvm = new Kvm();
    const vm = kvm.createVm();
    const hva = kvm.process.mm.mmap({ length: 2 * MiB2, prot: { read: true, write: true }, shared: false, hugepage: '2M' });
    const region = { slot: 0, flags, guest_phys_addr: MiB2, memory_size: 2 * MiB2, userspace_addr: hva };
    vm.setUserMemoryRegion2(region);
    const vcpu = vm.createVcpu(0);
    return { kvm, vm, vcpu, region, stats: vm.mmu.stats };
  }

  it('logging off recovers 2M mappings in place (kvm_mmu_recover_huge_pages), keeping the data', () => {
    const { vm, vcpu, region, stats } = hugeVm();
    vcpu.guestWrite(MiB2, 4, 1n);
    expect([stats.pages_2m, stats.pages_4k]).toEqual([1, 0]);
    vm.setUserMemoryRegion2({ ...region, flags: KVM_MEM_LOG_DIRTY_PAGES });
    expect([stats.pages_2m, stats.pages_4k]).toEqual([0, 512]);
    vcpu.guestWrite(MiB2 + 0x5000, 4, 5n);
    vm.setUserMemoryRegion2({ ...region, flags: 0 });
    expect([stats.pages_2m, stats.pages_4k]).toEqual([1, 0]);
    expect(vcpu.guestRead(MiB2 + 0x5000, 4).value).toBe(5n);
    expect(vcpu.guestRead(MiB2, 4).value).toBe(1n);
    expect(checkVmInvariants(vm)).toEqual([]);
  });

  it('a read-only slot keeps its mappings when logging is turned on', () => {
    const { vm, vcpu, region, stats } = hugeVm(KVM_MEM_READONLY);
    vcpu.guestRead(MiB2, 4);
    vm.setUserMemoryRegion2({ ...region, flags: KVM_MEM_READONLY | KVM_MEM_LOG_DIRTY_PAGES });
    expect([stats.pages_2m, stats.pages_4k]).toEqual([1, 0]);
    expect(checkVmInvariants(vm)).toEqual([]);
  });

  it('manual protect + INITIALLY_SET: no split or write-protect until KVM_CLEAR_DIRTY_LOG', () => {
    const { vm, vcpu, region, stats } = hugeVm();
    vm.enableCap({ cap: KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, args: [3] });
    vcpu.guestWrite(MiB2, 4, 1n);
    vm.setUserMemoryRegion2({ ...region, flags: KVM_MEM_LOG_DIRTY_PAGES });
    expect([stats.pages_2m, stats.pages_4k]).toEqual([1, 0]);
    expect(checkVmInvariants(vm)).toEqual([]);
    // clearing pages 0..63 splits the 2M page and write-protects the cleared 4K pages
    vm.clearDirtyLog({ slot: 0, first_page: 0, num_pages: 64, dirty_bitmap: new Uint8Array(8).fill(0xff) });
    expect([stats.pages_2m, stats.pages_4k]).toEqual([0, 512]);
    expect(checkVmInvariants(vm)).toEqual([]);
    vcpu.guestWrite(MiB2 + 0x1000, 4, 2n);
    const bits = vm.getDirtyLog({ slot: 0 });
    expect(bits[0]).toBe(0b10);
  });

  it('fast_page_fault() never makes a huge SPTE of a dirty-logged slot writable', () => {
    const { vm, vcpu, region, stats } = hugeVm();
    vm.enableCap({ cap: KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, args: [3] });
    vcpu.guestWrite(MiB2, 4, 1n);
    vm.setUserMemoryRegion2({ ...region, flags: KVM_MEM_LOG_DIRTY_PAGES });
    vm.mmu.writeProtectGfnRange(MiB2 / 4096, MiB2 / 4096 + 1, 2); // kvm_mmu_slot_gfn_write_protect(2M)
    vcpu.guestWrite(MiB2 + 0x3000, 4, 3n);
    expect(vm.mmu.leafLevel(MiB2 / 4096 + 3, false)).toBe(1);
    expect(stats.pages_4k).toBeGreaterThan(0);
    expect(checkVmInvariants(vm)).toEqual([]);
  });
});
