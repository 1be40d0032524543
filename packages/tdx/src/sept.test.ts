import { describe, expect, it } from 'vitest';
import {
  SEPT_ALLOWED,
  SEPT_ALLOWED_STATES,
  SEPT_FREE,
  SEPT_NL_PRESENT,
  SEPT_PENDING,
  SEPT_PRESENT,
  SecureEpt,
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
