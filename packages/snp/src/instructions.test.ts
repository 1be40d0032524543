import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { ERRNO, PG_LEVEL_2M, PG_LEVEL_4K } from '@ccmem/core';
import {
  PFERR_GUEST_ENC_MASK,
  PFERR_GUEST_RMP_MASK,
  PFERR_GUEST_SIZEM_MASK,
  PSMASH_FAIL_BADADDR,
  PSMASH_FAIL_INPUT,
  PSMASH_SUCCESS,
  PVALIDATE_FAIL_NOUPDATE,
  PVALIDATE_FAIL_SIZEMISMATCH,
  RMPADJUST_FAIL_INPUT,
  RMPADJUST_FAIL_PERMISSION,
  RMPUPDATE_FAIL_INPUT,
  RMPUPDATE_FAIL_INUSE,
  RMPUPDATE_FAIL_OVERLAP,
  RMPUPDATE_FAIL_PERMISSION,
  SnpHost,
  pferrHas,
  psmashInsn,
  pvalidateInsn,
  rmpadjustInsn,
  rmpupdateInsn,
} from './instructions.js';
import { Rmp, VMPL_R, VMPL_W } from './rmp.js';
import { PhysMem } from '@ccmem/core';

const priv = (gpa: number, asid = 5, pagesize = 0, immutable = false) => ({ gpa, assigned: true, pagesize, immutable, asid });
const shared = (pagesize = 0) => ({ gpa: 0, assigned: false, pagesize, immutable: false, asid: 0 });

describe('RMPUPDATE', () => {
  it('assigns a 4K page and clears Validated on every update', () => {
    const rmp = new Rmp({ maxPfn: 1 << 20 });
    expect(rmpupdateInsn(rmp, 0x1234, priv(0x5000))).toBe(0);
    expect(pvalidateInsn(rmp, { pfn: 0x1234, gpa: 0x5000, asid: 5, level: PG_LEVEL_4K }, true)).toEqual({ ret: 0 });
    expect(rmp.inspect(0x1234).validated).toBe(true);
    expect(rmpupdateInsn(rmp, 0x1234, priv(0x5000))).toBe(0);
    expect(rmp.inspect(0x1234)).toMatchObject({ assigned: true, validated: false, gpa: 0x5000, asid: 5 });
    expect(rmpupdateInsn(rmp, 0x1234, shared())).toBe(0);
    expect(rmp.inspect(0x1234)).toMatchObject({ assigned: false, asid: 0, gpa: 0 });
    expect(rmp.chunkCount).toBe(0);
  });

  it('checks its input', () => {
    const rmp = new Rmp({ maxPfn: 1 << 20 });
    expect(rmpupdateInsn(rmp, 513, priv(0x200000, 5, 1))).toBe(RMPUPDATE_FAIL_INPUT); // unaligned 2M pfn
    expect(rmpupdateInsn(rmp, 512, priv(0x201000, 5, 1))).toBe(RMPUPDATE_FAIL_INPUT); // unaligned 2M gpa
    expect(rmpupdateInsn(rmp, 1, priv(0x1000, 0))).toBe(RMPUPDATE_FAIL_INPUT); // asid 0
    expect(rmpupdateInsn(rmp, 1 << 20, priv(0x1000))).toBe(RMPUPDATE_FAIL_INPUT); // beyond the RMP
    expect(rmp.chunkCount).toBe(0);
  });

  it('refuses immutable entries, 4K updates inside a 2M page, and 2M over assigned 4K entries', () => {
    const rmp = new Rmp({ maxPfn: 1 << 20 });
    expect(rmpupdateInsn(rmp, 7, priv(0x7000, 5, 0, true))).toBe(0);
    expect(rmpupdateInsn(rmp, 7, shared())).toBe(RMPUPDATE_FAIL_PERMISSION);
    expect(rmpupdateInsn(rmp, 1024, priv(0x400000, 5, 1))).toBe(0);
    expect(rmp.assignedPages).toBe(513);
    expect(rmpupdateInsn(rmp, 1030, shared())).toBe(RMPUPDATE_FAIL_PERMISSION);
    expect(rmpupdateInsn(rmp, 2048 + 3, priv(0x3000))).toBe(0);
    expect(rmpupdateInsn(rmp, 2048, priv(0x800000, 5, 1))).toBe(RMPUPDATE_FAIL_INUSE);
    // a whole 2M make_shared returns the page
    expect(rmpupdateInsn(rmp, 1024, shared(1))).toBe(0);
    expect(rmp.lookup(1030)).toEqual({ assigned: false, level: PG_LEVEL_4K });
  });
});

describe('PSMASH', () => {
  it('splits a 2M entry keeping Validated, gpa and asid', () => {
    const rmp = new Rmp({ maxPfn: 1 << 20 });
    expect(rmpupdateInsn(rmp, 1024, priv(0x600000, 9, 1))).toBe(0);
    expect(pvalidateInsn(rmp, { pfn: 1024, gpa: 0x600000, asid: 9, level: PG_LEVEL_2M }, true)).toEqual({ ret: 0 });
    expect(psmashInsn(rmp, 1025)).toBe(PSMASH_FAIL_INPUT);
    expect(psmashInsn(rmp, 1024)).toBe(PSMASH_SUCCESS);
    for (const pfn of [1024, 1100, 1535]) {
      expect(rmp.inspect(pfn)).toMatchObject({ assigned: true, validated: true, asid: 9, pagesize: 0, level: PG_LEVEL_4K, gpa: 0x600000 + (pfn - 1024) * 4096 });
    }
    expect(psmashInsn(rmp, 1024)).toBe(PSMASH_FAIL_BADADDR);
  });
});

describe('PVALIDATE', () => {
  it('reports NOUPDATE, SIZEMISMATCH and the RMP #NPF cases', () => {
    const rmp = new Rmp({ maxPfn: 1 << 20 });
    const op = { pfn: 0x40, gpa: 0x9000, asid: 5, level: PG_LEVEL_4K };
    const npf = pvalidateInsn(rmp, op, true);
    expect('npf' in npf && pferrHas(npf.npf, PFERR_GUEST_RMP_MASK)).toBe(true);
    rmpupdateInsn(rmp, 0x40, priv(0x9000));
    expect(pvalidateInsn(rmp, op, false)).toEqual({ ret: PVALIDATE_FAIL_NOUPDATE });
    expect(pvalidateInsn(rmp, op, true)).toEqual({ ret: 0 });
    expect(pvalidateInsn(rmp, op, true)).toEqual({ ret: PVALIDATE_FAIL_NOUPDATE });
    const wrongAsid = pvalidateInsn(rmp, { ...op, asid: 6 }, false);
    expect('npf' in wrongAsid).toBe(true);
    const wrongGpa = pvalidateInsn(rmp, { ...op, gpa: 0xa000 }, false);
    expect('npf' in wrongGpa).toBe(true);
    // 2M request on 4K entries
    rmpupdateInsn(rmp, 512, priv(0x200000));
    expect(pvalidateInsn(rmp, { pfn: 512, gpa: 0x200000, asid: 5, level: PG_LEVEL_2M }, true)).toEqual({ ret: PVALIDATE_FAIL_SIZEMISMATCH });
    // 4K request on a 2M entry → #NPF with SIZEM
    rmpupdateInsn(rmp, 1024, priv(0x400000, 5, 1));
    const r = pvalidateInsn(rmp, { pfn: 1030, gpa: 0x406000, asid: 5, level: PG_LEVEL_4K }, true);
    expect('npf' in r).toBe(true);
    if ('npf' in r) {
      expect(r.npf).toBe(PFERR_GUEST_RMP_MASK + PFERR_GUEST_ENC_MASK + PFERR_GUEST_SIZEM_MASK);
      expect(pferrHas(r.npf, PFERR_GUEST_SIZEM_MASK)).toBe(true);
    }
    expect(pvalidateInsn(rmp, { ...op, gpa: 0x9800 }, true)).toEqual({ ret: 1 });
  });

  it('a 2M request translated to a 4K frame that is not 2M-aligned is a size mismatch', () => {
    const rmp = new Rmp({ maxPfn: 1 << 20 });
    // the guest's 2M-aligned gpa is backed by a lone 4K page (order-0 guest_memfd folio)
    const op = { pfn: 0x7, gpa: 0x200000, asid: 5, level: PG_LEVEL_2M };
    const unassigned = pvalidateInsn(rmp, op, true);
    expect('npf' in unassigned).toBe(true);
    rmpupdateInsn(rmp, 0x7, priv(0x200000));
    expect(pvalidateInsn(rmp, op, true)).toEqual({ ret: PVALIDATE_FAIL_SIZEMISMATCH });
    expect(rmp.inspect(0x7).validated).toBe(false);
  });
});

describe('RMPADJUST', () => {
  it('sets VMPL permissions and the VMSA bit on a validated page', () => {
    const rmp = new Rmp({ maxPfn: 1 << 20 });
    const op = { pfn: 0x41, gpa: 0xb000, asid: 5, level: PG_LEVEL_4K };
    rmpupdateInsn(rmp, 0x41, priv(0xb000));
    expect(rmpadjustInsn(rmp, op, 1, VMPL_R | VMPL_W, false)).toEqual({ ret: RMPADJUST_FAIL_PERMISSION });
    pvalidateInsn(rmp, op, true);
    expect(rmpadjustInsn(rmp, op, 0, VMPL_R, false)).toEqual({ ret: RMPADJUST_FAIL_INPUT });
    expect(rmpadjustInsn(rmp, op, 2, VMPL_R | VMPL_W, false)).toEqual({ ret: 0 });
    expect(rmpadjustInsn(rmp, op, 3, VMPL_R, true)).toEqual({ ret: 0 });
    expect(rmp.inspect(0x41)).toMatchObject({ vmsa: true, vmpl: [0, 3, 1], validated: true });
  });
});

describe('gpa alignment of RMPUPDATE and PVALIDATE operands above 4 GiB', () => {
  it('accepts a page- (or 2M-) aligned gpa above 2^32 and refuses any other, negative ones too', () => {
    const rmp = new Rmp({ maxPfn: 1 << 20 });
    const state = (gpa: number, pagesize: number) => ({ gpa, assigned: true, pagesize, immutable: false, asid: 5 });
    expect(rmpupdateInsn(rmp, 0x100, state(2 ** 40 + 4096, 0))).toBe(0);
    expect(rmpupdateInsn(rmp, 0x101, state(2 ** 40 + 4097, 0))).toBe(RMPUPDATE_FAIL_INPUT);
    expect(rmpupdateInsn(rmp, 0x101, state(2 ** 44 + 2 ** 32 + 2048, 0))).toBe(RMPUPDATE_FAIL_INPUT);
    expect(rmpupdateInsn(rmp, 0x101, state(-4096, 0))).toBe(RMPUPDATE_FAIL_INPUT);
    expect(rmpupdateInsn(rmp, 0x400, state(2 ** 40 + 4096, 1))).toBe(RMPUPDATE_FAIL_INPUT);
    expect(rmpupdateInsn(rmp, 0x400, state(2 ** 40 + 2 ** 21, 1))).toBe(0);
    const op = { pfn: 0x100, gpa: 2 ** 40 + 4096, asid: 5, level: PG_LEVEL_4K };
    expect(pvalidateInsn(rmp, { ...op, gpa: 2 ** 40 + 4096 + 8 }, true)).toEqual({ ret: 1 });
    expect(pvalidateInsn(rmp, { ...op, gpa: -4096 }, true)).toMatchObject({ npf: PFERR_GUEST_RMP_MASK + PFERR_GUEST_ENC_MASK });
    expect(pvalidateInsn(rmp, { ...op, gpa: -4095 }, true)).toEqual({ ret: 1 });
    expect(pvalidateInsn(rmp, op, true)).toEqual({ ret: 0 });
  });
});

describe('SnpHost kernel wrappers', () => {
  it('rmpupdate() retries an injected FAIL_OVERLAP and fails other codes with -EFAULT', () => {
    const host = new SnpHost({ maxPfn: 1 << 20 });
    host.injectResult('rmpupdate', RMPUPDATE_FAIL_OVERLAP);
    expect(host.rmpMakePrivate(0x300, 0x3000, PG_LEVEL_4K, 5, false)).toBe(0);
    expect(host.stats.overlapRetries).toBe(1);
    expect(host.rmp.inspect(0x300).assigned).toBe(true);
    host.injectResult('rmpupdate', RMPUPDATE_FAIL_PERMISSION);
    expect(host.rmpMakeShared(0x300, PG_LEVEL_4K)).toBe(-ERRNO.EFAULT);
    expect(host.rmp.inspect(0x300).assigned).toBe(true);
  });

  it('each rmp_make_private / rmp_make_shared writes its own operand: nothing carries over between calls', () => {
    const host = new SnpHost({ maxPfn: 1 << 20 });
    const events: Record<string, unknown>[] = [];
    host.tracer = { emit: (name, fields) => void (name === 'rmpupdate' && events.push({ ...fields })) };
    expect(host.rmpMakePrivate(0x300, 0x5000, PG_LEVEL_4K, 7, true)).toBe(0);
    expect(host.rmpMakePrivate(0x600, 0x400000, PG_LEVEL_2M, 9, false)).toBe(0);
    expect(host.rmpMakeShared(0x301, PG_LEVEL_4K)).toBe(0);
    expect(events).toEqual([
      { pfn: 0x300, gpa: 0x5000, assigned: true, level: PG_LEVEL_4K, asid: 7, immutable: true },
      { pfn: 0x600, gpa: 0x400000, assigned: true, level: PG_LEVEL_2M, asid: 9, immutable: false },
      { pfn: 0x301, gpa: 0, assigned: false, level: PG_LEVEL_4K, asid: 0, immutable: false },
    ]);
    expect(host.rmp.inspect(0x300)).toMatchObject({ assigned: true, immutable: true, asid: 7, gpa: 0x5000, pagesize: 0 });
    expect(host.rmp.inspect(0x600)).toMatchObject({ assigned: true, immutable: false, asid: 9, gpa: 0x400000, pagesize: 1 });
    expect(host.rmp.inspect(0x301)).toMatchObject({ assigned: false, immutable: false, asid: 0, gpa: 0 });
  });

  it('splits the direct map before a 4K update (upstream) and never before a 2M one', () => {
    const host = new SnpHost({ maxPfn: 1 << 20 });
    expect(host.rmpMakePrivate(0x200, 0x1000, PG_LEVEL_4K, 5, false, 'split')).toBe(0);
    expect(host.directmap.mappingLevel(0x200)).toBe(PG_LEVEL_4K);
    expect(host.directmap.mappingLevel(0x400)).toBe(PG_LEVEL_2M);
    expect(host.rmpMakePrivate(0x400, 0x200000, PG_LEVEL_2M, 5, false, 'split')).toBe(0);
    expect(host.directmap.mappingLevel(0x400)).toBe(PG_LEVEL_2M);
    expect(host.directmap.stats).toMatchObject({ splits1G: 1, splits2M: 1 });
    expect(host.rmpMakeShared(0x200, PG_LEVEL_4K, 'split')).toBe(0);
    expect(host.directmap.mappingLevel(0x200)).toBe(PG_LEVEL_4K); // never re-merged
  });

  it('unmaps before shared→private and restores after private→shared (seed policy)', () => {
    const host = new SnpHost({ maxPfn: 1 << 20 });
    expect(host.rmpMakePrivate(0x200, 0x1000, PG_LEVEL_4K, 5, false, 'unmap')).toBe(0);
    expect(host.directmap.isPresent(0x200)).toBe(false);
    expect(host.directmap.checkHostRead(0x200)).toMatch(/not mapped/);
    expect(host.rmpMakeShared(0x200, PG_LEVEL_4K, 'unmap')).toBe(0);
    expect(host.directmap.isPresent(0x200)).toBe(true);
    expect(host.directmap.stats).toMatchObject({ unmaps: 1, restores: 1 });
  });

  it('injectResult: `after` instructions run normally first; the queue is per instruction and appends', () => {
    const host = new SnpHost({ maxPfn: 1 << 22 });
    host.injectResult('rmpupdate', RMPUPDATE_FAIL_PERMISSION, 1, 2);
    host.injectResult('rmpupdate', RMPUPDATE_FAIL_INUSE);
    expect(host.pendingInjections('rmpupdate')).toBe(4);
    expect(host.pendingInjections('psmash')).toBe(0);
    expect(host.rmpMakePrivate(0x300, 0x3000, PG_LEVEL_4K, 5, false)).toBe(0);
    expect(host.rmpMakePrivate(0x301, 0x4000, PG_LEVEL_4K, 5, false)).toBe(0);
    expect(host.rmpMakePrivate(0x302, 0x5000, PG_LEVEL_4K, 5, false)).toBe(-ERRNO.EFAULT);
    expect(host.rmpMakePrivate(0x302, 0x5000, PG_LEVEL_4K, 5, false)).toBe(-ERRNO.EFAULT);
    expect(host.rmp.inspect(0x302).assigned).toBe(false);
    expect(host.pendingInjections('rmpupdate')).toBe(0);
    expect(host.stats).toMatchObject({ rmpupdates: 2, rmpupdateFailures: 2 });
    expect(host.rmpMakePrivate(0x302, 0x5000, PG_LEVEL_4K, 5, false)).toBe(0);
    // PSMASH: one normal run first (it splits the 2M entry), then the injected code
    host.rmpMakePrivate(0x200000, 0x200000, PG_LEVEL_2M, 5, false);
    host.injectResult('psmash', PSMASH_FAIL_BADADDR, 1, 1);
    expect(host.psmash(0x200000)).toBe(0);
    expect(host.psmash(0x200200)).toBe(PSMASH_FAIL_BADADDR);
    expect(host.stats.psmashes).toBe(1);
  });

  it('PSMASH wrapper retries FAIL_INUSE; snp_leak_pages leaks once per frame', () => {
    const phys = new PhysMem();
    const host = new SnpHost({ maxPfn: 1 << 22, phys });
    host.rmpMakePrivate(0x200000, 0x200000, PG_LEVEL_2M, 5, false);
    host.injectResult('psmash', 3, 2);
    expect(host.snpRmptablePsmash(0x200000 + 17)).toBe(0);
    expect(host.rmp.level(0x200000 + 17)).toBe(PG_LEVEL_4K);
    const a = phys.allocPage();
    const b = phys.allocPage();
    expect(b).toBe(a + 1);
    host.snpLeakPages(a, 2);
    host.snpLeakPages(a, 1);
    expect(host.stats.leakedPages).toBe(2);
    expect([phys.isLeaked(a), phys.isLeaked(b), phys.isLeaked(b + 1)]).toEqual([true, true, false]);
    expect(phys.isAllocated(a)).toBe(false);
  });

  it('allocates ASIDs in the SNP range', () => {
    const host = new SnpHost({ maxSnpAsid: 2 });
    expect(host.allocAsid()).toBe(1);
    expect(host.allocAsid(2)).toBe(2);
    expect(host.allocAsid()).toBe(-ERRNO.EBUSY);
    host.freeAsid(1);
    expect(host.allocAsid()).toBe(1);
  });

  it('validated implies assigned, and gpa/asid stay consistent, under random instruction sequences', () => {
    const opArb = fc.oneof(
      fc.record({ k: fc.constant('priv4k' as const), i: fc.integer({ min: 0, max: 1023 }) }),
      fc.record({ k: fc.constant('priv2m' as const), r: fc.integer({ min: 0, max: 1 }) }),
      fc.record({ k: fc.constant('shared4k' as const), i: fc.integer({ min: 0, max: 1023 }) }),
      fc.record({ k: fc.constant('shared2m' as const), r: fc.integer({ min: 0, max: 1 }) }),
      fc.record({ k: fc.constant('psmash' as const), r: fc.integer({ min: 0, max: 1 }) }),
      fc.record({ k: fc.constant('pval' as const), i: fc.integer({ min: 0, max: 1023 }), v: fc.boolean() }),
    );
    fc.assert(
      fc.property(fc.array(opArb, { maxLength: 60 }), (ops) => {
        const rmp = new Rmp({ maxPfn: 1024 });
        for (const o of ops) {
          if (o.k === 'priv4k') rmpupdateInsn(rmp, o.i, priv(o.i * 4096));
          else if (o.k === 'priv2m') rmpupdateInsn(rmp, o.r * 512, priv(o.r * 512 * 4096, 5, 1));
          else if (o.k === 'shared4k') rmpupdateInsn(rmp, o.i, shared());
          else if (o.k === 'shared2m') rmpupdateInsn(rmp, o.r * 512, shared(1));
          else if (o.k === 'psmash') psmashInsn(rmp, o.r * 512);
          else pvalidateInsn(rmp, { pfn: o.i, gpa: o.i * 4096, asid: 5, level: PG_LEVEL_4K }, o.v);
        }
        for (let p = 0; p < 1024; p++) {
          const e = rmp.inspect(p);
          if (e.validated) expect(e.assigned).toBe(true);
          if (e.assigned) expect(e.gpa).toBe(p * 4096);
          if (!e.assigned) expect(e.asid).toBe(0);
        }
      }),
    );
  });
});
