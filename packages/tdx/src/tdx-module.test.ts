import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  TDX_EPT_ENTRY_NOT_PRESENT,
  TDX_EPT_ENTRY_STATE_INCORRECT,
  TDX_EPT_WALK_FAILED,
  TDX_GPA_RANGE_ALREADY_BLOCKED,
  TDX_GPA_RANGE_NOT_BLOCKED,
  TDX_LIFECYCLE_STATE_INCORRECT,
  TDX_OPERAND_BUSY,
  TDX_OPERAND_INVALID,
  TDX_OP_STATE_INCORRECT,
  TDX_PAGE_ALREADY_ACCEPTED,
  TDX_PAGE_METADATA_INCORRECT,
  TDX_PAGE_SIZE_MISMATCH,
  TDX_PREVIOUS_TLB_EPOCH_BUSY,
  TDX_SUCCESS,
  TDX_TLB_TRACKING_NOT_DONE,
  tdxStatusName,
} from './status.js';
import { PhysMem } from '@ccmem/core';
import { SEPT_BLOCKED, SEPT_FREE, SEPT_PENDING, SEPT_PENDING_BLOCKED, SEPT_PRESENT } from './sept.js';
import { initializedTd } from './testing/td-setup.js';
import { PT_SEPT, PamtTable, TDG_EXIT_EPT_VIOLATION, TdxModule, mrBlock, type TdxTd } from './tdx-module.js';

const P = 4096;

/** SEPT.ADD for levels 3, 2, 1 above `gpa` */
function linkLevels(td: TdxTd, phys: PhysMem, gpa: number, downTo = 1): void {
  for (let l = 3; l >= downTo; l--) {
    const span = 512 ** l * P;
    const st = td.memSeptAdd(Math.floor(gpa / span) * span, l, phys.allocPage());
    expect([TDX_SUCCESS, TDX_EPT_ENTRY_STATE_INCORRECT]).toContain(st);
  }
}

function run(td: TdxTd): void {
  expect(td.mrFinalize()).toBe(TDX_SUCCESS);
  expect(td.state).toBe('RUNNABLE');
}

describe('TD state machine and HKID', () => {
  it('goes UNINITIALIZED → INITIALIZED → RUNNABLE and refuses calls out of order', () => {
    const phys = new PhysMem();
    const module = new TdxModule({ phys, nrHkids: 2 });
    const td = module.createTd();
    expect(td.mngKeyConfig()).toBe(TDX_LIFECYCLE_STATE_INCORRECT);
    expect(td.memSeptAdd(0, 1, 5)).toBe(TDX_LIFECYCLE_STATE_INCORRECT);
    td.mngCreate(module.allocHkid());
    expect(module.freeHkids).toBe(1);
    td.mngKeyConfig();
    expect(td.vpInit(0)).not.toBe(TDX_SUCCESS);
    td.mngInit({ gpaw: 48, attributes: 0 });
    expect(td.state).toBe('INITIALIZED');
    // the module allows PAGE.AUG while INITIALIZED: the op state passes, the walk fails
    expect(td.memPageAug(0, 0, 9)).toBe(TDX_EPT_WALK_FAILED);
    expect(td.mrFinalize()).toBe(TDX_SUCCESS);
    expect(td.mrFinalize()).toBe(TDX_OP_STATE_INCORRECT);
    // every op-state failure is TDX_OP_STATE_INCORRECT in the current module (not TD_FINALIZED)
    expect(td.memPageAdd(0, 0, 9, new Uint8Array(P))).toBe(TDX_OP_STATE_INCORRECT);
  });
  it('frees the HKID only after VPFLUSHDONE and CACHE.WB, then allows RECLAIM', () => {
    const { td, module, phys } = initializedTd();
    run(td);
    linkLevels(td, phys, 0);
    const spt = td.sept!.table(0, 0)!.hpa;
    expect(td.phymemPageReclaim(spt)).toBe(TDX_LIFECYCLE_STATE_INCORRECT);
    expect(td.vpEnter(0)).toBe(TDX_SUCCESS);
    expect(td.mngKeyFreeid()).toBe(TDX_LIFECYCLE_STATE_INCORRECT);
    expect(tdxStatusName(td.mngVpFlushDone())).toBe('TDX_FLUSHVP_NOT_DONE');
    td.vpExitAll();
    expect(tdxStatusName(td.mngVpFlushDone())).toBe('TDX_FLUSHVP_NOT_DONE');
    expect(td.vpFlush(0)).toBe(TDX_SUCCESS);
    // vCPU 1 never ran, but TDH.VP.INIT associated it
    expect(tdxStatusName(td.mngVpFlushDone())).toBe('TDX_FLUSHVP_NOT_DONE');
    expect(td.vpFlush(1)).toBe(TDX_SUCCESS);
    expect(td.mngVpFlushDone()).toBe(TDX_SUCCESS);
    expect(td.mngKeyFreeid()).toBe(TDX_LIFECYCLE_STATE_INCORRECT);
    expect(td.phymemCacheWb()).toBe(TDX_SUCCESS);
    const before = module.freeHkids;
    expect(td.mngKeyFreeid()).toBe(TDX_SUCCESS);
    expect(module.freeHkids).toBe(before + 1);
    expect(td.hkidAssigned).toBe(false);
    expect(td.phymemPageReclaim(spt)).toBe(TDX_SUCCESS);
    expect(td.phymemPageReclaim(spt)).toBe(TDX_PAGE_METADATA_INCORRECT);
  });
});

describe('Secure EPT SEAMCALLs', () => {
  it('needs every intermediate level: EPT_WALK_FAILED with the entry where the walk stopped', () => {
    const { td, phys } = initializedTd();
    expect(td.memPageAdd(0x200000, 0, phys.allocPage(), new Uint8Array(P))).toBe(TDX_EPT_WALK_FAILED);
    expect(td.lastEntryLevel).toBe(3);
    linkLevels(td, phys, 0x200000, 2);
    expect(td.memPageAdd(0x200000, 0, phys.allocPage(), new Uint8Array(P))).toBe(TDX_EPT_WALK_FAILED);
    expect(td.lastEntryLevel).toBe(1);
    expect(td.lastEntryState).toBe(SEPT_FREE);
    expect(td.memSeptAdd(0x200000, 1, phys.allocPage())).toBe(TDX_SUCCESS);
    expect(td.memSeptAdd(0x200000, 1, phys.allocPage())).toBe(TDX_EPT_ENTRY_STATE_INCORRECT);
  });
  it('checks gpa privacy, alignment and the page owner', () => {
    const { td, phys } = initializedTd();
    expect(td.memSeptAdd(2 ** 47, 1, phys.allocPage())).toBe(TDX_OPERAND_INVALID);
    expect(td.memSeptAdd(0x1000, 1, phys.allocPage())).toBe(TDX_OPERAND_INVALID);
    linkLevels(td, phys, 0);
    const pfn = phys.allocPage();
    expect(td.memPageAdd(0, 0, pfn, new Uint8Array(P))).toBe(TDX_SUCCESS);
    expect(td.memPageAdd(0, 0, phys.allocPage(), new Uint8Array(P))).toBe(TDX_EPT_ENTRY_STATE_INCORRECT);
    expect(td.memPageAdd(P, 0, pfn, new Uint8Array(P))).toBe(TDX_PAGE_METADATA_INCORRECT);
  });
  it('AUG → PENDING; ACCEPT → PRESENT; second ACCEPT is PAGE_ALREADY_ACCEPTED', () => {
    const { td, phys } = initializedTd();
    linkLevels(td, phys, 0);
    run(td);
    const pfn = phys.allocPage();
    phys.writeBytes(pfn, 0, new Uint8Array([1, 2, 3]));
    expect(td.memPageAug(0, 0, pfn)).toBe(TDX_SUCCESS);
    expect(td.leafStateAt(0).state).toBe(SEPT_PENDING);
    expect(td.memPageAug(0, 0, phys.allocPage())).toBe(TDX_EPT_ENTRY_STATE_INCORRECT);
    expect(td.tdgMemPageAccept(0, P, 0)).toBe(TDG_EXIT_EPT_VIOLATION);
    expect(td.tdgMemPageAccept(0, 0, 0)).toBe(TDX_SUCCESS);
    expect(phys.readBytes(pfn, 0, 3)).toEqual(new Uint8Array(3));
    expect(td.leafStateAt(0).state).toBe(SEPT_PRESENT);
    expect(td.tdgMemPageAccept(0, 0, 0)).toBe(TDX_PAGE_ALREADY_ACCEPTED);
    expect(td.tdgMemPageAccept(0, 0, 1)).toBe(TDX_PAGE_SIZE_MISMATCH);
  });
  it('REMOVE while running needs BLOCK and a completed TRACK with every vCPU out of epoch N', () => {
    const { td, phys } = initializedTd();
    linkLevels(td, phys, 0);
    run(td);
    td.memPageAug(0, 0, phys.allocPage());
    td.tdgMemPageAccept(0, 0, 0); // vCPU 0 enters in epoch 1
    expect(td.memPageRemove(0, 0)).toBe(TDX_GPA_RANGE_NOT_BLOCKED);
    expect(td.memRangeBlock(0, 0)).toBe(TDX_SUCCESS);
    expect(td.leafStateAt(0).state).toBe(SEPT_BLOCKED);
    expect(td.memRangeBlock(0, 0)).toBe(TDX_GPA_RANGE_ALREADY_BLOCKED);
    expect(td.memPageRemove(0, 0)).toBe(TDX_TLB_TRACKING_NOT_DONE);
    expect(td.memTrack()).toBe(TDX_SUCCESS);
    expect(td.epoch).toBe(2);
    expect(td.memPageRemove(0, 0)).toBe(TDX_TLB_TRACKING_NOT_DONE); // vCPU 0 still in epoch 1
    td.vpExit(0);
    expect(td.memPageRemove(0, 0)).toBe(TDX_SUCCESS);
    expect(td.leafStateAt(0).state).toBe(SEPT_FREE);
    expect([...td.pamt.values()].every((v) => v === PT_SEPT)).toBe(true);
  });
  it('TRACK with a vCPU still in epoch N-1 is PREVIOUS_TLB_EPOCH_BUSY', () => {
    const { td } = initializedTd();
    run(td);
    expect(td.vpEnter(1)).toBe(TDX_SUCCESS); // epoch 1
    expect(td.memTrack()).toBe(TDX_SUCCESS); // epoch 2, vCPU 1 in epoch 1 = N-1
    expect(td.memTrack()).toBe(TDX_PREVIOUS_TLB_EPOCH_BUSY);
    td.vpExit(1);
    expect(td.memTrack()).toBe(TDX_SUCCESS);
  });
  it('blocks a PENDING page to PENDING_BLOCKED and removes it', () => {
    const { td, phys } = initializedTd();
    linkLevels(td, phys, 0);
    run(td);
    td.memPageAug(0, 0, phys.allocPage());
    td.memRangeBlock(0, 0);
    expect(td.leafStateAt(0).state).toBe(SEPT_PENDING_BLOCKED);
    td.memTrack();
    expect(td.memPageRemove(0, 0)).toBe(TDX_SUCCESS);
  });
  it('REMOVE at build time needs no BLOCK (no TLB tracking before the TD runs)', () => {
    const { td, phys } = initializedTd();
    linkLevels(td, phys, 0);
    td.memPageAdd(0, 0, phys.allocPage(), new Uint8Array(P));
    expect(td.memPageRemove(0, 0)).toBe(TDX_SUCCESS);
  });
  it('check_tdaccept_failure(): 4K ACCEPT inside an accepted 2M leaf is ALREADY_ACCEPTED; SIZE_MISMATCH only for a non-leaf at the level', () => {
    const { td, phys } = initializedTd();
    linkLevels(td, phys, 0, 2);
    run(td);
    const base = phys.allocContiguous(512);
    expect(td.memPageAug(0, 1, base)).toBe(TDX_SUCCESS);
    expect(td.tdgMemPageAccept(0, 0, 1)).toBe(TDX_SUCCESS);
    // case 1.1: the walk stops at a PRESENT 2M leaf above the 4K request
    expect(td.tdgMemPageAccept(0, 5 * P, 0)).toBe(TDX_PAGE_ALREADY_ACCEPTED);
    expect(td.lastStatus64()).toBe(0x00000b0a00000001n); // operand id: the level the walk ended at (2M)
    // case 3: a 2M ACCEPT over a linked 4K table (NL_PRESENT, and NL_BLOCKED too)
    const gpa2 = 2 * 1024 * 1024;
    expect(td.memSeptAdd(gpa2, 1, phys.allocPage())).toBe(TDX_SUCCESS);
    expect(td.tdgMemPageAccept(0, gpa2, 1)).toBe(TDX_PAGE_SIZE_MISMATCH);
    td.vpExitAll();
    expect(td.memRangeBlock(gpa2, 1)).toBe(TDX_SUCCESS);
    expect(td.tdgMemPageAccept(0, gpa2, 1)).toBe(TDX_PAGE_SIZE_MISMATCH);
    // case 2: the 4K request under a missing table exits with an EPT violation
    expect(td.tdgMemPageAccept(0, 4 * gpa2, 0)).toBe(TDG_EXIT_EPT_VIOLATION);
  });
  it('DEMOTE splits a blocked, tracked 2 MiB leaf into 512 leaves', () => {
    const { td, phys } = initializedTd();
    linkLevels(td, phys, 0, 2);
    run(td);
    const base = phys.allocContiguous(512); // a 2 MiB page: 512 aligned, consecutive frames
    expect(td.memPageAug(0, 1, base)).toBe(TDX_SUCCESS);
    // check_tdaccept_failure() 1.2: a 4K ACCEPT reaching a PENDING 2M leaf exits with the accept level
    expect(td.tdgMemPageAccept(0, 0, 0)).toBe(TDG_EXIT_EPT_VIOLATION);
    expect(td.tdgMemPageAccept(0, 0, 1)).toBe(TDX_SUCCESS);
    td.vpExitAll();
    const spt = phys.allocPage();
    expect(td.memPageDemote(0, 1, spt)).toBe(TDX_GPA_RANGE_NOT_BLOCKED);
    td.memRangeBlock(0, 1);
    expect(td.memPageDemote(0, 1, spt)).toBe(TDX_TLB_TRACKING_NOT_DONE);
    td.memTrack();
    expect(td.memPageDemote(0, 1, spt)).toBe(TDX_SUCCESS);
    expect(td.leafStateAt(5)).toEqual({ state: SEPT_PRESENT, pfn: base + 5, level: 0 });
    expect(td.sept!.tableByHpa(spt)?.used).toBe(512);
  });
  it('OPERAND_BUSY injection hits the next SEAMCALL and changes nothing', () => {
    const { td, phys } = initializedTd();
    linkLevels(td, phys, 0);
    run(td);
    td.injectOperandBusy(1, 'TDH.MEM.PAGE.AUG');
    expect(td.memTrack()).toBe(TDX_SUCCESS);
    const pfn = phys.allocPage();
    expect(td.memPageAug(0, 0, pfn)).toBe(TDX_OPERAND_BUSY);
    expect(td.lastStatus64()).toBe(0x8000020000000001n);
    expect(td.leafStateAt(0).state).toBe(SEPT_FREE);
    expect(td.memPageAug(0, 0, pfn)).toBe(TDX_SUCCESS);
  });
});

describe('MRTD', () => {
  it('is SHA-384 over 128-byte blocks: PAGE.ADD(gpa) then MR.EXTEND(gpa)+256 bytes, per chunk', () => {
    const { td, phys } = initializedTd();
    linkLevels(td, phys, 0);
    const page = new Uint8Array(P).map((_, i) => i & 0xff);
    const pfn = phys.allocPage();
    expect(td.memPageAdd(0, 0, pfn, page)).toBe(TDX_SUCCESS);
    expect(td.mrExtend(0x80)).toBe(TDX_OPERAND_INVALID);
    expect(td.mrExtend(P)).toBe(TDX_EPT_ENTRY_NOT_PRESENT);
    for (let off = 0; off < P; off += 256) expect(td.mrExtend(off)).toBe(TDX_SUCCESS);
    run(td);
    const h = createHash('sha384');
    h.update(mrBlock('MEM.PAGE.ADD', 0));
    for (let off = 0; off < P; off += 256) {
      h.update(mrBlock('MR.EXTEND', off));
      h.update(page.subarray(off, off + 256));
    }
    expect(td.mrtd!.toString('hex')).toBe(h.digest('hex'));
    const blk = mrBlock('MR.EXTEND', 0x1234000);
    expect(blk.length).toBe(128);
    expect(new TextDecoder().decode(blk.subarray(0, 9))).toBe('MR.EXTEND');
    expect(blk[9]).toBe(0);
    expect(new DataView(blk.buffer).getBigUint64(16, true)).toBe(0x1234000n);
  });
});

describe('PamtTable', () => {
  it('answers like a Map<pfn, level> for random set / delete sequences', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.constantFrom(0x100, 0x101, 0x2ff, 0x300, 0x7fff_0000, 5), fc.constantFrom(PT_SEPT, 0, 1, 2, undefined)), { maxLength: 50 }),
        (ops) => {
          const t = new PamtTable();
          const m = new Map<number, number>();
          for (const [pfn, v] of ops) {
            if (v === undefined) expect(t.delete(pfn)).toBe(m.delete(pfn));
            else {
              t.set(pfn, v);
              m.set(pfn, v);
            }
            expect(t.size).toBe(m.size);
            for (const p of [0x100, 0x101, 0x2ff, 0x300, 0x7fff_0000, 5, 6]) {
              expect(t.has(p)).toBe(m.has(p));
              expect(t.get(p)).toBe(m.get(p));
            }
            expect([...t.entries()].sort((a, b) => a[0] - b[0])).toEqual([...m.entries()].sort((a, b) => a[0] - b[0]));
          }
        },
      ),
    );
  });
});
