import { describe, expect, it } from 'vitest';
import {
  SEPT_ALLOWED,
  SEPT_ALLOWED_STATES,
  SEPT_FREE,
  SEPT_NL_BLOCKED,
  SEPT_NL_PRESENT,
  SEPT_PENDING,
  SEPT_PRESENT,
  SecureEpt,
  septStateName,
} from './sept.js';

describe('SecureEpt', () => {
  it('walks only through linked tables and reports where the walk stopped', () => {
    const s = new SecureEpt(4, 1000);
    expect(s.rootLevel).toBe(3);
    const gfn = 0x12345;
    expect(s.walk(0, gfn)).toBeUndefined();
    expect(s.walkLevel).toBe(3);
    expect(s.walkState).toBe(SEPT_FREE);
    const l3 = s.walk(3, gfn)!;
    const l2 = s.linkTable(l3, 3, gfn, 1001);
    const l1 = s.linkTable(l2, 2, gfn, 1002);
    expect(s.walk(0, gfn)).toBeUndefined();
    expect(s.walkLevel).toBe(1);
    const l0 = s.linkTable(l1, 1, gfn, 1003);
    expect(s.walk(0, gfn)).toBe(l0);
    expect(l0.baseGfn).toBe(Math.floor(gfn / 512) * 512);
    expect(l1.state[SecureEpt.index(1, gfn)]).toBe(SEPT_NL_PRESENT);
    expect(s.tableCount).toBe(4);
    expect(s.tableByHpa(1003)).toBe(l0);
    l0.state[SecureEpt.index(0, gfn)] = SEPT_PENDING;
    l0.pfn[SecureEpt.index(0, gfn)] = 77;
    l0.used++;
    const leaves: number[][] = [];
    s.forEachLeaf((g, l, st, pfn) => leaves.push([g, l, st, pfn]));
    expect(leaves).toEqual([[gfn, 0, SEPT_PENDING, 77]]);
    expect(s.lookup(gfn)).toEqual({ level: 0, state: SEPT_PENDING, pfn: 77 });
    s.dropTable(l0);
    expect(s.walk(0, gfn)).toBeUndefined();
  });
  it('keeps the allowed-state table as data and as byte maps that agree', () => {
    for (const [fn, states] of Object.entries(SEPT_ALLOWED_STATES)) {
      const m = SEPT_ALLOWED[fn as keyof typeof SEPT_ALLOWED];
      for (let s = 0; s < 256; s++) expect(m[s] === 1).toBe((states as readonly number[]).includes(s));
    }
    expect(SEPT_ALLOWED['TDH.MEM.PAGE.AUG'][SEPT_PRESENT]).toBe(0);
    expect(SEPT_ALLOWED['TDG.MEM.PAGE.ACCEPT'][SEPT_PENDING]).toBe(1);
  });
});

describe('SecureEpt.lookup after a table page is reclaimed', () => {
  it('reports the range below a reclaimed table as FREE instead of failing', () => {
    const s = new SecureEpt(4, 1000);
    const gfn = 0x12345;
    const l2 = s.linkTable(s.walk(3, gfn)!, 3, gfn, 1001);
    const l1 = s.linkTable(l2, 2, gfn, 1002);
    const l0 = s.linkTable(l1, 1, gfn, 1003);
    expect(s.lookup(gfn).state).toBe(SEPT_FREE);
    s.dropTable(l0);
    expect(s.lookup(gfn)).toEqual({ level: 0, state: SEPT_FREE, pfn: 0 });
  });
});

describe('S-EPT state names', () => {
  it('name the architectural states as the TDX module ABI does, and an unknown state by number', () => {
    expect([0, 1, 2, 3, 4, 0x81, 0x84].map(septStateName)).toEqual(['FREE', 'BLOCKED', 'PENDING', 'PENDING_BLOCKED', 'PRESENT', 'NL_BLOCKED', 'NL_PRESENT']);
    expect(septStateName(9)).toBe('STATE_9');
  });
});

describe('SecureEpt tables', () => {
  it('linkTable counts the parent entry once; forEachTable visits every table', () => {
    const s = new SecureEpt(4, 1000);
    const root = s.table(3, 0)!;
    const l2 = s.linkTable(root, 3, 0, 1001);
    expect(root.used).toBe(1);
    const l1 = s.linkTable(l2, 2, 0, 1002);
    s.linkTable(l2, 2, 512 * 512, 1003);
    expect(l2.used).toBe(2);
    const seen: number[] = [];
    s.forEachTable((t) => seen.push(t.hpa));
    expect(seen.sort()).toEqual([1000, 1001, 1002, 1003]);
    expect(l1.level).toBe(1);
  });

  it('a dropped table is gone from the walk, also right after a cached lookup', () => {
    const s = new SecureEpt(4, 1000);
    const l2 = s.linkTable(s.table(3, 0)!, 3, 0, 1001);
    const l1 = s.linkTable(l2, 2, 0, 1002);
    // the level-0 table over gfns 512..1023 (key 1)
    const l0 = s.linkTable(l1, 1, 600, 1003);
    l0.state[600 % 512] = SEPT_PRESENT;
    expect(s.table(0, 600)).toBe(l0);
    s.dropTable(l0);
    expect(s.table(0, 600)).toBeUndefined();
    expect(s.tableByHpa(1003)).toBeUndefined();
    expect(s.lookup(600)).toEqual({ level: 0, state: SEPT_FREE, pfn: 0 });
  });

  it('forEachLeaf reports leaves at every level, the root level included', () => {
    const s = new SecureEpt(4, 1000);
    const root = s.table(3, 0)!;
    root.state[1] = SEPT_PRESENT;
    root.pfn[1] = 77;
    root.used = 1;
    const seen: number[][] = [];
    s.forEachLeaf((gfn, level, state, pfn) => seen.push([gfn, level, state, pfn]));
    expect(seen).toEqual([[512 ** 3, 3, SEPT_PRESENT, 77]]);
  });

  it('lookup walks through a blocked table link to the leaf below it', () => {
    const s = new SecureEpt(4, 1000);
    const l2 = s.linkTable(s.table(3, 0)!, 3, 0, 1001);
    const l1 = s.linkTable(l2, 2, 0, 1002);
    const l0 = s.linkTable(l1, 1, 0, 1003);
    l0.state[5] = SEPT_PENDING;
    l0.pfn[5] = 55;
    l1.state[0] = SEPT_NL_BLOCKED;
    expect(s.lookup(5)).toEqual({ level: 0, state: SEPT_PENDING, pfn: 55 });
  });
});
