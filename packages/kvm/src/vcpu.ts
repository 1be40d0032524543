/**
 * A real vCPU: its fd, its kvm_run page, registers, CPUID and KVM_RUN, with the exit decoded
 * into the kernel's field names (the KvmRunExit shape of @ccmem/core where it has one).
 */
import {
  KVM_DIRTY_LOG_PAGE_OFFSET,
  KVM_EXIT_DIRTY_RING_FULL,
  KVM_EXIT_HYPERCALL,
  KVM_EXIT_INTERNAL_ERROR,
  KVM_EXIT_IO,
  KVM_EXIT_MEMORY_FAULT,
  KVM_EXIT_MMIO,
  KVM_EXIT_SHUTDOWN,
  KVM_EXIT_SYSTEM_EVENT,
  EXIT_REASONS,
  errnoName,
  KvmError,
  uapiU64,
  type ErrnoName,
  type KvmRunExit,
  type U64,
} from '@ccmem/core';
import { raiseErrno } from './host-memory.js';
import {
  ArgBuffer,
  CPUID2,
  CPUID_ENTRY2,
  KVM_IOCTLS,
  KVM_RUN_LAYOUT as RUN,
  MAP_SHARED,
  PRE_FAULT_MEMORY,
  PROT_READ,
  PROT_WRITE,
  REGS,
  memoryView,
  sysClose,
  sysIoctlInt,
  sysIoctlPtr,
  sysMmap,
  sysMunmap,
} from './libc.js';
import type { CpuidEntry, RealVm } from './real-kvm.js';
import { KvmStatsFile } from './stats.js';
import type { GuestAccess, GuestAccessResult, TinyGuest } from './guest.js';

export type RegName = Exclude<keyof typeof REGS, 'SIZE'>;
/** struct kvm_regs as 64-bit values */
export type KvmRegs = Record<RegName, bigint>;

/** exit reasons the kernel names that KvmRunExit has no variant for */
const OTHER_EXIT_NAMES: Record<number, string> = {
  1: 'KVM_EXIT_EXCEPTION',
  4: 'KVM_EXIT_DEBUG',
  5: 'KVM_EXIT_HLT',
  7: 'KVM_EXIT_IRQ_WINDOW_OPEN',
  9: 'KVM_EXIT_FAIL_ENTRY',
  10: 'KVM_EXIT_INTR',
};

/** An exit @ccmem/core's KvmRunExit has no shape for (HLT, IO, FAIL_ENTRY, UNKNOWN, ...). */
export interface OtherRunExit {
  readonly reason: string;
  readonly exit_reason: number;
  /** io exits: the port access */
  readonly io?: { direction: number; size: number; port: number; count: number };
  /** KVM_EXIT_UNKNOWN / KVM_EXIT_FAIL_ENTRY: the hardware reason */
  readonly hardware_reason?: number;
}

/** What one KVM_RUN returned. */
export interface RunOutcome {
  /** KVM_RUN's own result: 0, or the errno name when it returned -1 */
  readonly errno?: ErrnoName | string;
  /** kvm_run.exit_reason (meaningful when errno is unset, or EFAULT/EHWPOISON with a memory fault) */
  readonly exitReason: number;
}

export class RealVcpu {
  readonly vm: RealVm;
  readonly fd: number;
  readonly id: number;
  /** hva of the vCPU's struct kvm_run */
  readonly runAddr: number;
  readonly runSize: number;
  /** DataView over struct kvm_run */
  readonly run: DataView;
  /** the tiny guest driving this vCPU, once installed */
  guest: TinyGuest | null = null;
  private readonly regsBuf = new ArgBuffer(4096);
  private readonly sregsBuf = new ArgBuffer(4096);
  private closed = false;
  private statsFile: KvmStatsFile | null = null;
  /** the shared mapping of the dirty ring (hva, bytes), once mapped */
  private ring: { hva: number; size: number; words: Uint32Array } | null = null;

  constructor(vm: RealVm, fd: number, id: number) {
    this.vm = vm;
    this.fd = fd;
    this.id = id;
    this.runSize = vm.kvm.getVcpuMmapSize();
    const r = sysMmap(0, this.runSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (r.ret === -1) {
      sysClose(fd);
      raiseErrno('mmap(kvm_run)', r.errno);
    }
    this.runAddr = r.ret;
    this.run = new DataView(memoryView(this.runAddr, this.runSize));
  }

  /** KVM_SET_CPUID2 with the given leaves */
  setCpuid(entries: readonly CpuidEntry[]): void {
    const buf = new ArgBuffer(CPUID2.SIZE + entries.length * CPUID_ENTRY2.SIZE);
    try {
      buf.setU32(CPUID2.nent, entries.length);
      entries.forEach((e, i) => {
        const o = CPUID2.entries + i * CPUID_ENTRY2.SIZE;
        buf.setU32(o + CPUID_ENTRY2.function, e.function);
        buf.setU32(o + CPUID_ENTRY2.index, e.index);
        buf.setU32(o + CPUID_ENTRY2.flags, e.flags);
        buf.setU32(o + CPUID_ENTRY2.eax, e.eax);
        buf.setU32(o + CPUID_ENTRY2.ebx, e.ebx);
        buf.setU32(o + CPUID_ENTRY2.ecx, e.ecx);
        buf.setU32(o + CPUID_ENTRY2.edx, e.edx);
      });
      const r = sysIoctlPtr(this.openFd('KVM_SET_CPUID2'), KVM_IOCTLS.KVM_SET_CPUID2, buf.addr);
      if (r.ret === -1) raiseErrno('KVM_SET_CPUID2', r.errno);
    } finally {
      buf.free();
    }
  }

  /** KVM_GET_REGS */
  getRegs(): KvmRegs {
    this.regsIoctl('KVM_GET_REGS');
    const out = {} as KvmRegs;
    for (const [name, off] of Object.entries(REGS)) {
      if (name !== 'SIZE') out[name as RegName] = this.regsBuf.getU64Big(off);
    }
    return out;
  }

  /** KVM_GET_REGS, one register (no object built) */
  getReg(name: RegName): bigint {
    this.regsIoctl('KVM_GET_REGS');
    return this.regsBuf.getU64Big(REGS[name]);
  }

  /** KVM_SET_REGS; registers not given are zero, except rflags which defaults to 2 (bit 1 is fixed) */
  setRegs(regs: Partial<KvmRegs>): void {
    const b = this.regsBuf;
    b.ensure(REGS.SIZE);
    b.setU64(REGS.rflags, 2);
    for (const [name, value] of Object.entries(regs)) {
      if (value !== undefined) b.view.setBigUint64(REGS[name as RegName], BigInt.asUintN(64, value), true);
    }
    this.regsIoctl('KVM_SET_REGS');
  }

  /** KVM_GET_SREGS into an ArgBuffer the caller edits with the SREGS/SEGMENT/DTABLE offsets */
  getSregs(): ArgBuffer {
    const r = sysIoctlPtr(this.openFd('KVM_GET_SREGS'), KVM_IOCTLS.KVM_GET_SREGS, this.sregsBuf.addr);
    if (r.ret === -1) raiseErrno('KVM_GET_SREGS', r.errno);
    return this.sregsBuf;
  }

  /** KVM_SET_SREGS from the buffer getSregs() returned */
  setSregs(buf: ArgBuffer): void {
    const r = sysIoctlPtr(this.openFd('KVM_SET_SREGS'), KVM_IOCTLS.KVM_SET_SREGS, buf.addr);
    if (r.ret === -1) raiseErrno('KVM_SET_SREGS', r.errno);
  }

  /** KVM_RUN once; retried on EINTR. Does not throw: the errno is part of the outcome. */
  kvmRun(): RunOutcome {
    for (;;) {
      const r = sysIoctlInt(this.openFd('KVM_RUN'), KVM_IOCTLS.KVM_RUN, 0);
      const exitReason = this.run.getUint32(RUN.exit_reason, true);
      if (r.ret === -1) {
        if (r.errno === 4 /* EINTR */) continue;
        return { errno: errnoName(r.errno) ?? String(r.errno), exitReason };
      }
      return { exitReason };
    }
  }

  /**
   * Decode kvm_run after KVM_RUN: a KvmRunExit (MMIO, MEMORY_FAULT, HYPERCALL, SHUTDOWN,
   * INTERNAL_ERROR, SYSTEM_EVENT) or an OtherRunExit for everything else.
   */
  decodeExit(exitReason: number): KvmRunExit | OtherRunExit {
    const v = this.run;
    const u64 = (o: number) => Number(v.getBigUint64(o, true));
    switch (exitReason) {
      case KVM_EXIT_MMIO:
        return {
          reason: 'KVM_EXIT_MMIO',
          mmio: {
            phys_addr: u64(RUN.mmio.phys_addr),
            data: v.getBigUint64(RUN.mmio.data, true),
            len: v.getUint32(RUN.mmio.len, true),
            is_write: v.getUint8(RUN.mmio.is_write) !== 0,
          },
        };
      case KVM_EXIT_MEMORY_FAULT:
        return {
          reason: 'KVM_EXIT_MEMORY_FAULT',
          memory_fault: { flags: u64(RUN.memory_fault.flags), gpa: u64(RUN.memory_fault.gpa), size: u64(RUN.memory_fault.size) },
        };
      case KVM_EXIT_HYPERCALL:
        return {
          reason: 'KVM_EXIT_HYPERCALL',
          hypercall: {
            nr: u64(RUN.hypercall.nr),
            args: [0, 1, 2, 3, 4, 5].map((i) => u64(RUN.hypercall.args + 8 * i)),
            ret: u64(RUN.hypercall.ret),
            flags: v.getUint32(RUN.hypercall.flags, true),
          },
        };
      case KVM_EXIT_SHUTDOWN:
        return { reason: 'KVM_EXIT_SHUTDOWN' };
      case KVM_EXIT_DIRTY_RING_FULL:
        return { reason: 'KVM_EXIT_DIRTY_RING_FULL' };
      case KVM_EXIT_INTERNAL_ERROR:
        return { reason: 'KVM_EXIT_INTERNAL_ERROR', internal: { suberror: v.getUint32(RUN.internal.suberror, true) } };
      case KVM_EXIT_SYSTEM_EVENT: {
        const ndata = Math.min(v.getUint32(RUN.system_event.ndata, true), 16);
        const data = Array.from({ length: ndata }, (_, i) => u64(RUN.system_event.data + 8 * i));
        return { reason: 'KVM_EXIT_SYSTEM_EVENT', system_event: { type: v.getUint32(RUN.system_event.type, true), ndata, data } };
      }
      case KVM_EXIT_IO:
        return {
          reason: 'KVM_EXIT_IO',
          exit_reason: exitReason,
          io: {
            direction: v.getUint8(RUN.io.direction),
            size: v.getUint8(RUN.io.size),
            port: v.getUint16(RUN.io.port, true),
            count: v.getUint32(RUN.io.count, true),
          },
        };
      default: {
        const named = Object.entries(EXIT_REASONS).find(([, n]) => n === exitReason)?.[0];
        return {
          reason: named ?? OTHER_EXIT_NAMES[exitReason] ?? `exit_reason ${exitReason}`,
          exit_reason: exitReason,
          hardware_reason: u64(RUN.hw_reason),
        };
      }
    }
  }

  /** KVM_PRE_FAULT_MEMORY: returns the remaining {gpa, size} the kernel wrote back */
  preFaultMemory({ gpa, size, flags = 0 }: { gpa: U64; size: U64; flags?: U64 }): { gpa: number; size: number } {
    uapiU64(gpa, 'KVM_PRE_FAULT_MEMORY', 'gpa');
    uapiU64(size, 'KVM_PRE_FAULT_MEMORY', 'size');
    uapiU64(flags, 'KVM_PRE_FAULT_MEMORY', 'flags');
    const fd = this.openFd('KVM_PRE_FAULT_MEMORY');
    const b = new ArgBuffer(PRE_FAULT_MEMORY.SIZE);
    try {
      b.setU64(PRE_FAULT_MEMORY.gpa, gpa);
      b.setU64(PRE_FAULT_MEMORY.size, size);
      b.setU64(PRE_FAULT_MEMORY.flags, flags);
      const r = sysIoctlPtr(fd, KVM_IOCTLS.KVM_PRE_FAULT_MEMORY, b.addr);
      if (r.ret === -1) raiseErrno('KVM_PRE_FAULT_MEMORY', r.errno);
      return { gpa: b.getU64(PRE_FAULT_MEMORY.gpa), size: b.getU64(PRE_FAULT_MEMORY.size) };
    } finally {
      b.free();
    }
  }

  /**
   * mmap(2) of the vCPU fd at KVM_DIRTY_LOG_PAGE_OFFSET over the dirty ring with `prot` and
   * `flags`: the errno name when the kernel refuses (kvm_vcpu_mmap()), else null (the mapping
   * is removed again).
   */
  tryMapDirtyRing(prot: number, flags: number): string | null {
    const size = Math.max(this.vm.dirtyRingSize, 4096);
    const r = sysMmap(0, size, prot, flags, this.fd, KVM_DIRTY_LOG_PAGE_OFFSET * 4096);
    if (r.ret === -1) return errnoName(r.errno) ?? String(r.errno);
    sysMunmap(r.ret, size);
    return null;
  }

  /**
   * The dirty ring through a shared read-write mapping of the vCPU fd (made on first use):
   * 4 u32 words per struct kvm_dirty_gfn (flags, slot, offset lo, offset hi). null when the VM
   * has no ring (touching the pages would SIGBUS).
   */
  dirtyRingWords(): Uint32Array | null {
    if (this.ring) return this.ring.words;
    const size = this.vm.dirtyRingSize;
    if (!size) return null;
    const r = sysMmap(0, size, PROT_READ | PROT_WRITE, MAP_SHARED, this.fd, KVM_DIRTY_LOG_PAGE_OFFSET * 4096);
    if (r.ret === -1) raiseErrno('mmap(dirty ring)', r.errno);
    this.ring = { hva: r.ret, size, words: new Uint32Array(memoryView(r.ret, size)) };
    return this.ring.words;
  }

  /** Run one guest access through the installed tiny guest (see guest.ts). */
  guestAccess(access: GuestAccess): GuestAccessResult {
    if (!this.guest) throw new Error(`vCPU ${this.id} has no guest installed: call installGuest(vm, vcpu) first`);
    return this.guest.guestAccess(access);
  }

  /** Complete a KVM_EXIT_MMIO read with `value` and let the guest finish the access. */
  completeMmioRead(value: bigint): GuestAccessResult {
    if (!this.guest) throw new Error(`vCPU ${this.id} has no guest installed`);
    return this.guest.completeMmioRead(value);
  }

  /** The vCPU's scalar statistics now (KVM_GET_STATS_FD on the vCPU fd: `pf_taken`, `pf_fixed`, `exits`, ...). */
  stats(): Record<string, number> {
    if (!this.statsFile) {
      const r = sysIoctlInt(this.openFd('KVM_GET_STATS_FD'), KVM_IOCTLS.KVM_GET_STATS_FD, 0);
      if (r.ret === -1) raiseErrno('KVM_GET_STATS_FD', r.errno);
      this.statsFile = new KvmStatsFile(r.ret);
    }
    return this.statsFile.read();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.statsFile) sysClose(this.statsFile.fd);
    this.statsFile = null;
    sysMunmap(this.runAddr, this.runSize);
    if (this.ring) sysMunmap(this.ring.hva, this.ring.size);
    this.ring = null;
    sysClose(this.fd);
    this.regsBuf.free();
    this.sregsBuf.free();
  }

  /**
   * The vCPU fd for an ioctl; after close() the number may belong to another file by now, so a
   * closed handle never uses it: KvmError EBADF (what the kernel answers for a closed fd).
   */
  private openFd(call: string): number {
    if (this.closed) throw new KvmError('EBADF', `${call}: vCPU ${this.id} is closed`);
    return this.fd;
  }

  /** close() was called */
  get isClosed(): boolean {
    return this.closed;
  }

  private regsIoctl(name: 'KVM_GET_REGS' | 'KVM_SET_REGS'): void {
    const r = sysIoctlPtr(this.openFd(name), KVM_IOCTLS[name], this.regsBuf.addr);
    if (r.ret === -1) raiseErrno(name, r.errno);
  }
}
