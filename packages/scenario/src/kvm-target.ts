/**
 * The `kvm` target: scenario steps run on the machine's real /dev/kvm through @ccmem/kvm.
 *
 *  - the VMM process's memory is real anonymous (or file) mmap; `read`/`write` of an anonymous
 *    mapping are loads and stores in this process, of a file mapping (guest_memfd) they are done
 *    in a child process (touchFileInChild) so a SIGBUS is reported instead of killing us;
 *  - VM ioctls are real ioctls; a failed one is Outcome.errno with `detail.check` naming it;
 *  - guest accesses are done by the tiny guest (@ccmem/kvm installGuest) on each vCPU, in a
 *    memslot of its own (32763 unless the scenario uses that id) at a gpa range no scenario slot
 *    or access touches, installed when the vCPU is created. `guest_fetch` is a data load through
 *    the same page walk and fault path (`detail.fetch` says so);
 *  - steps the host cannot run (missing capability, vendor VM types, memory failure injection,
 *    model-state `assert`) are skipped, naming what is missing.
 * docs/kvm.md describes the target; docs/scenarios.md the step semantics.
 */
import { readFileSync } from 'node:fs';
import {
  GuestPageTableBuilder,
  errnoName,
  isKvmError,
  KvmError,
  KVM_DIRTY_GFN_F_DIRTY,
  KVM_DIRTY_GFN_F_RESET,
  profileByName,
  profileMismatch,
  type KernelProfile,
  type GuestPtMemory,
  type KvmRunExit,
} from '@ccmem/core';
import {
  GUEST_DEFAULT_BASE,
  GUEST_IDENTITY_MAP_LIMIT,
  GUEST_SLOT_ID,
  GUEST_SLOT_SIZE,
  MAP_ANONYMOUS,
  MAP_FIXED_NOREPLACE,
  MAP_NORESERVE,
  MAP_PRIVATE,
  MAP_SHARED,
  PROT_NONE,
  PROT_READ,
  PROT_WRITE,
  RealKvm,
  close as hostClose,
  detectHostProfile,
  fallocate as hostFallocate,
  fileRead as hostFileRead,
  fileWrite as hostFileWrite,
  fstat as hostFstat,
  madvise as hostMadvise,
  memfdCreate as hostMemfdCreate,
  mprotect as hostMprotect,
  sysOpen,
  KVM_DEVICE,
  O_CLOEXEC,
  O_RDWR,
  hostCapabilities,
  installGuest,
  GUEST_ALIAS_TOP_INDEX,
  mmap as hostMmap,
  munmap as hostMunmap,
  read as hostRead,
  sysMmap,
  sysMunmap,
  touchFileInChild,
  write as hostWrite,
  type GuestAccessResult,
  type RealVcpu,
  type RealVm,
  type TinyGuest,
} from '@ccmem/kvm';
import { clearBitmap, dirtyPageList } from './dirty-pages.js';
import { kvmUnavailableReason } from './kvm-available.js';
import { opSpec } from './ops/index.js';
import { missingNeed, offeredVmTypes, VM_TYPE_NUMBERS } from './ops/needs.js';
import { VM_TYPE_NAMES, type Scenario, type Step } from './schema.js';
import {
  dispatch,
  SkipScenario,
  tableSupport,
  unsupported,
  type HandlerTable,
  type Outcome,
  type RunContext,
  type Support,
  type Target,
} from './target.js';
import { unmetRequirement } from './requires.js';



/** x86-64 TASK_SIZE_MAX: the end of the user address range (2^47 - one guard page) */
const TASK_SIZE_MAX = 2 ** 47 - 4096;

/** [start, end) of every mapping of this process (/proc/self/maps) */
function processMappings(): (readonly [number, number])[] {
  const out: (readonly [number, number])[] = [];
  for (const line of readFileSync('/proc/self/maps', 'utf8').split('\n')) {
    const m = /^([0-9a-f]+)-([0-9a-f]+) /.exec(line);
    if (m) out.push([parseInt(m[1]!, 16), parseInt(m[2]!, 16)]);
  }
  return out;
}

const NO_SNP_VM = unsupported('the real-KVM target runs no SEV-SNP VM (the tiny guest is a default-VM guest)');
const NO_SEV_VM = unsupported('the real-KVM target runs no SEV or SEV-ES VM (the tiny guest is a default-VM guest)');
const NO_TDX_VM = unsupported('the real-KVM target runs no TDX VM (the tiny guest is a default-VM guest)');

/* ------------------------------------------------------------------------------------------ */
/* Host facts, found once per process                                                         */
/* ------------------------------------------------------------------------------------------ */

let hostFacts: { caps: Record<string, number>; profile: KernelProfile } | null = null;

/** KVM_CHECK_EXTENSION answers and the detected kernel profile of this host (cached). */
export function kvmHostFacts(): { caps: Readonly<Record<string, number>>; profile: KernelProfile } {
  if (!hostFacts) {
    const kvm = RealKvm.open();
    try {
      hostFacts = { caps: hostCapabilities(kvm), profile: detectHostProfile(kvm) };
    } finally {
      kvm.close();
    }
  }
  return hostFacts;
}

/** online NUMA memory nodes of this host (/sys/devices/system/node/online, e.g. "0-1"); 1 if unknown */
export function onlineNumaNodes(): number {
  try {
    const text = readFileSync('/sys/devices/system/node/online', 'utf8').trim();
    let n = 0;
    for (const part of text.split(',')) {
      const [lo, hi] = part.split('-').map(Number);
      n += hi === undefined ? 1 : hi! - lo! + 1;
    }
    return n > 0 ? n : 1;
  } catch {
    return 1;
  }
}

/** why the kvm target cannot run at all on this machine, or null when /dev/kvm is there */
export { kvmUnavailableReason };

/* ------------------------------------------------------------------------------------------ */
/* Where the tiny guests go                                                                   */
/* ------------------------------------------------------------------------------------------ */

interface Placement {
  slot: number;
  base: number;
}

/** slot ids and gpa ranges a scenario names anywhere (memslot ops and guest accesses) */
function scenarioFootprint(s: Scenario): { slots: Set<number>; ranges: [number, number][] } {
  const slots = new Set<number>();
  const ranges: [number, number][] = [];
  const steps: Step[] = [...s.steps, ...Object.values(s.concurrent?.actors ?? {}).flat()];
  for (const step of steps) {
    // by uAPI field: a memslot's slot id and gpa range, an access's gpa, an attribute range
    const a = step.args as Record<string, number | undefined>;
    if (a.guest_phys_addr !== undefined) {
      slots.add(a.slot! & 0xffff);
      ranges.push([a.guest_phys_addr, a.guest_phys_addr + Math.max(a.memory_size!, 1)]);
    } else if (typeof a.gpa === 'number') {
      ranges.push([a.gpa, a.gpa + 8]);
    } else if (typeof a.address === 'number') {
      ranges.push([a.address, a.address + a.size!]);
    }
  }
  return { slots, ranges };
}

/**
 * Slot ids and 4 MiB gpa ranges for `count` tiny guests: from slot 32763 and 512 GiB - 4 MiB
 * downwards, skipping every id and range the scenario uses.
 */
export function guestPlacements(s: Scenario, count: number): Placement[] {
  const { slots, ranges } = scenarioFootprint(s);
  const out: Placement[] = [];
  let slot = GUEST_SLOT_ID;
  let base = GUEST_DEFAULT_BASE;
  while (out.length < count && slot >= 0 && base >= 0) {
    while (slot >= 0 && slots.has(slot)) slot--;
    while (base >= 0 && ranges.some(([lo, hi]) => lo < base + GUEST_SLOT_SIZE && hi > base)) base -= GUEST_SLOT_SIZE;
    if (slot < 0 || base < 0) break;
    out.push({ slot, base });
    slot--;
    base -= GUEST_SLOT_SIZE;
  }
  if (out.length < count) throw new SkipScenario('no free memslot id / gpa range is left for the tiny guest');
  return out;
}

/* ------------------------------------------------------------------------------------------ */
/* The target                                                                                 */
/* ------------------------------------------------------------------------------------------ */

interface Mapping {
  hva: number;
  length: number;
  /** the PROT_* bits it was made with: a load needs PROT_READ, a store PROT_WRITE */
  prot: number;
  /** the file mapped, when not anonymous (an fd this scenario created) */
  fd?: number;
  offset: number;
}

/** a page-table write the real-KVM target cannot place (no memslot over scenario memory) */
class NotInScenarioMemory extends Error {}

interface VcpuState {
  vcpu: RealVcpu;
  guest: TinyGuest;
  /** the last access stopped on a KVM_EXIT_MMIO (read or write) that is still pending */
  pendingMmio: 'read' | 'write' | null;
  /** the scenario's control registers (set_sregs / guest_load_cr3); paging is on when CR0.PG is */
  paging: { cr0: number; cr3: number; cr4: number; efer: number };
  /** the VMM's fetch index into the vCPU's dirty ring (where its last harvest stopped) */
  ringFetch: number;
}

export interface KvmTarget extends Target {
  /** the host's kernel profile (detected on first use) */
  readonly profile: KernelProfile;
  /** the host's KVM_CHECK_EXTENSION answers */
  readonly capabilities: Readonly<Record<string, number>>;
}

export function createKvmTarget(): KvmTarget {
  let kvm: RealKvm | null = null;
  let vm: RealVm | null = null;
  let placements: Placement[] = [];
  let mappings: Mapping[] = [];
  /**
   * PROT_NONE placeholders where the scenario unmapped memory: this process's runtime would
   * otherwise reuse the range (a later guest fault there would find someone else's memory,
   * where the scenario, like the model, has none)
   */
  let holes: { hva: number; length: number }[] = [];
  /** fds this scenario created and has not closed: the only fds its steps may touch */
  let fds = new Set<number>();
  let vcpus = new Map<number, VcpuState>();
  /** vCPUs created `bare`: no tiny guest, still in their reset state */
  let bareVcpus = new Map<number, RealVcpu>();
  let guests: TinyGuest[] = [];
  /** the scenario's address-space-0 memslots as created: slot id → [gpa, size, hva] */
  let memslots = new Map<number, [number, number, number]>();
  /** VMs made by `create_vm`, by fd */
  let otherVms = new Map<number, RealVm>();
  /** the scenario VM's fd was closed (`close` of `vm_fd`) */
  let vmClosed = false;
  /** vCPU fds a `vcpu_fd` step named and no `close` has closed yet */
  let vcpuFds = new Map<number, RealVcpu>();
  /** anonymous ranges mprotect()ed without PROT_WRITE / PROT_READ: a store or load there would fault this process */
  let protected_: { start: number; end: number; read: boolean; write: boolean }[] = [];

  const facts = () => kvmHostFacts();

  const ownFd = (fd: number, call: string): Outcome | null =>
    fds.has(fd) || otherVms.has(fd) || vcpuFds.has(fd) || (vm !== null && !vmClosed && fd === vm.fd) ? null : { errno: 'EBADF', detail: { check: `${call}: fd ${fd} is not an open fd of this scenario` } };

  /** the VM a VM op names with `vm:`, or the scenario's */
  const vmOf = (fd: number | undefined, own: RealVm): RealVm => {
    if (fd === undefined || fd === own.fd) {
      // the VM fd was closed: an ioctl on it would reach whatever reuses the number
      if (vmClosed) throw new KvmError('EBADF', `fd ${own.fd} (the scenario's VM) was closed`);
      return own;
    }
    const other = otherVms.get(fd);
    if (!other) throw new Error(`fd ${fd} is not a VM this scenario created`);
    return other;
  };

  /** the protection mprotect() left at `hva` (anonymous memory of this process) */
  const protAt = (hva: number) => {
    let p = { read: true, write: true };
    for (const r of protected_) if (hva >= r.start && hva < r.end) p = { read: r.read, write: r.write };
    return p;
  };

  const mappingAt = (hva: number, size: number) => mappings.find((m) => hva >= m.hva && hva + size <= m.hva + m.length);

  /** a created memslot of address space 0 (the kernel's record of it, kept as the ioctl succeeded) */
  function trackMemslot(slot: number, gpa: number, size: number, hva: number): void {
    if (slot >>> 16 !== 0) return;
    if (size === 0) memslots.delete(slot);
    else memslots.set(slot, [gpa, size, hva]);
  }

  /**
   * Guest memory through the VMM's mapping, as a guest kernel's page-table writes land there:
   * only where a memslot of this scenario maps the gpa onto a mapping this scenario made
   */
  function guestMemoryHva(gpa: number, size: number, write: boolean): number | null {
    for (const [base, len, hva] of memslots.values()) {
      if (gpa >= base && gpa + size <= base + len) {
        const at = hva + (gpa - base);
        const m = mappingAt(at, size);
        // anonymous memory of this process only, and only where a load or store cannot fault it
        if (!m || m.fd !== undefined) return null;
        const p = protAt(at);
        const readable = p.read && (m.prot & PROT_READ) !== 0;
        const writable = p.write && (m.prot & PROT_WRITE) !== 0;
        return readable && (!write || writable) ? at : null;
      }
    }
    return null;
  }

  const guestPtMemory: GuestPtMemory = {
    readGpte(gpa, out) {
      const hva = guestMemoryHva(gpa, 8, false);
      if (hva === null) return false;
      const v = hostRead(hva, 8);
      out.lo = Number(v & 0xffffffffn) | 0;
      out.hi = Number(v >> 32n) | 0;
      return true;
    },
    write64(gpa, lo, hi) {
      const hva = guestMemoryHva(gpa, 8, true);
      if (hva === null) throw new NotInScenarioMemory(`gpa 0x${gpa.toString(16)} is not in a memslot over this scenario's writable anonymous memory`);
      hostWrite(hva, 8, (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0));
    },
  };

  /** a paged access: the tiny guest under the scenario's control registers and tables */
  function pagedAccess(kind: 'read' | 'write' | 'invlpg', a: { vcpu: number; gva: number; size: number; value?: bigint; user?: boolean }): Outcome {
    const st = vcpuState(a.vcpu);
    if (a.user) return { skipped: 'the tiny guest runs at CPL 0: no user-mode accesses' };
    const regs = st.paging;
    if (!(regs.cr0 & 0x8000_0000)) {
      // paging off: the gva is the gpa (and INVLPG has no translation to drop)
      if (kind === 'invlpg') return {};
      return guestAccess(kind, { vcpu: a.vcpu, gpa: a.gva, size: a.size, ...(a.value !== undefined && { value: a.value }) });
    }
    const root = Math.floor(regs.cr3 / 4096) * 4096;
    const at = root + 8 * GUEST_ALIAS_TOP_INDEX;
    const hva = guestMemoryHva(at, 8, true);
    if (hva === null) return { skipped: `the root table at gpa 0x${root.toString(16)} is not in this scenario's writable anonymous memory` };
    const alias = st.guest.aliasTopLevelEntry();
    const cur = hostRead(hva, 8);
    // the tiny guest's own code is reached through the root's last entry (docs/kvm.md)
    if (cur !== alias && (cur & ~0x60n) !== alias) {
      if (cur !== 0n) return { skipped: `the scenario's tables use top-level index ${GUEST_ALIAS_TOP_INDEX}, where the tiny guest maps itself` };
      hostWrite(hva, 8, alias);
    }
    let r: GuestAccessResult;
    try {
      r = st.guest.guestAccessPaged({ kind, gva: a.gva, size: a.size, ...(a.value !== undefined && { value: a.value }) }, regs);
    } catch (e) {
      if (e instanceof RangeError) return { skipped: e.message };
      throw e;
    }
    if (r.exception) return { exception: r.exception.vector, detail: { exception: r.exception } };
    if (kind === 'invlpg') return r.value !== undefined ? {} : guestOutcome(r, 'write', st);
    return guestOutcome(r, kind, st);
  }

  /** KVM_RUN of a vCPU created `bare` (no tiny guest): one run from its reset state */
  function runBareVcpu(id: number): Outcome {
    const v = bareVcpus.get(id);
    if (!v) return { skipped: 'run_vcpu needs a vCPU created with `bare: true` or one the tiny guest runs' };
    const r = v.kvmRun();
    const exit = v.decodeExit(r.exitReason);
    const out: Outcome = {};
    if (r.errno !== undefined) out.errno = r.errno as Outcome['errno'];
    if ('exit_reason' in exit) out.detail = { other_exit: exit };
    else out.exit = exit;
    return out;
  }

  /** a PROT_NONE placeholder over [hva, hva + length) if that range is free (else nothing) */
  function reserve(hva: number, length: number): void {
    const r = sysMmap(hva, length, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE, -1, 0);
    if (r.ret === hva) holes.push({ hva, length });
    else if (r.ret !== -1) sysMunmap(r.ret, length);
  }

  /**
   * Why a memslot at [uaddr, uaddr + size) would hand the guest memory of this process that
   * the scenario did not map (the runtime's heap, a tiny guest), or null. Free parts of the
   * range are reserved (PROT_NONE) so the runtime cannot later place its memory there; the
   * guest then faults on them (EFAULT), as on the model, where nothing is mapped there.
   */
  function foreignHva(uaddr: number, size: number | bigint): string | null {
    const len = Number(size);
    // an unaligned, empty or out-of-range slot is refused by the kernel before it is used
    // (kvm_set_memory_region(): PAGE_ALIGNED, access_ok())
    if (len <= 0 || uaddr % 4096 !== 0 || len % 4096 !== 0 || uaddr < 0 || uaddr + len > TASK_SIZE_MAX) return null;
    const end = uaddr + len;
    const own = [...mappings, ...holes].map((m) => [m.hva, m.hva + m.length] as const);
    for (const [lo, hi] of processMappings()) {
      if (hi <= uaddr || lo >= end) continue;
      // the part of [lo, hi) inside the slot must be covered by the scenario's own ranges
      let at = Math.max(lo, uaddr);
      const stop = Math.min(hi, end);
      while (at < stop) {
        const cover = own.find(([s, e]) => s <= at && at < e);
        if (!cover) {
          return `userspace_addr range 0x${uaddr.toString(16)}+0x${len.toString(16)} overlaps memory of this process the scenario did not map (at 0x${at.toString(16)}): the guest would reach it`;
        }
        at = cover[1];
      }
    }
    // reserve every free page run of the range
    const taken = processMappings().filter(([lo, hi]) => hi > uaddr && lo < end).sort((x, y) => x[0] - y[0]);
    let at = uaddr;
    for (const [lo, hi] of taken) {
      if (lo > at) reserve(at, lo - at);
      at = Math.max(at, hi);
    }
    if (at < end) reserve(at, end - at);
    return null;
  }

  function vcpuState(handle: number): VcpuState {
    const v = vcpus.get(handle);
    if (!v) throw new Error(`no vCPU ${handle} was created`);
    return v;
  }

  function guestOutcome(r: GuestAccessResult, kind: 'read' | 'write' | 'fetch', st: VcpuState): Outcome {
    const out: Outcome = {};
    if (r.errno !== undefined) out.errno = r.errno as Outcome['errno'];
    if (r.exit !== undefined) out.exit = r.exit as KvmRunExit;
    if (out.exit?.reason === 'KVM_EXIT_MMIO') {
      // The kernel writes only `len` bytes of kvm_run.mmio.data, and only for a write exit
      // (x86 emulator_read_write / complete_emulated_mmio: memcpy(run->mmio.data, frag->data,
      // min(8u, frag->len))); a read exit's data is where the VMM puts the result. The rest is
      // stale (often io.data_offset of the previous KVM_EXIT_IO): report it as zero, as the
      // model does.
      const { mmio } = out.exit;
      const data = mmio.is_write ? BigInt.asUintN(8 * Math.min(8, mmio.len), mmio.data) : 0n;
      out.exit = { ...out.exit, mmio: { ...mmio, data } };
    }
    if (r.value !== undefined && kind !== 'write') out.value = r.value;
    st.pendingMmio = r.exit?.reason === 'KVM_EXIT_MMIO' ? ((r.exit as { mmio: { is_write: boolean } }).mmio.is_write ? 'write' : 'read') : null;
    if (kind === 'fetch') out.detail = { fetch: 'performed by the tiny guest as a data load at the gpa (docs/kvm.md)' };
    return out;
  }

  function guestAccess(kind: 'read' | 'write' | 'fetch', a: { vcpu: number; gpa: number; size?: number; value?: bigint; private?: boolean }): Outcome {
    const st = vcpuState(a.vcpu);
    const size = a.size ?? 1;
    if (a.gpa + size > GUEST_IDENTITY_MAP_LIMIT) {
      return { skipped: 'the tiny guest identity-maps gpas below 512 GiB only' };
    }
    if (guests.some((g) => a.gpa < g.range.end && a.gpa + size > g.range.start)) {
      return { skipped: `gpa 0x${a.gpa.toString(16)} is inside the tiny guest's own slot` };
    }
    // a page-crossing access is one unaligned instruction: the kernel splits it at the page
    // boundary (emulator_read_write()) when a fragment is not RAM, as the model does
    const r = st.guest.guestAccess({ kind, gpa: a.gpa, size, ...(kind === 'write' && { value: a.value ?? 0n }) });
    const out = guestOutcome(r, kind, st);
    if (a.private) out.detail = { ...out.detail, private: 'a default-VM guest has no private-access bit; the memory attributes decide' };
    return out;
  }

  /** what a handler works on: the open /dev/kvm and VM of the current scenario */
  interface KvmRun {
    kvm: RealKvm;
    vm: RealVm;
    ctx: RunContext;
  }

  function hostAccess(a: { addr: number; size: 1 | 2 | 4 | 8; value?: bigint }, isWrite: boolean): Outcome {
    const m = mappingAt(a.addr, a.size);
    // where the scenario unmapped its memory a PROT_NONE placeholder stands: the access would
    // fault there (SIGSEGV, as on the model), so it is answered without being made
    if (!m && holes.some((h) => a.addr >= h.hva && a.addr < h.hva + h.length)) {
      return { signal: 'SIGSEGV', detail: { check: `${isWrite ? 'write' : 'read'}: the scenario unmapped this address (not performed)` } };
    }
    if (!m) return { skipped: `hva 0x${a.addr.toString(16)} is not inside a mapping of this scenario (a stray host access would hit the test process)` };
    // The access runs in this process: one the mapping's protection refuses would kill ccmem.
    // The target made every mapping and knows its prot, so it answers as the host kernel would
    // (do_user_addr_fault() → access_error() → SIGSEGV), as the model does, without touching it.
    if (!(m.prot & (isWrite ? PROT_WRITE : PROT_READ))) {
      return { signal: 'SIGSEGV', detail: { check: `${isWrite ? 'write' : 'read'}: the mapping has no ${isWrite ? 'PROT_WRITE' : 'PROT_READ'} (not performed)` } };
    }
    if (m.fd !== undefined) {
      if (!fds.has(m.fd)) return { skipped: 'host touches of a file mapping run in a child process, which needs the file\'s fd still open' };
      const r = touchFileInChild({ fd: m.fd, offset: m.offset + (a.addr - m.hva), size: a.size, write: isWrite, value: a.value ?? 0n });
      if (r.signal !== undefined) return { signal: r.signal === 'SIGSEGV' ? 'SIGSEGV' : 'SIGBUS', detail: { touched: 'in a child process' } };
      if (r.errno !== undefined) return { errno: r.errno as Outcome['errno'], detail: { check: 'mmap (child process)' } };
      return isWrite ? {} : { value: r.value! };
    }
    const prot = protAt(a.addr);
    if (isWrite ? !prot.write : !prot.read) {
      return { skipped: `hva 0x${a.addr.toString(16)} was mprotect()ed without PROT_${isWrite ? 'WRITE' : 'READ'}: the access would fault this process` };
    }
    if (isWrite) {
      hostWrite(a.addr, a.size, a.value ?? 0n);
      return {};
    }
    return { value: hostRead(a.addr, a.size) };
  }

  /** how the real-KVM target runs each op, or why it cannot */
  const handlers = {
    mmap(a) {
      const prot = a.prot ?? (PROT_READ | PROT_WRITE);
      const mapFlags = a.flags ?? MAP_SHARED;
      if (a.fd !== undefined) {
        const bad = ownFd(a.fd, 'mmap');
        if (bad) return bad;
      }
      const hva = hostMmap({
        length: a.size,
        prot,
        shared: (mapFlags & MAP_PRIVATE) === 0,
        ...(a.fd !== undefined && { fd: a.fd }),
        offset: a.offset ?? 0,
      });
      mappings.push({ hva, length: a.size, prot, offset: a.offset ?? 0, ...(a.fd !== undefined && { fd: a.fd }) });
      return { result: hva };
    },
    munmap({ addr, size }) {
      // mm/mmap.c do_vmi_munmap(): an unaligned start, a zero length or a range beyond
      // TASK_SIZE is EINVAL before anything is unmapped
      const len = Math.ceil(size / 4096) * 4096;
      if (addr % 4096 !== 0 || addr < 0 || size <= 0 || addr + len > TASK_SIZE_MAX) {
        throw new KvmError('EINVAL', 'munmap: address not page aligned, length 0 or range beyond TASK_SIZE');
      }
      // A valid munmap unmaps only what this scenario mapped: the rest of this process's
      // address space (the runtime's heap, the tiny guests) is not the scenario's, and to the
      // scenario (as in the model) nothing is mapped there, so munmap has nothing to do.
      const end = addr + len;
      const pieces = mappings.flatMap((m) => {
        const lo = Math.max(m.hva, addr);
        const hi = Math.min(m.hva + m.length, end);
        return lo < hi ? [[lo, Math.ceil(hi / 4096) * 4096] as const] : [];
      });
      for (const [lo, hi] of pieces) {
        hostMunmap(lo, hi - lo);
        reserve(lo, hi - lo);
      }
      // drop (or trim) what we track; a partial unmap keeps the rest for teardown
      mappings = mappings.flatMap((m) => {
        const mEnd = m.hva + m.length;
        if (end <= m.hva || addr >= mEnd) return [m];
        const parts: Mapping[] = [];
        if (addr > m.hva) parts.push({ ...m, length: addr - m.hva });
        if (end < mEnd) parts.push({ ...m, hva: end, length: mEnd - end, offset: m.offset + (end - m.hva) });
        return parts;
      });
      return {};
    },
    read: (a) => hostAccess(a, false),
    write: (a) => hostAccess(a, true),
    close(a, { vm }) {
      const bad = ownFd(a.fd, 'close');
      if (bad) return bad;
      // the VM fd alone: the vCPU fds and guest_memfd files keep the VM alive (kvm_vm_release())
      if (a.fd === vm.fd) {
        vm.closeVmFd();
        vmClosed = true;
        return {};
      }
      const vcpu = vcpuFds.get(a.fd);
      if (vcpu) {
        vcpu.close(); // kvm_vcpu_release(): the vCPU's ioctls are EBADF from now on
        vcpuFds.delete(a.fd);
        return {};
      }
      const other = otherVms.get(a.fd);
      if (other) {
        other.close();
        otherVms.delete(a.fd);
        return {};
      }
      hostClose(a.fd);
      fds.delete(a.fd);
      return {};
    },
    fd_read(a) {
      const bad = ownFd(a.fd, 'read');
      return bad ?? { value: hostFileRead(a.fd, a.size, a.offset) };
    },
    fd_write(a) {
      const bad = ownFd(a.fd, 'write');
      return bad ?? { value: hostFileWrite(a.fd, a.size, a.offset) };
    },
    fstat(a) {
      const bad = ownFd(a.fd, 'fstat');
      if (bad) return bad;
      const st = hostFstat(a.fd);
      const stat: NonNullable<Outcome['stat']> = { st_size: st.st_size, st_blksize: st.st_blksize };
      if (a.distinct_from) {
        for (const fd of a.distinct_from) {
          const other = ownFd(fd, 'fstat');
          if (other) return other;
        }
        stat.distinct_inode = a.distinct_from.every((fd) => hostFstat(fd).st_ino !== st.st_ino);
      }
      return { stat, detail: { st_ino: st.st_ino } };
    },
    memfd_create(a) {
      const fd = hostMemfdCreate('ccmem-scenario', a.size);
      fds.add(fd);
      return { result: fd };
    },
    open_dev_kvm() {
      const r = sysOpen(KVM_DEVICE, O_RDWR | O_CLOEXEC);
      if (r.ret === -1) return { errno: (errnoName(r.errno) ?? 'EIO') as Outcome['errno'], detail: { check: `open ${KVM_DEVICE}` } };
      fds.add(r.ret);
      return { result: r.ret };
    },
    madvise(a) {
      const m = mappingAt(a.addr, Math.max(1, a.size));
      if (!m) return { skipped: `[0x${a.addr.toString(16)}, +0x${a.size.toString(16)}) is not inside one mapping of this scenario` };
      hostMadvise(a.addr, a.size, a.advice);
      return {};
    },
    mprotect(a) {
      const m = mappingAt(a.addr, Math.max(1, a.size));
      if (!m) return { skipped: `[0x${a.addr.toString(16)}, +0x${a.size.toString(16)}) is not inside one mapping of this scenario` };
      hostMprotect(a.addr, a.size, a.prot);
      protected_.push({ start: a.addr, end: a.addr + Math.ceil(a.size / 4096) * 4096, read: (a.prot & PROT_READ) !== 0, write: (a.prot & PROT_WRITE) !== 0 });
      return {};
    },
    create_vm(a, { kvm, ctx }) {
      const type = a.type ?? ctx.vm.type;
      const other = kvm.createVm(VM_TYPE_NUMBERS[VM_TYPE_NAMES[type]]);
      otherVms.set(other.fd, other);
      return { result: other.fd };
    },
    vm_fd: (_a, { vm }) => ({ result: vm.fd }),
    vcpu_fd(a) {
      const v = vcpus.get(a.vcpu)?.vcpu ?? bareVcpus.get(a.vcpu);
      if (!v) throw new Error(`no vCPU ${a.vcpu} was created`);
      if (v.isClosed) throw new KvmError('EBADF', `vCPU ${a.vcpu}'s fd was closed`);
      vcpuFds.set(v.fd, v);
      return { result: v.fd };
    },
    set_nr_mmu_pages(a, { vm }) {
      vmOf(a.vm, vm).setNrMmuPages(a.pages);
      return {};
    },
    mbind: unsupported('the real-KVM target issues no NUMA policy calls (mbind)'),
    get_mempolicy: unsupported('the real-KVM target issues no NUMA policy calls (get_mempolicy)'),
    move_pages: unsupported('the real-KVM target issues no NUMA policy calls (move_pages)'),
    set_idt: unsupported('the tiny guest keeps its own IDT'),
    guest_exception: unsupported('the tiny guest raises no exceptions through an IDT of the scenario'),
    create_guest_memfd(a, { vm }) {
      const fd = vmOf(a.vm, vm).createGuestMemfd({ size: a.size, flags: a.flags ?? 0 });
      fds.add(fd);
      return { result: fd };
    },
    fallocate(a) {
      const bad = ownFd(a.fd, 'fallocate');
      if (bad) return bad;
      hostFallocate(a.fd, a.mode, a.offset, a.len);
      return {};
    },
    gmem_poison: unsupported('the real-KVM target cannot inject memory failures (needs MADV_HWPOISON as root)'),
    device_revoke: unsupported('the real-KVM target has no device_fd provider'),
    set_user_memory_region(a, { vm }) {
      const foreign = foreignHva(a.userspace_addr ?? 0, a.memory_size);
      if (foreign) return { skipped: foreign };
      vmOf(a.vm, vm).setUserMemoryRegion({ slot: a.slot, flags: a.flags ?? 0, guest_phys_addr: a.guest_phys_addr, memory_size: a.memory_size, userspace_addr: a.userspace_addr ?? 0 });
      if (a.vm === undefined) trackMemslot(a.slot, Number(a.guest_phys_addr), Number(a.memory_size), a.userspace_addr ?? 0);
      return {};
    },
    set_user_memory_region2(a, { vm }) {
      const foreign = foreignHva(a.userspace_addr ?? 0, a.memory_size);
      if (foreign) return { skipped: foreign };
      vmOf(a.vm, vm).setUserMemoryRegion2({
        slot: a.slot,
        flags: a.flags ?? 0,
        guest_phys_addr: a.guest_phys_addr,
        memory_size: a.memory_size,
        userspace_addr: a.userspace_addr ?? 0,
        guest_memfd_offset: a.guest_memfd_offset ?? 0,
        // the u32 field: a negative fd is passed as its two's complement
        guest_memfd: (a.guest_memfd ?? 0) >>> 0,
      });
      if (a.vm === undefined) trackMemslot(a.slot, Number(a.guest_phys_addr), Number(a.memory_size), a.userspace_addr ?? 0);
      return {};
    },
    set_memory_attributes(a, { vm }) {
      vm.setMemoryAttributes({ address: a.address, size: a.size, attributes: a.attributes, flags: a.flags ?? 0 });
      return {};
    },
    get_dirty_log(a, { vm }) {
      const bitmap = vm.getDirtyLog({ slot: a.slot });
      return { dirty_pages: dirtyPageList(bitmap, Math.ceil((vm.slotSize(a.slot) ?? 0) / 4096)) };
    },
    clear_dirty_log(a, { vm }) {
      // the kernel copies ALIGN(num_pages, 64) / 8 bytes after its range checks: never more
      // than the slot can need
      const size = vm.slotSize(a.slot) ?? 0;
      const bits = clearBitmap(a.num_pages, a.dirty_bitmap, Math.ceil(Math.ceil(size / 4096) / 64) * 8);
      vm.clearDirtyLog({ slot: a.slot, first_page: a.first_page, num_pages: a.num_pages, dirty_bitmap: bits });
      return {};
    },
    check_extension: ({ cap, on }, { kvm, vm }) => ({ value: on === 'system' ? kvm.checkExtension(cap) : vm.checkExtension(cap) }),
    enable_cap(a, { vm }) {
      vm.enableCap({ cap: a.cap, flags: a.flags ?? 0, args: a.args ?? [] });
      return {};
    },
    create_vcpu(a, { vm, ctx }) {
      const vcpu = vm.createVcpu(a.id);
      if (a.bare) {
        bareVcpus.set(a.id, vcpu);
        return { result: a.id, detail: { bare: 'reset state, no tiny guest' } };
      }
      const place = placements[vcpus.size] ?? guestPlacements(ctx.scenario, vcpus.size + 1)[vcpus.size]!;
      const guest = installGuest(vm, vcpu, place);
      guests.push(guest);
      vcpus.set(a.id, { vcpu, guest, pendingMmio: null, paging: { cr0: 0, cr3: 0, cr4: 0, efer: 0 }, ringFetch: 0 });
      return { result: a.id, detail: { guest_slot: place.slot, guest_base: place.base } };
    },
    guest_read: (a) => guestAccess('read', a),
    guest_write: (a) => guestAccess('write', a),
    guest_fetch: (a) => guestAccess('fetch', a),
    complete_mmio(a) {
      const st = vcpuState(a.vcpu);
      if (st.pendingMmio === 'read') return guestOutcome(st.guest.completeMmioRead(a.data ?? 0n), 'read', st);
      // a write needs no data; KVM_RUN re-enters and either exits for the next fragment of a
      // page-crossing store or finishes the access
      if (st.pendingMmio === 'write') return guestOutcome(st.guest.completeMmioWrite(), 'write', st);
      return {};
    },
    complete_hypercall: unsupported('the tiny guest makes no hypercalls'),
    harvest_dirty_ring(a) {
      const st = vcpuState(a.vcpu);
      const words = st.vcpu.dirtyRingWords();
      if (words === null) return { signal: 'SIGBUS', detail: { check: 'kvm_vcpu_fault: the VM has no dirty ring (not touched)' } };
      const entries = words.length / 4;
      const max = a.max ?? Infinity;
      const dirty_gfns: { slot: number; offset: number }[] = [];
      let i = st.ringFetch;
      // dirty_ring_collect_one() of dirty_log_test.c: flags == KVM_DIRTY_GFN_F_DIRTY, then F_RESET
      while (dirty_gfns.length < max) {
        const w = (i & (entries - 1)) * 4;
        if (words[w] !== KVM_DIRTY_GFN_F_DIRTY) break;
        dirty_gfns.push({ slot: words[w + 1]!, offset: words[w + 2]! + words[w + 3]! * 2 ** 32 });
        words[w] = KVM_DIRTY_GFN_F_RESET;
        i = (i + 1) >>> 0;
      }
      st.ringFetch = i;
      return { dirty_gfns, dirty_pages: [...new Set(dirty_gfns.map((g) => g.offset))], value: dirty_gfns.length };
    },
    reset_dirty_rings: (_a, { vm }) => ({ value: vm.resetDirtyRings() }),
    mmap_dirty_ring(a) {
      const errno = vcpuState(a.vcpu).vcpu.tryMapDirtyRing(a.prot ?? PROT_READ | PROT_WRITE, a.flags ?? MAP_SHARED);
      return errno ? { errno: errno as Outcome['errno'], detail: { check: 'mmap of the vCPU fd at KVM_DIRTY_LOG_PAGE_OFFSET' } } : {};
    },
    guest_touch(a) {
      const st = vcpuState(a.vcpu);
      const end = a.gpa + Math.max(a.size, 1);
      if (end > GUEST_IDENTITY_MAP_LIMIT) return { skipped: 'the tiny guest identity-maps gpas below 512 GiB only' };
      if (guests.some((g) => a.gpa < g.range.end && end > g.range.start)) return { skipped: "the range overlaps the tiny guest's own slot" };
      return guestOutcome(st.guest.touchRange(a.gpa, a.size, BigInt((a.value ?? 1) & 0xff)), 'write', st);
    },
    run_vcpu(a) {
      // a bare vCPU (no tiny guest) runs from its reset state; a tiny guest resumes the access a
      // KVM_EXIT_DIRTY_RING_FULL interrupted
      if (!vcpus.has(a.vcpu)) return runBareVcpu(a.vcpu);
      const st = vcpuState(a.vcpu);
      const kind = st.guest.ringFull?.kind ?? 'read';
      return guestOutcome(st.guest.resume(), kind, st);
    },
    // guest paging: the tiny guest runs each gva access under the scenario's registers and
    // tables, reaching its own code through one top-level entry (docs/kvm.md)
    set_sregs(a) {
      const st = vcpuState(a.vcpu);
      st.paging = {
        cr0: a.cr0 ?? st.paging.cr0,
        cr3: a.cr3 ?? st.paging.cr3,
        cr4: a.cr4 ?? st.paging.cr4,
        efer: a.efer ?? st.paging.efer,
      };
      return {};
    },
    guest_page_table(a) {
      if (a.ept) return { skipped: 'the tiny guest runs no nested guest (EPT tables)' };
      if ((a.levels ?? 4) !== 4) return { skipped: 'the tiny guest runs paged accesses with 4-level paging only' };
      if (a.tables_at % 4096 !== 0) return { errno: 'EINVAL', detail: { check: 'guest_page_table: tables_at must be page aligned' } };
      let next = a.tables_at;
      const zero = () => {
        const gpa = next;
        next += 4096;
        for (let off = 0; off < 4096; off += 8) guestPtMemory.write64(gpa + off, 0, 0);
        return gpa;
      };
      try {
        const b = new GuestPageTableBuilder(guestPtMemory, zero, 4, false);
        const entries = a.map.map((e) => b.map(e.va, e.pa, e));
        return { result: b.root, detail: { root: b.root, entries, tables_end: next } };
      } catch (e) {
        if (e instanceof NotInScenarioMemory) return { skipped: `guest_page_table: ${e.message}` };
        throw e;
      }
    },
    guest_load_cr3(a) {
      const st = vcpuState(a.vcpu);
      st.paging = { ...st.paging, cr3: a.cr3 };
      return {};
    },
    guest_invlpg: (a) => pagedAccess('invlpg', { vcpu: a.vcpu, gva: a.gva, size: 1 }),
    guest_read_gva: (a) => pagedAccess('read', a),
    guest_write_gva: (a) => pagedAccess('write', a),
    enter_guest_mode: unsupported('the tiny guest runs no nested guest'),
    leave_guest_mode: unsupported('the tiny guest runs no nested guest'),
    l2_read: unsupported('the tiny guest runs no nested guest'),
    l2_write: unsupported('the tiny guest runs no nested guest'),
    pre_fault_memory(a) {
      const r = vcpuState(a.vcpu).vcpu.preFaultMemory({ gpa: a.gpa, size: a.size, flags: a.flags ?? 0 });
      return { gpa: r.gpa, size: r.size };
    },
    snp_launch_start: NO_SNP_VM,
    snp_launch_update: NO_SNP_VM,
    snp_launch_finish: NO_SNP_VM,
    guest_pvalidate: unsupported('the real-KVM target runs no SEV-SNP guest (PVALIDATE)'),
    guest_psc: unsupported('the real-KVM target runs no SEV-SNP guest (GHCB page state change)'),
    guest_psc_msr: unsupported('the real-KVM target runs no SEV-SNP guest (GHCB MSR page state change)'),
    guest_rmpadjust: unsupported('the real-KVM target runs no SEV-SNP guest (RMPADJUST)'),
    tdx_init_vm: NO_TDX_VM,
    tdx_init_vcpu: NO_TDX_VM,
    tdx_init_mem_region: NO_TDX_VM,
    tdx_finalize_vm: NO_TDX_VM,
    guest_accept: unsupported('the real-KVM target runs no TDX guest (TDG.MEM.PAGE.ACCEPT)'),
    snp_rmp_insn: unsupported('the host RMP instructions run inside the kernel, not from userspace (model only)'),
    snp_host_access: unsupported('a host kernel access through the direct map happens inside the kernel, not from userspace (model only)'),
    tdx_seamcall: unsupported('SEAMCALLs are issued by the kernel, not from userspace (model only)'),
    tdx_pending_interrupt: unsupported('the real-KVM target runs no TD to post an interrupt to (model only)'),
    tdx_inject_busy: unsupported('a real TDX module cannot be made to answer TDX_OPERAND_BUSY on demand (model only)'),
    snp_inject_fail: unsupported('a real CPU cannot be made to fail RMPUPDATE or PSMASH on demand (model only)'),
    guest_map_gpa_range: unsupported('the real-KVM target runs no confidential guest (KVM_HC_MAP_GPA_RANGE)'),
    sev_init2: NO_SEV_VM,
    sev_init: NO_SEV_VM,
    sev_launch_start: NO_SEV_VM,
    sev_launch_update_data: NO_SEV_VM,
    sev_launch_update_vmsa: NO_SEV_VM,
    sev_launch_measure: NO_SEV_VM,
    sev_launch_finish: NO_SEV_VM,
    sev_guest_status: NO_SEV_VM,
    memory_encrypt_reg_region: NO_SEV_VM,
    memory_encrypt_unreg_region: NO_SEV_VM,
    guest_ghcb_msr: unsupported('the real-KVM target runs no SEV-ES or SNP guest (GHCB MSR protocol)'),
    guest_ghcb_terminate: unsupported('the real-KVM target runs no SEV-ES or SNP guest (GHCB termination request)'),
    assert: unsupported('the real-KVM target cannot inspect kernel state'),
  } satisfies HandlerTable<KvmRun>;

  function teardown(): void {
    const errors: unknown[] = [];
    const attempt = (f: () => void) => {
      try {
        f();
      } catch (e) {
        errors.push(e);
      }
    };
    for (const other of otherVms.values()) attempt(() => other.close());
    if (vm) attempt(() => vm!.close());
    if (kvm) attempt(() => kvm!.close());
    kvm = null;
    for (const g of guests) attempt(() => hostMunmap(g.hva, GUEST_SLOT_SIZE));
    for (const m of mappings) attempt(() => hostMunmap(m.hva, m.length));
    for (const h of holes) attempt(() => hostMunmap(h.hva, h.length));
    for (const fd of fds) attempt(() => hostClose(fd));
    vm = null;
    mappings = [];
    holes = [];
    fds = new Set();
    vcpus = new Map();
    bareVcpus = new Map();
    otherVms = new Map();
    vmClosed = false;
    vcpuFds = new Map();
    protected_ = [];
    guests = [];
    memslots = new Map();
    placements = [];
    if (errors.length) throw errors[0];
  }

  const target: KvmTarget = {
    name: 'kvm',
    get profile() {
      return facts().profile;
    },
    get capabilities() {
      return facts().caps;
    },

    begin(scenario, ctx) {
      const missing = kvmUnavailableReason();
      if (missing) throw new SkipScenario(missing);
      if (scenario.vm.profile !== undefined && scenario.vm.profile !== 'host') {
        // a named profile runs here only when this host's kernel is that kernel
        const named = profileByName(scenario.vm.profile);
        const differs = named ? profileMismatch(named, facts().profile) : 'no such profile';
        if (differs) throw new SkipScenario(`the expectations follow the ${scenario.vm.profile} profile, not this host: ${differs}`);
      }
      const nodes = onlineNumaNodes();
      if (scenario.vm.numa_nodes !== undefined && scenario.vm.numa_nodes > nodes) {
        throw new SkipScenario(`the scenario needs ${scenario.vm.numa_nodes} NUMA nodes, this host has ${nodes}`);
      }
      if (scenario.vm.pci_hole === true) throw new SkipScenario('KVM_MEM_PCI_HOLE is an unmerged RFC that only the model offers');
      const unmet = unmetRequirement(scenario.requires, facts().profile);
      if (unmet) throw new SkipScenario(`host: ${unmet}`);
      const { caps } = facts();
      const type = ctx.vm.type;
      if (!(offeredVmTypes(caps) & (1 << VM_TYPE_NUMBERS[VM_TYPE_NAMES[type]]))) {
        throw new SkipScenario(`KVM_CAP_VM_TYPES of this host does not offer ${VM_TYPE_NAMES[type]}`);
      }
      if (type !== 'default') {
        throw new SkipScenario(`the real-KVM target runs default VMs only (the tiny guest is not a ${VM_TYPE_NAMES[type]} guest)`);
      }
      if (ctx.vm.provider === 'device_fd') throw new SkipScenario('the real-KVM target has no device_fd provider');
      teardown();
      kvm ??= RealKvm.open();
      vm = kvm.createVm(VM_TYPE_NUMBERS[VM_TYPE_NAMES[type]]);
      const nvcpus = [...scenario.steps, ...Object.values(scenario.concurrent?.actors ?? {}).flat()].filter((s) => s.op === 'create_vcpu').length;
      placements = nvcpus ? guestPlacements(scenario, nvcpus) : [];
    },

    execute(step, ctx) {
      if (!vm || !kvm) throw new Error('kvm target: begin() was not called');
      try {
        return dispatch(handlers, step, { kvm, vm, ctx });
      } catch (e) {
        if (isKvmError(e)) return { errno: e.code, detail: { check: e.check } };
        throw e;
      }
    },

    end() {
      teardown();
    },

    /** KVM_GET_STATS_FD of the VM: its scalar stats now (RealVm.stats()) */
    stats() {
      if (!vm) throw new Error('kvm target: begin() was not called');
      return vm.stats();
    },

    supports(op): Support {
      const own = tableSupport(handlers, op);
      if (!own.ok) return own;
      // (begin() already refused a VM type the host does not offer)
      const missing = missingNeed(opSpec(op).needs, facts().caps);
      return missing ? { ok: false, reason: `missing ${missing}` } : { ok: true };
    },
  };
  return target;
}
