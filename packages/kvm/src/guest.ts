/**
 * The tiny guest: hand-assembled x86-64 code that performs one guest access per command and
 * reports back through port I/O, so every exit and every byte is the kernel's own.
 *
 * Layout. The guest lives in a memslot of its own (slot GUEST_SLOT_ID = 32763, the highest
 * user slot, by default) at `base` (default 0x7f_ffc0_0000, the last 4 MiB below 512 GiB),
 * backed by private anonymous memory and never created with KVM_MEM_LOG_DIRTY_PAGES:
 *
 *   base + 0x0000  code (the routines below)
 *   base + 0x1000  GDT: null, 64-bit code (0x08), data (0x10), 64-bit TSS (0x18)
 *   base + 0x2000  TSS (104 bytes, all zero)
 *   base + 0x3000  PML4: entry 0 -> PDPT
 *   base + 0x4000  PDPT: 512 entries -> the 512 page directories
 *   base + 0x5000  512 page directories of 2 MiB leaves (A and D preset)
 *   base + 0x205000  alias PDPT, base + 0x206000 alias PD (see "Paged accesses")
 *   base + 0x207000  IDT (#PF gate only), base + 0x208000..0x20a000 stack
 *
 * The page tables identity-map guest-physical [0, 512 GiB) with 2 MiB pages, so any gpa the
 * scenario uses below 512 GiB is reachable at the same linear address. Accesses at or above
 * 512 GiB hit a not-present PML4 entry; with no IDT the #PF becomes a triple fault and the
 * access reports KVM_EXIT_SHUTDOWN. The guest's own range must not overlap scenario memory;
 * `guestAccess` refuses gpas inside it.
 *
 * Protocol. The host never lets the guest loop: for each access it sets RIP to the routine
 * for (kind, size) and RBX = gpa, RCX = value (KVM_SET_REGS), then KVM_RUN. Each routine does
 * exactly one load or store of the requested width and then `out 0x10, al`; the KVM_EXIT_IO
 * on port 0x10 is the "done" report and RAX holds the loaded value (KVM_GET_REGS). Any other
 * exit before the report (KVM_EXIT_MMIO, KVM_EXIT_MEMORY_FAULT with KVM_RUN failing EFAULT,
 * KVM_EXIT_SHUTDOWN, KVM_EXIT_INTERNAL_ERROR, ...) is returned with the kernel's fields.
 *
 * Paged accesses. A scenario may give the vCPU its own control registers and page tables
 * (`guestAccessPaged`). The guest's code, GDT, TSS, IDT and stack are then reached through an
 * alias at the top of the address space (GUEST_ALIAS = PML4 index 511: alias PDPT → alias PD →
 * two 2 MiB leaves over the guest's slot, A/D preset), so the scenario's tables need only one
 * extra top-level entry (`aliasTopLevelEntry()`, which the caller writes into the scenario's
 * root at index 511) and keep every other gva to themselves. The #PF gate reports the error
 * code and CR2 on port 0x11, so a guest page fault is an outcome, not a triple fault.
 *
 * What `fetch` models. A fetch is first performed as a data load of `size` bytes (default 1) at
 * the gpa, through the same guest page walk, memslot lookup and KVM fault path as an instruction
 * fetch; when that finds RAM it is reported with `fetchAsRead: true`. Executing scenario bytes
 * in RAM for real would run arbitrary instructions with side effects on scenario memory (zeroed
 * memory decodes as `add [rax], al`), and an exec-only distinction (NX, execute-only EPT) does
 * not arise for the default VM type, whose pages are always mapped executable. When the load
 * exits as MMIO (no RAM at the gpa), nothing the scenario wrote can run there, so the guest then
 * really jumps to the gpa and the kernel's answer to an instruction fetch from non-RAM is
 * reported (on v6.18: KVM_EXIT_INTERNAL_ERROR, KVM_INTERNAL_ERROR_EMULATION).
 */
import { KVM_EXIT_DIRTY_RING_FULL, KVM_EXIT_MMIO, type ErrnoName, type KvmRunExit } from '@ccmem/core';
import { PROT_READ, PROT_WRITE, DTABLE, SEGMENT, SREGS, memoryView, KVM_RUN_LAYOUT as RUN } from './libc.js';
import { mmap, munmap } from './host-memory.js';
import type { RealVm } from './real-kvm.js';
import type { OtherRunExit, RealVcpu } from './vcpu.js';

/** the highest user memslot id on x86 (KVM_USER_MEM_SLOTS - 1) */
export const GUEST_SLOT_ID = 32763;
/** default guest-physical base of the guest's slot: 512 GiB - 4 MiB */
export const GUEST_DEFAULT_BASE = 0x80_0000_0000 - 0x40_0000;
export const GUEST_SLOT_SIZE = 0x40_0000;
/** the guest's "done" port */
export const GUEST_REPORT_PORT = 0x10;
/** guest-physical addresses the page tables identity-map */
export const GUEST_IDENTITY_MAP_LIMIT = 0x80_0000_0000;

const OFF_CODE = 0x0000;
const OFF_GDT = 0x1000;
const OFF_TSS = 0x2000;
const OFF_PML4 = 0x3000;
const OFF_PDPT = 0x4000;
const OFF_PD = 0x5000;
const OFF_ALIAS_PDPT = 0x205000;
const OFF_ALIAS_PD = 0x206000;
const OFF_IDT = 0x207000;
const OFF_STACK_TOP = 0x20a000;

/** where the guest's slot appears in a scenario's address space: PML4 index 511 (and its own) */
export const GUEST_ALIAS = 0xffff_ff80_0000_0000n;
/** the top-level (PML4) index of GUEST_ALIAS */
export const GUEST_ALIAS_TOP_INDEX = 511;
/** the port the #PF handler reports on (RAX = error code, RBX = CR2) */
export const GUEST_FAULT_PORT = 0x11;

/* page-table entry bits */
const PTE_P = 0x1n;
const PTE_RW = 0x2n;
const PTE_A = 0x20n;
const PTE_D = 0x40n;
const PTE_PS = 0x80n;

/* control-register bits */
const CR0_PE = 1n << 0n;
const CR0_NE = 1n << 5n;
const CR0_PG = 1n << 31n;
const CR4_PAE = 1n << 5n;
const CR4_OSFXSR = 1n << 9n;
const CR4_LA57 = 1n << 12n;
const EFER_LME = 1n << 8n;
const EFER_LMA = 1n << 10n;

/** `out 0x10, al` ; `hlt` — the report every routine ends with */
const REPORT = [0xe6, GUEST_REPORT_PORT, /* out 0x10, al */ 0xf4 /* hlt */];

/** The routines, hand-assembled. Operands: RBX = gpa, RCX = value, RDX = end (touch). */
const ROUTINES: Record<string, number[]> = {
  read1: [0x0f, 0xb6, 0x03, /* movzx eax, byte [rbx] */ ...REPORT],
  read2: [0x0f, 0xb7, 0x03, /* movzx eax, word [rbx] */ ...REPORT],
  read4: [0x8b, 0x03, /* mov eax, [rbx] */ ...REPORT],
  read8: [0x48, 0x8b, 0x03, /* mov rax, [rbx] */ ...REPORT],
  write1: [0x88, 0x0b, /* mov [rbx], cl */ ...REPORT],
  write2: [0x66, 0x89, 0x0b, /* mov [rbx], cx */ ...REPORT],
  write4: [0x89, 0x0b, /* mov [rbx], ecx */ ...REPORT],
  write8: [0x48, 0x89, 0x0b, /* mov [rbx], rcx */ ...REPORT],
  invlpg: [0x0f, 0x01, 0x3b, /* invlpg [rbx] */ ...REPORT],
  // #PF handler: pop the error code into RAX, CR2 into RBX, report on port 0x11
  pf: [0x58, /* pop rax */ 0x0f, 0x20, 0xd3, /* mov rbx, cr2 */ 0xe6, GUEST_FAULT_PORT, /* out 0x11, al */ 0xf4 /* hlt */],
  // touch: store CL to one byte of every 4 KiB page of [RBX, RDX)
  touch: [
    0x88, 0x0b, //                               loop: mov [rbx], cl
    0x48, 0x81, 0xc3, 0x00, 0x10, 0x00, 0x00, //       add rbx, 0x1000
    0x48, 0x39, 0xd3, //                               cmp rbx, rdx
    0x72, 0xf2, //                                     jb loop  (rel8 -14)
    ...REPORT,
  ],
};

export type GuestAccessKind = 'read' | 'write' | 'fetch';

export interface GuestAccess {
  kind: GuestAccessKind;
  gpa: number;
  /** 1, 2, 4 or 8 bytes (default 8 for read/write, 1 for fetch) */
  size?: number;
  /** the value a write stores (truncated to size) */
  value?: bigint;
}

/** The outcome of one guest access: the loaded value, or the exit that stopped it. */
export interface GuestAccessResult {
  /** the value loaded (read/fetch), or stored (write) once the access completed */
  value?: bigint;
  /** the exit that stopped the access before it completed */
  exit?: KvmRunExit | OtherRunExit;
  /** KVM_RUN failed with this errno (EFAULT / EHWPOISON accompany KVM_EXIT_MEMORY_FAULT) */
  errno?: ErrnoName | string;
  /** a fetch was performed as a data load (see the file comment) */
  fetchAsRead?: boolean;
  /** a guest page fault the guest's #PF handler reported (paged accesses) */
  exception?: { vector: '#PF'; errorCode: number; address: number };
}

/** the control registers of a paged access (the scenario's KVM_SET_SREGS values) */
export interface GuestPagingRegs {
  cr0: number;
  cr3: number;
  cr4: number;
  efer: number;
}

export interface InstallGuestOptions {
  /** guest-physical base of the guest's own slot (2 MiB aligned, below 512 GiB) */
  base?: number;
  /** memslot id of the guest's own slot */
  slot?: number;
}

function mask(size: number): bigint {
  return (1n << BigInt(8 * size)) - 1n;
}

/** The tiny guest bound to one vCPU. */
export class TinyGuest {
  readonly vm: RealVm;
  readonly vcpu: RealVcpu;
  readonly base: number;
  readonly slot: number;
  /** hva of the guest's own memory */
  readonly hva: number;
  private readonly routineGpa = new Map<string, number>();
  /** an MMIO exit the guest is waiting on: the instruction completes on the next KVM_RUN */
  private pending: { isWrite: boolean; len: number; size: number; fetch: boolean } | null = null;
  /**
   * The access a KVM_EXIT_DIRTY_RING_FULL interrupted: the guest's registers still point at
   * its instruction, so the next KVM_RUN (resume()) runs it again.
   */
  ringFull: { kind: 'read' | 'write' | 'fetch'; size: number } | null = null;
  /** the vCPU shut down or stopped unexpectedly: reload its system registers first */
  private needsReset = false;

  constructor(vm: RealVm, vcpu: RealVcpu, opts: InstallGuestOptions = {}) {
    this.vm = vm;
    this.vcpu = vcpu;
    this.base = opts.base ?? GUEST_DEFAULT_BASE;
    this.slot = opts.slot ?? GUEST_SLOT_ID;
    if (this.base % 0x20_0000 !== 0 || this.base + GUEST_SLOT_SIZE > GUEST_IDENTITY_MAP_LIMIT) {
      throw new RangeError(`guest base 0x${this.base.toString(16)} must be 2 MiB aligned and below 512 GiB - 4 MiB`);
    }
    this.hva = mmap({ length: GUEST_SLOT_SIZE, prot: PROT_READ | PROT_WRITE });
    try {
      this.writeImage();
      vm.setUserMemoryRegion({
        slot: this.slot,
        flags: 0,
        guest_phys_addr: this.base,
        memory_size: GUEST_SLOT_SIZE,
        userspace_addr: this.hva,
      });
      vcpu.setCpuid(vm.kvm.getSupportedCpuid());
      this.loadSregs();
    } catch (e) {
      munmap(this.hva, GUEST_SLOT_SIZE);
      throw e;
    }
    vcpu.guest = this;
  }

  /** [start, end) of the guest's own gpas */
  get range(): { start: number; end: number } {
    return { start: this.base, end: this.base + GUEST_SLOT_SIZE };
  }

  /**
   * Perform one access at `gpa` as the guest. Returns `{ value }` when it completed, or the
   * exit (and KVM_RUN errno) that stopped it. After an MMIO read exit, `completeMmioRead`
   * supplies the value; any other next call completes it with zeros first.
   */
  guestAccess(access: GuestAccess): GuestAccessResult {
    const fetch = access.kind === 'fetch';
    const size = access.size ?? (fetch ? 1 : 8);
    if (![1, 2, 4, 8].includes(size)) throw new RangeError(`guest access size must be 1, 2, 4 or 8, not ${size}`);
    const { gpa } = access;
    if (gpa < this.base + GUEST_SLOT_SIZE && gpa + size > this.base) {
      throw new RangeError(`gpa 0x${gpa.toString(16)} is inside the guest's own slot [0x${this.base.toString(16)}, +4 MiB)`);
    }
    this.settle();
    this.ringFull = null;
    const write = access.kind === 'write';
    const routine = `${write ? 'write' : 'read'}${size}`;
    const value = BigInt.asUintN(64, access.value ?? 0n);
    this.start(routine, { rbx: BigInt(gpa), rcx: value });
    const res = this.runToReport(size, write, fetch);
    if (write && res.value !== undefined) return { value: value & mask(size) };
    if (fetch && res.exit?.reason === 'KVM_EXIT_MMIO') return this.fetchFromNonRam(gpa);
    return res;
  }

  /**
   * The top-level entry that maps GUEST_ALIAS, for the caller to write at index
   * GUEST_ALIAS_TOP_INDEX of the root table the scenario's CR3 names (P, RW, A preset).
   */
  aliasTopLevelEntry(): bigint {
    return BigInt(this.base + OFF_ALIAS_PDPT) | PTE_P | PTE_RW | PTE_A;
  }

  /**
   * One access by guest-virtual address under the scenario's control registers: KVM_SET_SREGS
   * with `regs` (4-level long-mode paging only) and the alias for the guest's own tables, then
   * the routine at its alias address. The caller has written `aliasTopLevelEntry()` into the
   * root table. The guest's own registers come back on the next gpa access. `invlpg` runs
   * INVLPG at the gva instead of an access.
   */
  guestAccessPaged(access: { kind: 'read' | 'write' | 'invlpg'; gva: number; size: number; value?: bigint }, regs: GuestPagingRegs): GuestAccessResult {
    const { size } = access;
    if (![1, 2, 4, 8].includes(size)) throw new RangeError(`guest access size must be 1, 2, 4 or 8, not ${size}`);
    const longMode = (BigInt(regs.cr0) & (CR0_PE | CR0_PG)) === (CR0_PE | CR0_PG) && (BigInt(regs.cr4) & CR4_PAE) !== 0n && (BigInt(regs.efer) & EFER_LME) !== 0n;
    if (!longMode || (BigInt(regs.cr4) & CR4_LA57) !== 0n) throw new RangeError('the tiny guest runs paged accesses with 4-level long-mode paging only');
    this.settle();
    this.loadSregs(regs);
    this.needsReset = true; // the next gpa access reloads the guest's own registers
    const write = access.kind === 'write';
    const value = BigInt.asUintN(64, access.value ?? 0n);
    const routine = access.kind === 'invlpg' ? 'invlpg' : `${write ? 'write' : 'read'}${size}`;
    const off = this.routineGpa.get(routine)! - this.base;
    this.vcpu.setRegs({ rip: GUEST_ALIAS + BigInt(off), rbx: BigInt.asUintN(64, BigInt(access.gva)), rcx: value, rdx: 0n, rsp: GUEST_ALIAS + BigInt(OFF_STACK_TOP), rflags: 2n });
    const res = this.runToReport(size, write, false);
    if (write && res.value !== undefined) return { value: value & mask(size) };
    return res;
  }

  /**
   * The data load found no RAM at `gpa` (it exited as MMIO), so executing there cannot run
   * anything the scenario wrote: finish the load, then jump to `gpa` (the page tables identity-
   * map it) and report whatever the kernel does with a real instruction fetch from non-RAM.
   */
  private fetchFromNonRam(gpa: number): GuestAccessResult {
    this.settle();
    if (this.needsReset) {
      this.loadSregs();
      this.needsReset = false;
    }
    this.vcpu.setRegs({ rip: BigInt(gpa), rbx: 0n, rcx: 0n, rdx: 0n, rflags: 2n });
    const out = this.vcpu.kvmRun();
    const exit = this.vcpu.decodeExit(out.exitReason);
    this.needsReset = true; // the guest is stopped somewhere outside its own code
    if (out.exitReason === KVM_EXIT_MMIO && 'mmio' in exit) {
      // completes on the next command with zero data, like any MMIO read
      this.pending = { isWrite: exit.mmio.is_write, len: exit.mmio.len, size: exit.mmio.len, fetch: true };
    }
    return out.errno !== undefined ? { exit, errno: out.errno } : { exit };
  }

  /**
   * KVM_RUN with no new command: after KVM_EXIT_DIRTY_RING_FULL the interrupted access runs
   * again (a write reports no value). With nothing interrupted, the guest reads a byte of its
   * own code and reports, so only the kernel's entry checks (the ring) can stop it: `{}` then.
   */
  resume(): GuestAccessResult {
    const p = this.ringFull;
    if (p) {
      this.ringFull = null;
      const r = this.runToReport(p.size, p.kind === 'write', p.kind === 'fetch');
      if (r.exit?.reason === 'KVM_EXIT_DIRTY_RING_FULL') this.ringFull = p;
      return p.kind === 'write' && r.value !== undefined ? {} : r;
    }
    this.settle();
    this.start('read1', { rbx: BigInt(this.base), rcx: 0n });
    const r = this.runToReport(1, false, false);
    if (r.exit?.reason === 'KVM_EXIT_DIRTY_RING_FULL') {
      this.needsReset = false;
      return r;
    }
    return r.value !== undefined ? {} : r;
  }

  /** Supply the data for a pending KVM_EXIT_MMIO read and let the access finish. */
  completeMmioRead(value: bigint): GuestAccessResult {
    const p = this.pending;
    if (!p || p.isWrite) throw new Error('no KVM_EXIT_MMIO read is pending');
    this.pending = null;
    this.vcpu.run.setBigUint64(RUN.mmio.data, BigInt.asUintN(64, value), true);
    return this.runToReport(p.size, false, p.fetch);
  }

  /**
   * KVM_RUN after a KVM_EXIT_MMIO write: the store is done (complete_emulated_mmio() copies no
   * data for a write), and the kernel either exits for the next MMIO fragment of a page-crossing
   * store or lets the guest finish the access.
   */
  completeMmioWrite(): GuestAccessResult {
    const p = this.pending;
    if (!p || !p.isWrite) throw new Error('no KVM_EXIT_MMIO write is pending');
    this.pending = null;
    return this.runToReport(p.size, true, p.fetch);
  }

  /**
   * Store CL to the first byte of every 4 KiB page of [gpa, gpa + length) in one guest run
   * (for measurements). Returns the exit if one stopped it.
   */
  touchRange(gpa: number, length: number, value = 1n): GuestAccessResult {
    this.settle();
    this.ringFull = null;
    this.start('touch', { rbx: BigInt(gpa), rcx: value, rdx: BigInt(gpa + length) });
    return this.runToReport(1, true, false);
  }

  /** remove the guest's slot and free its memory (the vCPU stays open) */
  uninstall(): void {
    this.vm.setUserMemoryRegion({ slot: this.slot, flags: 0, guest_phys_addr: this.base, memory_size: 0, userspace_addr: this.hva });
    munmap(this.hva, GUEST_SLOT_SIZE);
    this.vcpu.guest = null;
  }

  private start(routine: string, regs: { rbx: bigint; rcx: bigint; rdx?: bigint }): void {
    if (this.needsReset) {
      this.loadSregs();
      this.needsReset = false;
    }
    const rip = this.routineGpa.get(routine);
    if (rip === undefined) throw new Error(`no routine ${routine}`);
    this.vcpu.setRegs({ rip: BigInt(rip), rbx: regs.rbx, rcx: regs.rcx, rdx: regs.rdx ?? 0n, rflags: 2n });
  }

  /**
   * A pending MMIO exit is completed (with zero data for reads) so the next command starts
   * clean. A page-crossing access queues up to two fragments of up to 8 bytes each
   * (vcpu->mmio_fragments), so completing one may exit again for the next: KVM_RUN until
   * none is left, or the old instruction would finish under the next command's registers.
   */
  private settle(): void {
    for (let i = 0; i < 4 && this.pending; i++) {
      const p = this.pending;
      this.pending = null;
      if (!p.isWrite) this.vcpu.run.setBigUint64(RUN.mmio.data, 0n, true);
      this.runToReport(p.size, p.isWrite, p.fetch);
    }
    if (this.pending) throw new Error('the guest kept exiting for MMIO while a pending access was completed');
  }

  private runToReport(size: number, write: boolean, fetch: boolean): GuestAccessResult {
    const tag = fetch ? { fetchAsRead: true } : {};
    const out = this.vcpu.kvmRun();
    const exit = this.vcpu.decodeExit(out.exitReason);
    if (out.errno !== undefined) {
      if (exit.reason !== 'KVM_EXIT_MEMORY_FAULT') this.needsReset = true;
      return exit.reason === 'KVM_EXIT_MEMORY_FAULT' ? { exit, errno: out.errno, ...tag } : { errno: out.errno, ...tag };
    }
    if (exit.reason === 'KVM_EXIT_IO' && 'io' in exit && exit.io?.port === GUEST_FAULT_PORT && exit.io.direction === 1) {
      this.needsReset = true;
      return { exception: { vector: '#PF', errorCode: Number(this.vcpu.getReg('rax') & 0xffffffffn), address: Number(this.vcpu.getReg('rbx')) } };
    }
    if (exit.reason === 'KVM_EXIT_IO' && 'io' in exit && exit.io?.port === GUEST_REPORT_PORT && exit.io.direction === 1) {
      if (write) return { value: 0n, ...tag };
      return { value: this.vcpu.getReg('rax') & mask(size), ...tag };
    }
    if (out.exitReason === KVM_EXIT_MMIO && 'mmio' in exit) {
      this.pending = { isWrite: exit.mmio.is_write, len: exit.mmio.len, size, fetch };
      return { exit, ...tag };
    }
    if (out.exitReason === KVM_EXIT_DIRTY_RING_FULL) {
      // KVM refused to enter: the guest is where it was, at the access's instruction
      this.ringFull = { kind: fetch ? 'fetch' : write ? 'write' : 'read', size };
      return { exit, ...tag };
    }
    this.needsReset = true;
    return { exit, ...tag };
  }

  /** code, GDT, TSS and page tables into the guest's memory */
  private writeImage(): void {
    const mem = new Uint8Array(memoryView(this.hva, GUEST_SLOT_SIZE));
    const dv = new DataView(mem.buffer, mem.byteOffset, mem.byteLength);
    // code
    let off = OFF_CODE;
    for (const [name, bytes] of Object.entries(ROUTINES)) {
      this.routineGpa.set(name, this.base + off);
      mem.set(bytes, off);
      off += (bytes.length + 15) & ~15;
    }
    // GDT
    const gdt = (i: number, v: bigint) => dv.setBigUint64(OFF_GDT + 8 * i, v, true);
    gdt(0, 0n);
    gdt(1, 0x00af9b000000ffffn); // 0x08: code, L=1, P=1, DPL 0, type 0xb (exec/read, accessed)
    gdt(2, 0x00cf93000000ffffn); // 0x10: data, G=1, D/B=1, P=1, type 0x3 (read/write, accessed)
    const tss = BigInt(this.base + OFF_TSS);
    const tssLow =
      0x67n | // limit[15:0]
      ((tss & 0xffffffn) << 16n) | // base[23:0]
      (0xbn << 40n) | // type 0xb: 64-bit TSS (busy)
      (1n << 47n) | // P
      (((tss >> 24n) & 0xffn) << 56n); // base[31:24]
    gdt(3, tssLow); // 0x18: TSS, low half
    gdt(4, tss >> 32n); // TSS, high half: base[63:32]
    // page tables: identity map [0, 512 GiB) with 2 MiB leaves
    const pdpt = BigInt(this.base + OFF_PDPT);
    dv.setBigUint64(OFF_PML4, pdpt | PTE_P | PTE_RW, true);
    // the alias: PML4[511] → alias PDPT[0] → alias PD[0..1] → the slot's two 2 MiB halves
    dv.setBigUint64(OFF_PML4 + 8 * GUEST_ALIAS_TOP_INDEX, this.aliasTopLevelEntry(), true);
    dv.setBigUint64(OFF_ALIAS_PDPT, BigInt(this.base + OFF_ALIAS_PD) | PTE_P | PTE_RW | PTE_A, true);
    for (let j = 0; j < GUEST_SLOT_SIZE / 0x20_0000; j++) {
      dv.setBigUint64(OFF_ALIAS_PD + 8 * j, BigInt(this.base + j * 0x20_0000) | PTE_P | PTE_RW | PTE_PS | PTE_A | PTE_D, true);
    }
    // IDT: a 64-bit interrupt gate for #PF (vector 14) to the `pf` routine's alias address
    const handler = GUEST_ALIAS + BigInt(this.routineGpa.get('pf')! - this.base);
    const gateLow = (handler & 0xffffn) | (0x08n << 16n) | (0x8en << 40n) | (((handler >> 16n) & 0xffffn) << 48n);
    dv.setBigUint64(OFF_IDT + 16 * 14, gateLow, true);
    dv.setBigUint64(OFF_IDT + 16 * 14 + 8, handler >> 32n, true);
    const leafBits = PTE_P | PTE_RW | PTE_PS | PTE_A | PTE_D;
    const pdBase = this.base + OFF_PD;
    const words = new BigUint64Array(mem.buffer, mem.byteOffset + OFF_PD, 512 * 512);
    for (let i = 0; i < 512; i++) {
      dv.setBigUint64(OFF_PDPT + 8 * i, BigInt(pdBase + i * 0x1000) | PTE_P | PTE_RW, true);
      const gib = BigInt(i) << 30n;
      for (let j = 0; j < 512; j++) words[i * 512 + j] = gib | (BigInt(j) << 21n) | leafBits;
    }
  }

  /**
   * Long mode, paging on, flat segments (KVM_GET_SREGS, edit, KVM_SET_SREGS): the guest's own
   * tables, or (`paged`) the scenario's control registers with the GDT, TSS and IDT reached
   * through GUEST_ALIAS.
   */
  private loadSregs(paged?: GuestPagingRegs): void {
    const s = this.vcpu.getSregs();
    const alias = (off: number) => (paged ? GUEST_ALIAS + BigInt(off) : BigInt(this.base + off));
    const seg = (at: number, f: { selector: number; type: number; s: number; l: number; db: number; limit: number }) => {
      s.setU64(at + SEGMENT.base, 0);
      s.setU32(at + SEGMENT.limit, f.limit);
      s.view.setUint16(at + SEGMENT.selector, f.selector, true);
      s.view.setUint8(at + SEGMENT.type, f.type);
      s.view.setUint8(at + SEGMENT.present, 1);
      s.view.setUint8(at + SEGMENT.dpl, 0);
      s.view.setUint8(at + SEGMENT.db, f.db);
      s.view.setUint8(at + SEGMENT.s, f.s);
      s.view.setUint8(at + SEGMENT.l, f.l);
      s.view.setUint8(at + SEGMENT.g, f.limit === 0xffffffff ? 1 : 0);
      s.view.setUint8(at + SEGMENT.avl, 0);
      s.view.setUint8(at + SEGMENT.unusable, 0);
    };
    seg(SREGS.cs, { selector: 0x08, type: 0xb, s: 1, l: 1, db: 0, limit: 0xffffffff });
    for (const r of [SREGS.ds, SREGS.es, SREGS.fs, SREGS.gs, SREGS.ss]) {
      seg(r, { selector: 0x10, type: 0x3, s: 1, l: 0, db: 1, limit: 0xffffffff });
    }
    seg(SREGS.tr, { selector: 0x18, type: 0xb, s: 0, l: 0, db: 0, limit: 0x67 });
    s.view.setBigUint64(SREGS.tr + SEGMENT.base, alias(OFF_TSS), true);
    seg(SREGS.ldt, { selector: 0, type: 0x2, s: 0, l: 0, db: 0, limit: 0xffff });
    s.view.setUint8(SREGS.ldt + SEGMENT.unusable, 1);
    s.view.setBigUint64(SREGS.gdt + DTABLE.base, alias(OFF_GDT), true);
    s.view.setUint16(SREGS.gdt + DTABLE.limit, 5 * 8 - 1, true);
    s.view.setBigUint64(SREGS.idt + DTABLE.base, paged ? alias(OFF_IDT) : 0n, true);
    s.view.setUint16(SREGS.idt + DTABLE.limit, paged ? 16 * 15 - 1 : 0, true);
    s.setU64(SREGS.cr0, paged ? BigInt(paged.cr0) : CR0_PE | CR0_NE | CR0_PG);
    s.setU64(SREGS.cr3, paged ? BigInt(paged.cr3) : this.base + OFF_PML4);
    s.setU64(SREGS.cr4, paged ? BigInt(paged.cr4) : CR4_PAE | CR4_OSFXSR);
    s.setU64(SREGS.efer, paged ? BigInt(paged.efer) | EFER_LMA : EFER_LME | EFER_LMA);
    this.vcpu.setSregs(s);
  }
}

/** Put the tiny guest into its own slot of `vm` and bind it to `vcpu`. */
export function installGuest(vm: RealVm, vcpu: RealVcpu, opts: InstallGuestOptions = {}): TinyGuest {
  return new TinyGuest(vm, vcpu, opts);
}
