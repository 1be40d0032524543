/**
 * The chunked dirty bitmap against a plain Uint32Array of the kernel's layout: random
 * operations on bitmaps of one to a few chunks (with odd tails) give the same words, counts,
 * runs and copies; and KVM_GET_DIRTY_LOG / KVM_CLEAR_DIRTY_LOG over chunked bitmaps re-arm
 * exactly the words the kernel's word-by-word loops (kvm_get_dirty_log_protect(),
 * kvm_clear_dirty_log_protect()) re-arm, with user bitmaps as bytes or as DirtyBitmaps.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { KVM_DIRTY_LOG_INITIALLY_SET, KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE, KVM_MEM_LOG_DIRTY_PAGES } from '../uapi.js';
import { CHUNK_FULL, CHUNK_WORDS_KIND, CHUNK_ZERO, DIRTY_CHUNK_PAGES, DirtyBitmap } from './dirty-bitmap.js';
import { DirtyLog, markPageDirtyInSlot } from './dirty-log.js';
import { MemslotEngine } from './set-memory-region.js';
import { memslotHooks } from '../testing/memslot-hooks.js';

const C = DIRTY_CHUNK_PAGES;

/** the dense reference: ALIGN(npages, 64) / 32 words */
function dense(npages: number, allSet: boolean): Uint32Array {
  const w = new Uint32Array(Math.ceil(npages / 64) * 2);
  if (allSet) for (let p = 0; p < npages; p++) w[p >>> 5] = w[p >>> 5]! | (1 << (p & 31));
  return w;
}

function runsOf(w: Uint32Array): [number, number][] {
  const out: [number, number][] = [];
  for (let p = 0; p < w.length * 32; p++) {
    if (!((w[p >>> 5]! >>> (p & 31)) & 1)) continue;
    const last = out[out.length - 1];
    if (last && last[1] === p) last[1] = p + 1;
    else out.push([p, p + 1]);
  }
  return out;
}

function mergedRuns(b: DirtyBitmap): [number, number][] {
  const out: [number, number][] = [];
  b.forEachSetRun((s, e) => {
    expect(e).toBeGreaterThan(s);
    const last = out[out.length - 1];
    if (last && last[1] === s) last[1] = e;
    else out.push([s, e]);
  });
  return out;
}

describe('DirtyBitmap', () => {
  it('costs nothing until a chunk changes; INITIALLY_SET is a full bitmap at no cost', () => {
    const b = new DirtyBitmap(2 ** 31 - 1, true);
    expect(b.nwords).toBe(2 ** 26);
    expect(b.count()).toBe(2 ** 31 - 1);
    expect(b.test(0)).toBe(true);
    expect(b.test(2 ** 31 - 2)).toBe(true);
    expect(b.word(b.nwords - 1)).toBe(0x7fffffff); // the last page is 2^31 - 2
    b.set(12345); // already set: still nothing allocated
    expect(b.chunkKind(0)).toBe(CHUNK_FULL);
    b.setWord(0, 0xfffffffe);
    expect(b.chunkKind(0)).toBe(CHUNK_WORDS_KIND);
    expect(b.chunkKind(1)).toBe(CHUNK_FULL);
    expect(b.count()).toBe(2 ** 31 - 2);
    expect(b.allSet(1, 2 ** 31 - 1)).toBe(true);
    expect(b.allSet(0, 2)).toBe(false);
    b.setChunk(1, false);
    expect(b.chunkKind(1)).toBe(CHUNK_ZERO);
    expect(b.test(C + 5)).toBe(false);
  });

  it('matches a plain word array under random operations', () => {
    const op = fc.oneof(
      fc.record({ k: fc.constant('set' as const), p: fc.nat() }),
      fc.record({ k: fc.constant('word' as const), i: fc.nat(), v: fc.integer({ min: 0, max: 0xffffffff }) }),
      fc.record({ k: fc.constant('chunk' as const), c: fc.nat(), full: fc.boolean() }),
      fc.record({ k: fc.constant('all' as const), full: fc.boolean() }),
    );
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 3 * C + 200 }), fc.boolean(), fc.array(op, { maxLength: 40 }), (npages, allSet, ops) => {
        const b = new DirtyBitmap(npages, allSet);
        const ref = dense(npages, allSet);
        const full = dense(npages, true);
        for (const o of ops) {
          if (o.k === 'set') {
            const p = o.p % npages;
            b.set(p);
            ref[p >>> 5] = ref[p >>> 5]! | (1 << (p & 31));
          } else if (o.k === 'word') {
            const i = o.i % b.nwords;
            b.setWord(i, o.v);
            ref[i] = (o.v & full[i]!) >>> 0;
          } else if (o.k === 'chunk') {
            const c = o.c % b.nchunks;
            b.setChunk(c, o.full);
            const { start, end } = b.chunkWordRange(c);
            for (let i = start; i < end; i++) ref[i] = o.full ? full[i]! : 0;
          } else {
            if (o.full) b.setAll();
            else b.clearAll();
            ref.set(o.full ? full : new Uint32Array(ref.length));
          }
        }
        expect(Array.from(b.toUint32Array())).toEqual(Array.from(ref));
        expect(b.count()).toBe(runsOf(ref).reduce((n, [s, e]) => n + e - s, 0));
        expect(mergedRuns(b)).toEqual(runsOf(ref));
        const copy = b.clone();
        expect(Array.from(copy.toUint32Array())).toEqual(Array.from(ref));
        copy.set(0);
        copy.setWord(b.nwords - 1, 0);
        expect(Array.from(b.toUint32Array())).toEqual(Array.from(ref)); // the copy is independent
        expect(Array.from(DirtyBitmap.fromBytes(b.toBytes(), npages).toUint32Array())).toEqual(Array.from(ref));
        const lo = Math.floor(npages / 3);
        const hi = Math.min(npages, lo + 40);
        let all = true;
        for (let p = lo; p < hi; p++) all &&= ((ref[p >>> 5]! >>> (p & 31)) & 1) === 1;
        expect(b.allSet(lo, hi)).toBe(all);
      }),
      { numRuns: 100 },
    );
  });
});

/* ---------------------------------------------------------------------------------------- */

/** the kernel's loops over a dense bitmap (the model before chunking) */
function refGet(bm: Uint32Array, manual: boolean, rearm: (off: number, mask: number) => void, flush: () => void): Uint32Array {
  if (manual) return bm.slice();
  const out = new Uint32Array(bm.length);
  let taken = false;
  for (let i = 0; i < bm.length; i++) {
    if (bm[i] === 0) continue;
    out[i] = bm[i]!;
    bm[i] = 0;
    taken = true;
    rearm(i * 32, out[i]!);
  }
  if (taken) flush();
  return out;
}

function refClear(bm: Uint32Array, firstPage: number, numPages: number, user: Uint8Array, rearm: (off: number, mask: number) => void, flush: () => void): void {
  const n = Math.ceil(numPages / 64) * 8;
  let clearedAny = false;
  const view = new DataView(user.buffer, user.byteOffset, n);
  for (let w = 0; w < n / 4; w++) {
    const um = view.getUint32(w * 4, true);
    const i = firstPage / 32 + w;
    const cleared = (um & bm[i]!) >>> 0;
    bm[i] = (bm[i]! & ~um) >>> 0;
    if (cleared) {
      clearedAny = true;
      rearm(i * 32, cleared);
    }
  }
  if (clearedAny) flush();
}

function logEnv(npages: number, initiallySet: boolean) {
  const rearmed: [number, number][] = [];
  const hooks = memslotHooks({
    enableDirtyLogPtMasked: (_slot, off, mask) => void rearmed.push([off, mask]),
    flushRemoteTlbs: () => void rearmed.push([-1, 0]),
  });
  const engine = new MemslotEngine(hooks);
  const log = new DirtyLog(engine, hooks);
  log.enableManualDirtyLogProtect(KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE | (initiallySet ? KVM_DIRTY_LOG_INITIALLY_SET : 0), 0);
  engine.setUserMemoryRegion({ slot: 0, flags: KVM_MEM_LOG_DIRTY_PAGES, guest_phys_addr: 0, memory_size: npages * 4096, userspace_addr: 0x100000000000 }, { v2: true });
  return { log, rearmed, slot: engine.idToMemslot(0, 0)! };
}

describe('KVM_GET_DIRTY_LOG / KVM_CLEAR_DIRTY_LOG over chunks', () => {
  it('re-arm the same words with the same masks as the dense loops', () => {
    const op = fc.oneof(
      fc.record({ k: fc.constant('dirty' as const), p: fc.nat() }),
      fc.record({ k: fc.constant('get' as const), manual: fc.boolean() }),
      fc.record({
        k: fc.constant('clear' as const),
        first: fc.nat(),
        num: fc.nat(),
        // the user bitmap: every bit, a few bits, or a dense pattern; as bytes or as a DirtyBitmap
        bits: fc.oneof(fc.constant('all' as const), fc.array(fc.nat(), { maxLength: 6 }), fc.integer({ min: 0, max: 0xffffffff })),
        sparse: fc.boolean(),
      }),
    );
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 2 * C + 300 }), fc.boolean(), fc.array(op, { maxLength: 25 }), (npages, initiallySet, ops) => {
        const env = logEnv(npages, initiallySet);
        const ref = dense(npages, initiallySet);
        const refRearmed: [number, number][] = [];
        const rearm = (off: number, mask: number) => void refRearmed.push([off, mask]);
        const flush = () => void refRearmed.push([-1, 0]); // a TLB flush, in order with the re-arms
        for (const o of ops) {
          if (o.k === 'dirty') {
            const p = o.p % npages;
            markPageDirtyInSlot(env.slot, p);
            ref[p >>> 5] = ref[p >>> 5]! | (1 << (p & 31));
          } else if (o.k === 'get') {
            env.log.enableManualDirtyLogProtect(o.manual ? KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE | (initiallySet ? KVM_DIRTY_LOG_INITIALLY_SET : 0) : 0, 0);
            const got = env.log.getDirtyLogBitmap({ slot: 0 });
            expect(Array.from(got.toUint32Array())).toEqual(Array.from(refGet(ref, o.manual, rearm, flush)));
          } else {
            const first = Math.min(Math.floor((o.first % (npages + 64)) / 64) * 64, Math.floor(npages / 64) * 64);
            const rest = npages - first;
            const num = o.num % 3 === 0 ? rest : Math.min(rest, Math.floor((o.num % (rest + 64)) / 64) * 64);
            const bytes = Math.ceil(num / 64) * 8;
            const user = new Uint8Array(bytes);
            const view = new DataView(user.buffer);
            for (let w = 0; w < bytes / 4; w++) {
              if (o.bits === 'all') view.setUint32(w * 4, w * 32 + 32 <= num ? 0xffffffff : num > w * 32 ? 2 ** (num - w * 32) - 1 : 0, true);
              else if (typeof o.bits === 'number') view.setUint32(w * 4, (o.bits ^ (w * 0x9e3779b9)) >>> 0, true);
            }
            if (Array.isArray(o.bits)) for (const bit of o.bits) if (bit % (bytes * 8 || 1) < bytes * 8) user[(bit % (bytes * 8)) >>> 3]! |= 1 << (bit % (bytes * 8) & 7);
            const arg = !o.sparse ? user : o.bits === 'all' ? new DirtyBitmap(num, true) : DirtyBitmap.fromBytes(user);
            env.log.clearDirtyLog({ slot: 0, first_page: first, num_pages: num, dirty_bitmap: arg });
            refClear(ref, first, num, user, rearm, flush);
          }
          expect(Array.from(env.slot.dirtyBitmap!.toUint32Array())).toEqual(Array.from(ref));
        }
        expect(env.rearmed).toEqual(refRearmed);
      }),
      { numRuns: 80 },
    );
  });
});
