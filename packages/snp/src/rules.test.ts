/**
 * Every check of the RMP instructions and the host wrappers, one at a time: each input the
 * instruction refuses, at the boundary, and each state it writes (the APM's rules and
 * arch/x86/virt/svm/sev.c). Found missing by mutation testing (docs/testing.md).
 */
import { describe, expect, it } from 'vitest';
import { ERRNO, PG_LEVEL_2M, PG_LEVEL_4K, PhysMem, type TraceEvent } from '@ccmem/core';
import { SVM_SEV_FEAT_DEBUG_SWAP } from './sev/uapi.js';
import {
  PFERR_GUEST_ENC_MASK,
  PFERR_GUEST_RMP_MASK,
  PSMASH_FAIL_BADADDR,
  PSMASH_FAIL_INPUT,
  PSMASH_FAIL_PERMISSION,
  PSMASH_SUCCESS,
  PVALIDATE_FAIL_INPUT,
  PVALIDATE_FAIL_SIZEMISMATCH,
  RMPADJUST_FAIL_INPUT,
  RMPADJUST_SUCCESS,
  RMPUPDATE_FAIL_INPUT,
  RMPUPDATE_FAIL_PERMISSION,
  SnpHost,
  pferrHas,
  psmashInsn,
  pvalidateInsn,
  rmpadjustInsn,
  rmpupdateInsn,
  type RmpState,
} from './instructions.js';
import { RMP_CHUNK_OVERHEAD_BYTES, RMP_ENTRIES_PER_2M, Rmp, RMPW_ASSIGNED, RMPW_IMMUTABLE, RMPW_VMSA } from './rmp.js';

const MAX = 1 << 20;
const priv = (gpa: number, asid = 5, pagesize = 0, immutable = false): RmpState => ({ gpa, assigned: true, pagesize, immutable, asid });
const shared = (pagesize = 0): RmpState => ({ gpa: 0, assigned: false, pagesize, immutable: false, asid: 0 });
const op = (pfn: number, gpa: number, level = PG_LEVEL_4K, asid = 5) => ({ pfn, gpa, asid, level });

describe('RMPUPDATE input checks, each on its own', () => {
  it('page size: only 4K (0) and 2M (1)', () => {
    const rmp = new Rmp({ maxPfn: MAX });
    expect(rmpupdateInsn(rmp, 0x200, { ...priv(0x1000), pagesize: 2 })).toBe(RMPUPDATE_FAIL_INPUT);
    expect(rmpupdateInsn(rmp, 0x200, { ...priv(0x1000), pagesize: 0 })).toBe(0);
  });

  it('the frame range: the first and the last frame of a 2M page must be in the RMP', () => {
    const rmp = new Rmp({ maxPfn: 1024 });
    expect(rmpupdateInsn(rmp, 1023, priv(0x1000))).toBe(0);
    expect(rmpupdateInsn(rmp, 1024, priv(0x1000))).toBe(RMPUPDATE_FAIL_INPUT);
    expect(rmpupdateInsn(new Rmp({ maxPfn: 1024 }), 512, priv(0x20_0000, 5, 1))).toBe(0);
    const small = new Rmp({ maxPfn: 1000 });
    expect(rmpupdateInsn(small, 512, priv(0x20_0000, 5, 1))).toBe(RMPUPDATE_FAIL_INPUT);
    expect(small.isAssigned(512)).toBe(false);
  });

  it('a guest gpa: a safe non-negative integer aligned to the page size', () => {
    const rmp = new Rmp({ maxPfn: MAX });
    expect(rmpupdateInsn(rmp, 0x200, priv(-0x1000))).toBe(RMPUPDATE_FAIL_INPUT);
    expect(rmpupdateInsn(rmp, 0x200, priv(0x1800))).toBe(RMPUPDATE_FAIL_INPUT);
    expect(rmpupdateInsn(rmp, 0x200, priv(2 ** 60))).toBe(RMPUPDATE_FAIL_INPUT);
    expect(rmpupdateInsn(rmp, 0x400, priv(0x1000, 5, 1))).toBe(RMPUPDATE_FAIL_INPUT);
    expect(rmp.assignedPages).toBe(0);
    // a shared page's gpa does not matter
    expect(rmpupdateInsn(rmp, 0x200, { ...shared(), gpa: 0x1800 })).toBe(0);
  });

  it('a guest ASID: 1 .. 1023', () => {
    const rmp = new Rmp({ maxPfn: MAX });
    expect(rmpupdateInsn(rmp, 0x200, priv(0x1000, 0))).toBe(RMPUPDATE_FAIL_INPUT);
    expect(rmpupdateInsn(rmp, 0x200, priv(0x1000, 1024))).toBe(RMPUPDATE_FAIL_INPUT);
    expect(rmpupdateInsn(rmp, 0x200, priv(0x1000, 1.5))).toBe(RMPUPDATE_FAIL_INPUT);
    expect(rmpupdateInsn(rmp, 0x200, priv(0x1000, 1023))).toBe(0);
    expect(rmp.inspect(0x200).asid).toBe(1023);
    expect(rmpupdateInsn(rmp, 0x201, priv(0x2000, 1))).toBe(0);
    expect(rmp.inspect(0x201).asid).toBe(1);
  });

  it('immutability is checked on every frame of a 2M page, the last one too, and nowhere else', () => {
    const rmp = new Rmp({ maxPfn: MAX });
    expect(rmpupdateInsn(rmp, 0x5ff, { ...shared(), immutable: true })).toBe(0);
    expect(rmp.inspect(0x5ff)).toMatchObject({ assigned: false, immutable: true, pagesize: 0 });
    expect(rmpupdateInsn(rmp, 0x400, priv(0x20_0000, 5, 1))).toBe(RMPUPDATE_FAIL_PERMISSION);
    expect(rmpupdateInsn(rmp, 0x400, shared(1))).toBe(RMPUPDATE_FAIL_PERMISSION);
    // the frame before the 2M page (pfn - 1) is immutable: no concern of this update
    expect(rmpupdateInsn(rmp, 0x1ff, { ...shared(), immutable: true })).toBe(0);
    expect(rmpupdateInsn(rmp, 0x200, priv(0x20_0000, 5, 1))).toBe(0);
    // frame 0x600, right after a 2M page at 0x400, is not part of it
    const r2 = new Rmp({ maxPfn: MAX });
    expect(rmpupdateInsn(r2, 0x600, { ...shared(), immutable: true })).toBe(0);
    expect(rmpupdateInsn(r2, 0x400, priv(0x20_0000, 5, 1))).toBe(0);
  });
});

describe('PSMASH', () => {
  it('FAIL_PERMISSION on an immutable 2M page, and the page stays 2M', () => {
    const rmp = new Rmp({ maxPfn: MAX });
    expect(rmpupdateInsn(rmp, 0x400, priv(0x20_0000, 5, 1, true))).toBe(0);
    expect(psmashInsn(rmp, 0x400)).toBe(PSMASH_FAIL_PERMISSION);
    expect(rmp.level(0x401)).toBe(PG_LEVEL_2M);
  });

  it('splits only its own 512 entries: the next 2M page stays 2M', () => {
    const rmp = new Rmp({ maxPfn: MAX });
    expect(rmpupdateInsn(rmp, 0x400, priv(0x20_0000, 5, 1))).toBe(0);
    expect(rmpupdateInsn(rmp, 0x600, priv(0x40_0000, 5, 1))).toBe(0);
    expect(psmashInsn(rmp, 0x400)).toBe(PSMASH_SUCCESS);
    expect(rmp.inspect(0x5ff)).toMatchObject({ pagesize: 0, assigned: true, gpa: 0x3f_f000 });
    expect(rmp.inspect(0x600)).toMatchObject({ pagesize: 1, level: PG_LEVEL_2M });
    expect(psmashInsn(rmp, 0x401)).toBe(PSMASH_FAIL_INPUT);
    expect(psmashInsn(rmp, 0x400)).toBe(PSMASH_FAIL_BADADDR);
  });

  it('the host wrapper: -EINVAL beyond the RMP, counts successes only, traces each call', () => {
    const host = new SnpHost({ maxPfn: MAX });
    const events: { name: string; fields: TraceEvent['fields'] }[] = [];
    host.tracer = { emit: (name, fields) => void events.push({ name, fields }) };
    expect(host.psmash(MAX)).toBe(-22);
    expect(host.psmash(0x400)).toBe(PSMASH_FAIL_BADADDR);
    expect(host.stats.psmashes).toBe(0);
    expect(host.rmpMakePrivate(0x400, 0x20_0000, PG_LEVEL_2M, 5, false)).toBe(0);
    expect(host.psmash(0x400)).toBe(PSMASH_SUCCESS);
    expect(host.stats.psmashes).toBe(1);
    expect(events.filter((e) => e.name === 'psmash')).toEqual([
      { name: 'psmash', fields: { pfn: 0x400, ret: PSMASH_FAIL_BADADDR } },
      { name: 'psmash', fields: { pfn: 0x400, ret: PSMASH_SUCCESS } },
    ]);
    // a tracer that is switched off gets nothing
    const quiet: string[] = [];
    host.tracer = Object.assign({ emit: (name: string) => void quiet.push(name) }, { enabled: false });
    expect(host.psmash(0x400)).toBe(PSMASH_FAIL_BADADDR);
    expect(quiet).toEqual([]);
  });
});

describe('rmpupdate(): the kernel wrapper', () => {
  it('counts updates and failures, traces both, and puts an unmapped page back on failure', () => {
    const host = new SnpHost({ maxPfn: MAX });
    const events: string[] = [];
    host.tracer = { emit: (name) => void events.push(name) };
    expect(host.rmpMakePrivate(0x200, 0x1000, PG_LEVEL_4K, 5, false, 'unmap')).toBe(0);
    expect(host.stats.rmpupdates).toBe(1);
    expect(host.directmap.isPresent(0x200)).toBe(false);
    // an immutable neighbour makes the 2M update fail: the frames unmapped for it come back
    expect(host.rmpupdate(0x401, { ...shared(), immutable: true })).toBe(0);
    expect(host.rmpMakePrivate(0x400, 0x20_0000, PG_LEVEL_2M, 5, false, 'unmap')).toBe(-14);
    expect(host.stats.rmpupdateFailures).toBe(1);
    expect(host.directmap.isPresent(0x400)).toBe(true);
    expect(host.directmap.isPresent(0x5ff)).toBe(true);
    expect(events).toEqual(['rmpupdate', 'rmpupdate', 'rmpupdate_failed']);
    // shared under the unmap policy: back into the direct map
    expect(host.rmpMakeShared(0x200, PG_LEVEL_4K, 'unmap')).toBe(0);
    expect(host.directmap.isPresent(0x200)).toBe(true);
    expect(host.rmp.inspect(0x200)).toMatchObject({ assigned: false, immutable: false, asid: 0 });
    // a frame the direct map does not have
    expect(host.rmpMakePrivate(MAX + 5, 0x1000, PG_LEVEL_4K, 5, false, 'unmap')).toBe(-14);
  });

  it('a shared update under the unmap policy leaves a failed page out of the direct map', () => {
    const host = new SnpHost({ maxPfn: MAX });
    expect(host.rmpMakePrivate(0x200, 0x1000, PG_LEVEL_4K, 5, true, 'unmap')).toBe(0);
    expect(host.rmpMakeShared(0x200, PG_LEVEL_4K, 'unmap')).toBe(-14);
    expect(host.directmap.isPresent(0x200)).toBe(false);
  });

  it('asids: a requested one must be free and in range; a freed one is reused after the flush', () => {
    // SEV-ES and SNP guests share [1, min_sev_asid - 1] (sev_asid_new()); here [1, 3]
    const host = new SnpHost({ maxPfn: MAX, maxSnpAsid: 3 });
    expect(host.allocAsid(0)).toBe(-16);
    expect(host.allocAsid(4)).toBe(-16);
    expect(host.allocAsid(2)).toBe(2);
    expect(host.allocAsid(2)).toBe(-16);
    expect(host.allocAsid()).toBe(1);
    expect(host.allocAsid()).toBe(3);
    expect(host.allocAsid()).toBe(-16);
    host.freeAsid(3);
    // sev_asid_free() only marks it reclaimable; __sev_recycle_asids() runs once the range is full
    expect(host.allocAsid()).toBe(3);
  });

  it('snp_leak_pages() leaks each frame once and takes it from the allocator', () => {
    const phys = new PhysMem();
    const host = new SnpHost({ maxPfn: MAX, phys });
    const pfn = phys.allocPage();
    const events: string[] = [];
    host.tracer = { emit: (name) => void events.push(name) };
    host.snpLeakPages(pfn, 2);
    host.snpLeakPages(pfn, 1);
    expect(host.stats.leakedPages).toBe(2);
    expect([...host.leakedPages]).toEqual([pfn, pfn + 1]);
    expect(events).toEqual(['snp_leak_pages', 'snp_leak_pages']);
    // without host memory there is nothing to take
    const bare = new SnpHost({ maxPfn: MAX });
    bare.snpLeakPages(7, 1);
    expect(bare.stats.leakedPages).toBe(1);
  });
});

describe('PVALIDATE / RMPADJUST: each refused operand', () => {
  function assigned(level = PG_LEVEL_4K) {
    const rmp = new Rmp({ maxPfn: MAX });
    expect(rmpupdateInsn(rmp, 0x400, priv(0x20_0000, 5, level === PG_LEVEL_2M ? 1 : 0))).toBe(0);
    return rmp;
  }

  it('a page level other than 4K or 2M, a frame beyond the RMP: FAIL_INPUT', () => {
    const rmp = assigned();
    expect(pvalidateInsn(rmp, op(0x400, 0x20_0000, 3), true)).toEqual({ ret: PVALIDATE_FAIL_INPUT });
    expect(pvalidateInsn(rmp, op(MAX, 0x20_0000), true)).toEqual({ ret: PVALIDATE_FAIL_INPUT });
    expect(rmp.inspect(0x400).validated).toBe(false);
  });

  it('a 2M request on a frame that is not 2M-aligned: SIZEMISMATCH when assigned, else an RMP #NPF', () => {
    const rmp = assigned();
    expect(rmpupdateInsn(rmp, 0x401, priv(0x20_1000))).toBe(0);
    expect(pvalidateInsn(rmp, op(0x401, 0x20_0000, PG_LEVEL_2M), true)).toEqual({ ret: PVALIDATE_FAIL_SIZEMISMATCH });
    const r = pvalidateInsn(rmp, op(0x403, 0x20_0000, PG_LEVEL_2M), true);
    expect('npf' in r && r.npf).toBe(PFERR_GUEST_RMP_MASK + PFERR_GUEST_ENC_MASK);
  });

  it('an unassigned page, another ASID, another gpa: an RMP #NPF with the ENC bit', () => {
    const rmp = assigned();
    for (const o of [op(0x401, 0x20_1000), op(0x400, 0x20_0000, PG_LEVEL_4K, 6), op(0x400, 0x20_1000)]) {
      const r = pvalidateInsn(rmp, o, true);
      expect('npf' in r && r.npf, JSON.stringify(o)).toBe(PFERR_GUEST_RMP_MASK + PFERR_GUEST_ENC_MASK);
    }
    expect(rmp.inspect(0x400).validated).toBe(false);
  });

  it('RMPADJUST: VMPL 1-3, a 4-bit mask, a VMSA only at 4K; the operand checks come first', () => {
    const rmp = assigned();
    expect(pvalidateInsn(rmp, op(0x400, 0x20_0000), true)).toEqual({ ret: 0 });
    for (const [vmpl, perms, vmsa, level] of [
      [0, 1, false, PG_LEVEL_4K],
      [4, 1, false, PG_LEVEL_4K],
      [1.5, 1, false, PG_LEVEL_4K],
      [1, -1, false, PG_LEVEL_4K],
      [1, 16, false, PG_LEVEL_4K],
      [1, 0.5, false, PG_LEVEL_4K],
      [1, 1, true, PG_LEVEL_2M],
    ] as const) {
      expect(rmpadjustInsn(rmp, op(0x400, 0x20_0000, level), vmpl, perms, vmsa), `${vmpl} ${perms} ${vmsa}`).toEqual({ ret: RMPADJUST_FAIL_INPUT });
    }
    expect(rmp.inspect(0x400).vmpl).toEqual([0, 0, 0]);
    expect(rmpadjustInsn(rmp, op(0x400, 0x20_0000), 3, 15, false)).toEqual({ ret: RMPADJUST_SUCCESS });
    expect(rmpadjustInsn(rmp, op(0x400, 0x20_0000), 1, 0, true)).toEqual({ ret: RMPADJUST_SUCCESS });
    expect(rmp.inspect(0x400)).toMatchObject({ vmpl: [0, 0, 15], vmsa: true });
    expect(rmp.inspect(0x401).vmsa).toBe(false);
  });

  it('RMPADJUST of a 2M page changes all 512 entries and nothing after them', () => {
    const rmp = assigned(PG_LEVEL_2M);
    expect(rmpupdateInsn(rmp, 0x600, priv(0x40_0000))).toBe(0);
    expect(pvalidateInsn(rmp, op(0x400, 0x20_0000, PG_LEVEL_2M), true)).toEqual({ ret: 0 });
    expect(rmpadjustInsn(rmp, op(0x400, 0x20_0000, PG_LEVEL_2M), 2, 5, false)).toEqual({ ret: RMPADJUST_SUCCESS });
    expect(rmp.inspect(0x400).vmpl).toEqual([0, 5, 0]);
    expect(rmp.inspect(0x5ff).vmpl).toEqual([0, 5, 0]);
    expect(rmp.inspect(0x600).vmpl).toEqual([0, 0, 0]);
    expect(rmp.inspect(0x3ff).vmpl).toEqual([0, 0, 0]);
  });

  it('a failed guest RMP check leaves RMPADJUST without effect', () => {
    const rmp = assigned();
    const r = rmpadjustInsn(rmp, op(0x400, 0x20_0000, PG_LEVEL_4K, 9), 1, 3, false);
    expect('npf' in r).toBe(true);
    expect(rmp.inspect(0x400).vmpl).toEqual([0, 0, 0]);
  });

  it('pferrHas tests exactly one bit above 31', () => {
    expect(pferrHas(PFERR_GUEST_RMP_MASK + PFERR_GUEST_ENC_MASK, PFERR_GUEST_ENC_MASK)).toBe(true);
    expect(pferrHas(PFERR_GUEST_RMP_MASK, PFERR_GUEST_ENC_MASK)).toBe(false);
    expect(pferrHas(0, PFERR_GUEST_RMP_MASK)).toBe(false);
  });
});

describe('Rmp bookkeeping', () => {
  it('rejects a size that is not a positive integer', () => {
    expect(() => new Rmp({ maxPfn: 0 })).toThrow(RangeError);
    expect(() => new Rmp({ maxPfn: -1 })).toThrow(RangeError);
    expect(() => new Rmp({ maxPfn: 1.5 })).toThrow(RangeError);
    expect(new Rmp({ maxPfn: 1 }).maxPfn).toBe(1);
  });

  it('valid frames: integers in [0, maxPfn)', () => {
    const rmp = new Rmp({ maxPfn: 10 });
    expect([-1, 0, 9, 10, 2.5].map((p) => rmp.isValidPfn(p))).toEqual([false, true, true, false, false]);
    expect(() => rmp.inspect(10)).toThrow(/outside the RMP/);
    expect(rmp.lookup(-1)).toBeNull();
  });

  it('inspect reports each flag from its own bit', () => {
    const rmp = new Rmp({ maxPfn: MAX });
    rmp.writeEntry(3, RMPW_ASSIGNED | RMPW_IMMUTABLE, 9);
    expect(rmp.inspect(3)).toMatchObject({ assigned: true, immutable: true, vmsa: false, validated: false, gpa: 9 * 4096 });
    rmp.writeEntry(4, RMPW_ASSIGNED | RMPW_VMSA, 9);
    expect(rmp.inspect(4)).toMatchObject({ immutable: false, vmsa: true });
  });

  it('counts bytes per chunk and per assigned page; walks assigned and non-default entries in order', () => {
    const rmp = new Rmp({ maxPfn: MAX });
    rmp.writeEntry(RMP_ENTRIES_PER_2M * 3 + 7, RMPW_ASSIGNED, 1);
    rmp.writeEntry(RMP_ENTRIES_PER_2M * 3 + 511, 0, 5); // not assigned, but not default: a gfn
    rmp.writeEntry(RMP_ENTRIES_PER_2M * 5 + 2, RMPW_IMMUTABLE, 0);
    const chunk = RMP_ENTRIES_PER_2M * (4 + 8) + RMP_CHUNK_OVERHEAD_BYTES;
    expect(rmp.chunkCount).toBe(2);
    expect(rmp.bytes).toBe(2 * chunk);
    expect(rmp.bytesPerAssignedPage).toBe(2 * chunk);
    const assigned: number[] = [];
    rmp.forEachAssigned((pfn) => assigned.push(pfn));
    expect(assigned).toEqual([RMP_ENTRIES_PER_2M * 3 + 7]);
    const nonDefault: [number, number, number][] = [];
    rmp.forEachNonDefault((pfn, w, gfn) => nonDefault.push([pfn, w, gfn]));
    expect(nonDefault.sort((a, b) => a[0] - b[0])).toEqual([
      [RMP_ENTRIES_PER_2M * 3 + 7, RMPW_ASSIGNED, 1],
      [RMP_ENTRIES_PER_2M * 3 + 511, 0, 5],
      [RMP_ENTRIES_PER_2M * 5 + 2, RMPW_IMMUTABLE, 0],
    ]);
  });

  it('a default entry written into an empty region creates nothing; the chunk goes when its last entry is default', () => {
    const rmp = new Rmp({ maxPfn: MAX });
    rmp.writeEntry(100, 0, 0);
    expect(rmp.chunkCount).toBe(0);
    rmp.writeEntry(100, 0, 3); // gfn only
    rmp.writeEntry(101, RMPW_ASSIGNED, 0); // word only
    expect(rmp.chunkCount).toBe(1);
    rmp.writeEntry(100, 0, 0);
    expect(rmp.chunkCount).toBe(1);
    expect(rmp.gfn(101)).toBe(0);
    rmp.writeEntry(101, 0, 0);
    expect(rmp.chunkCount).toBe(0);
    expect(rmp.word(101)).toBe(0);
    // after the chunk is gone, the region reads as default (no stale cache)
    rmp.writeEntry(102, RMPW_ASSIGNED, 4);
    expect(rmp.word(102)).toBe(RMPW_ASSIGNED);
    rmp.writeEntry(102, 0, 0);
    expect(rmp.word(102)).toBe(0);
    expect(rmp.isAssigned(102)).toBe(false);
  });
});

describe('the host and its wrappers: defaults and refused frames', () => {
  it('a guest page may sit at gpa 0', () => {
    const rmp = new Rmp({ maxPfn: MAX });
    expect(rmpupdateInsn(rmp, 0x200, priv(0))).toBe(0);
    expect(rmp.inspect(0x200)).toMatchObject({ assigned: true, gpa: 0 });
  });

  it('rmpupdate() of a frame beyond the direct map is -EFAULT under either policy (adjust_direct_map fails first under split)', () => {
    const host = new SnpHost({ maxPfn: MAX });
    expect(host.rmpupdate(MAX, priv(0x1000), 'split')).toBe(-ERRNO.EFAULT);
    expect(host.rmpupdate(MAX, priv(0x1000), 'unmap')).toBe(-ERRNO.EFAULT);
    expect(host.stats.rmpupdates).toBe(0);
  });

  it('SNP ASIDs start at 1; the VMSA features KVM_SEV_INIT2 may ask for default to DebugSwap and can be set', () => {
    const host = new SnpHost({ maxPfn: MAX });
    expect(host.minSnpAsid).toBe(1);
    expect(host.sev.supportedVmsaFeatures).toBe(SVM_SEV_FEAT_DEBUG_SWAP);
    expect(new SnpHost({ maxPfn: MAX, supportedVmsaFeatures: 0 }).sev.supportedVmsaFeatures).toBe(0);
  });
});
