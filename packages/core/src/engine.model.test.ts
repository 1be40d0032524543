/**
 * Model-based test of the engine (fast-check `fc.commands`): memory attributes, guest reads
 * and writes, zaps (munmap of the VMM's memory, attribute changes, guest_memfd hole punches)
 * and memslot changes (create / delete / move / flags-only with dirty logging) on a
 * KVM_X86_SW_PROTECTED_VM, against a plain per-page reference model. After every command the
 * guest's reads return what the reference says and checkVmInvariants(vm) is empty.
 *
 * The guest:
 *   slot 0  gfn 0x400..0x7ff (4 MiB), hugetlb 2M VMM memory + a guest_memfd (private pages),
 *           so shared faults map 2M where the attributes allow it
 *   slot 1  64 pages of 4K anonymous memory, no guest_memfd; dirty logging toggles on it and
 *           it moves between gfn 0x1000 and 0x2000; a private gfn here cannot be served
 *           (KVM_EXIT_MEMORY_FAULT)
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Kvm } from './kvm.js';
import type { Vm } from './vm.js';
import type { Vcpu } from './vcpu.js';
import { checkVmInvariants } from './invariants.js';
import { FakeGmem } from './testing/fake-gmem.js';
import { KVM_FILTER_PRIVATE } from './backend.js';
import {
  KVM_MEM_GUEST_MEMFD,
  KVM_MEM_LOG_DIRTY_PAGES,
  KVM_MEMORY_ATTRIBUTE_PRIVATE,
  KVM_X86_SW_PROTECTED_VM,
  PAGE_SIZE,
} from './uapi.js';

const MiB2 = 2 << 20;
const HUGE = process.env.MODEL_4K !== '1';
const S0_BASE = 0x400;
const S0_PAGES = 1024;
const S1_PAGES = 64;
const S1_BASES = [0x1000, 0x2000];

/** guest_memfd with FALLOC_FL_PUNCH_HOLE: invalidate (zap private mappings), then free the pages */
class PunchableGmem extends FakeGmem {
  constructor(
    private readonly vm: Vm,
    size: number,
  ) {
    super(vm, size, vm.phys);
  }

  /** kvm_gmem_punch_hole(): kvm_gmem_invalidate_begin → truncate → kvm_gmem_invalidate_end */
  punchHole(pgoff: number, npages: number): void {
    const slot = [...this.bindings.entries()].find(([pg]) => pg >= pgoff && pg < pgoff + npages)?.[1];
    if (slot) {
      const start = slot.baseGfn + Math.max(0, pgoff - slot.gmemPgoff);
      const end = Math.min(slot.baseGfn + slot.npages, slot.baseGfn + pgoff + npages - slot.gmemPgoff);
      this.vm.mmuInvalidateBegin();
      this.vm.mmuUnmapGfnRange(start, end, KVM_FILTER_PRIVATE);
      this.vm.mmuInvalidateEnd();
    }
    for (let pg = pgoff; pg < pgoff + npages; pg++) {
      const pfn = this.pages.get(pg);
      if (pfn === undefined) continue;
      this.pages.delete(pg);
      this.vm.phys.freePage(pfn);
    }
  }
}

/** The reference: plain maps, one entry per page. */
interface Model {
  /** gfn → PRIVATE attribute */
  private: Map<number, boolean>;
  /** VMM memory: slot index → page index → the 8 bytes at offset 0 */
  host: [Map<number, bigint>, Map<number, bigint>];
  /** guest_memfd page index → the 8 bytes at offset 0 */
  gmem: Map<number, bigint>;
  s1Present: boolean;
  s1Base: number;
  s1Logging: boolean;
  /** gfns of slot 1 written since the last KVM_GET_DIRTY_LOG while logging (as offsets) */
  dirty: Set<number>;
  /** gfns worth re-reading after every command */
  watched: Set<number>;
  /**
   * gfns with a live MMIO SPTE: a no-slot access installed one (MMIO caching), and it keeps
   * the access MMIO, private or not, until the next memslot change (handle_mmio_page_fault())
   */
  mmioCached: Set<number>;
}

interface Real {
  kvm: Kvm;
  vm: Vm;
  vcpu: Vcpu;
  gmem: PunchableGmem;
  hva: [number, number];
}

type Expect = { kind: 'value'; value: bigint } | { kind: 'mmio' } | { kind: 'memory_fault' };

/** what a guest read of gfn returns, per the reference */
function expected(m: Model, gfn: number): Expect {
  const isPrivate = m.private.get(gfn) === true;
  if (gfn >= S0_BASE && gfn < S0_BASE + S0_PAGES) {
    const idx = gfn - S0_BASE;
    return { kind: 'value', value: (isPrivate ? m.gmem.get(idx) : m.host[0].get(idx)) ?? 0n };
  }
  if (m.s1Present && gfn >= m.s1Base && gfn < m.s1Base + S1_PAGES) {
    if (isPrivate) return { kind: 'memory_fault' }; // no guest_memfd behind slot 1
    return { kind: 'value', value: m.host[1].get(gfn - m.s1Base) ?? 0n };
  }
  if (m.mmioCached.has(gfn)) return { kind: 'mmio' }; // the cached MMIO SPTE answers first
  if (isPrivate) return { kind: 'memory_fault' }; // private memory is never emulated
  return { kind: 'mmio' };
}

/** after a guest access with the expected outcome: a no-slot MMIO fault leaves an MMIO SPTE */
function noteMmio(m: Model, gfn: number, want: Expect): void {
  if (want.kind === 'mmio') m.mmioCached.add(gfn);
}

function check(m: Model, r: Real): void {
  for (const gfn of m.watched) {
    const want = expected(m, gfn);
    const got = r.vcpu.guestRead(gfn * PAGE_SIZE, 8, m.private.get(gfn) === true);
    if (want.kind === 'value') {
      expect(got.exit, `read gfn 0x${gfn.toString(16)}: ${got.reason}`).toBeUndefined();
      expect(got.value, `gfn 0x${gfn.toString(16)}`).toBe(want.value);
    } else if (want.kind === 'mmio') {
      expect(got.exit?.reason, `gfn 0x${gfn.toString(16)}`).toBe('KVM_EXIT_MMIO');
      r.vcpu.completeMmioRead(0n);
      noteMmio(m, gfn, want);
    } else {
      expect(got.exit?.reason, `gfn 0x${gfn.toString(16)}`).toBe('KVM_EXIT_MEMORY_FAULT');
      expect(got.errno).toBe('EFAULT');
    }
  }
  expect(checkVmInvariants(r.vm)).toEqual([]);
}

/** a gfn somewhere interesting: slot 0, either slot-1 position, or just outside */
const gfnArb = fc.oneof(
  fc.integer({ min: S0_BASE, max: S0_BASE + S0_PAGES - 1 }),
  fc.constantFrom(S0_BASE, S0_BASE + 511, S0_BASE + 512, S0_BASE + S0_PAGES - 1),
  fc.integer({ min: 0, max: S1_PAGES - 1 }).chain((o) => fc.constantFrom(S1_BASES[0]! + o, S1_BASES[1]! + o)),
  fc.constantFrom(S0_BASE - 1, S1_BASES[0]! + S1_PAGES),
);

class Write implements fc.Command<Model, Real> {
  constructor(
    readonly gfn: number,
    readonly value: bigint,
  ) {}
  check = () => true;
  run(m: Model, r: Real): void {
    const want = expected(m, this.gfn);
    const isPrivate = m.private.get(this.gfn) === true;
    const got = r.vcpu.guestWrite(this.gfn * PAGE_SIZE, 8, this.value, isPrivate);
    if (want.kind === 'value') {
      expect(got.exit, got.reason).toBeUndefined();
      if (this.gfn < S0_BASE + S0_PAGES && this.gfn >= S0_BASE) {
        (isPrivate ? m.gmem : m.host[0]).set(this.gfn - S0_BASE, this.value);
      } else {
        m.host[1].set(this.gfn - m.s1Base, this.value);
        if (m.s1Logging) m.dirty.add(this.gfn - m.s1Base);
      }
    } else if (want.kind === 'mmio') {
      const exit = got.exit;
      expect(exit?.reason).toBe('KVM_EXIT_MMIO');
      if (exit?.reason === 'KVM_EXIT_MMIO') expect(exit.mmio.is_write).toBe(true);
      noteMmio(m, this.gfn, want);
    } else {
      expect(got.exit?.reason).toBe('KVM_EXIT_MEMORY_FAULT');
    }
    m.watched.add(this.gfn);
    check(m, r);
  }
  toString = () => `write(0x${this.gfn.toString(16)}, ${this.value})`;
}

class SetAttributes implements fc.Command<Model, Real> {
  constructor(
    readonly start: number,
    readonly npages: number,
    readonly toPrivate: boolean,
  ) {}
  check = () => true;
  run(m: Model, r: Real): void {
    r.vm.setMemoryAttributes({
      address: this.start * PAGE_SIZE,
      size: this.npages * PAGE_SIZE,
      attributes: this.toPrivate ? KVM_MEMORY_ATTRIBUTE_PRIVATE : 0,
    });
    for (let g = this.start; g < this.start + this.npages; g++) {
      if (this.toPrivate) m.private.set(g, true);
      else m.private.delete(g);
    }
    m.watched.add(this.start);
    m.watched.add(this.start + this.npages - 1);
    check(m, r);
  }
  toString = () => `attributes(0x${this.start.toString(16)}, ${this.npages}, ${this.toPrivate ? 'private' : 'shared'})`;
}

/** munmap part of the VMM's memory behind a slot and map fresh memory in its place */
class Remap implements fc.Command<Model, Real> {
  constructor(
    readonly slot: 0 | 1,
    readonly chunk: number,
  ) {}
  check = () => true;
  run(m: Model, r: Real): void {
    const mm = r.kvm.process.mm;
    if (this.slot === 0) {
      const idx = (this.chunk % 2) * 512; // one 2M hugetlb page
      const addr = r.hva[0] + idx * PAGE_SIZE;
      mm.munmap(addr, MiB2);
      mm.mmap({ addr, length: MiB2, prot: { read: true, write: true }, shared: false, ...(HUGE ? { hugepage: '2M' as const } : {}) });
      for (let i = idx; i < idx + 512; i++) m.host[0].delete(i);
    } else {
      const idx = this.chunk % S1_PAGES;
      const addr = r.hva[1] + idx * PAGE_SIZE;
      mm.munmap(addr, PAGE_SIZE);
      mm.mmap({ addr, length: PAGE_SIZE, prot: { read: true, write: true }, shared: false });
      m.host[1].delete(idx);
    }
    check(m, r);
  }
  toString = () => `remap(slot ${this.slot}, ${this.chunk})`;
}

class PunchHole implements fc.Command<Model, Real> {
  constructor(
    readonly pgoff: number,
    readonly npages: number,
  ) {}
  check = () => true;
  run(m: Model, r: Real): void {
    r.gmem.punchHole(this.pgoff, this.npages);
    for (let i = this.pgoff; i < this.pgoff + this.npages; i++) m.gmem.delete(i);
    m.watched.add(S0_BASE + this.pgoff);
    check(m, r);
  }
  toString = () => `punch(${this.pgoff}, ${this.npages})`;
}

function s1Region(m: Model, r: Real, flags: number, base = m.s1Base) {
  return { slot: 1, flags, guest_phys_addr: base * PAGE_SIZE, memory_size: S1_PAGES * PAGE_SIZE, userspace_addr: r.hva[1] };
}

class DeleteSlot1 implements fc.Command<Model, Real> {
  check = (m: Readonly<Model>) => m.s1Present;
  run(m: Model, r: Real): void {
    r.vm.setUserMemoryRegion2({ ...s1Region(m, r, 0), memory_size: 0 });
    m.mmioCached.clear(); // a new memslot generation
    m.s1Present = false;
    m.s1Logging = false;
    m.dirty.clear();
    check(m, r);
  }
  toString = () => 'delete(slot 1)';
}

class CreateSlot1 implements fc.Command<Model, Real> {
  constructor(readonly where: number) {}
  check = (m: Readonly<Model>) => !m.s1Present;
  run(m: Model, r: Real): void {
    const base = S1_BASES[this.where]!;
    r.vm.setUserMemoryRegion2(s1Region(m, r, 0, base));
    m.mmioCached.clear();
    m.s1Present = true;
    m.s1Base = base;
    check(m, r);
  }
  toString = () => `create(slot 1 at 0x${S1_BASES[this.where]!.toString(16)})`;
}

class MoveSlot1 implements fc.Command<Model, Real> {
  check = (m: Readonly<Model>) => m.s1Present;
  run(m: Model, r: Real): void {
    const base = m.s1Base === S1_BASES[0] ? S1_BASES[1]! : S1_BASES[0]!;
    r.vm.setUserMemoryRegion2(s1Region(m, r, m.s1Logging ? KVM_MEM_LOG_DIRTY_PAGES : 0, base));
    m.mmioCached.clear();
    m.s1Base = base;
    if (m.s1Logging) m.dirty.clear(); // a moved slot gets a fresh bitmap
    check(m, r);
  }
  toString = () => 'move(slot 1)';
}

/** KVM_MEM_LOG_DIRTY_PAGES on / off: a FLAGS_ONLY change */
class ToggleLogging implements fc.Command<Model, Real> {
  check = (m: Readonly<Model>) => m.s1Present;
  run(m: Model, r: Real): void {
    const on = !m.s1Logging;
    r.vm.setUserMemoryRegion2(s1Region(m, r, on ? KVM_MEM_LOG_DIRTY_PAGES : 0));
    m.mmioCached.clear();
    m.s1Logging = on;
    m.dirty.clear();
    check(m, r);
  }
  toString = () => 'toggle-dirty-logging(slot 1)';
}

/** KVM_GET_DIRTY_LOG: every page written since the last call is reported */
class GetDirtyLog implements fc.Command<Model, Real> {
  check = (m: Readonly<Model>) => m.s1Present && m.s1Logging;
  run(m: Model, r: Real): void {
    const bitmap = r.vm.getDirtyLog({ slot: 1 });
    for (const off of m.dirty) expect((bitmap[off >>> 3]! >>> (off & 7)) & 1, `dirty bit ${off}`).toBe(1);
    m.dirty.clear();
    check(m, r);
  }
  toString = () => 'get-dirty-log(slot 1)';
}

function setup(): { model: Model; real: Real } {
  const kvm = new Kvm();
  const vm = kvm.createVm({ type: KVM_X86_SW_PROTECTED_VM });
  const gmem = new PunchableGmem(vm, S0_PAGES * PAGE_SIZE);
  const fd = kvm.process.installFd(gmem);
  const mm = kvm.process.mm;
  const hva0 = mm.mmap({ length: S0_PAGES * PAGE_SIZE, prot: { read: true, write: true }, shared: false, ...(HUGE ? { hugepage: '2M' as const } : {}) });
  const hva1 = mm.mmap({ length: S1_PAGES * PAGE_SIZE, prot: { read: true, write: true }, shared: false });
  vm.setUserMemoryRegion2({
    slot: 0,
    flags: KVM_MEM_GUEST_MEMFD,
    guest_phys_addr: S0_BASE * PAGE_SIZE,
    memory_size: S0_PAGES * PAGE_SIZE,
    userspace_addr: hva0,
    guest_memfd: fd,
    guest_memfd_offset: 0,
  });
  vm.setUserMemoryRegion2({ slot: 1, flags: 0, guest_phys_addr: S1_BASES[0]! * PAGE_SIZE, memory_size: S1_PAGES * PAGE_SIZE, userspace_addr: hva1 });
  const real: Real = { kvm, vm, vcpu: vm.createVcpu(0), gmem, hva: [hva0, hva1] };
  const model: Model = {
    private: new Map(),
    host: [new Map(), new Map()],
    gmem: new Map(),
    s1Present: true,
    s1Base: S1_BASES[0]!,
    s1Logging: false,
    dirty: new Set(),
    mmioCached: new Set(),
    watched: new Set([S0_BASE, S0_BASE + 511, S0_BASE + 512, S0_BASE + S0_PAGES - 1, S1_BASES[0]!, S1_BASES[1]! + 3, S0_BASE - 1]),
  };
  return { model, real };
}

const commands = [
  fc.tuple(gfnArb, fc.bigInt({ min: 1n, max: 2n ** 64n - 1n })).map(([g, v]) => new Write(g, v)),
  fc.tuple(gfnArb, fc.constantFrom(1, 3, 512, 700), fc.boolean()).map(([g, n, p]) => new SetAttributes(g, n, p)),
  fc.tuple(fc.constantFrom<0 | 1>(0, 1), fc.nat(100)).map(([s, c]) => new Remap(s, c)),
  fc.tuple(fc.integer({ min: 0, max: S0_PAGES - 1 }), fc.constantFrom(1, 16, 512)).map(([p, n]) => new PunchHole(p, Math.min(n, S0_PAGES - p))),
  fc.constant(new DeleteSlot1()),
  fc.integer({ min: 0, max: 1 }).map((w) => new CreateSlot1(w)),
  fc.constant(new MoveSlot1()),
  fc.constant(new ToggleLogging()),
  fc.constant(new GetDirtyLog()),
];

describe('engine model: attributes + faults + zaps + memslot changes (SW_PROTECTED)', () => {
  it('reads through the guest follow the reference model and the invariants hold after every command', () => {
    fc.assert(
      fc.property(fc.commands(commands, { maxCommands: 40 }), (cmds) => {
        const { model, real } = setup();
        check(model, real);
        fc.modelRun(() => ({ model, real }), cmds);
      }),
      { numRuns: 100 },
    );
  });

  it('a shared 2M hugetlb range maps huge until an attribute splits it, then 4K around the mixed page', () => {
    const { model, real } = setup();
    new Write(S0_BASE + 5, 7n).run(model, real);
    expect(real.vm.mmu.leafAt(S0_BASE + 5, false)?.level).toBe(2);
    new SetAttributes(S0_BASE + 9, 1, true).run(model, real);
    new Write(S0_BASE + 5, 8n).run(model, real);
    expect(real.vm.mmu.leafAt(S0_BASE + 5, false)?.level).toBe(1); // KVM_LPAGE_MIXED_FLAG
    new SetAttributes(S0_BASE + 9, 1, false).run(model, real);
    new Write(S0_BASE + 6, 9n).run(model, real);
    expect(real.vm.mmu.leafAt(S0_BASE + 6, false)?.level).toBe(2);
  });
});
