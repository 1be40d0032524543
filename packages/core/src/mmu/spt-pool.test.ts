import { describe, expect, it } from 'vitest';
import { FIRST_CHUNK_TABLES, SptPool, TABLES_PER_CHUNK, WORDS_PER_TABLE } from './spt-pool.js';

describe('SptPool', () => {
  it('a small pool costs a small first chunk, not a whole 64-table chunk', () => {
    const p = new SptPool();
    const root = p.alloc(0, 4, -1, 0, false, true);
    expect(p.chunks.length).toBe(1);
    expect(p.chunks[0]!.length).toBe(FIRST_CHUNK_TABLES * WORDS_PER_TABLE);
    expect(p.metadataBytes()).toBeLessThan(TABLES_PER_CHUNK * WORDS_PER_TABLE * 4);
    expect(p.words(root)[SptPool.base(root)]).toBe(0); // SHADOW_NONPRESENT_VALUE: low half 0
  });

  it('hands out distinct tables whose entries never overlap, and chunks never move', () => {
    const p = new SptPool();
    const ids: number[] = [];
    const firstChunk = () => p.words(ids[0]!);
    ids.push(p.alloc(0, 4, -1, 0, false, true));
    const chunk0 = firstChunk();
    for (let i = 1; i < 300; i++) ids.push(p.alloc(i * 512, 1, ids[0]!, i % 512, false, true));
    expect(new Set(ids).size).toBe(300);
    expect(firstChunk()).toBe(chunk0); // a reference taken before later allocations stays valid
    expect(p.liveTables).toBe(300);
    // write a tag into entry 0 and 511 of every table, then read them all back
    for (const t of ids) {
      const w = p.words(t);
      const b = SptPool.base(t);
      expect(b + 2 * 511 + 1).toBeLessThan(w.length);
      w[b] = t + 1;
      w[b + 2 * 511] = -(t + 1);
    }
    for (const t of ids) {
      expect(p.words(t)[SptPool.base(t)]).toBe(t + 1);
      expect(p.words(t)[SptPool.base(t) + 2 * 511]).toBe(-(t + 1));
      expect(p.gfnBase[t]).toBe(t === ids[0] ? 0 : ids.indexOf(t) * 512);
    }
  });

  it('reuses released tables and refills them', () => {
    const p = new SptPool();
    const a = p.alloc(0, 4, -1, 0, false, true);
    const b = p.alloc(512, 1, a, 1, false, true);
    p.words(b)[SptPool.base(b) + 6] = 1234;
    p.release(b);
    const c = p.alloc(1024, 1, a, 2, true, true);
    expect(c).toBe(b);
    expect(p.words(c)[SptPool.base(c) + 6]).toBe(0);
    expect(p.isMirror[c]).toBe(1);
    expect(p.liveTables).toBe(2);
  });
});
