import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { ERRNO } from '../errno.js';
import { KVM_FILTER_PRIVATE, KVM_FILTER_SHARED } from '../backend.js';
import { Tracer, recordTrace } from '../trace.js';
import { KVM_DIRECT_ROOTS, KVM_MIRROR_ROOTS, RET_PF_EMULATE, RET_PF_FIXED, RET_PF_RETRY, RET_PF_SPURIOUS } from './mmu-internal.js';
import {
  FROZEN_SPTE_HI,
  FROZEN_SPTE_LO,
  SHADOW_NONPRESENT_HI,
  SHADOW_NONPRESENT_LO,
  getMmioSpteGeneration,
  isFrozenSpte,
  isMmioSpte,
} from './spte.js';
import { type ExternalSptHooks, filterToRootTypes, type TdpMapRequest, TdpMmu, type TdpWalkResult } from './tdp-mmu.js';

const BOTH = KVM_FILTER_SHARED | KVM_FILTER_PRIVATE;

function req(gfn: number, pfn: number, level = 1, extra: Partial<TdpMapRequest> = {}): TdpMapRequest {
  return {
    gfn,
    pfn,
    level,
    isPrivate: false,
    writable: true,
    exec: true,
    hostWritable: true,
    prefetch: false,
    write: false,
    ...extra,
  };
}

const out = (): TdpWalkResult => ({ lo: 0, hi: 0, level: 0, present: false, pfn: -1 });

/** Records hook calls; `fail` decides per call what a hook returns. */
function recorder(fail: (name: string, gfn: number, level: number) => number = () => 0) {
  const calls: string[] = [];
  const hooks: ExternalSptHooks = {
    linkExternalSpt: (gfn, level, spt) => {
      calls.push(`link ${gfn} L${level} #${spt}`);
      return fail('link', gfn, level);
    },
    setExternalSpte: (gfn, level, pfn) => {
      calls.push(`set ${gfn} L${level} pfn${pfn}`);
      return fail('set', gfn, level);
    },
    removeExternalSpte: (gfn, level, pfn) => {
      calls.push(`remove ${gfn} L${level} pfn${pfn}`);
    },
    freeExternalSpt: (gfn, level, spt) => {
      calls.push(`free ${gfn} L${level} #${spt}`);
      return fail('free', gfn, level);
    },
  };
  return { calls, hooks };
}

describe('TdpMmu map', () => {
  it('maps 4K, 2M and 1G leaves and walks them', () => {
    const mmu = new TdpMmu();
    expect(mmu.tableCount).toBe(1);
    expect(mmu.map(req(3, 0x1003))).toBe(RET_PF_FIXED);
    expect(mmu.tableCount).toBe(4);
    expect(mmu.map(req(512 * 3 + 17, 512 * 40, 2))).toBe(RET_PF_FIXED);
    expect(mmu.map(req(262144 * 2, 262144 * 9, 3))).toBe(RET_PF_FIXED);
    expect(mmu.stats).toMatchObject({ pages_4k: 1, pages_2m: 1, pages_1g: 1 });

    const o = out();
    expect(mmu.walk(3, false, o)).toBe(true);
    expect(o).toMatchObject({ level: 1, pfn: 0x1003, present: true });
    expect(mmu.walk(512 * 3 + 100, false, o)).toBe(true);
    expect(o).toMatchObject({ level: 2, pfn: 512 * 40 + 100 });
    expect(mmu.walk(262144 * 2 + 12345, false, o)).toBe(true);
    expect(o).toMatchObject({ level: 3, pfn: 262144 * 9 + 12345 });
    expect(mmu.lastWalkWritable).toBe(true);
    expect(mmu.leafLevel(262144 * 2 + 1, false)).toBe(3);
    expect(mmu.leafLevel(4, false)).toBe(0);
    expect(mmu.walk(4, false, o)).toBe(false);
    expect(mmu.lastWalkWritable).toBe(false);
    expect(o).toMatchObject({ level: 1, present: false, lo: SHADOW_NONPRESENT_LO, hi: SHADOW_NONPRESENT_HI });
    expect(mmu.walk(262144 * 5, false, o)).toBe(false);
    expect(o.level).toBe(3);

    expect(mmu.leafAt(512 * 3 + 100, false)).toEqual({
      gfn: 512 * 3,
      level: 2,
      pfn: 512 * 40,
      writable: true,
      dirty: true,
      accessed: true,
      mmuWritable: true,
      isMirror: false,
    });
  });

  it('returns SPURIOUS for an SPTE that already allows the access', () => {
    const mmu = new TdpMmu();
    expect(mmu.map(req(8, 80, 1, { writable: false }))).toBe(RET_PF_FIXED);
    expect(mmu.map(req(8, 80, 1, { writable: false }))).toBe(RET_PF_SPURIOUS);
    // a read-only SPTE does not allow a write: the slow path rebuilds it
    expect(mmu.map(req(8, 80, 1, { write: true }))).toBe(RET_PF_FIXED);
    expect(mmu.leafAt(8, false)?.writable).toBe(true);
    expect(mmu.stats.pages_4k).toBe(1);
    // prefetch never touches a present SPTE
    expect(mmu.map(req(8, 80, 1, { prefetch: true, writable: false }))).toBe(RET_PF_SPURIOUS);
    // a different pfn under a present leaf is a bug (handle_changed_spte BUG())
    expect(mmu.map(req(8, 81, 1, { write: true, exec: false }))).toBe(RET_PF_SPURIOUS);
    mmu.writeProtectGfnRange(8, 9);
    expect(mmu.map(req(8, 81, 1, { write: true }))).toBe(-ERRNO.EIO);
  });

  it('prefetched SPTEs are created without Accessed', () => {
    const mmu = new TdpMmu();
    mmu.map(req(1, 1, 1, { prefetch: true }));
    expect(mmu.leafAt(1, false)?.accessed).toBe(false);
    expect(mmu.setAccessedDirty(1, false, false)).toBe(true);
    expect(mmu.leafAt(1, false)?.accessed).toBe(true);
    expect(mmu.setAccessedDirty(2, false, false)).toBe(false);
  });

  it('splits a huge leaf when mapping smaller inside it', () => {
    const mmu = new TdpMmu();
    mmu.map(req(512, 1024, 2));
    const tables = mmu.tableCount;
    // the split child already maps the same pfn: the target is spurious
    expect(mmu.map(req(515, 1027))).toBe(RET_PF_SPURIOUS);
    expect(mmu.tableCount).toBe(tables + 1);
    expect(mmu.stats).toMatchObject({ pages_4k: 512, pages_2m: 0 });
    const o = out();
    mmu.walk(600, false, o);
    expect(o).toMatchObject({ level: 1, pfn: 1024 + 88 });
    // splitting a 1G leaf for a 4K map goes through 2M
    mmu.map(req(262144, 262144, 3));
    expect(mmu.map(req(262144 + 513, 262144 + 513))).toBe(RET_PF_SPURIOUS);
    expect(mmu.stats).toMatchObject({ pages_4k: 1024, pages_2m: 511, pages_1g: 0 });
    expect(mmu.stats.tlb_flushes).toBe(0);
  });

  it('replaces a table with a huge leaf, freeing the subtree and flushing', () => {
    const mmu = new TdpMmu();
    for (let g = 0; g < 10; g++) mmu.map(req(g, 100 + g));
    const tables = mmu.tableCount;
    expect(mmu.map(req(0, 512 * 7, 2))).toBe(RET_PF_FIXED);
    expect(mmu.tableCount).toBe(tables - 1);
    expect(mmu.stats).toMatchObject({ pages_4k: 0, pages_2m: 1, tlb_flushes: 1 });
    expect(mmu.leafAt(5, false)).toMatchObject({ level: 2, pfn: 512 * 7 });
  });

  it('caches MMIO SPTEs with the memslot generation', () => {
    const mmu = new TdpMmu();
    expect(mmu.installMmioSpte(77, 0x4567)).toBe(RET_PF_EMULATE);
    const o = out();
    expect(mmu.walk(77, false, o)).toBe(false);
    expect(isMmioSpte(o.lo, o.hi)).toBe(true);
    expect(getMmioSpteGeneration(o.lo, o.hi)).toBe(0x4567);
    // a real mapping replaces it
    expect(mmu.map(req(77, 5))).toBe(RET_PF_FIXED);
    expect(mmu.walk(77, false, o)).toBe(true);
  });

  it('emits trace events only when the tracer is enabled', () => {
    const tracer = new Tracer();
    const mmu = new TdpMmu({ tracer });
    mmu.map(req(0, 0, 2));
    const { events, stop } = recordTrace(tracer);
    mmu.map(req(1, 1));
    stop();
    const names = events.map((e) => e.name);
    expect(names).toContain('kvm_mmu_split_huge_page');
    expect(names).toContain('kvm_tdp_mmu_spte_changed');
    mmu.map(req(1024, 1024));
    expect(events.length).toBe(names.length);
    const r = recordTrace(tracer);
    mmu.map(req(2048, 2048));
    r.stop();
    const set = r.events.find((e) => e.name === 'kvm_mmu_set_spte');
    expect(set?.fields).toMatchObject({ gfn: 2048, level: 1 });
    expect(typeof set?.fields.new_spte).toBe('bigint');
  });
});

describe('TdpMmu zap', () => {
  it('zaps leaves in a range; a huge leaf overlapping it goes whole', () => {
    const mmu = new TdpMmu();
    for (let g = 0; g < 8; g++) mmu.map(req(g, g));
    mmu.map(req(512, 512, 2));
    expect(mmu.zapGfnRange(2, 4, KVM_FILTER_SHARED)).toBe(true);
    expect(mmu.leafAt(1, false)).not.toBeNull();
    expect(mmu.leafAt(2, false)).toBeNull();
    expect(mmu.leafAt(3, false)).toBeNull();
    expect(mmu.leafAt(4, false)).not.toBeNull();
    expect(mmu.zapGfnRange(1000, 1001, KVM_FILTER_SHARED)).toBe(true);
    expect(mmu.leafAt(600, false)).toBeNull();
    expect(mmu.stats).toMatchObject({ pages_4k: 6, pages_2m: 0 });
    expect(mmu.zapGfnRange(2, 4, KVM_FILTER_SHARED)).toBe(false);
    // without a mirror root, the PRIVATE filter reaches the direct root
    expect(filterToRootTypes(false, KVM_FILTER_PRIVATE)).toBe(KVM_DIRECT_ROOTS);
    expect(mmu.zapGfnRange(0, 8, KVM_FILTER_PRIVATE)).toBe(true);
    expect(mmu.stats.pages_4k).toBe(0);
  });

  it('filters select the direct or the mirror root', () => {
    const { calls, hooks } = recorder();
    const mmu = new TdpMmu({ mirror: true, external: hooks });
    expect(filterToRootTypes(true, KVM_FILTER_PRIVATE)).toBe(KVM_MIRROR_ROOTS);
    expect(filterToRootTypes(true, BOTH)).toBe(KVM_MIRROR_ROOTS | KVM_DIRECT_ROOTS);
    mmu.map(req(10, 110, 1, { isPrivate: true }));
    mmu.map(req(11, 111));
    expect(mmu.leafAt(10, true)?.isMirror).toBe(true);
    expect(mmu.leafAt(10, false)).toBeNull();
    expect(mmu.zapGfnRange(0, 100, KVM_FILTER_SHARED)).toBe(true);
    expect(mmu.leafAt(10, true)).not.toBeNull();
    expect(mmu.leafAt(11, false)).toBeNull();
    calls.length = 0;
    expect(mmu.zapGfnRange(0, 100, KVM_FILTER_PRIVATE)).toBe(true);
    expect(calls).toEqual(['remove 10 L1 pfn110']);
    expect(mmu.leafAt(10, true)).toBeNull();
  });

  it('zapAllDirect leaves the mirror root alone', () => {
    const { hooks } = recorder();
    const mmu = new TdpMmu({ mirror: true, external: hooks });
    mmu.map(req(1, 1, 1, { isPrivate: true }));
    mmu.map(req(2, 2));
    mmu.map(req(4096, 4096, 2));
    const tablesBefore = mmu.tableCount;
    expect(mmu.zapAllDirect()).toBe(true);
    expect(mmu.leafAt(2, false)).toBeNull();
    expect(mmu.leafAt(1, true)).not.toBeNull();
    // the direct root's tables are gone, the root itself stays
    expect(mmu.tableCount).toBe(tablesBefore - 3);
    expect(mmu.map(req(2, 2))).toBe(RET_PF_FIXED);
  });
});

describe('TdpMmu mirror root hooks', () => {
  it('links missing levels top-down, then sets the leaf; the entry is frozen during each hook', () => {
    let mmu!: TdpMmu;
    const frozenSeen: string[] = [];
    const o = out();
    const { calls, hooks } = recorder((name, gfn, level) => {
      if (name === 'set') {
        mmu.walk(gfn, true, o);
        frozenSeen.push(`${level}:${isFrozenSpte(o.lo, o.hi)}`);
      }
      return 0;
    });
    mmu = new TdpMmu({ mirror: true, external: hooks });
    expect(mmu.map(req(0x12345, 0x999, 1, { isPrivate: true }))).toBe(RET_PF_FIXED);
    expect(calls).toEqual(['link 0 L4 #1', 'link 0 L3 #2', `link ${0x12200} L2 #3`, `set ${0x12345} L1 pfn${0x999}`]);
    expect(frozenSeen).toEqual(['1:true']);
    expect(mmu.leafAt(0x12345, true)).toMatchObject({ pfn: 0x999, isMirror: true });
  });

  it('-EBUSY from set_external_spte restores the old SPTE and retries', () => {
    let busy = 1;
    const { calls, hooks } = recorder((name) => (name === 'set' && busy-- > 0 ? -ERRNO.EBUSY : 0));
    const mmu = new TdpMmu({ mirror: true, external: hooks });
    expect(mmu.map(req(7, 70, 1, { isPrivate: true }))).toBe(RET_PF_RETRY);
    const o = out();
    expect(mmu.walk(7, true, o)).toBe(false);
    expect([o.lo, o.hi]).toEqual([SHADOW_NONPRESENT_LO, SHADOW_NONPRESENT_HI]);
    expect(mmu.stats.pages_4k).toBe(0);
    expect(mmu.map(req(7, 70, 1, { isPrivate: true }))).toBe(RET_PF_FIXED);
    expect(calls.filter((c) => c.startsWith('set'))).toHaveLength(2);
    expect(calls.filter((c) => c.startsWith('link'))).toHaveLength(3);
    expect(mmu.stats.pages_4k).toBe(1);
  });

  it('-EBUSY from link_external_spt undoes the table and retries from there', () => {
    let busy = 1;
    const { calls, hooks } = recorder((name, _g, level) => (name === 'link' && level === 2 && busy-- > 0 ? -ERRNO.EBUSY : 0));
    const mmu = new TdpMmu({ mirror: true, external: hooks });
    const before = mmu.tableCount;
    expect(mmu.map(req(7, 70, 1, { isPrivate: true }))).toBe(RET_PF_RETRY);
    expect(mmu.tableCount).toBe(before + 2); // levels 3 and 2 linked; the level-1 table freed
    const o = out();
    mmu.walk(7, true, o);
    expect(o.level).toBe(2);
    expect(isFrozenSpte(o.lo, o.hi)).toBe(false);
    expect(mmu.map(req(7, 70, 1, { isPrivate: true }))).toBe(RET_PF_FIXED);
    expect(calls).toEqual(['link 0 L4 #1', 'link 0 L3 #2', 'link 0 L2 #3', 'link 0 L2 #4', 'set 7 L1 pfn70']);
  });

  it('other hook errors are returned as the errno', () => {
    const { hooks } = recorder((name) => (name === 'set' ? -ERRNO.EIO : 0));
    const mmu = new TdpMmu({ mirror: true, external: hooks });
    expect(mmu.map(req(7, 70, 1, { isPrivate: true }))).toBe(-ERRNO.EIO);
    expect(mmu.leafAt(7, true)).toBeNull();
  });

  it('a huge mirror leaf cannot be split without split_external_spt', () => {
    const { hooks } = recorder();
    const mmu = new TdpMmu({ mirror: true, external: hooks });
    expect(mmu.map(req(0, 0, 2, { isPrivate: true }))).toBe(RET_PF_FIXED);
    const tables = mmu.tableCount;
    expect(mmu.map(req(3, 3, 1, { isPrivate: true }))).toBe(-ERRNO.EIO);
    expect(mmu.tableCount).toBe(tables);
    // with the hook (TDX huge-page series) the split goes through it, frozen meanwhile
    const seen: string[] = [];
    let mmu2!: TdpMmu;
    const o = out();
    const hooks2: ExternalSptHooks = {
      ...recorder().hooks,
      splitExternalSpt: (gfn, level, spt) => {
        mmu2.walk(gfn, true, o);
        seen.push(`split ${gfn} L${level} #${spt} frozen=${o.lo === FROZEN_SPTE_LO && o.hi === FROZEN_SPTE_HI}`);
        return 0;
      },
    };
    mmu2 = new TdpMmu({ mirror: true, external: hooks2 });
    mmu2.map(req(512, 512, 2, { isPrivate: true }));
    expect(mmu2.map(req(513, 513, 1, { isPrivate: true }))).toBe(RET_PF_SPURIOUS);
    expect(seen).toEqual(['split 512 L2 #3 frozen=true']);
    expect(mmu2.stats).toMatchObject({ pages_4k: 512, pages_2m: 0 });
  });

  it('external table pages come from the host allocator: freed after free_external_spt, leaked when it fails', () => {
    const pages = { next: 100, live: new Set<number>(), freed: [] as number[], leaked: [] as number[] };
    const externalSptPages = {
      allocPage: () => {
        const p = pages.next++;
        pages.live.add(p);
        return p;
      },
      freePage: (p: number) => {
        pages.live.delete(p);
        pages.freed.push(p);
      },
      leakPage: (p: number) => {
        pages.live.delete(p);
        pages.leaked.push(p);
      },
    };
    let busy = 1;
    const { calls, hooks } = recorder((name, _g, level) => (name === 'link' && level === 2 && busy-- > 0 ? -ERRNO.EBUSY : name === 'free' && level === 1 ? -ERRNO.EIO : 0));
    const mmu = new TdpMmu({ mirror: true, external: hooks, externalSptPages });
    expect(mmu.map(req(7, 70, 1, { isPrivate: true }))).toBe(RET_PF_RETRY);
    expect(pages.freed).toEqual([102]); // the table whose link failed never reached the vendor
    expect(mmu.map(req(7, 70, 1, { isPrivate: true }))).toBe(RET_PF_FIXED);
    expect(calls.filter((c) => c.startsWith('link'))).toEqual(['link 0 L4 #100', 'link 0 L3 #101', 'link 0 L2 #102', 'link 0 L2 #103']);
    expect([...pages.live].sort()).toEqual([100, 101, 103]);
    mmu.destroy();
    expect(pages.leaked).toEqual([103]); // the level-1 table's free hook failed
    expect(pages.freed.slice(1).sort()).toEqual([100, 101]);
    expect(mmu.stats.external_spt_leaked).toBe(1);
    expect(pages.live.size).toBe(0);
  });

  it('a zap that covers part of a huge mirror leaf splits it first (with split_external_spt) and zaps only the range', () => {
    const { calls, hooks } = recorder();
    const split: string[] = [];
    const mmu = new TdpMmu({ mirror: true, external: { ...hooks, splitExternalSpt: (gfn, level) => (split.push(`split ${gfn} L${level}`), 0) } });
    mmu.map(req(512, 4096, 2, { isPrivate: true }));
    calls.length = 0;
    mmu.zapGfnRange(515, 516, KVM_FILTER_PRIVATE);
    expect(split).toEqual(['split 512 L2']);
    expect(calls).toEqual([`remove 515 L1 pfn${4096 + 3}`]);
    expect(mmu.leafAt(514, true)).toMatchObject({ level: 1, pfn: 4096 + 2 });
    expect(mmu.leafAt(515, true)).toBeNull();
    expect(mmu.stats).toMatchObject({ pages_2m: 0, pages_4k: 511 });
    // a range covering the whole leaf zaps it whole; without the hook a partial zap does too
    mmu.map(req(1024, 8192, 2, { isPrivate: true }));
    calls.length = 0;
    mmu.zapGfnRange(1024, 1536, KVM_FILTER_PRIVATE);
    expect(calls).toEqual([`remove 1024 L2 pfn${8192}`]);
    const plain = new TdpMmu({ mirror: true, external: recorder().hooks });
    plain.map(req(512, 4096, 2, { isPrivate: true }));
    plain.zapGfnRange(515, 516, KVM_FILTER_PRIVATE);
    expect(plain.leafAt(514, true)).toBeNull();
  });

  it('a present mirror leaf is never changed in place', () => {
    const { hooks } = recorder();
    const mmu = new TdpMmu({ mirror: true, external: hooks });
    mmu.map(req(1, 1, 1, { isPrivate: true, writable: false }));
    expect(mmu.map(req(1, 1, 1, { isPrivate: true, write: true }))).toBe(-ERRNO.EIO);
  });
});

describe('TdpMmu TDX shared alias (gfnDirectBits)', () => {
  it('puts shared SPTEs at gfn | direct bits and reports plain gfns', () => {
    const shared = 2 ** 35; // gpa bit 47, 4-level EPT
    const tracer = new Tracer();
    const { calls, hooks } = recorder();
    const mmu = new TdpMmu({ mirror: true, external: hooks, gfnDirectBits: shared, tracer });
    const { events, stop } = recordTrace(tracer);
    expect(mmu.map(req(5, 50))).toBe(RET_PF_FIXED);
    stop();
    expect(events.find((e) => e.name === 'kvm_mmu_set_spte')?.fields.gfn).toBe(5 + shared);
    expect(mmu.map(req(5, 51, 1, { isPrivate: true }))).toBe(RET_PF_FIXED);
    expect(calls.at(-1)).toBe('set 5 L1 pfn51');
    expect(mmu.leafAt(5, false)?.pfn).toBe(50);
    expect(mmu.leafAt(5, true)?.pfn).toBe(51);
    const seen: string[] = [];
    mmu.forEachLeaf(0, 10, BOTH, (gfn, level, pfn, _w, _d, mirror) => seen.push(`${gfn}/${level}/${pfn}/${mirror}`));
    expect(seen).toEqual(['5/1/50/false', '5/1/51/true']);
    expect(mmu.zapGfnRange(5, 6, KVM_FILTER_SHARED)).toBe(true);
    expect(mmu.leafAt(5, false)).toBeNull();
    expect(mmu.leafAt(5, true)).not.toBeNull();
  });

  it('works with 5-level EPT and the gpa bit 51 shared bit', () => {
    const shared = 2 ** 39;
    const mmu = new TdpMmu({ rootLevel: 5, gfnDirectBits: shared });
    const big = 2 ** 38 + 12345;
    expect(mmu.map(req(big, 7))).toBe(RET_PF_FIXED);
    expect(mmu.leafAt(big, false)?.pfn).toBe(7);
    expect(mmu.leafAt(12345, false)).toBeNull();
    let n = 0;
    mmu.forEachLeaf(big, big + 1, KVM_FILTER_SHARED, (gfn) => {
      expect(gfn).toBe(big);
      n++;
    });
    expect(n).toBe(1);
  });
});

describe('TdpMmu dirty logging helpers', () => {
  it('write-protects, keeps MMU-writable, and lets the fast path restore W', () => {
    const mmu = new TdpMmu();
    for (let g = 0; g < 40; g++) mmu.map(req(g, g));
    mmu.map(req(4096, 4096, 1, { writable: false }));
    expect(mmu.writeProtectGfnRange(0, 10)).toBe(true);
    expect(mmu.leafAt(3, false)).toMatchObject({ writable: false, mmuWritable: true });
    expect(mmu.walk(3, false, out())).toBe(true);
    expect(mmu.lastWalkWritable).toBe(false);
    expect(mmu.leafAt(10, false)?.writable).toBe(true);
    expect(mmu.writeProtectGfnRange(0, 10)).toBe(false);
    expect(mmu.makeWritable(3, false)).toBe(true);
    expect(mmu.leafAt(3, false)?.writable).toBe(true);
    // not MMU-writable (read-only slot): no fast fix
    expect(mmu.makeWritable(4096, false)).toBe(false);
    expect(mmu.makeWritable(9999, false)).toBe(false);

    // masked write-protect: bits 0, 5 and 31 of the 32 gfns at 0
    expect(mmu.writeProtectGfnMask(0, (1 | (1 << 5) | (1 << 31)) >>> 0)).toBe(true);
    for (let g = 0; g < 32; g++) expect(mmu.leafAt(g, false)?.writable).toBe(g !== 0 && g !== 5 && g !== 31 && !(g >= 1 && g < 10 && g !== 3));
    expect(mmu.writeProtectGfnMask(32, 0)).toBe(false);

    // clear D, then the A/D assist sets it again on a write
    expect(mmu.clearDirtyGfnRange(0, 40)).toBe(true);
    expect(mmu.leafAt(35, false)?.dirty).toBe(false);
    mmu.setAccessedDirty(35, false, true);
    expect(mmu.leafAt(35, false)?.dirty).toBe(true);
    // a write through a non-writable SPTE sets no D
    mmu.setAccessedDirty(0, false, true);
    expect(mmu.leafAt(0, false)?.dirty).toBe(false);
    expect(mmu.clearDirtyGfnMask(32, 1 << 3)).toBe(true);
    expect(mmu.leafAt(35, false)?.dirty).toBe(false);
  });
});

describe('TdpMmu eager page splitting', () => {
  it('splits 1G pages to 4K in pre-order and counts the SPTEs', () => {
    const mmu = new TdpMmu();
    mmu.map(req(0, 262144, 3));
    mmu.map(req(262144 + 512 * 5, 512 * 99, 2));
    expect(mmu.splitHugePages(0, 262144 * 2, 2)).toBe(0);
    expect(mmu.stats).toMatchObject({ pages_1g: 0, pages_2m: 513, pages_4k: 0 });
    expect(mmu.splitHugePages(0, 262144 * 2, 1)).toBe(513 * 512);
    expect(mmu.stats).toMatchObject({ pages_1g: 0, pages_2m: 0, pages_4k: 513 * 512 });
    const o = out();
    mmu.walk(262144 - 1, false, o);
    expect(o).toMatchObject({ level: 1, pfn: 262144 * 2 - 1 });
    mmu.walk(262144 + 512 * 5 + 7, false, o);
    expect(o).toMatchObject({ level: 1, pfn: 512 * 99 + 7 });
    expect(mmu.stats.tlb_flushes).toBe(0);
  });

  it('only splits pages overlapping the range, in the direct root', () => {
    const { hooks } = recorder();
    const mmu = new TdpMmu({ mirror: true, external: hooks });
    mmu.map(req(0, 0, 2));
    mmu.map(req(512, 512, 2));
    mmu.map(req(0, 0, 2, { isPrivate: true }));
    expect(mmu.splitHugePages(600, 700, 1)).toBe(512);
    expect(mmu.leafAt(0, false)?.level).toBe(2);
    expect(mmu.leafAt(600, false)?.level).toBe(1);
    expect(mmu.leafAt(0, true)?.level).toBe(2);
  });
});

describe('TdpMmu destroy', () => {
  it('tears the mirror root down bottom-up and counts leaked external tables', () => {
    const { calls, hooks } = recorder((name, _gfn, level) => (name === 'free' && level === 1 ? -ERRNO.EIO : 0));
    const mmu = new TdpMmu({ mirror: true, external: hooks });
    mmu.map(req(1, 11, 1, { isPrivate: true }));
    mmu.map(req(1024, 21, 1, { isPrivate: true }));
    mmu.map(req(3, 33));
    calls.length = 0;
    mmu.destroy();
    expect(calls).toEqual([
      // 4K pass: leaves
      'remove 1 L1 pfn11',
      'remove 1024 L1 pfn21',
      // 2M pass: the 4K tables (free fails: leaked)
      'free 0 L1 #3',
      'free 1024 L1 #4',
      // 1G pass: the 2M table, then the root-level pass: the 1G table
      'free 0 L2 #2',
      'free 0 L3 #1',
    ]);
    expect(mmu.stats.external_spt_leaked).toBe(2);
    expect(mmu.stats).toMatchObject({ pages_4k: 0, pages_2m: 0, pages_1g: 0 });
    expect(mmu.tableCount).toBe(0);
    expect(() => mmu.map(req(1, 1))).toThrow();
  });
});

describe('TdpMmu memory', () => {
  it('4 GiB mapped at 4K costs at most 12 bytes of metadata per leaf', () => {
    const mmu = new TdpMmu();
    const r = req(0, 0);
    const leaves = 1 << 20;
    for (let g = 0; g < leaves; g++) {
      r.gfn = g;
      r.pfn = g + 0x100000;
      if (mmu.map(r) !== RET_PF_FIXED) throw new Error('map failed');
    }
    expect(mmu.stats.pages_4k).toBe(leaves);
    const perLeaf = mmu.metadataBytes() / leaves;
    expect(perLeaf).toBeLessThanOrEqual(12);
    expect(perLeaf).toBeGreaterThan(8); // 8 bytes per SPTE is the floor
    // a zap frees leaves but not tables; destroy frees everything
    mmu.zapGfnRange(0, leaves, KVM_FILTER_SHARED);
    expect(mmu.stats.pages_4k).toBe(0);
  });
});

describe('TdpMmu property: random map / zap / split agree with a per-gfn reference', () => {
  const SPACE = 2048; // four 2M regions inside the first 1G page
  const PFN_BASE = 262144 * 4;
  const pfnOf = (gfn: number): number => PFN_BASE + gfn;
  const PER = [0, 1, 512, 262144];

  type Op =
    | { kind: 'map'; gfn: number; level: number }
    | { kind: 'zap'; start: number; len: number }
    | { kind: 'split'; start: number; len: number; target: number };

  const opArb: fc.Arbitrary<Op> = fc.oneof(
    { weight: 6, arbitrary: fc.record({ kind: fc.constant('map' as const), gfn: fc.integer({ min: 0, max: SPACE - 1 }), level: fc.constantFrom(1, 1, 2, 3) }) },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant('zap' as const), start: fc.integer({ min: 0, max: SPACE - 1 }), len: fc.integer({ min: 1, max: 700 }) }) },
    {
      weight: 1,
      arbitrary: fc.record({
        kind: fc.constant('split' as const),
        start: fc.integer({ min: 0, max: SPACE - 1 }),
        len: fc.integer({ min: 1, max: 1500 }),
        target: fc.constantFrom(1, 2),
      }),
    },
  );

  it('holds for the direct root with and without direct bits', () => {
    fc.assert(
      fc.property(fc.array(opArb, { maxLength: 40 }), fc.constantFrom(0, 2 ** 35), (ops, directBits) => {
        const mmu = new TdpMmu({ gfnDirectBits: directBits });
        // reference: leaves per level, keyed by base gfn
        const ref = [new Map<number, number>(), new Map<number, number>(), new Map<number, number>(), new Map<number, number>()];
        const splitRef = (level: number, base: number): void => {
          ref[level]!.delete(base);
          for (let i = 0; i < 512; i++) ref[level - 1]!.set(base + i * PER[level - 1]!, pfnOf(base + i * PER[level - 1]!));
        };
        const lookup = (g: number): { level: number; pfn: number } | null => {
          for (let l = 1; l <= 3; l++) {
            const b = g - (g % PER[l]!);
            const p = ref[l]!.get(b);
            if (p !== undefined) return { level: l, pfn: p + (g - b) };
          }
          return null;
        };
        const o = out();
        for (const op of ops) {
          if (op.kind === 'map') {
            const base = op.gfn - (op.gfn % PER[op.level]!);
            for (let l = 3; l > op.level; l--) {
              const b = op.gfn - (op.gfn % PER[l]!);
              if (ref[l]!.has(b)) splitRef(l, b);
            }
            const present = ref[op.level]!.has(base);
            for (let l = 1; l < op.level; l++) {
              for (const k of [...ref[l]!.keys()]) if (k >= base && k < base + PER[op.level]!) ref[l]!.delete(k);
            }
            ref[op.level]!.set(base, pfnOf(base));
            const r = mmu.map(req(op.gfn, pfnOf(base), op.level));
            expect(r).toBe(present ? RET_PF_SPURIOUS : RET_PF_FIXED);
          } else if (op.kind === 'zap') {
            const end = op.start + op.len;
            for (let l = 1; l <= 3; l++) {
              for (const k of [...ref[l]!.keys()]) if (k < end && k + PER[l]! > op.start) ref[l]!.delete(k);
            }
            mmu.zapGfnRange(op.start, end, KVM_FILTER_SHARED);
          } else {
            const end = op.start + op.len;
            let want = 0;
            for (let l = 3; l > op.target; l--) {
              for (const k of [...ref[l]!.keys()]) {
                if (k < end && k + PER[l]! > op.start) {
                  splitRef(l, k);
                  if (l === 2) want += 512;
                }
              }
            }
            expect(mmu.splitHugePages(op.start, end, op.target)).toBe(want);
          }
          // every gfn of the space, and a sample beyond it, agrees
          for (let g = 0; g < SPACE + 600; g += g < SPACE ? 1 : 37) {
            const want = lookup(g);
            expect(mmu.walk(g, false, o)).toBe(want !== null);
            if (want) expect([o.level, o.pfn]).toEqual([want.level, want.pfn]);
          }
          expect(mmu.stats.pages_4k).toBe(ref[1]!.size);
          expect(mmu.stats.pages_2m).toBe(ref[2]!.size);
          expect(mmu.stats.pages_1g).toBe(ref[3]!.size);
          let leaves = 0;
          mmu.forEachLeaf(0, 262144 * 2, KVM_FILTER_SHARED, (gfn, level, pfn) => {
            expect(ref[level]!.get(gfn)).toBe(pfn);
            leaves++;
          });
          expect(leaves).toBe(ref[1]!.size + ref[2]!.size + ref[3]!.size);
        }
        mmu.destroy();
        expect(mmu.tableCount).toBe(0);
      }),
      { numRuns: 40 },
    );
  });
});

describe('TdpMmu walk after changes (the cached 4K table)', () => {
  const SPAN = 512 * 512 * 2; // two 1G regions
  const PAGES = [0, 1, 512, 512 * 512];
  type Op =
    | { kind: 'map'; gfn: number; level: number; isPrivate: boolean }
    | { kind: 'zap'; start: number; len: number; filter: number }
    | { kind: 'split'; start: number; len: number }
    | { kind: 'zapAll' }
    | { kind: 'walk'; gfn: number; isPrivate: boolean };
  const gfnArb = fc.oneof(fc.integer({ min: 0, max: SPAN - 1 }), fc.integer({ min: 0, max: 7 }).map((k) => 512 * 511 + k * 512 + 3));
  const opArb: fc.Arbitrary<Op> = fc.oneof(
    fc.record({ kind: fc.constant('map' as const), gfn: gfnArb, level: fc.integer({ min: 1, max: 3 }), isPrivate: fc.boolean() }),
    fc.record({ kind: fc.constant('zap' as const), start: gfnArb, len: fc.integer({ min: 1, max: 4096 }), filter: fc.constantFrom(KVM_FILTER_SHARED, KVM_FILTER_PRIVATE, BOTH) }),
    fc.record({ kind: fc.constant('split' as const), start: gfnArb, len: fc.integer({ min: 1, max: 600_000 }) }),
    fc.record({ kind: fc.constant('zapAll' as const) }),
    fc.record({ kind: fc.constant('walk' as const), gfn: gfnArb, isPrivate: fc.boolean() }),
  );

  /** the leaf covering `gfn` in one root, from the iterator (no walk) */
  function reference(mmu: TdpMmu, gfn: number, mirror: boolean): { level: number; pfn: number } | null {
    let found: { level: number; pfn: number } | null = null;
    mmu.forEachLeaf(0, SPAN, mirror ? KVM_FILTER_PRIVATE : KVM_FILTER_SHARED, (g, level, pfn, _w, _d, isMirror) => {
      if (isMirror === mirror && gfn >= g && gfn < g + PAGES[level]!) found = { level, pfn: pfn + (gfn - g) };
    });
    return found;
  }

  for (const config of ['direct + shared alias', 'mirror'] as const) {
    it(`walk() agrees with the iterator after any sequence of maps, zaps and splits (${config})`, () => {
      fc.assert(
        fc.property(fc.array(opArb, { minLength: 1, maxLength: 40 }), (ops) => {
          const mirror = config === 'mirror';
          const mmu = mirror
            ? new TdpMmu({ mirror: true, external: { ...recorder().hooks, splitExternalSpt: () => 0 } })
            : new TdpMmu({ gfnDirectBits: 2 ** 35 });
          const w = out();
          const probes = new Set<number>();
          for (const op of ops) {
            if (op.kind === 'map') {
              const n = PAGES[op.level]!;
              mmu.map(req(op.gfn, 0x100000 + op.gfn - (op.gfn % n), op.level, { isPrivate: op.isPrivate }));
              probes.add(op.gfn);
            } else if (op.kind === 'zap') mmu.zapGfnRange(op.start, Math.min(SPAN, op.start + op.len), op.filter);
            else if (op.kind === 'split') mmu.splitHugePages(op.start, Math.min(SPAN, op.start + op.len), 1);
            else if (op.kind === 'zapAll') mmu.zapAllDirect();
            else {
              mmu.walk(op.gfn, op.isPrivate, w); // primes the cached table
              probes.add(op.gfn);
            }
            for (const g of probes) {
              for (const isPrivate of [false, true]) {
                const exp = reference(mmu, g, isPrivate && mirror);
                const present = mmu.walk(g, isPrivate, w);
                expect(present).toBe(exp !== null);
                if (exp) {
                  expect(w.level).toBe(exp.level);
                  expect(w.pfn).toBe(exp.pfn);
                }
              }
            }
          }
        }),
        { numRuns: 150 },
      );
    });
  }
});
