/**
 * The KVM uAPI against the real /dev/kvm: system and VM ioctls with the model's method names
 * and the uAPI's field names. Every failed ioctl throws KvmError carrying the kernel's errno
 * name and the ioctl name as `check`.
 */
import { existsSync } from 'node:fs';
import { KVM_CAP_DIRTY_LOG_RING, KVM_CAP_DIRTY_LOG_RING_ACQ_REL, KvmError, uapiU64, uapiUint, type U64 } from '@ccmem/core';
import { raiseErrno } from './host-memory.js';
import {
  ArgBuffer,
  CLEAR_DIRTY_LOG,
  CPUID2,
  CPUID_ENTRY2,
  CREATE_GUEST_MEMFD,
  DIRTY_LOG,
  ENABLE_CAP,
  KVM_IOCTLS,
  MEMORY_ATTRIBUTES,
  MEMORY_REGION,
  O_CLOEXEC,
  O_RDWR,
  memoryView,
  sysClose,
  sysIoctlInt,
  sysIoctlPtr,
  sysOpen,
} from './libc.js';
import { RealVcpu } from './vcpu.js';
import { KvmStatsFile } from './stats.js';

export const KVM_DEVICE = '/dev/kvm';

/** the KVM device this process uses: `CCMEM_KVM_DEVICE` when set (tests point it elsewhere), else /dev/kvm */
export function kvmDevicePath(env: NodeJS.ProcessEnv = process.env): string {
  return env.CCMEM_KVM_DEVICE || KVM_DEVICE;
}

/** struct kvm_userspace_memory_region (KVM_SET_USER_MEMORY_REGION). */
export interface UserspaceMemoryRegion {
  /** u32: bits 0-15 slot id, bits 16-31 address-space id */
  slot: number;
  /** u32 */
  flags: number;
  guest_phys_addr: U64;
  memory_size: U64;
  userspace_addr: U64;
}

/** struct kvm_userspace_memory_region2 (KVM_SET_USER_MEMORY_REGION2). */
export interface UserspaceMemoryRegion2 extends UserspaceMemoryRegion {
  guest_memfd_offset?: U64;
  /** u32 */
  guest_memfd?: number;
}

export interface EnableCapArgs {
  cap: number;
  flags?: number;
  args?: readonly U64[];
}

export interface MemoryAttributesArgs {
  address: U64;
  size: U64;
  attributes: U64;
  flags?: U64;
}

export interface ClearDirtyLogArgs {
  slot: number;
  first_page: number;
  num_pages: number;
  /** one bit per page from first_page, little-endian bit order */
  dirty_bitmap: Uint8Array;
}

/** One CPUID leaf as KVM_GET_SUPPORTED_CPUID reports it (struct kvm_cpuid_entry2). */
export interface CpuidEntry {
  function: number;
  index: number;
  flags: number;
  eax: number;
  ebx: number;
  ecx: number;
  edx: number;
}

/** A handle on /dev/kvm. */
export class RealKvm {
  readonly fd: number;
  private vcpuMmapSize = 0;
  private closed = false;
  private cpuid: CpuidEntry[] | null = null;

  private constructor(fd: number) {
    this.fd = fd;
  }

  /** /dev/kvm exists (whether it can be opened is a separate question) */
  static available(): boolean {
    return existsSync(kvmDevicePath());
  }

  /** open(/dev/kvm, O_RDWR | O_CLOEXEC) */
  static open(): RealKvm {
    const path = kvmDevicePath();
    if (!existsSync(path)) {
      throw new Error(`${path} is missing: this host has no KVM (load kvm and a vendor module, or run where ${path} exists)`);
    }
    const r = sysOpen(path, O_RDWR | O_CLOEXEC);
    if (r.ret === -1) raiseErrno(`open ${path}`, r.errno);
    return new RealKvm(r.ret);
  }

  /** KVM_GET_API_VERSION (12 on every kernel since 2.6.22) */
  apiVersion(): number {
    return this.ioctlInt('KVM_GET_API_VERSION', 0);
  }

  /** KVM_CHECK_EXTENSION on /dev/kvm (system-wide answer) */
  checkExtension(cap: number): number {
    return this.ioctlInt('KVM_CHECK_EXTENSION', cap);
  }

  /** KVM_GET_VCPU_MMAP_SIZE: the size of a vCPU's kvm_run mapping */
  getVcpuMmapSize(): number {
    if (!this.vcpuMmapSize) this.vcpuMmapSize = this.ioctlInt('KVM_GET_VCPU_MMAP_SIZE', 0);
    return this.vcpuMmapSize;
  }

  /** KVM_GET_SUPPORTED_CPUID (cached): grows the buffer while the kernel answers E2BIG */
  getSupportedCpuid(): CpuidEntry[] {
    if (this.cpuid) return this.cpuid;
    for (let nent = 128; nent <= 4096; nent *= 2) {
      const size = CPUID2.SIZE + nent * CPUID_ENTRY2.SIZE;
      const buf = new ArgBuffer(size);
      buf.setU32(CPUID2.nent, nent);
      const r = sysIoctlPtr(this.openFd('KVM_GET_SUPPORTED_CPUID'), KVM_IOCTLS.KVM_GET_SUPPORTED_CPUID, buf.addr);
      if (r.ret === -1) {
        buf.free();
        if (r.errno === 7 /* E2BIG */) continue;
        raiseErrno('KVM_GET_SUPPORTED_CPUID', r.errno);
      }
      const n = buf.getU32(CPUID2.nent);
      const out: CpuidEntry[] = [];
      for (let i = 0; i < n; i++) {
        const o = CPUID2.entries + i * CPUID_ENTRY2.SIZE;
        out.push({
          function: buf.getU32(o + CPUID_ENTRY2.function),
          index: buf.getU32(o + CPUID_ENTRY2.index),
          flags: buf.getU32(o + CPUID_ENTRY2.flags),
          eax: buf.getU32(o + CPUID_ENTRY2.eax),
          ebx: buf.getU32(o + CPUID_ENTRY2.ebx),
          ecx: buf.getU32(o + CPUID_ENTRY2.ecx),
          edx: buf.getU32(o + CPUID_ENTRY2.edx),
        });
      }
      buf.free();
      this.cpuid = out;
      return out;
    }
    return raiseErrno('KVM_GET_SUPPORTED_CPUID', 7);
  }

  /** KVM_CREATE_VM(type): type is KVM_X86_DEFAULT_VM (0) unless a vendor type is wanted */
  createVm(type = 0): RealVm {
    const fd = this.ioctlInt('KVM_CREATE_VM', type);
    return new RealVm(this, fd, type);
  }

  /** close /dev/kvm; a second close does nothing (the fd number may belong to another file by then) */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    sysClose(this.fd);
  }

  /** the /dev/kvm fd for a call; KvmError EBADF once closed */
  private openFd(call: string): number {
    if (this.closed) throw new KvmError('EBADF', `${call}: /dev/kvm handle is closed`);
    return this.fd;
  }

  private ioctlInt(name: keyof typeof KVM_IOCTLS, arg: number): number {
    const r = sysIoctlInt(this.openFd(name), KVM_IOCTLS[name], arg);
    if (r.ret === -1) raiseErrno(name, r.errno);
    return r.ret;
  }
}

/** A VM fd and what we created through it. */
export class RealVm {
  readonly kvm: RealKvm;
  readonly fd: number;
  readonly vmType: number;
  private readonly arg = new ArgBuffer(4096);
  /** memory_size of each slot we created, keyed by the full `slot` field (as_id << 16 | id) */
  private readonly slotSizes = new Map<number, number>();
  private readonly vcpus: RealVcpu[] = [];
  private statsFile: KvmStatsFile | null = null;
  private closed = false;
  /** the VM fd itself is closed (closeVmFd() or close()) */
  private fdClosed = false;
  /** kvm->dirty_ring_size as this handle enabled it (0: no dirty ring) */
  dirtyRingSize = 0;

  constructor(kvm: RealKvm, fd: number, vmType: number) {
    this.kvm = kvm;
    this.fd = fd;
    this.vmType = vmType;
  }

  /** KVM_CHECK_EXTENSION on the VM fd (per-VM answer, e.g. KVM_CAP_MULTI_ADDRESS_SPACE) */
  checkExtension(cap: number): number {
    return this.ioctlInt('KVM_CHECK_EXTENSION', cap);
  }

  /** KVM_ENABLE_CAP */
  enableCap({ cap, flags = 0, args = [] }: EnableCapArgs): void {
    uapiUint(cap, 32, 'KVM_ENABLE_CAP', 'cap');
    uapiUint(flags, 32, 'KVM_ENABLE_CAP', 'flags');
    if (args.length > 4) throw new KvmError('EINVAL', 'KVM_ENABLE_CAP: args has 4 entries');
    args.forEach((x, i) => uapiU64(x, 'KVM_ENABLE_CAP', `args[${i}]`));
    this.openFd('KVM_ENABLE_CAP');
    const a = this.arg;
    a.ensure(ENABLE_CAP.SIZE);
    a.setU32(ENABLE_CAP.cap, cap);
    a.setU32(ENABLE_CAP.flags, flags);
    for (let i = 0; i < 4; i++) a.setU64(ENABLE_CAP.args + 8 * i, args[i] ?? 0);
    this.ioctlPtr('KVM_ENABLE_CAP');
    // the kernel takes args[0] as a u32 ring size
    if (cap === KVM_CAP_DIRTY_LOG_RING || cap === KVM_CAP_DIRTY_LOG_RING_ACQ_REL) this.dirtyRingSize = Number(BigInt.asUintN(32, BigInt(args[0] ?? 0)));
  }

  /** KVM_RESET_DIRTY_RINGS: the number of harvested entries reset */
  resetDirtyRings(): number {
    return this.ioctlInt('KVM_RESET_DIRTY_RINGS', 0);
  }

  /** KVM_SET_USER_MEMORY_REGION (legacy struct; memory_size 0 deletes the slot) */
  setUserMemoryRegion(region: UserspaceMemoryRegion): void {
    checkRegion(region, 'KVM_SET_USER_MEMORY_REGION');
    this.openFd('KVM_SET_USER_MEMORY_REGION');
    this.fillRegion(region, MEMORY_REGION.SIZE_V1);
    this.ioctlPtr('KVM_SET_USER_MEMORY_REGION');
    this.noteSlot(region);
  }

  /** KVM_SET_USER_MEMORY_REGION2 (KVM_MEM_GUEST_MEMFD slots bind guest_memfd at guest_memfd_offset) */
  setUserMemoryRegion2(region: UserspaceMemoryRegion2): void {
    checkRegion(region, 'KVM_SET_USER_MEMORY_REGION2');
    if (region.guest_memfd_offset !== undefined) uapiU64(region.guest_memfd_offset, 'KVM_SET_USER_MEMORY_REGION2', 'guest_memfd_offset');
    if (region.guest_memfd !== undefined) uapiUint(region.guest_memfd, 32, 'KVM_SET_USER_MEMORY_REGION2', 'guest_memfd');
    this.openFd('KVM_SET_USER_MEMORY_REGION2');
    this.fillRegion(region, MEMORY_REGION.SIZE_V2);
    this.arg.setU64(MEMORY_REGION.guest_memfd_offset, region.guest_memfd_offset ?? 0);
    this.arg.setU32(MEMORY_REGION.guest_memfd, region.guest_memfd ?? 0);
    this.ioctlPtr('KVM_SET_USER_MEMORY_REGION2');
    this.noteSlot(region);
  }

  /** KVM_CREATE_GUEST_MEMFD: returns the new guest_memfd file descriptor */
  createGuestMemfd({ size, flags = 0 }: { size: U64; flags?: U64 }): number {
    uapiU64(size, 'KVM_CREATE_GUEST_MEMFD', 'size');
    uapiU64(flags, 'KVM_CREATE_GUEST_MEMFD', 'flags');
    this.openFd('KVM_CREATE_GUEST_MEMFD');
    const a = this.arg;
    a.ensure(CREATE_GUEST_MEMFD.SIZE);
    a.setU64(CREATE_GUEST_MEMFD.size, size);
    a.setU64(CREATE_GUEST_MEMFD.flags, flags);
    return this.ioctlPtr('KVM_CREATE_GUEST_MEMFD');
  }

  /** KVM_SET_MEMORY_ATTRIBUTES (ENOTTY where CONFIG_KVM_GENERIC_MEMORY_ATTRIBUTES is off) */
  setMemoryAttributes({ address, size, attributes, flags = 0 }: MemoryAttributesArgs): void {
    for (const [name, v] of Object.entries({ address, size, attributes, flags })) uapiU64(v, 'KVM_SET_MEMORY_ATTRIBUTES', name);
    this.openFd('KVM_SET_MEMORY_ATTRIBUTES');
    const a = this.arg;
    a.ensure(MEMORY_ATTRIBUTES.SIZE);
    a.setU64(MEMORY_ATTRIBUTES.address, address);
    a.setU64(MEMORY_ATTRIBUTES.size, size);
    a.setU64(MEMORY_ATTRIBUTES.attributes, attributes);
    a.setU64(MEMORY_ATTRIBUTES.flags, flags);
    this.ioctlPtr('KVM_SET_MEMORY_ATTRIBUTES');
  }

  /**
   * KVM_GET_DIRTY_LOG: the slot's bitmap, ALIGN(npages, 64) / 8 bytes, bit 0 = first page.
   * The size comes from the region we set for this slot (an unknown slot gets 8 bytes; the
   * kernel then answers ENOENT before writing anything).
   */
  getDirtyLog({ slot }: { slot: number }): Uint8Array {
    // the kernel reads a u32: the bitmap is sized for exactly the slot it will look up
    uapiUint(slot, 32, 'KVM_GET_DIRTY_LOG', 'slot');
    this.openFd('KVM_GET_DIRTY_LOG');
    const bytes = this.bitmapBytes(slot);
    const bitmap = new ArgBuffer(bytes);
    const a = this.arg;
    a.ensure(DIRTY_LOG.SIZE);
    a.setU32(DIRTY_LOG.slot, slot);
    a.setU64(DIRTY_LOG.dirty_bitmap, bitmap.addr);
    try {
      this.ioctlPtr('KVM_GET_DIRTY_LOG');
      return new Uint8Array(memoryView(bitmap.addr, bytes).slice(0));
    } finally {
      bitmap.free();
    }
  }

  /** KVM_CLEAR_DIRTY_LOG (needs KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 enabled to be useful) */
  clearDirtyLog({ slot, first_page, num_pages, dirty_bitmap }: ClearDirtyLogArgs): void {
    uapiUint(slot, 32, 'KVM_CLEAR_DIRTY_LOG', 'slot');
    uapiUint(num_pages, 32, 'KVM_CLEAR_DIRTY_LOG', 'num_pages');
    uapiU64(first_page, 'KVM_CLEAR_DIRTY_LOG', 'first_page');
    this.openFd('KVM_CLEAR_DIRTY_LOG');
    // the kernel reads ALIGN(num_pages, 64) / 8 bytes of the user bitmap
    const bitmap = new ArgBuffer(Math.max(8, dirty_bitmap.length, Math.ceil(num_pages / 64) * 8));
    bitmap.bytes.set(dirty_bitmap);
    const a = this.arg;
    a.ensure(CLEAR_DIRTY_LOG.SIZE);
    a.setU32(CLEAR_DIRTY_LOG.slot, slot);
    a.setU32(CLEAR_DIRTY_LOG.num_pages, num_pages);
    a.setU64(CLEAR_DIRTY_LOG.first_page, first_page);
    a.setU64(CLEAR_DIRTY_LOG.dirty_bitmap, bitmap.addr);
    try {
      this.ioctlPtr('KVM_CLEAR_DIRTY_LOG');
    } finally {
      bitmap.free();
    }
  }

  /** KVM_CREATE_VCPU(id), its kvm_run mapping, and CPUID from KVM_GET_SUPPORTED_CPUID */
  createVcpu(id: number): RealVcpu {
    // the ioctl's argument is an unsigned long (kvm_vm_ioctl_create_vcpu())
    uapiU64(id, 'KVM_CREATE_VCPU', 'id');
    const fd = this.ioctlInt('KVM_CREATE_VCPU', id);
    const vcpu = new RealVcpu(this, fd, id);
    this.vcpus.push(vcpu);
    return vcpu;
  }

  /** KVM_SET_NR_MMU_PAGES: the shadow-page budget (EINVAL below KVM_MIN_ALLOC_MMU_PAGES) */
  setNrMmuPages(pages: number): void {
    this.ioctlInt('KVM_SET_NR_MMU_PAGES', pages);
  }

  /** memory_size of a slot created through this handle, if any */
  slotSize(slot: number): number | undefined {
    return this.slotSizes.get(slot);
  }

  /**
   * The VM's scalar statistics now (KVM_GET_STATS_FD: `pages_4k`, `remote_tlb_flush`,
   * `mmu_shadow_zapped`, ...). The stats fd is opened on first use and closed with the VM.
   */
  stats(): Record<string, number> {
    this.statsFile ??= new KvmStatsFile(this.ioctlInt('KVM_GET_STATS_FD', 0));
    return this.statsFile.read();
  }

  /**
   * close(2) of the VM fd alone (kvm_vm_release()): the VM ioctls of this handle are EBADF from
   * now on, while the vCPU fds (each holds a reference, kvm_get_kvm() at KVM_CREATE_VCPU) and
   * guest_memfd files keep the VM alive and the vCPUs running. close() closes the vCPUs later.
   */
  closeVmFd(): void {
    if (this.fdClosed) return;
    this.fdClosed = true;
    if (this.statsFile) sysClose(this.statsFile.fd);
    this.statsFile = null;
    sysClose(this.fd);
  }

  /** close the vCPUs and the VM fd (guest_memfd files keep the VM alive until closed) */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const v of this.vcpus) v.close();
    this.closeVmFd();
    this.arg.free();
  }

  /** close() was called */
  get isClosed(): boolean {
    return this.closed;
  }

  /**
   * The VM fd for a call. After close() the number may already belong to another VM or file,
   * so a closed handle never uses it: KvmError EBADF, what the kernel answers for a closed fd.
   */
  private openFd(call: string): number {
    if (this.fdClosed) throw new KvmError('EBADF', `${call}: the VM handle is closed`);
    return this.fd;
  }

  private bitmapBytes(slot: number): number {
    const size = this.slotSizes.get(slot);
    if (size === undefined) return 8;
    const npages = Math.ceil(size / 4096);
    return Math.max(8, (Math.ceil(npages / 64) * 64) / 8);
  }

  private fillRegion(region: UserspaceMemoryRegion, size: number): void {
    const a = this.arg;
    a.ensure(size);
    a.setU32(MEMORY_REGION.slot, region.slot);
    a.setU32(MEMORY_REGION.flags, region.flags);
    a.setU64(MEMORY_REGION.guest_phys_addr, region.guest_phys_addr);
    a.setU64(MEMORY_REGION.memory_size, region.memory_size);
    a.setU64(MEMORY_REGION.userspace_addr, region.userspace_addr);
  }

  private noteSlot(region: UserspaceMemoryRegion): void {
    const size = Number(region.memory_size);
    if (size === 0) this.slotSizes.delete(region.slot);
    else this.slotSizes.set(region.slot, size);
  }

  private ioctlPtr(name: keyof typeof KVM_IOCTLS): number {
    const r = sysIoctlPtr(this.openFd(name), KVM_IOCTLS[name], this.arg.addr);
    if (r.ret === -1) raiseErrno(name, r.errno);
    return r.ret;
  }

  private ioctlInt(name: keyof typeof KVM_IOCTLS, arg: number): number {
    const r = sysIoctlInt(this.openFd(name), KVM_IOCTLS[name], arg);
    if (r.ret === -1) raiseErrno(name, r.errno);
    return r.ret;
  }
}

/** the u32 / u64 fields of struct kvm_userspace_memory_region: EINVAL before any ioctl */
function checkRegion(region: UserspaceMemoryRegion, ioctl: string): void {
  uapiUint(region.slot, 32, ioctl, 'slot');
  uapiUint(region.flags, 32, ioctl, 'flags');
  uapiU64(region.guest_phys_addr, ioctl, 'guest_phys_addr');
  uapiU64(region.memory_size, ioctl, 'memory_size');
  uapiU64(region.userspace_addr, ioctl, 'userspace_addr');
}

export { KvmError };
