/**
 * The TDX module's rules outside the S-EPT SEAMCALLs' own checks (seamcall-checks.test.ts): the
 * HKID pool, the PAMT table, the TD lifecycle and vCPU SEAMCALLs, TLB tracking, busy injection,
 * the per-leaf call and failure counts and trace events, PAGE.DEMOTE, PAGE.RECLAIM, WBINVD,
 * MR.EXTEND and TDG.MEM.PAGE.ACCEPT. Found missing by mutation testing (docs/testing.md).
 */
import { describe, expect, it } from 'vitest';
import { PhysMem } from '@ccmem/core';
import {
  OPERAND_ID_RCX,
  TDX_EPT_ENTRY_STATE_INCORRECT,
  TDX_EPT_WALK_FAILED,
  TDX_FLUSHVP_NOT_DONE,
  TDX_GPA_RANGE_NOT_BLOCKED,
  TDX_LIFECYCLE_STATE_INCORRECT,
  TDX_OPERAND_BUSY,
  TDX_OPERAND_INVALID,
  TDX_OP_STATE_INCORRECT,
  TDX_PAGE_ALREADY_ACCEPTED,
  TDX_PAGE_METADATA_INCORRECT,
  TDX_PAGE_SIZE_MISMATCH,
  TDX_SUCCESS,
  TDX_TLB_TRACKING_NOT_DONE,
  TDX_VCPU_STATE_INCORRECT,
  tdxStatusName,
  tdxStatusValue,
} from './status.js';
import { SEPT_FREE, SEPT_NL_PRESENT, SEPT_PENDING, SEPT_PRESENT } from './sept.js';
import { PT_SEPT, PamtTable, SEAMCALL_LEAVES, TDG_EXIT_EPT_VIOLATION, TdxModule, type TdxTd } from './tdx-module.js';
import { initializedTd, keyedTd } from './testing/td-setup.js';

const P = 4096;
const M2 = 512 * P;
const G1 = 512 * M2;

/** INITIALIZED (build time), vCPU 0 and 1, tables down to level 1 over gpa 0 */
function built() {
  const t = initializedTd();
  for (let l = 3; l >= 1; l--) expect(t.td.memSeptAdd(0, l, t.fresh())).toBe(TDX_SUCCESS);
  return t;
}

function runnable() {
  const t = built();
  expect(t.td.memPageAdd(0, 0, t.fresh(), new Uint8Array(P))).toBe(TDX_SUCCESS);
  expect(t.td.mrFinalize()).toBe(TDX_SUCCESS);
  return t;
}

/**
 * the TD through TDH.VP.FLUSH of every initialized vCPU (as tdx_mmu_release_hkid() does),
 * TDH.MNG.VPFLUSHDONE, CACHE.WB and KEY.FREEID into TEARDOWN
 */
function teardown(td: TdxTd) {
  for (let id = 0; id < 8; id++) if (td.vcpuInitialized(id)) expect(td.vpFlush(id)).toBe(TDX_SUCCESS);
  expect(td.mngVpFlushDone()).toBe(TDX_SUCCESS);
  expect(td.phymemCacheWb()).toBe(TDX_SUCCESS);
  expect(td.mngKeyFreeid()).toBe(TDX_SUCCESS);
}

describe('HKID pool', () => {
  it('hands out KeyIDs 1..n, never the host key 0, and -1 when empty', () => {
    const m = new TdxModule({ phys: new PhysMem(), nrHkids: 2 });
    expect(m.freeHkids).toBe(2);
    expect(m.allocHkid()).toBe(1);
    expect(m.allocHkid()).toBe(2);
    expect(m.allocHkid()).toBe(-1);
    expect(m.freeHkids).toBe(0);
    // freeing KeyID 0 (the host's TME key) or -1 (no key) gives nothing back
    m.freeHkid(0);
    m.freeHkid(-1);
    expect(m.freeHkids).toBe(0);
    expect(m.allocHkid()).toBe(-1);
    m.freeHkid(2);
    expect(m.allocHkid()).toBe(2);
  });

  it('KEY.FREEID returns the TD\'s HKID to the pool and the TD has none', () => {
    const { module, td } = runnable();
    expect(td.hkid).toBe(1);
    expect(module.freeHkids).toBe(3);
    teardown(td);
    expect(td.hkid).toBe(-1);
    expect(module.freeHkids).toBe(4);
    expect(module.createTd().hkid).toBe(-1);
  });
});

describe('PAMT table', () => {
  it('holds levels -1 (S-EPT page) .. 120 for integer frames >= 0 and refuses the rest', () => {
    const p = new PamtTable();
    p.set(0, 0).set(1, PT_SEPT).set(2, 120);
    expect([p.get(0), p.get(1), p.get(2), p.get(3)]).toEqual([0, PT_SEPT, 120, undefined]);
    for (const [pfn, v] of [
      [-1, 0],
      [1.5, 0],
      [5, -2],
      [5, 121],
    ] as const) {
      expect(() => p.set(pfn, v)).toThrow(RangeError);
    }
    expect(p.size).toBe(3);
    expect(p.has(5)).toBe(false);
  });

  it('lists entries, keys and values by 2M block in first-use order', () => {
    const p = new PamtTable();
    p.set(1030, 1).set(7, 0).set(1025, PT_SEPT);
    expect([...p]).toEqual([
      [1025, PT_SEPT],
      [1030, 1],
      [7, 0],
    ]);
    expect([...p.keys()]).toEqual([1025, 1030, 7]);
    expect([...p.values()]).toEqual([PT_SEPT, 1, 0]);
    expect(p.delete(1030)).toBe(true);
    expect(p.delete(1030)).toBe(false);
    expect(p.delete(99999)).toBe(false);
    expect(p.size).toBe(2);
  });

  it('a lookup or a delete does not start a block: the order is that of the first set', () => {
    const p = new PamtTable();
    expect(p.has(2000)).toBe(false);
    expect(p.get(2500)).toBeUndefined();
    expect(p.delete(3000)).toBe(false);
    p.set(7, 0).set(2001, 0).set(2501, 0).set(3001, 0);
    expect([...p.keys()]).toEqual([7, 2001, 2501, 3001]);
  });
});

describe('TD lifecycle SEAMCALLs', () => {
  it('MNG.CREATE once, KEY.CONFIG after it, MNG.INIT once after both', () => {
    const phys = new PhysMem();
    const module = new TdxModule({ phys });
    const td = module.createTd();
    expect(td.hkidAssigned).toBe(false);
    expect(td.mngKeyConfig()).toBe(TDX_LIFECYCLE_STATE_INCORRECT);
    expect(td.mngInit({ gpaw: 48, attributes: 0 })).toBe(TDX_LIFECYCLE_STATE_INCORRECT);
    expect(td.mngCreate(module.allocHkid())).toBe(TDX_SUCCESS);
    expect(td.hkidAssigned).toBe(true);
    expect(td.mngCreate(5)).toBe(TDX_LIFECYCLE_STATE_INCORRECT);
    expect(td.hkid).toBe(1);
    expect(td.vpInit(0)).toBe(TDX_LIFECYCLE_STATE_INCORRECT);
    expect(td.mngInit({ gpaw: 48, attributes: 0 })).toBe(TDX_LIFECYCLE_STATE_INCORRECT);
    expect(td.sept).toBeNull();
    expect(td.mngKeyConfig()).toBe(TDX_SUCCESS);
    expect(td.mngKeyConfig()).toBe(TDX_LIFECYCLE_STATE_INCORRECT);
    expect(td.hkidAssigned).toBe(true);
    expect(td.mngInit({ gpaw: 52, attributes: 0 })).toBe(TDX_SUCCESS);
    // GPAW 52: 5-level S-EPT, the root's entries are level 4
    expect(td.sept!.rootLevel).toBe(4);
    const root = td.sept!;
    expect(td.mngInit({ gpaw: 48, attributes: 0 })).toBe(TDX_OP_STATE_INCORRECT);
    expect(td.sept).toBe(root);
    expect(td.gpaw).toBe(52);
    // every call counts, a refused one as a failure too
    const stats = td.callStats();
    expect(stats['TDH.MNG.CREATE']).toEqual({ calls: 2, failures: 1 });
    expect(stats['TDH.MNG.KEY.CONFIG']).toEqual({ calls: 3, failures: 2 });
    expect(stats['TDH.MNG.INIT']).toEqual({ calls: 4, failures: 3 });
    expect(stats['TDH.VP.CREATE']).toEqual({ calls: 1, failures: 1 });
    expect(td.callCount('TDH.VP.INIT')).toBe(0);
  });

  it('GPAW 48: 4-level S-EPT, private GPAs below 2^47', () => {
    const { td, fresh } = built();
    expect(td.sept!.rootLevel).toBe(3);
    expect(td.memPageAug(2 ** 47 - P, 0, fresh())).toBe(TDX_EPT_WALK_FAILED);
    expect(td.memPageAug(2 ** 47, 0, fresh())).toBe(TDX_OPERAND_INVALID);
    expect(td.memPageAug(-P, 0, fresh())).toBe(TDX_OPERAND_INVALID);
    expect(td.memRangeBlock(-M2, 1)).toBe(TDX_OPERAND_INVALID);
  });

  it('VPFLUSHDONE → BLOCKED (HKID still assigned) → CACHE.WB → KEY.FREEID → TEARDOWN, each in order', () => {
    const { td } = runnable();
    expect(td.phymemCacheWb()).toBe(TDX_LIFECYCLE_STATE_INCORRECT);
    expect(td.mngKeyFreeid()).toBe(TDX_LIFECYCLE_STATE_INCORRECT);
    expect(td.vpEnter(0)).toBe(TDX_SUCCESS);
    expect(td.mngVpFlushDone()).toBe(TDX_FLUSHVP_NOT_DONE);
    expect(td.lifecycle).toBe('KEYS_CONFIGURED');
    expect(td.vpFlush(0)).toBe(TDX_SUCCESS);
    // vCPU 1 never entered, but TDH.VP.INIT associated it: it needs its flush too
    expect(td.mngVpFlushDone()).toBe(TDX_FLUSHVP_NOT_DONE);
    expect(td.vpFlush(1)).toBe(TDX_SUCCESS);
    expect(td.mngVpFlushDone()).toBe(TDX_SUCCESS);
    expect(td.lifecycle).toBe('BLOCKED');
    expect(td.hkidAssigned).toBe(true);
    expect(td.mngVpFlushDone()).toBe(TDX_LIFECYCLE_STATE_INCORRECT);
    expect(td.mngKeyFreeid()).toBe(TDX_LIFECYCLE_STATE_INCORRECT);
    expect(td.phymemCacheWb()).toBe(TDX_SUCCESS);
    expect(td.mngKeyFreeid()).toBe(TDX_SUCCESS);
    expect(td.lifecycle).toBe('TEARDOWN');
    expect(td.hkidAssigned).toBe(false);
    expect(td.phymemCacheWb()).toBe(TDX_LIFECYCLE_STATE_INCORRECT);
    // the caches were written back once, but the key is gone: no second FREEID
    expect(td.mngKeyFreeid()).toBe(TDX_LIFECYCLE_STATE_INCORRECT);
  });

  it('VPFLUSHDONE looks at every vCPU, also past a vCPU id never created', () => {
    const { td } = keyedTd();
    expect(td.mngInit({ gpaw: 48, attributes: 0 })).toBe(TDX_SUCCESS);
    expect(td.vpInit(2)).toBe(TDX_SUCCESS);
    expect(td.mrFinalize()).toBe(TDX_SUCCESS);
    expect(td.vpEnter(2)).toBe(TDX_SUCCESS);
    expect(td.mngVpFlushDone()).toBe(TDX_FLUSHVP_NOT_DONE);
    expect(td.vpExitAll()).toBe(1);
    // out of the TD but still associated until TDH.VP.FLUSH
    expect(td.mngVpFlushDone()).toBe(TDX_FLUSHVP_NOT_DONE);
    expect(td.vpFlush(2)).toBe(TDX_SUCCESS);
    expect(td.mngVpFlushDone()).toBe(TDX_SUCCESS);
  });

  it('a TDH.VP.FLUSH refused with OPERAND_BUSY leaves the vCPU associated: VPFLUSHDONE is TDX_FLUSHVP_NOT_DONE', () => {
    const { td } = runnable();
    expect(td.vpEnter(0)).toBe(TDX_SUCCESS);
    td.vpExitAll();
    td.injectOperandBusy(1, 'TDH.VP.FLUSH');
    expect(td.vpFlush(0)).toBe(TDX_OPERAND_BUSY);
    expect(td.mngVpFlushDone()).toBe(TDX_FLUSHVP_NOT_DONE);
    expect(td.lifecycle).toBe('KEYS_CONFIGURED');
    expect(td.vpFlush(0)).toBe(TDX_SUCCESS);
    expect(td.mngVpFlushDone()).toBe(TDX_FLUSHVP_NOT_DONE);
    // vCPU 1 never entered, but is associated since TDH.VP.INIT
    td.injectOperandBusy(1, 'TDH.VP.FLUSH');
    expect(td.vpFlush(1)).toBe(TDX_OPERAND_BUSY);
    expect(td.mngVpFlushDone()).toBe(TDX_FLUSHVP_NOT_DONE);
    expect(td.vpFlush(1)).toBe(TDX_SUCCESS);
    expect(td.mngVpFlushDone()).toBe(TDX_SUCCESS);
  });

  it('each teardown SEAMCALL answers OPERAND_BUSY first when the module is busy', () => {
    const { td } = runnable();
    // vCPU 1 is associated since TDH.VP.INIT; the loop flushes vCPU 0
    expect(td.vpFlush(1)).toBe(TDX_SUCCESS);
    for (const leaf of ['TDH.VP.FLUSH', 'TDH.MNG.VPFLUSHDONE', 'TDH.PHYMEM.CACHE.WB', 'TDH.MNG.KEY.FREEID'] as const) {
      td.injectOperandBusy(1, leaf);
      const r = leaf === 'TDH.VP.FLUSH' ? td.vpFlush(0) : leaf === 'TDH.MNG.VPFLUSHDONE' ? td.mngVpFlushDone() : leaf === 'TDH.PHYMEM.CACHE.WB' ? td.phymemCacheWb() : td.mngKeyFreeid();
      expect(r).toBe(TDX_OPERAND_BUSY);
      expect(td.lastStatus64()).toBe(tdxStatusValue(TDX_OPERAND_BUSY, OPERAND_ID_RCX));
      const again = leaf === 'TDH.VP.FLUSH' ? td.vpFlush(0) : leaf === 'TDH.MNG.VPFLUSHDONE' ? td.mngVpFlushDone() : leaf === 'TDH.PHYMEM.CACHE.WB' ? td.phymemCacheWb() : td.mngKeyFreeid();
      expect(again).toBe(TDX_SUCCESS);
    }
    expect(td.lifecycle).toBe('TEARDOWN');
  });
});

describe('vCPU SEAMCALLs', () => {
  it('TDH.VP.INIT associates the vCPU (associate_vcpu_initial()): VPFLUSHDONE waits for its flush, entered or not', () => {
    const { td } = keyedTd();
    expect(td.mngInit({ gpaw: 48, attributes: 0 })).toBe(TDX_SUCCESS);
    expect(td.vpInit(3)).toBe(TDX_SUCCESS);
    expect(td.mrFinalize()).toBe(TDX_SUCCESS);
    expect(td.mngVpFlushDone()).toBe(TDX_FLUSHVP_NOT_DONE);
    expect(td.lifecycle).toBe('KEYS_CONFIGURED');
    expect(td.vpFlush(3)).toBe(TDX_SUCCESS);
    expect(td.mngVpFlushDone()).toBe(TDX_SUCCESS);
    // a VP.CREATE that fails (state) associates nothing
    const k = keyedTd();
    expect(k.td.vpInit(0)).toBe(TDX_OP_STATE_INCORRECT);
    expect(k.td.mngVpFlushDone()).toBe(TDX_SUCCESS);
  });

  it('VP.INIT once per vCPU, during the build only', () => {
    const { td } = keyedTd();
    expect(td.vpInit(0)).toBe(TDX_OP_STATE_INCORRECT);
    expect(td.vcpuInitialized(0)).toBe(false);
    expect(td.mngInit({ gpaw: 48, attributes: 0 })).toBe(TDX_SUCCESS);
    expect(td.vpInit(0)).toBe(TDX_SUCCESS);
    expect(td.vcpuInitialized(0)).toBe(true);
    expect(td.vpInit(0)).toBe(TDX_VCPU_STATE_INCORRECT);
    expect(td.mrFinalize()).toBe(TDX_SUCCESS);
    expect(td.vpInit(1)).toBe(TDX_OP_STATE_INCORRECT);
    expect(td.vcpuInitialized(1)).toBe(false);
    // TDH.VP.CREATE for each call, TDH.VP.INIT only after a successful CREATE
    expect(td.callStats()['TDH.VP.CREATE']).toEqual({ calls: 4, failures: 3 });
    expect(td.callStats()['TDH.VP.INIT']).toEqual({ calls: 1, failures: 0 });
  });

  it('VP.ENTER needs configured keys, a RUNNABLE TD and an initialized vCPU; it samples the epoch once', () => {
    const { td } = built();
    expect(td.vpEnter(0)).toBe(TDX_OP_STATE_INCORRECT);
    expect(td.mrFinalize()).toBe(TDX_SUCCESS);
    expect(td.vpEnter(7)).toBe(TDX_VCPU_STATE_INCORRECT);
    expect(td.vcpuInGuest(7)).toBe(false);
    const e = td.epoch;
    expect(td.vpEnter(0)).toBe(TDX_SUCCESS);
    expect(td.vpEnter(0)).toBe(TDX_SUCCESS);
    expect(td.vcpuInGuest(0)).toBe(true);
    expect(td.refcount[e & 1]).toBe(1);
    expect(td.callCount('TDH.VP.ENTER')).toBe(4);
    // a vCPU that is not inside leaves nothing to count down
    td.vpExit(1);
    td.vpExit(9);
    expect(td.refcount[e & 1]).toBe(1);
    td.vpExit(0);
    expect(td.refcount[e & 1]).toBe(0);
    expect(td.vcpuInGuest(0)).toBe(false);
    // the TD exit keeps the vCPU associated: VPFLUSHDONE waits for its TDH.VP.FLUSH
    expect(td.mngVpFlushDone()).toBe(TDX_FLUSHVP_NOT_DONE);
    expect(td.vpFlush(0)).toBe(TDX_SUCCESS);
    teardown(td);
    expect(td.vpEnter(0)).toBe(TDX_LIFECYCLE_STATE_INCORRECT);
  });

  it('vpExitAll counts the vCPUs that were inside, over a sparse vCPU list', () => {
    const { td } = keyedTd();
    expect(td.mngInit({ gpaw: 48, attributes: 0 })).toBe(TDX_SUCCESS);
    for (const id of [0, 2, 3]) expect(td.vpInit(id)).toBe(TDX_SUCCESS);
    expect(td.mrFinalize()).toBe(TDX_SUCCESS);
    expect(td.vpExitAll()).toBe(0);
    td.vpEnter(0);
    td.vpEnter(3);
    expect(td.vpExitAll()).toBe(2);
    expect(td.refcount[td.epoch & 1]).toBe(0);
  });

  it('VP.FLUSH needs an initialized vCPU and takes it out of TD context', () => {
    const { td } = runnable();
    expect(td.vpFlush(5)).toBe(TDX_VCPU_STATE_INCORRECT);
    expect(td.vpEnter(1)).toBe(TDX_SUCCESS);
    expect(td.vpFlush(1)).toBe(TDX_SUCCESS);
    expect(td.vcpuInGuest(1)).toBe(false);
    expect(td.refcount[td.epoch & 1]).toBe(0);
    expect(td.vpFlush(1)).toBe(TDX_SUCCESS);
    expect(td.refcount[td.epoch & 1]).toBe(0);
  });
});

describe('TLB tracking', () => {
  it('a page blocked two epochs ago is tracked whatever the refcounts; the last epoch needs its vCPUs out', () => {
    const { td, fresh } = runnable();
    expect(td.memPageAug(P, 0, fresh())).toBe(TDX_SUCCESS);
    expect(td.memPageAug(2 * P, 0, fresh())).toBe(TDX_SUCCESS);
    expect(td.memRangeBlock(P, 0)).toBe(TDX_SUCCESS);
    expect(td.memRangeBlock(2 * P, 0)).toBe(TDX_SUCCESS);
    expect(td.memPageRemove(P, 0)).toBe(TDX_TLB_TRACKING_NOT_DONE);
    expect(td.memTrack()).toBe(TDX_SUCCESS);
    expect(td.memTrack()).toBe(TDX_SUCCESS);
    // a vCPU in the current epoch does not hold back a page blocked two epochs ago
    expect(td.vpEnter(0)).toBe(TDX_SUCCESS);
    expect(td.memPageRemove(P, 0)).toBe(TDX_SUCCESS);
    expect(td.isTlbTracked(td.epoch - 2)).toBe(true);
    expect(td.isTlbTracked(td.epoch - 1)).toBe(true);
    expect(td.isTlbTracked(td.epoch)).toBe(false);
  });
});

describe('busy injection', () => {
  it('without a leaf the next SEAMCALL of any leaf is busy; with one, only that leaf', () => {
    const { td } = runnable();
    td.injectOperandBusy(2);
    expect(td.pendingBusyInjections).toBe(2);
    expect(td.memTrack()).toBe(TDX_OPERAND_BUSY);
    expect(td.phymemPageWbinvd(5)).toBe(TDX_OPERAND_BUSY);
    expect(td.pendingBusyInjections).toBe(0);
    expect(td.memTrack()).toBe(TDX_SUCCESS);
    // leaf 0 of the table (PAGE.ADD) is a leaf like any other
    td.injectOperandBusy(1, 'TDH.MEM.PAGE.ADD');
    expect(td.memTrack()).toBe(TDX_SUCCESS);
    expect(td.pendingBusyInjections).toBe(1);
    td.injectOperandBusy(1, 'TDH.MEM.SEPT.ADD');
    expect(td.memTrack()).toBe(TDX_SUCCESS);
    expect(td.memRangeBlock(0, 0)).toBe(TDX_SUCCESS);
    expect(td.memSeptAdd(G1, 2, 99999)).toBe(TDX_OPERAND_BUSY);
  });

  it('`after` lets that many matching SEAMCALLs run first; other leaves do not count; a new injection replaces the old', () => {
    const { td } = runnable();
    td.injectOperandBusy(2, 'TDH.MEM.TRACK', 2);
    expect(td.memRangeBlock(0, 0)).toBe(TDX_SUCCESS);
    expect(td.memTrack()).toBe(TDX_SUCCESS);
    expect(td.memTrack()).toBe(TDX_SUCCESS);
    expect(td.pendingBusyInjections).toBe(2);
    expect(td.memTrack()).toBe(TDX_OPERAND_BUSY);
    expect(td.memTrack()).toBe(TDX_OPERAND_BUSY);
    expect(td.memTrack()).toBe(TDX_SUCCESS);
    td.injectOperandBusy(1, 'TDH.MEM.TRACK', 5);
    td.injectOperandBusy(1, 'TDH.MEM.TRACK');
    expect(td.memTrack()).toBe(TDX_OPERAND_BUSY);
    expect(td.pendingBusyInjections).toBe(0);
  });
});

describe('call counts, failure counts and trace events', () => {
  it('counts every SEAMCALL and every failure per leaf', () => {
    const { td, fresh } = runnable();
    expect(td.memPageAdd(P, 0, fresh(), new Uint8Array(P))).toBe(TDX_OP_STATE_INCORRECT);
    expect(td.tdgMemPageAccept(0, 0, 0)).toBe(TDX_PAGE_ALREADY_ACCEPTED);
    expect(td.callStats()).toEqual({
      'TDH.MNG.CREATE': { calls: 1, failures: 0 },
      'TDH.MNG.KEY.CONFIG': { calls: 1, failures: 0 },
      'TDH.MNG.INIT': { calls: 1, failures: 0 },
      'TDH.VP.CREATE': { calls: 2, failures: 0 },
      'TDH.VP.INIT': { calls: 2, failures: 0 },
      'TDH.MEM.PAGE.ADD': { calls: 2, failures: 1 },
      'TDH.MEM.SEPT.ADD': { calls: 3, failures: 0 },
      'TDH.MR.FINALIZE': { calls: 1, failures: 0 },
      'TDH.VP.ENTER': { calls: 1, failures: 0 },
      'TDG.MEM.PAGE.ACCEPT': { calls: 1, failures: 1 },
    });
    const all = td.allCallCounts();
    expect(Object.keys(all)).toEqual(Object.keys(SEAMCALL_LEAVES));
    expect(all['TDH.MEM.SEPT.ADD']).toBe(3);
    expect(all['TDH.MEM.TRACK']).toBe(0);
    expect(td.callCount('TDH.MR.FINALIZE')).toBe(1);
  });

  it('emits one event per SEAMCALL with the kernel wrapper\'s name, unless the tracer is disabled', () => {
    const events: string[] = [];
    const tracer = { enabled: true, emit: (name: string, f: Readonly<Record<string, unknown>>) => events.push(`${name} ${String(f.gpa)} ${String(f.level)} ${String(f.status)}`) };
    const phys = new PhysMem();
    const module = new TdxModule({ phys, tracer });
    expect(module.tracer).toBe(tracer);
    const td = module.createTd();
    td.mngCreate(module.allocHkid());
    td.mngKeyConfig();
    td.mngInit({ gpaw: 48, attributes: 0 });
    td.vpInit(0);
    expect(td.mrFinalize()).toBe(TDX_SUCCESS);
    expect(td.tdgMemPageAccept(0, 0, 0)).toBe(TDG_EXIT_EPT_VIOLATION);
    expect(td.phymemPageWbinvd(3)).toBe(TDX_SUCCESS);
    expect(td.vpExitAll()).toBe(1);
    teardown(td);
    expect(td.phymemPageReclaim(9)).toBe(TDX_PAGE_METADATA_INCORRECT);
    expect(events).toEqual([
      'tdh_mr_finalize 0 0 TDX_SUCCESS',
      `tdg_mem_page_accept 0 0 ${tdxStatusName(TDG_EXIT_EPT_VIOLATION)}`,
      `tdh_phymem_page_wbinvd ${3 * P} 0 TDX_SUCCESS`,
      'tdh_vp_flush 0 0 TDX_SUCCESS',
      'tdh_mng_vpflushdone 0 0 TDX_SUCCESS',
      'tdh_phymem_cache_wb 0 0 TDX_SUCCESS',
      'tdh_mng_key_freeid 0 0 TDX_SUCCESS',
      `tdh_phymem_page_reclaim ${9 * P} 0 TDX_PAGE_METADATA_INCORRECT`,
    ]);
    const off = new TdxModule({ phys, tracer: { enabled: false, emit: () => events.push('disabled') } });
    const td2 = off.createTd();
    td2.phymemPageWbinvd(1);
    expect(events).not.toContain('disabled');
  });

  it('the EPT-violation exit of TDG.MEM.PAGE.ACCEPT is no TDX status code', () => {
    expect(TDG_EXIT_EPT_VIOLATION).toBeLessThan(0);
    expect(() => tdxStatusValue(TDG_EXIT_EPT_VIOLATION)).toThrow(RangeError);
  });
});

describe('walk results as extended error information', () => {
  it('the level and state of the entry the walk reached, or where it stopped', () => {
    const { td, fresh } = runnable();
    expect(td.memPageAug(0, 0, fresh())).toBe(TDX_EPT_ENTRY_STATE_INCORRECT);
    expect([td.lastEntryLevel, td.lastEntryState]).toEqual([0, SEPT_PRESENT]);
    expect(td.memPageAug(0, 1, fresh())).toBe(TDX_EPT_ENTRY_STATE_INCORRECT);
    expect([td.lastEntryLevel, td.lastEntryState]).toEqual([1, SEPT_NL_PRESENT]);
    expect(td.memPageAug(G1, 0, fresh())).toBe(TDX_EPT_WALK_FAILED);
    expect([td.lastEntryLevel, td.lastEntryState]).toEqual([2, SEPT_FREE]);
  });
});

describe('TDH.MEM.PAGE.DEMOTE', () => {
  /** built, plus a 2M PENDING leaf (AUG) at gpa 2M and another at 4M */
  function with2M() {
    const t = built();
    const a = t.phys.allocContiguous(512);
    const b = t.phys.allocContiguous(512);
    expect(t.td.memPageAug(M2, 1, a)).toBe(TDX_SUCCESS);
    expect(t.td.memPageAug(2 * M2, 1, b)).toBe(TDX_SUCCESS);
    return { ...t, a, b };
  }

  it('levels 1 and 2, aligned, a walk to the level, a leaf, then the new table page', () => {
    const { td, fresh, a } = with2M();
    td.injectOperandBusy(1, 'TDH.MEM.PAGE.DEMOTE');
    expect(td.memPageDemote(M2, 1, fresh())).toBe(TDX_OPERAND_BUSY);
    expect(td.memPageDemote(M2, 0, fresh())).toBe(TDX_OPERAND_INVALID);
    expect(td.memPageDemote(0, 3, fresh())).toBe(TDX_OPERAND_INVALID);
    expect(td.memPageDemote(M2 + P, 1, fresh())).toBe(TDX_OPERAND_INVALID);
    expect(td.memPageDemote(-M2, 1, fresh())).toBe(TDX_OPERAND_INVALID);
    // level 2 is a valid level: the 1G entry over gpa 0 links a table, which is no leaf
    expect(td.memPageDemote(0, 2, fresh())).toBe(TDX_EPT_ENTRY_STATE_INCORRECT);
    expect(td.memPageDemote(G1, 1, fresh())).toBe(TDX_EPT_WALK_FAILED);
    expect(td.memPageDemote(3 * M2, 1, fresh())).toBe(TDX_EPT_ENTRY_STATE_INCORRECT);
    expect(td.memPageDemote(M2, 1, a)).toBe(TDX_PAGE_METADATA_INCORRECT);
    expect(td.leafStateAt(512)).toEqual({ state: SEPT_PENDING, pfn: a, level: 1 });
    expect(td.callStats()['TDH.MEM.PAGE.DEMOTE']).toEqual({ calls: 9, failures: 9 });
  });

  it('during the build a PENDING 2M leaf splits into 512 PENDING 4K leaves without blocking', () => {
    const { td, fresh, a, b } = with2M();
    expect(b).toBe(a + 512);
    const parent = td.sept!.table(1, 512)!;
    const used = parent.used;
    const pamt = td.pamt.size;
    const spt = fresh();
    expect(td.memPageDemote(M2, 1, spt)).toBe(TDX_SUCCESS);
    expect(parent.used).toBe(used);
    expect(td.leafStateAt(512 + 7)).toEqual({ state: SEPT_PENDING, pfn: a + 7, level: 0 });
    expect(td.leafStateAt(1023)).toEqual({ state: SEPT_PENDING, pfn: a + 511, level: 0 });
    expect(td.sept!.table(0, 512)!.used).toBe(512);
    // PAMT: the table page, and each 4K page at level 0 instead of the 2M head
    expect(td.pamt.size).toBe(pamt + 512);
    expect(td.pamt.get(spt)).toBe(PT_SEPT);
    expect(td.pamt.get(a)).toBe(0);
    expect(td.pamt.get(a + 7)).toBe(0);
    expect(td.pamt.get(a + 511)).toBe(0);
    // the next 2M leaf's head frame (a + 512) keeps its level
    expect(td.pamt.get(b)).toBe(1);
    expect(td.leafPfn(M2 + 7 * P, 0)).toBe(a + 7);
  });

  it('while the TD runs the leaf must be blocked and tracked; an accepted leaf splits PRESENT', () => {
    const { td, fresh, a, b } = with2M();
    expect(td.mrFinalize()).toBe(TDX_SUCCESS);
    expect(td.tdgMemPageAccept(0, M2, 1)).toBe(TDX_SUCCESS);
    expect(td.memPageDemote(M2, 1, fresh())).toBe(TDX_GPA_RANGE_NOT_BLOCKED);
    expect(td.memRangeBlock(M2, 1)).toBe(TDX_SUCCESS);
    expect(td.memPageDemote(M2, 1, fresh())).toBe(TDX_TLB_TRACKING_NOT_DONE);
    expect(td.memTrack()).toBe(TDX_SUCCESS);
    // vCPU 0 entered for the ACCEPT in the blocking epoch: tracked only once it has left
    expect(td.memPageDemote(M2, 1, fresh())).toBe(TDX_TLB_TRACKING_NOT_DONE);
    expect(td.vpExitAll()).toBe(1);
    expect(td.memPageDemote(M2, 1, fresh())).toBe(TDX_SUCCESS);
    expect(td.leafStateAt(512 + 3)).toEqual({ state: SEPT_PRESENT, pfn: a + 3, level: 0 });
    // a PENDING leaf, blocked: its children are PENDING
    expect(td.memRangeBlock(2 * M2, 1)).toBe(TDX_SUCCESS);
    expect(td.memTrack()).toBe(TDX_SUCCESS);
    expect(td.memPageDemote(2 * M2, 1, fresh())).toBe(TDX_SUCCESS);
    expect(td.leafStateAt(1024 + 3)).toEqual({ state: SEPT_PENDING, pfn: b + 3, level: 0 });
  });
});

describe('TDH.PHYMEM.PAGE.RECLAIM and TDH.PHYMEM.PAGE.WBINVD', () => {
  it('RECLAIM only in TEARDOWN: an S-EPT page, a private page, else PAGE_METADATA_INCORRECT', () => {
    const { td, fresh } = runnable();
    const page = td.leafStateAt(0).pfn;
    const l0 = td.sept!.table(0, 0)!;
    td.injectOperandBusy(1, 'TDH.PHYMEM.PAGE.RECLAIM');
    expect(td.phymemPageReclaim(page)).toBe(TDX_OPERAND_BUSY);
    expect(td.phymemPageReclaim(page)).toBe(TDX_LIFECYCLE_STATE_INCORRECT);
    expect(td.lastOperandId).toBe(0);
    teardown(td);
    expect(td.phymemPageReclaim(page)).toBe(TDX_SUCCESS);
    expect(td.pamt.has(page)).toBe(false);
    expect(td.phymemPageReclaim(page)).toBe(TDX_PAGE_METADATA_INCORRECT);
    expect(td.phymemPageReclaim(fresh())).toBe(TDX_PAGE_METADATA_INCORRECT);
    const tables = td.sept!.tableCount;
    expect(td.phymemPageReclaim(l0.hpa)).toBe(TDX_SUCCESS);
    expect(td.sept!.tableCount).toBe(tables - 1);
    expect(td.pamt.has(l0.hpa)).toBe(false);
  });

  it('RECLAIM of a TD that never had an S-EPT finds nothing to take back', () => {
    const { td } = keyedTd();
    teardown(td);
    expect(td.phymemPageReclaim(5)).toBe(TDX_PAGE_METADATA_INCORRECT);
  });

  it('WBINVD needs the HKID; a busy module answers first; the trace carries the page address', () => {
    const { td, module } = runnable();
    const gpas: unknown[] = [];
    module.tracer = { emit: (name, f) => name === 'tdh_phymem_page_wbinvd' && gpas.push(f.gpa) };
    td.injectOperandBusy(1, 'TDH.PHYMEM.PAGE.WBINVD');
    expect(td.phymemPageWbinvd(5)).toBe(TDX_OPERAND_BUSY);
    expect(td.phymemPageWbinvd(5)).toBe(TDX_SUCCESS);
    teardown(td);
    expect(td.phymemPageWbinvd(6)).toBe(TDX_OPERAND_INVALID);
    expect(gpas).toEqual([5 * P, 5 * P, 6 * P]);
  });
});

describe('leafPfn and leafStateAt', () => {
  it('the page of a leaf at (gpa, level), -1 for a table link, a FREE entry or a missing table', () => {
    const { td, fresh } = runnable();
    const page = td.leafStateAt(0).pfn;
    expect(td.leafPfn(0, 0)).toBe(page);
    expect(td.leafPfn(0, 1)).toBe(-1);
    expect(td.leafPfn(P, 0)).toBe(-1);
    expect(td.leafPfn(G1, 0)).toBe(-1);
    const p2 = fresh();
    expect(td.memPageAug(5 * P, 0, p2)).toBe(TDX_SUCCESS);
    expect(td.leafPfn(5 * P, 0)).toBe(p2);
    const bare = new TdxModule({ phys: new PhysMem() }).createTd();
    expect(bare.leafPfn(0, 0)).toBe(-1);
    expect(bare.leafStateAt(3)).toEqual({ state: SEPT_FREE, pfn: 0, level: 0 });
  });

  it('a FREE entry above the leaf level has no page; inside a 2M leaf the page is the head plus the offset', () => {
    const { td, phys } = built();
    // gfn 517: the level-1 entry over it is FREE (no level-0 table)
    expect(td.leafStateAt(517)).toEqual({ state: SEPT_FREE, pfn: 0, level: 1 });
    const a = phys.allocContiguous(512);
    expect(td.memPageAug(M2, 1, a)).toBe(TDX_SUCCESS);
    expect(td.leafStateAt(517)).toEqual({ state: SEPT_PENDING, pfn: a + 5, level: 1 });
  });
});

describe('MR.EXTEND and TDG.MEM.PAGE.ACCEPT', () => {
  it('MR.EXTEND only during the build', () => {
    const { td } = runnable();
    expect(td.mrExtend(0)).toBe(TDX_OP_STATE_INCORRECT);
  });

  it('ACCEPT needs an initialized TD, RUNNABLE, and an initialized vCPU; levels 0 .. 2', () => {
    const bare = new TdxModule({ phys: new PhysMem() }).createTd();
    expect(bare.tdgMemPageAccept(0, 0, 0)).toBe(TDX_OP_STATE_INCORRECT);
    const { td, fresh } = built();
    expect(td.tdgMemPageAccept(0, 0, 0)).toBe(TDX_OP_STATE_INCORRECT);
    expect(td.memPageAdd(0, 0, fresh(), new Uint8Array(P))).toBe(TDX_SUCCESS);
    expect(td.mrFinalize()).toBe(TDX_SUCCESS);
    expect(td.tdgMemPageAccept(9, 0, 0)).toBe(TDX_OP_STATE_INCORRECT);
    expect(td.tdgMemPageAccept(0, 0, -1)).toBe(TDX_OPERAND_INVALID);
    expect(td.tdgMemPageAccept(0, 0, 3)).toBe(TDX_OPERAND_INVALID);
    // level 2 is valid: the 1G entry over gpa 0 links a table (case 3: size mismatch)
    expect(td.tdgMemPageAccept(0, 0, 2)).toBe(TDX_PAGE_SIZE_MISMATCH);
    expect(td.lastOperandId).toBe(2);
    expect(td.callCount('TDG.MEM.PAGE.ACCEPT')).toBe(5);
    expect(td.callStats()['TDG.MEM.PAGE.ACCEPT']).toEqual({ calls: 5, failures: 5 });
  });
});
