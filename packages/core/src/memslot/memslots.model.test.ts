/**
 * Model-based test: random sequences of memslot changes, dirty-log ioctls and dirty marks run
 * against the engine and against a plainly written reference (per-slot records with boolean
 * page arrays, the §2 / §3 rules of research kvm-uapi.md spelled out naively). Both must give
 * the same result and errno, and the same state after every command (so a failed call is
 * seen to change nothing).
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { KvmError } from '../errno.js';
import {
  KVM_MEM_GUEST_MEMFD,
  KVM_MEM_LOG_DIRTY_PAGES,
  KVM_MEM_MAX_NR_PAGES,
  KVM_MEM_PCI_HOLE,
  KVM_MEM_READONLY,
  KVM_USER_MEM_SLOTS,
} from '../uapi.js';
import { TASK_SIZE_MAX } from '../host/address-space.js';
import { DirtyLog, markPageDirtyInSlot } from './dirty-log.js';
import { MemslotEngine, type KvmUserspaceMemoryRegion2 } from './set-memory-region.js';
import { memslotHooks } from '../testing/memslot-hooks.js';

const NR_AS = 2;
const LOG = KVM_MEM_LOG_DIRTY_PAGES;
const RO = KVM_MEM_READONLY;
const GMEM = KVM_MEM_GUEST_MEMFD;
const PCI = KVM_MEM_PCI_HOLE;
const HVA = 0x7e0000000000;

/* ------------------------------------------------------------------ reference model ---- */

interface RefSlot {
  as: number;
  id: number;
  base: number;
  npages: number;
  hva: number;
  flags: number;
  dirty: boolean[] | null;
}

interface Ref {
  slots: RefSlot[];
  gen: number[];
  nrPages: number;
  manual: number;
  rearmedPages: number;
}

type Outcome = { errno: string } | { ok: unknown };

function refFind(m: Ref, as: number, id: number): RefSlot | undefined {
  return m.slots.find((s) => s.as === as && s.id === id);
}

function refSet(m: Ref, r: KvmUserspaceMemoryRegion2, v2: boolean): Outcome {
  const flags = r.flags >>> 0;
  const slot = r.slot >>> 0;
  const as = slot >>> 16;
  const id = slot & 0xffff;
  const size = Number(r.memory_size);
  const gpa = Number(r.guest_phys_addr);
  const hva = Number(r.userspace_addr);
  if (!v2 && (flags & ~(LOG | RO | PCI)) !== 0) return { errno: 'EINVAL' };
  if (id >= KVM_USER_MEM_SLOTS) return { errno: 'EINVAL' };
  let valid = LOG | GMEM | PCI;
  if (flags & GMEM) valid &= ~LOG;
  else valid |= RO;
  if ((flags & ~valid) !== 0) return { errno: 'EINVAL' };
  if (size % 4096 !== 0) return { errno: 'EINVAL' };
  if (gpa % 4096 !== 0) return { errno: 'EINVAL' };
  if (flags & PCI) {
    if (flags & (RO | LOG | GMEM)) return { errno: 'EINVAL' };
    if (hva !== 0) return { errno: 'EINVAL' };
  } else if (hva % 4096 !== 0 || hva + size > TASK_SIZE_MAX) return { errno: 'EINVAL' };
  if (as >= NR_AS) return { errno: 'EINVAL' };
  const npages = size / 4096;
  if (npages > KVM_MEM_MAX_NR_PAGES) return { errno: 'EINVAL' };
  const old = refFind(m, as, id);
  if (size === 0) {
    if (!old) return { errno: 'EINVAL' };
    m.slots = m.slots.filter((s) => s !== old);
    m.nrPages -= old.npages;
    m.gen[as]! += 2 * NR_AS;
    return { ok: 'DELETE' };
  }
  const base = gpa / 4096;
  let change: string;
  if (!old) change = 'CREATE';
  else {
    if (flags & GMEM) return { errno: 'EINVAL' };
    if (hva !== old.hva || npages !== old.npages || ((flags ^ old.flags) & (RO | GMEM | PCI)) !== 0) return { errno: 'EINVAL' };
    if (base !== old.base) change = 'MOVE';
    else if (flags !== old.flags) change = 'FLAGS_ONLY';
    else return { ok: null };
  }
  if (change === 'CREATE' || change === 'MOVE') {
    for (const s of m.slots) {
      if (s.as === as && s.id !== id && s.base < base + npages && base < s.base + s.npages) return { errno: 'EEXIST' };
    }
  }
  if (flags & GMEM) return { errno: 'EBADF' }; // no guest_memfd is ever open in this test
  let dirty: boolean[] | null = null;
  if (flags & LOG) {
    if (old && old.dirty) dirty = old.dirty;
    else dirty = new Array<boolean>(npages).fill(m.manual === 3);
  }
  if (old) m.slots = m.slots.filter((s) => s !== old);
  m.slots.push({ as, id, base, npages, hva, flags, dirty });
  if (change === 'CREATE') m.nrPages += npages;
  m.gen[as]! += (change === 'MOVE' ? 2 : 1) * NR_AS;
  return { ok: change };
}

function refGet(m: Ref, slot: number): Outcome {
  const as = slot >>> 16;
  const id = slot & 0xffff;
  if (as >= NR_AS || id >= KVM_USER_MEM_SLOTS) return { errno: 'EINVAL' };
  const s = refFind(m, as, id);
  if (!s || !s.dirty) return { errno: 'ENOENT' };
  const out = s.dirty.map((d, i) => (d ? i : -1)).filter((i) => i >= 0);
  if (!(m.manual & 1)) {
    m.rearmedPages += out.length;
    s.dirty = s.dirty.map(() => false);
  }
  return { ok: out };
}

function refClear(m: Ref, slot: number, first: number, num: number, user: boolean[], userBytes: number): Outcome {
  const as = slot >>> 16;
  const id = slot & 0xffff;
  if (as >= NR_AS || id >= KVM_USER_MEM_SLOTS) return { errno: 'EINVAL' };
  if (first % 64 !== 0) return { errno: 'EINVAL' };
  const s = refFind(m, as, id);
  if (!s || !s.dirty) return { errno: 'ENOENT' };
  if (first > s.npages || num > s.npages - first || (num < s.npages - first && num % 64 !== 0)) return { errno: 'EINVAL' };
  if (userBytes < Math.ceil(num / 64) * 8) return { errno: 'EFAULT' };
  for (let i = 0; i < Math.ceil(num / 64) * 64; i++) {
    const p = first + i;
    if (user[i] && p < s.npages && s.dirty[p]) {
      s.dirty[p] = false;
      m.rearmedPages++;
    }
  }
  return { ok: null };
}

/* ------------------------------------------------------------------------ real side ---- */

interface Real {
  engine: MemslotEngine;
  log: DirtyLog;
  rearmedPages: number;
}

function realSetup(manual: number): Real {
  const real = { rearmedPages: 0 } as Real;
  const hooks = memslotHooks({
    nrAsIds: () => NR_AS,
    pciHoleSupported: () => true,
    enableDirtyLogPtMasked: (_s, _o, mask) => {
      for (let b = 0; b < 32; b++) if ((mask >>> b) & 1) real.rearmedPages++;
    },
  });
  real.engine = new MemslotEngine(hooks);
  real.log = new DirtyLog(real.engine, hooks);
  real.log.enableManualDirtyLogProtect(manual, 0);
  return real;
}

function outcome(fn: () => unknown): Outcome {
  try {
    return { ok: fn() };
  } catch (e) {
    if (e instanceof KvmError) return { errno: e.code };
    throw e;
  }
}

function bitsOf(bm: Uint8Array, npages: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < bm.length * 8; i++) if ((bm[i >> 3]! >> (i & 7)) & 1) out.push(i);
  expect(bm.length).toBe(Math.ceil(npages / 64) * 8);
  return out;
}

function compareState(m: Ref, r: Real): void {
  const real = r.engine.slots;
  expect(real.nrMemslotPages).toBe(m.nrPages);
  for (let as = 0; as < NR_AS; as++) {
    const sp = real.memslots(as);
    expect(sp.generation).toBe(m.gen[as]);
    const got = sp.slots().map((s) => ({
      id: s.id,
      base: s.baseGfn,
      npages: s.npages,
      hva: s.userspaceAddr,
      flags: s.flags,
      dirty: s.dirtyBitmap ? Array.from({ length: s.npages }, (_, i) => s.dirtyBitmap!.test(i)) : null,
    }));
    const want = m.slots
      .filter((s) => s.as === as)
      .sort((a, b) => a.base - b.base)
      .map((s) => ({ id: s.id, base: s.base, npages: s.npages, hva: s.hva, flags: s.flags, dirty: s.dirty ? [...s.dirty] : null }));
    expect(got).toEqual(want);
  }
  expect(r.rearmedPages).toBe(m.rearmedPages);
  expect(real.slotsLockHeld).toBe(false);
  expect(r.engine.checkInvariants()).toEqual([]);
}

/* ------------------------------------------------------------------------- commands ---- */

class SetRegion implements fc.Command<Ref, Real> {
  constructor(
    readonly r: KvmUserspaceMemoryRegion2,
    readonly v2: boolean,
  ) {}
  check(): boolean {
    return true;
  }
  run(m: Ref, r: Real): void {
    const want = refSet(m, this.r, this.v2);
    const got = outcome(() => r.engine.setUserMemoryRegion(this.r, { v2: this.v2 }).change);
    expect(got).toEqual(want);
    compareState(m, r);
  }
  toString(): string {
    return `set(${JSON.stringify(this.r)}, v2=${this.v2})`;
  }
}

class GetLog implements fc.Command<Ref, Real> {
  constructor(readonly slot: number) {}
  check(): boolean {
    return true;
  }
  run(m: Ref, r: Real): void {
    const s = r.engine.slots.memslots(Math.min(this.slot >>> 16, NR_AS - 1)).idToMemslot(this.slot & 0xffff);
    const want = refGet(m, this.slot);
    const got = outcome(() => bitsOf(r.log.getDirtyLog({ slot: this.slot }), s?.npages ?? 0));
    expect(got).toEqual(want);
    compareState(m, r);
  }
  toString(): string {
    return `get(${this.slot})`;
  }
}

class ClearLog implements fc.Command<Ref, Real> {
  constructor(
    readonly slot: number,
    readonly first: number,
    readonly num: number,
    readonly user: boolean[],
    readonly userBytes: number,
  ) {}
  check(): boolean {
    return true;
  }
  run(m: Ref, r: Real): void {
    const buf = new Uint8Array(this.userBytes);
    this.user.forEach((b, i) => {
      if (b && i >> 3 < buf.length) buf[i >> 3]! |= 1 << (i & 7);
    });
    const want = refClear(m, this.slot, this.first, this.num, this.user, this.userBytes);
    const got = outcome(() => r.log.clearDirtyLog({ slot: this.slot, first_page: this.first, num_pages: this.num, dirty_bitmap: buf }) ?? null);
    expect(got).toEqual(want);
    compareState(m, r);
  }
  toString(): string {
    return `clear(${this.slot}, first=${this.first}, num=${this.num}, bytes=${this.userBytes})`;
  }
}

class MarkDirty implements fc.Command<Ref, Real> {
  constructor(
    readonly as: number,
    readonly gfn: number,
  ) {}
  check(): boolean {
    return true;
  }
  run(m: Ref, r: Real): void {
    const slot = r.engine.gfnToMemslot(this.as, this.gfn);
    const ref = m.slots.find((s) => s.as === this.as && this.gfn >= s.base && this.gfn < s.base + s.npages);
    expect(slot?.id).toBe(ref?.id);
    markPageDirtyInSlot(slot, this.gfn);
    if (ref && ref.flags & LOG && ref.dirty) ref.dirty[this.gfn - ref.base] = true;
    compareState(m, r);
  }
  toString(): string {
    return `mark(${this.as}, ${this.gfn})`;
  }
}

const slotArb = fc.oneof(
  { weight: 8, arbitrary: fc.integer({ min: 0, max: 3 }) },
  { weight: 3, arbitrary: fc.integer({ min: 0, max: 3 }).map((id) => (1 << 16) | id) },
  { weight: 1, arbitrary: fc.constantFrom(2 << 16, KVM_USER_MEM_SLOTS, 0xffffffff) },
);
const flagsArb = fc.oneof(
  { weight: 10, arbitrary: fc.constantFrom(0, LOG, RO, LOG | RO) },
  { weight: 2, arbitrary: fc.constantFrom(PCI, PCI | LOG, GMEM, GMEM | LOG, 1 << 3) },
);
const pagesArb = fc.oneof(
  { weight: 10, arbitrary: fc.constantFrom(0, 1, 63, 64, 65, 100, 128, 200) },
  { weight: 1, arbitrary: fc.constant(0.5) },
);
const regionArb = fc
  .record({
    slot: slotArb,
    flags: flagsArb,
    gfn: fc.oneof({ weight: 10, arbitrary: fc.integer({ min: 0, max: 600 }) }, { weight: 1, arbitrary: fc.constant(0.25) }),
    pages: pagesArb,
    hva: fc.oneof({ weight: 10, arbitrary: fc.constantFrom(HVA, HVA + 0x100000) }, { weight: 1, arbitrary: fc.constantFrom(0, HVA + 8, TASK_SIZE_MAX - 4096) }),
  })
  .map(
    ({ slot, flags, gfn, pages, hva }): KvmUserspaceMemoryRegion2 => ({
      slot,
      flags,
      guest_phys_addr: gfn * 4096,
      memory_size: pages * 4096,
      userspace_addr: flags & PCI && hva === HVA ? 0 : hva,
    }),
  );

const commands = [
  fc.tuple(regionArb, fc.boolean()).map(([r, v2]) => new SetRegion(r, v2)),
  fc.tuple(regionArb, fc.boolean()).map(([r, v2]) => new SetRegion(r, v2)),
  slotArb.map((s) => new GetLog(s)),
  fc
    .record({
      slot: slotArb,
      first: fc.constantFrom(0, 64, 128, 192, 1, 32),
      num: fc.constantFrom(0, 1, 36, 64, 100, 128, 136, 200),
      user: fc.array(fc.boolean(), { minLength: 256, maxLength: 256 }),
      short: fc.boolean(),
    })
    .map(({ slot, first, num, user, short }) => new ClearLog(slot, first, num, user, short ? 0 : 32)),
  fc.tuple(fc.integer({ min: 0, max: 1 }), fc.integer({ min: 0, max: 800 })).map(([as, gfn]) => new MarkDirty(as, gfn)),
  fc.tuple(fc.integer({ min: 0, max: 1 }), fc.integer({ min: 0, max: 800 })).map(([as, gfn]) => new MarkDirty(as, gfn)),
];

describe('memslot engine vs. reference model', () => {
  it('same results, same errno, same state after every command', () => {
    fc.assert(
      fc.property(fc.constantFrom(0, 1, 3), fc.commands(commands, { maxCommands: 80 }), (manual, cmds) => {
        const setup = () => ({
          model: { slots: [], gen: [0, 1], nrPages: 0, manual, rearmedPages: 0 } as Ref,
          real: realSetup(manual),
        });
        fc.modelRun(setup, cmds);
      }),
      { numRuns: 300 },
    );
  });
});
