/**
 * libc through FFI (koffi): the system calls @ccmem/kvm needs, the KVM ioctl numbers and the
 * byte layouts of the uAPI structs they take.
 *
 * Every pointer crosses the FFI boundary as a plain integer (`uintptr_t`): host virtual
 * addresses are JS numbers (user addresses are below 2^47, exact in a double), and memory at
 * an address is reached through `koffi.view()`. Struct arguments are built in a scratch page
 * of our own (see `ArgBuffer`), so the bytes the kernel reads are exactly the ones laid out
 * below, with offsets from include/uapi/linux/kvm.h and arch/x86/include/uapi/asm/kvm.h.
 */
import { createRequire } from 'node:module';
import * as koffi from 'koffi';

const libc = koffi.load('libc.so.6');

/* ---- prototypes ------------------------------------------------------------------------- */

const c_open = libc.func('open', 'int', ['str', 'int', 'uint32_t']);
const c_close = libc.func('close', 'int', ['int']);
/** ioctl(2) is variadic; the third argument is declared once as a pointer, once as an integer. */
const c_ioctl_ptr = libc.func('ioctl', 'int', ['int', 'unsigned long', 'uintptr_t']);
const c_ioctl_int = libc.func('ioctl', 'int', ['int', 'unsigned long', 'unsigned long']);
const c_mmap = libc.func('mmap', 'uintptr_t', ['uintptr_t', 'size_t', 'int', 'int', 'int', 'int64_t']);
const c_munmap = libc.func('munmap', 'int', ['uintptr_t', 'size_t']);
const c_madvise = libc.func('madvise', 'int', ['uintptr_t', 'size_t', 'int']);
const c_memfd_create = libc.func('memfd_create', 'int', ['str', 'unsigned int']);
const c_fallocate = libc.func('fallocate', 'int', ['int', 'int', 'int64_t', 'int64_t']);
const c_ftruncate = libc.func('ftruncate', 'int', ['int', 'int64_t']);
const c_read = libc.func('read', 'int64_t', ['int', 'uintptr_t', 'size_t']);
const c_write = libc.func('write', 'int64_t', ['int', 'uintptr_t', 'size_t']);
const c_pread = libc.func('pread64', 'int64_t', ['int', 'uintptr_t', 'size_t', 'int64_t']);
const c_pwrite = libc.func('pwrite64', 'int64_t', ['int', 'uintptr_t', 'size_t', 'int64_t']);
const c_mprotect = libc.func('mprotect', 'int', ['uintptr_t', 'size_t', 'int']);
/** fstat(2) is a glibc symbol from 2.33 on; older ones only have __fxstat (resolved on first use) */
let c_fstat: ((fd: number, buf: number) => number) | null = null;
function fstatFn(): (fd: number, buf: number) => number {
  if (c_fstat) return c_fstat;
  try {
    const f = libc.func('fstat', 'int', ['int', 'uintptr_t']);
    c_fstat = (fd, buf) => f(fd, buf) as number;
  } catch {
    const f = libc.func('__fxstat', 'int', ['int', 'int', 'uintptr_t']);
    c_fstat = (fd, buf) => f(1 /* _STAT_VER_LINUX */, fd, buf) as number;
  }
  return c_fstat;
}

/* ---- constants (asm-generic / x86-64) ---------------------------------------------------- */

export const O_RDWR = 0o2;
export const O_CLOEXEC = 0o2000000;
export const PROT_NONE = 0;
export const PROT_READ = 1;
export const PROT_WRITE = 2;
export const PROT_EXEC = 4;
export const MAP_SHARED = 0x01;
export const MAP_PRIVATE = 0x02;
export const MAP_FIXED = 0x10;
export const MAP_ANONYMOUS = 0x20;
export const MAP_NORESERVE = 0x4000;
/** fail instead of replacing an existing mapping (Linux 4.17+) */
export const MAP_FIXED_NOREPLACE = 0x100000;
/** mmap's error return, (void *)-1 as an unsigned 64-bit integer */
const MAP_FAILED = 2 ** 64 - 1;
export const MADV_DONTNEED = 4;
export const MADV_REMOVE = 9;
export const MADV_COLLAPSE = 25;
export const MADV_HUGEPAGE = 14;
export const MADV_NOHUGEPAGE = 15;
export const MFD_CLOEXEC = 1;

/* ---- errno ------------------------------------------------------------------------------- */

/** The calling thread's errno (koffi reads it right after the last FFI call). */
export function errno(): number {
  return koffi.errno();
}

/** A libc call failed: the raw result was -1 and `errno` says why. */
export class SyscallError extends Error {
  readonly errno: number;
  readonly call: string;
  constructor(call: string, err: number) {
    super(`${call} failed: errno ${err}`);
    this.name = 'SyscallError';
    this.call = call;
    this.errno = err;
  }
}

/** The result of a call that may fail: `ret` is the return value, `errno` is set when it is -1. */
export interface SysResult {
  ret: number;
  errno: number;
}

function result(ret: number): SysResult {
  return { ret, errno: ret === -1 ? koffi.errno() : 0 };
}

/* ---- thin wrappers: return -1/errno, never throw ------------------------------------------ */

export function sysOpen(path: string, flags: number): SysResult {
  return result(c_open(path, flags, 0) as number);
}
export function sysClose(fd: number): SysResult {
  return result(c_close(fd) as number);
}
export function sysIoctlPtr(fd: number, request: number, arg: number): SysResult {
  return result(c_ioctl_ptr(fd, request, arg) as number);
}
export function sysIoctlInt(fd: number, request: number, arg: number): SysResult {
  return result(c_ioctl_int(fd, request, arg) as number);
}
export function sysMmap(addr: number, length: number, prot: number, flags: number, fd: number, offset: number): SysResult {
  const raw = c_mmap(addr, length, prot, flags, fd, offset) as number | bigint;
  const ret = Number(raw);
  if (ret === MAP_FAILED || ret === -1) return { ret: -1, errno: koffi.errno() };
  return { ret, errno: 0 };
}
export function sysMunmap(addr: number, length: number): SysResult {
  return result(c_munmap(addr, length) as number);
}
export function sysMadvise(addr: number, length: number, advice: number): SysResult {
  return result(c_madvise(addr, length, advice) as number);
}
export function sysMemfdCreate(name: string, flags: number): SysResult {
  return result(c_memfd_create(name, flags) as number);
}
export function sysFallocate(fd: number, mode: number, offset: number, len: number): SysResult {
  return result(c_fallocate(fd, mode, offset, len) as number);
}
export function sysFtruncate(fd: number, length: number): SysResult {
  return result(c_ftruncate(fd, length) as number);
}

/** read(2) / pread(2) (`offset` given) into the buffer at `buf` */
export function sysRead(fd: number, buf: number, count: number, offset?: number): SysResult {
  return result(Number(offset === undefined ? c_read(fd, buf, count) : c_pread(fd, buf, count, offset)));
}
/** write(2) / pwrite(2) (`offset` given) from the buffer at `buf` */
export function sysWrite(fd: number, buf: number, count: number, offset?: number): SysResult {
  return result(Number(offset === undefined ? c_write(fd, buf, count) : c_pwrite(fd, buf, count, offset)));
}
export function sysMprotect(addr: number, length: number, prot: number): SysResult {
  return result(c_mprotect(addr, length, prot) as number);
}
/** x86-64 struct stat: the offsets of the fields read (asm/stat.h) */
export const STAT = { st_ino: 8, st_size: 48, st_blksize: 56, SIZE: 144 } as const;
/** fstat(2) into the buffer at `buf` (STAT.SIZE bytes) */
export function sysFstat(fd: number, buf: number): SysResult {
  return result(fstatFn()(fd, buf));
}

/** An ArrayBuffer over `length` bytes of this process's memory at `hva` (no copy). */
export function memoryView(hva: number, length: number): ArrayBuffer {
  return koffi.view(hva, length);
}

/** The absolute path of koffi's CommonJS entry point, for child processes that need FFI too. */
export function koffiModulePath(): string {
  return createRequire(import.meta.url).resolve('koffi');
}

/* ---- ioctl numbers (include/uapi/asm-generic/ioctl.h) -------------------------------------- */

const IOC_NRBITS = 8;
const IOC_TYPEBITS = 8;
const IOC_SIZEBITS = 14;
const IOC_NRSHIFT = 0;
const IOC_TYPESHIFT = IOC_NRSHIFT + IOC_NRBITS;
const IOC_SIZESHIFT = IOC_TYPESHIFT + IOC_TYPEBITS;
const IOC_DIRSHIFT = IOC_SIZESHIFT + IOC_SIZEBITS;
export const IOC_NONE = 0;
export const IOC_WRITE = 1;
export const IOC_READ = 2;

/** _IOC(dir, type, nr, size); computed with multiplication so dir bit 31 stays unsigned. */
export function _IOC(dir: number, type: number, nr: number, size: number): number {
  return dir * 2 ** IOC_DIRSHIFT + size * 2 ** IOC_SIZESHIFT + type * 2 ** IOC_TYPESHIFT + nr * 2 ** IOC_NRSHIFT;
}
export const _IO = (type: number, nr: number): number => _IOC(IOC_NONE, type, nr, 0);
export const _IOR = (type: number, nr: number, size: number): number => _IOC(IOC_READ, type, nr, size);
export const _IOW = (type: number, nr: number, size: number): number => _IOC(IOC_WRITE, type, nr, size);
export const _IOWR = (type: number, nr: number, size: number): number => _IOC(IOC_READ | IOC_WRITE, type, nr, size);

/* ---- struct layouts: byte offsets and sizes ----------------------------------------------- */

/** struct kvm_userspace_memory_region / kvm_userspace_memory_region2 (same first 32 bytes) */
export const MEMORY_REGION = {
  slot: 0,
  flags: 4,
  guest_phys_addr: 8,
  memory_size: 16,
  userspace_addr: 24,
  SIZE_V1: 32,
  /* region2 only */
  guest_memfd_offset: 32,
  guest_memfd: 40,
  pad1: 44,
  pad2: 48, // u64 pad2[14]
  SIZE_V2: 160,
} as const;
/** struct kvm_create_guest_memfd { u64 size; u64 flags; u64 reserved[6]; } */
export const CREATE_GUEST_MEMFD = { size: 0, flags: 8, reserved: 16, SIZE: 64 } as const;
/** struct kvm_dirty_log { u32 slot; u32 padding1; union { void *dirty_bitmap; u64 padding2; }; } */
export const DIRTY_LOG = { slot: 0, padding1: 4, dirty_bitmap: 8, SIZE: 16 } as const;
/** struct kvm_clear_dirty_log { u32 slot; u32 num_pages; u64 first_page; union { void *dirty_bitmap; u64 padding2; }; } */
export const CLEAR_DIRTY_LOG = { slot: 0, num_pages: 4, first_page: 8, dirty_bitmap: 16, SIZE: 24 } as const;
/** struct kvm_enable_cap { u32 cap; u32 flags; u64 args[4]; u8 pad[64]; } */
export const ENABLE_CAP = { cap: 0, flags: 4, args: 8, pad: 40, SIZE: 104 } as const;
/** struct kvm_memory_attributes { u64 address; u64 size; u64 attributes; u64 flags; } */
export const MEMORY_ATTRIBUTES = { address: 0, size: 8, attributes: 16, flags: 24, SIZE: 32 } as const;
/** struct kvm_pre_fault_memory { u64 gpa; u64 size; u64 flags; u64 padding[5]; } */
export const PRE_FAULT_MEMORY = { gpa: 0, size: 8, flags: 16, padding: 24, SIZE: 64 } as const;
/** struct kvm_regs (x86): rax rbx rcx rdx rsi rdi rsp rbp r8..r15 rip rflags, all u64 */
export const REGS = {
  rax: 0, rbx: 8, rcx: 16, rdx: 24, rsi: 32, rdi: 40, rsp: 48, rbp: 56,
  r8: 64, r9: 72, r10: 80, r11: 88, r12: 96, r13: 104, r14: 112, r15: 120,
  rip: 128, rflags: 136, SIZE: 144,
} as const;
/**
 * struct kvm_segment { u64 base; u32 limit; u16 selector; u8 type, present, dpl, db, s, l, g,
 * avl, unusable, padding; }
 */
export const SEGMENT = {
  base: 0, limit: 8, selector: 12, type: 14, present: 15, dpl: 16, db: 17, s: 18, l: 19, g: 20,
  avl: 21, unusable: 22, padding: 23, SIZE: 24,
} as const;
/** struct kvm_dtable { u64 base; u16 limit; u16 padding[3]; } */
export const DTABLE = { base: 0, limit: 8, SIZE: 16 } as const;
/**
 * struct kvm_sregs: cs ds es fs gs ss tr ldt (kvm_segment), gdt idt (kvm_dtable), cr0 cr2 cr3
 * cr4 cr8 efer apic_base (u64), interrupt_bitmap[(KVM_NR_INTERRUPTS + 63) / 64] (u64[4]).
 */
export const SREGS = {
  cs: 0, ds: 24, es: 48, fs: 72, gs: 96, ss: 120, tr: 144, ldt: 168,
  gdt: 192, idt: 208,
  cr0: 224, cr2: 232, cr3: 240, cr4: 248, cr8: 256, efer: 264, apic_base: 272,
  interrupt_bitmap: 280, SIZE: 312,
} as const;
/** struct kvm_cpuid2 { u32 nent; u32 padding; struct kvm_cpuid_entry2 entries[]; } */
export const CPUID2 = { nent: 0, padding: 4, entries: 8, SIZE: 8 } as const;
/** struct kvm_cpuid_entry2 { u32 function, index, flags, eax, ebx, ecx, edx, padding[3]; } */
export const CPUID_ENTRY2 = { function: 0, index: 4, flags: 8, eax: 12, ebx: 16, ecx: 20, edx: 24, SIZE: 40 } as const;
/**
 * struct kvm_run: the shared page of a vCPU (mmap of the vCPU fd). The exit union starts at 32.
 * On x86 there is no s390 psw, so: request_interrupt_window(0) immediate_exit(1) exit_reason(8)
 * ready_for_interrupt_injection(12) if_flag(13) flags(14) cr8(16) apic_base(24) union(32).
 */
export const KVM_RUN_LAYOUT = {
  request_interrupt_window: 0,
  immediate_exit: 1,
  exit_reason: 8,
  cr8: 16,
  apic_base: 24,
  /** the exit union */
  u: 32,
  /** hw.hardware_exit_reason / fail_entry.hardware_entry_failure_reason (u64) */
  hw_reason: 32,
  /** io: u8 direction; u8 size; u16 port; u32 count; u64 data_offset */
  io: { direction: 32, size: 33, port: 34, count: 36, data_offset: 40 },
  /** mmio: u64 phys_addr; u8 data[8]; u32 len; u8 is_write */
  mmio: { phys_addr: 32, data: 40, len: 48, is_write: 52 },
  /** hypercall: u64 nr; u64 args[6]; u64 ret; u32 flags (was longmode); u32 pad */
  hypercall: { nr: 32, args: 40, ret: 88, flags: 96 },
  /** internal: u32 suberror; u32 ndata; u64 data[16] */
  internal: { suberror: 32, ndata: 36, data: 40 },
  /** system_event: u32 type; u32 ndata; u64 data[16] */
  system_event: { type: 32, ndata: 36, data: 40 },
  /** memory_fault: u64 flags; u64 gpa; u64 size */
  memory_fault: { flags: 32, gpa: 40, size: 48 },
} as const;

/* ---- KVM ioctls (include/uapi/linux/kvm.h, KVMIO = 0xAE) ---------------------------------- */

export const KVMIO = 0xae;
export const KVM_IOCTLS = {
  /* system ioctls (/dev/kvm) */
  KVM_GET_API_VERSION: _IO(KVMIO, 0x00),
  KVM_CREATE_VM: _IO(KVMIO, 0x01),
  KVM_CHECK_EXTENSION: _IO(KVMIO, 0x03),
  KVM_GET_VCPU_MMAP_SIZE: _IO(KVMIO, 0x04),
  KVM_GET_SUPPORTED_CPUID: _IOWR(KVMIO, 0x05, CPUID2.SIZE),
  /* VM ioctls */
  KVM_CREATE_VCPU: _IO(KVMIO, 0x41),
  KVM_SET_NR_MMU_PAGES: _IO(KVMIO, 0x44),
  KVM_GET_DIRTY_LOG: _IOW(KVMIO, 0x42, DIRTY_LOG.SIZE),
  KVM_SET_USER_MEMORY_REGION: _IOW(KVMIO, 0x46, MEMORY_REGION.SIZE_V1),
  KVM_SET_TSS_ADDR: _IO(KVMIO, 0x47),
  KVM_SET_IDENTITY_MAP_ADDR: _IOW(KVMIO, 0x48, 8),
  KVM_SET_USER_MEMORY_REGION2: _IOW(KVMIO, 0x49, MEMORY_REGION.SIZE_V2),
  KVM_ENABLE_CAP: _IOW(KVMIO, 0xa3, ENABLE_CAP.SIZE),
  KVM_CLEAR_DIRTY_LOG: _IOWR(KVMIO, 0xc0, CLEAR_DIRTY_LOG.SIZE),
  KVM_RESET_DIRTY_RINGS: _IO(KVMIO, 0xc7),
  KVM_SET_MEMORY_ATTRIBUTES: _IOW(KVMIO, 0xd2, MEMORY_ATTRIBUTES.SIZE),
  KVM_CREATE_GUEST_MEMFD: _IOWR(KVMIO, 0xd4, CREATE_GUEST_MEMFD.SIZE),
  /* VM and vCPU ioctl: a file of binary statistics (virt/kvm/binary_stats.c) */
  KVM_GET_STATS_FD: _IO(KVMIO, 0xce),
  /* vCPU ioctls */
  KVM_RUN: _IO(KVMIO, 0x80),
  KVM_GET_REGS: _IOR(KVMIO, 0x81, REGS.SIZE),
  KVM_SET_REGS: _IOW(KVMIO, 0x82, REGS.SIZE),
  KVM_GET_SREGS: _IOR(KVMIO, 0x83, SREGS.SIZE),
  KVM_SET_SREGS: _IOW(KVMIO, 0x84, SREGS.SIZE),
  KVM_SET_CPUID2: _IOW(KVMIO, 0x90, CPUID2.SIZE),
  KVM_PRE_FAULT_MEMORY: _IOWR(KVMIO, 0xd5, PRE_FAULT_MEMORY.SIZE),
} as const;

/* ---- argument memory ---------------------------------------------------------------------- */

/**
 * A page-aligned block of anonymous memory used to pass ioctl arguments. `view` is a DataView
 * over it; `addr` is what the ioctl receives. Grown on demand, never shrunk.
 */
export class ArgBuffer {
  /** bytes mapped by every ArgBuffer not yet freed (a leak shows here) */
  static liveBytes = 0;
  addr = 0;
  size = 0;
  view!: DataView;
  bytes!: Uint8Array;

  constructor(initial = 65536) {
    this.ensure(initial);
  }

  /** make the buffer at least `size` bytes and zero its first `size` bytes */
  ensure(size: number): void {
    if (size > this.size) {
      const length = Math.ceil(size / 4096) * 4096;
      const r = sysMmap(0, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (r.ret === -1) throw new SyscallError('mmap', r.errno);
      if (this.size) sysMunmap(this.addr, this.size);
      ArgBuffer.liveBytes += length - this.size;
      this.addr = r.ret;
      this.size = length;
      const ab = memoryView(this.addr, length);
      this.view = new DataView(ab);
      this.bytes = new Uint8Array(ab);
    }
    this.bytes.fill(0, 0, size);
  }

  /** unmap the buffer; it must not be used afterwards */
  free(): void {
    if (this.size) sysMunmap(this.addr, this.size);
    ArgBuffer.liveBytes -= this.size;
    this.size = 0;
    this.addr = 0;
  }

  setU64(offset: number, value: number | bigint): void {
    this.view.setBigUint64(offset, BigInt(value), true);
  }
  getU64(offset: number): number {
    return Number(this.view.getBigUint64(offset, true));
  }
  getU64Big(offset: number): bigint {
    return this.view.getBigUint64(offset, true);
  }
  setU32(offset: number, value: number): void {
    this.view.setUint32(offset, value >>> 0, true);
  }
  getU32(offset: number): number {
    return this.view.getUint32(offset, true);
  }
}
