/**
 * Each S-EPT SEAMCALL's checks, one at a time and in their order (the TDX module's
 * check_state_map_tdcs_and_lock(), then operands, walk, entry state, page): every refused input
 * at its boundary, and that a refused call changes nothing. Found missing by mutation testing
 * (docs/testing.md).
 */
import { describe, expect, it } from 'vitest';
import { PhysMem } from '@ccmem/core';
import {
  TDX_EPT_ENTRY_STATE_INCORRECT,
  TDX_EPT_WALK_FAILED,
  TDX_GPA_RANGE_ALREADY_BLOCKED,
  TDX_GPA_RANGE_NOT_BLOCKED,
  TDX_LIFECYCLE_STATE_INCORRECT,
  TDX_OPERAND_BUSY,
  TDX_OPERAND_INVALID,
  TDX_OP_STATE_INCORRECT,
  TDX_PAGE_METADATA_INCORRECT,
  TDX_SUCCESS,
} from './status.js';
import { SEPT_FREE, SEPT_PENDING, SEPT_PRESENT } from './sept.js';
import { TDX_TD_ATTR_SEPT_VE_DISABLE, TdxModule } from './tdx-module.js';

const P = 4096;
const M2 = 512 * P;
const G1 = 512 * M2;

/** a TD in the INITIALIZED state (build time), with tables down to level 1 over gpa 0 */
function built() {
  const phys = new PhysMem();
  const module = new TdxModule({ phys, nrHkids: 4 });
  const td = module.createTd();
  const fresh = () => phys.allocPage();
  expect(td.memPageAug(0, 0, 1)).toBe(TDX_LIFECYCLE_STATE_INCORRECT);
  expect(td.mngCreate(module.allocHkid())).toBe(TDX_SUCCESS);
  expect(td.mngKeyConfig()).toBe(TDX_SUCCESS);
  // keys configured, TD not initialized: every memory SEAMCALL is refused on the op state
  expect(td.memPageAug(0, 0, 1)).toBe(TDX_OP_STATE_INCORRECT);
  expect(td.memTrack()).toBe(TDX_OP_STATE_INCORRECT);
  expect(td.mngInit({ gpaw: 48, attributes: TDX_TD_ATTR_SEPT_VE_DISABLE })).toBe(TDX_SUCCESS);
  expect(td.vpInit(0)).toBe(TDX_SUCCESS);
  for (let l = 3; l >= 1; l--) expect(td.memSeptAdd(0, l, fresh())).toBe(TDX_SUCCESS);
  return { phys, module, td, fresh };
}

function runnable() {
  const t = built();
  expect(t.td.memPageAdd(0, 0, t.fresh(), new Uint8Array(P))).toBe(TDX_SUCCESS);
  expect(t.td.mrFinalize()).toBe(TDX_SUCCESS);
  return t;
}

describe('TDH.MEM.SEPT.ADD', () => {
  it('levels 1 .. root only, an aligned private gpa, a page the TD does not own, a walk to the level, a FREE entry', () => {
    const { td, fresh } = built();
    expect(td.memSeptAdd(G1, 0, fresh())).toBe(TDX_OPERAND_INVALID);
    expect(td.memSeptAdd(0, 4, fresh())).toBe(TDX_OPERAND_INVALID);
    expect(td.memSeptAdd(G1 + P, 2, fresh())).toBe(TDX_OPERAND_INVALID);
    expect(td.memSeptAdd(2 ** 47, 3, fresh())).toBe(TDX_OPERAND_INVALID);
    // the operands before the page: level 0 with an owned page is OPERAND_INVALID
    const owned = fresh();
    expect(td.memPageAdd(P, 0, owned, new Uint8Array(P))).toBe(TDX_SUCCESS);
    expect(td.memSeptAdd(G1, 0, owned)).toBe(TDX_OPERAND_INVALID);
    expect(td.memSeptAdd(G1, 2, owned)).toBe(TDX_PAGE_METADATA_INCORRECT);
    // no level-2 table over 1 GiB yet: the walk to level 1 fails
    expect(td.memSeptAdd(G1, 1, fresh())).toBe(TDX_EPT_WALK_FAILED);
    expect(td.memSeptAdd(0, 1, fresh())).toBe(TDX_EPT_ENTRY_STATE_INCORRECT);
    const tables = td.sept!.tableCount;
    expect(td.memSeptAdd(G1, 2, fresh())).toBe(TDX_SUCCESS);
    expect(td.sept!.tableCount).toBe(tables + 1);
    expect(td.memSeptAdd(G1, 3, fresh())).toBe(TDX_OPERAND_INVALID);
  });
});

describe('TDH.MEM.PAGE.ADD', () => {
  it('level 0 only, an aligned gpa, during the build only; checks come before the page', () => {
    const { td, fresh } = built();
    expect(td.memPageAdd(0, 1, fresh(), new Uint8Array(P))).toBe(TDX_OPERAND_INVALID);
    expect(td.memPageAdd(0x800, 0, fresh(), new Uint8Array(P))).toBe(TDX_OPERAND_INVALID);
    expect(td.memPageAdd(G1, 0, fresh(), new Uint8Array(P))).toBe(TDX_EPT_WALK_FAILED);
    const page = fresh();
    expect(td.memPageAdd(0, 0, page, new Uint8Array(P).fill(7))).toBe(TDX_SUCCESS);
    expect(td.memPageAdd(0, 0, fresh(), new Uint8Array(P))).toBe(TDX_EPT_ENTRY_STATE_INCORRECT);
    expect(td.memPageAdd(P, 0, page, new Uint8Array(P))).toBe(TDX_PAGE_METADATA_INCORRECT);
    expect(td.leafStateAt(1).state).toBe(SEPT_FREE);
    expect(td.mrFinalize()).toBe(TDX_SUCCESS);
    expect(td.memPageAdd(P, 1, fresh(), new Uint8Array(P))).toBe(TDX_OP_STATE_INCORRECT);
  });
});

describe('TDH.MEM.PAGE.AUG', () => {
  it('levels 0 and 1 only (no 1G), the TD state first, then operands, walk, entry, page', () => {
    const { td, fresh } = runnable();
    expect(td.memPageAug(0, 2, fresh())).toBe(TDX_OPERAND_INVALID);
    expect(td.memPageAug(0, -1, fresh())).toBe(TDX_OPERAND_INVALID);
    expect(td.memPageAug(P, 1, fresh())).toBe(TDX_OPERAND_INVALID);
    expect(td.memPageAug(G1, 0, fresh())).toBe(TDX_EPT_WALK_FAILED);
    expect(td.memPageAug(0, 1, fresh())).toBe(TDX_EPT_ENTRY_STATE_INCORRECT);
    expect(td.memPageAug(0, 0, fresh())).toBe(TDX_EPT_ENTRY_STATE_INCORRECT);
    const owned = td.leafStateAt(0).pfn;
    expect(td.memPageAug(P, 0, owned)).toBe(TDX_PAGE_METADATA_INCORRECT);
    expect(td.leafStateAt(1).state).toBe(SEPT_FREE);
    const page = fresh();
    expect(td.memPageAug(P, 0, page)).toBe(TDX_SUCCESS);
    expect(td.leafStateAt(1)).toMatchObject({ state: SEPT_PENDING, pfn: page });
    // a 2M AUG where the level-1 entry is free
    expect(td.memSeptAdd(G1, 2, fresh())).toBe(TDX_SUCCESS);
    expect(td.memPageAug(G1, 1, fresh())).toBe(TDX_SUCCESS);
    expect(td.leafStateAt((G1 + 5 * P) / P)).toMatchObject({ state: SEPT_PENDING, level: 1 });
  });

  it('is allowed during the build as well (INITIALIZED)', () => {
    const { td, fresh } = built();
    expect(td.memPageAug(P, 0, fresh())).toBe(TDX_SUCCESS);
  });

  it('a busy module answers OPERAND_BUSY before any check, and changes nothing', () => {
    const { td, fresh } = runnable();
    td.injectOperandBusy(1, 'TDH.MEM.PAGE.AUG');
    expect(td.memPageAug(0, 2, fresh())).toBe(TDX_OPERAND_BUSY);
    expect(td.memPageAug(P, 0, fresh())).toBe(TDX_SUCCESS);
  });
});

describe('TDH.MEM.RANGE.BLOCK', () => {
  it('levels 0 .. root, aligned; refuses a FREE entry, reports an already blocked one', () => {
    const { td, fresh } = runnable();
    expect(td.memRangeBlock(0, -1)).toBe(TDX_OPERAND_INVALID);
    expect(td.memRangeBlock(0, 4)).toBe(TDX_OPERAND_INVALID);
    expect(td.memRangeBlock(0x800, 0)).toBe(TDX_OPERAND_INVALID);
    expect(td.memRangeBlock(G1, 0)).toBe(TDX_EPT_WALK_FAILED);
    expect(td.memRangeBlock(P, 0)).toBe(TDX_EPT_ENTRY_STATE_INCORRECT);
    expect(td.memRangeBlock(0, 0)).toBe(TDX_SUCCESS);
    expect(td.memRangeBlock(0, 0)).toBe(TDX_GPA_RANGE_ALREADY_BLOCKED);
    // a pending page blocks too, and then is already blocked
    expect(td.memPageAug(P, 0, fresh())).toBe(TDX_SUCCESS);
    expect(td.memRangeBlock(P, 0)).toBe(TDX_SUCCESS);
    expect(td.memRangeBlock(P, 0)).toBe(TDX_GPA_RANGE_ALREADY_BLOCKED);
    // a table entry (level 1 over gpa 0) blocks, once
    expect(td.memRangeBlock(0, 1)).toBe(TDX_SUCCESS);
    expect(td.memRangeBlock(0, 1)).toBe(TDX_GPA_RANGE_ALREADY_BLOCKED);
    // the root level is a valid level
    expect(td.memRangeBlock(0, 3)).toBe(TDX_SUCCESS);
  });

  it('is refused before the TD exists, and runs during the build', () => {
    const { td, fresh } = built();
    expect(td.memPageAdd(0, 0, fresh(), new Uint8Array(P))).toBe(TDX_SUCCESS);
    expect(td.memRangeBlock(0, 0)).toBe(TDX_SUCCESS);
    const phys = new PhysMem();
    const m = new TdxModule({ phys, nrHkids: 1 });
    const bare = m.createTd();
    // no TD yet: the lifecycle check comes before anything that needs the S-EPT
    const noTd = TDX_LIFECYCLE_STATE_INCORRECT;
    expect(bare.memRangeBlock(0, 0)).toBe(noTd);
    expect(bare.memTrack()).toBe(noTd);
    expect(bare.memPageRemove(0, 0)).toBe(noTd);
    expect(bare.memPageRemove(0, 9)).toBe(noTd);
    expect(bare.memSeptAdd(0, 1, 5)).toBe(noTd);
    expect(bare.memPageAdd(0, 0, 5, new Uint8Array(P))).toBe(noTd);
  });
});

describe('TDH.MEM.PAGE.REMOVE', () => {
  it('levels 0 .. 2, aligned; a leaf; while the TD runs only a blocked one; a refused call keeps the page', () => {
    const { td, fresh } = runnable();
    expect(td.memPageRemove(0, -1)).toBe(TDX_OPERAND_INVALID);
    expect(td.memPageRemove(0, 3)).toBe(TDX_OPERAND_INVALID);
    expect(td.memPageRemove(0x800, 0)).toBe(TDX_OPERAND_INVALID);
    expect(td.memPageRemove(G1, 0)).toBe(TDX_EPT_WALK_FAILED);
    expect(td.memPageRemove(P, 0)).toBe(TDX_EPT_ENTRY_STATE_INCORRECT);
    expect(td.memPageRemove(0, 1)).toBe(TDX_EPT_ENTRY_STATE_INCORRECT);
    expect(td.memPageRemove(0, 0)).toBe(TDX_GPA_RANGE_NOT_BLOCKED);
    expect(td.leafStateAt(0).state).toBe(SEPT_PRESENT);
    // a 2M leaf: level 2 is a valid level
    expect(td.memSeptAdd(G1, 2, fresh())).toBe(TDX_SUCCESS);
    expect(td.memPageAug(G1, 1, fresh())).toBe(TDX_SUCCESS);
    expect(td.memPageRemove(G1, 2)).toBe(TDX_EPT_ENTRY_STATE_INCORRECT);
    expect(td.memPageRemove(G1, 1)).toBe(TDX_GPA_RANGE_NOT_BLOCKED);
  });

  it('removes a blocked, tracked page: the entry is FREE and the table has one entry fewer', () => {
    const { td, fresh } = runnable();
    expect(td.memPageAug(P, 0, fresh())).toBe(TDX_SUCCESS);
    const t = td.sept!.table(0, 0)!;
    const used = t.used;
    expect(td.memRangeBlock(P, 0)).toBe(TDX_SUCCESS);
    expect(td.memTrack()).toBe(TDX_SUCCESS);
    expect(td.memPageRemove(P, 0)).toBe(TDX_SUCCESS);
    expect(td.leafStateAt(1).state).toBe(SEPT_FREE);
    expect(t.used).toBe(used - 1);
  });

  it('during the build a present page goes without blocking', () => {
    const { td, fresh } = built();
    expect(td.memPageAdd(0, 0, fresh(), new Uint8Array(P))).toBe(TDX_SUCCESS);
    expect(td.memPageRemove(0, 0)).toBe(TDX_SUCCESS);
  });
});

describe('TDH.MEM.TRACK', () => {
  it('is refused before the TD is initialized, runs during the build, and a busy module answers first', () => {
    const { td } = built();
    const e = td.epoch;
    expect(td.memTrack()).toBe(TDX_SUCCESS);
    expect(td.epoch).toBe(e + 1);
    td.injectOperandBusy(1, 'TDH.MEM.TRACK');
    expect(td.memTrack()).toBe(TDX_OPERAND_BUSY);
    expect(td.epoch).toBe(e + 1);
  });
});
