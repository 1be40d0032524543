/**
 * The Secure EPT as the TDX module keeps it: one 512-entry table per S-EPT page, entries keyed by
 * (TDX level, gfn). TDX levels count from the leaf: 0 = 4 KiB (PTE), 1 = 2 MiB (PDE), 2 = 1 GiB,
 * 3 = PML4 entry, 4 = PML5 entry (`pg_level_to_tdx_sept_level()` is pg_level - 1).
 *
 * Entry states are the architectural ones (tdx_arch.h, TDX module ABI "S-EPT entry state"):
 * FREE 0, BLOCKED 1, PENDING 2, PENDING_BLOCKED 3, PRESENT 4 ("MAPPED" in the module source), and
 * for a non-leaf entry that links a table NL_PRESENT 0x84 / NL_BLOCKED 0x81 (the module's public
 * state numbers for NL_MAPPED / NL_BLOCKED). Memory costs one table per 512 mapped entries.
 */

export const SEPT_FREE = 0;
export const SEPT_BLOCKED = 1;
export const SEPT_PENDING = 2;
export const SEPT_PENDING_BLOCKED = 3;
export const SEPT_PRESENT = 4;
export const SEPT_NL_BLOCKED = 0x81;
export const SEPT_NL_PRESENT = 0x84;

export const SEPT_STATE_NAMES: Readonly<Record<number, string>> = {
  [SEPT_FREE]: 'FREE',
  [SEPT_BLOCKED]: 'BLOCKED',
  [SEPT_PENDING]: 'PENDING',
  [SEPT_PENDING_BLOCKED]: 'PENDING_BLOCKED',
  [SEPT_PRESENT]: 'PRESENT',
  [SEPT_NL_BLOCKED]: 'NL_BLOCKED',
  [SEPT_NL_PRESENT]: 'NL_PRESENT',
};

export function septStateName(state: number): string {
  return SEPT_STATE_NAMES[state] ?? `STATE_${state}`;
}

export function septIsLeafState(state: number): boolean {
  return state >= SEPT_BLOCKED && state <= SEPT_PRESENT;
}

/**
 * Which S-EPT entry states each function accepts, as data. Taken from the TDX module's
 * `seamcall_sept_state_lookup` / `tdcall_sept_state_lookup` (include/auto_gen/sept_state_lookup.c),
 * restricted to the states above (the module also has export/import and MMIO states).
 * A state outside the row fails with TDX_EPT_ENTRY_STATE_INCORRECT (or the more specific code the
 * function documents, e.g. BLOCK's GPA_RANGE_ALREADY_BLOCKED).
 * Rows where the module checks more than the state (REMOVE/DEMOTE need BLOCKED + TLB tracking while
 * the TD runs) say so in tdx-module.ts.
 */
export const SEPT_ALLOWED_STATES = {
  'TDH.MEM.PAGE.ADD': [SEPT_FREE],
  /* the module also accepts NL_PRESENT when the caller sets "allow existing"; KVM never does */
  'TDH.MEM.SEPT.ADD': [SEPT_FREE],
  'TDH.MEM.PAGE.AUG': [SEPT_FREE],
  'TDH.MEM.RANGE.BLOCK': [SEPT_NL_PRESENT, SEPT_PRESENT, SEPT_PENDING],
  'TDH.MEM.PAGE.DEMOTE': [SEPT_PRESENT, SEPT_BLOCKED, SEPT_PENDING, SEPT_PENDING_BLOCKED],
  'TDH.MR.EXTEND': [SEPT_PRESENT],
  'TDH.MEM.PAGE.REMOVE': [SEPT_PRESENT, SEPT_BLOCKED, SEPT_PENDING, SEPT_PENDING_BLOCKED],
  'TDG.MEM.PAGE.ACCEPT': [SEPT_PENDING],
} as const satisfies Record<string, readonly number[]>;

export type SeptFunction = keyof typeof SEPT_ALLOWED_STATES;

/** The same table as 256-entry byte maps, for the hot paths: ALLOWED[fn][state] === 1. */
export const SEPT_ALLOWED: Readonly<Record<SeptFunction, Uint8Array>> = (() => {
  const out = {} as Record<SeptFunction, Uint8Array>;
  for (const [fn, states] of Object.entries(SEPT_ALLOWED_STATES) as [SeptFunction, readonly number[]][]) {
    const m = new Uint8Array(256);
    for (const s of states) m[s] = 1;
    out[fn] = m;
  }
  return out;
})();

/** Pages covered by one entry at TDX level `l` (512^l). */
export const SEPT_SPAN: readonly number[] = [1, 512, 512 ** 2, 512 ** 3, 512 ** 4, 512 ** 5];

/** One S-EPT page: 512 entries of one level. */
export class SeptTable {
  /** architectural entry state */
  readonly state = new Uint8Array(512);
  /** leaf: host pfn of the page; non-leaf: pfn of the child S-EPT page */
  readonly pfn = new Float64Array(512);
  /** TD epoch sampled by TDH.MEM.RANGE.BLOCK (the module keeps it in the PAMT entry, "BEPOCH") */
  readonly bepoch = new Float64Array(512);
  /** entries not FREE */
  used = 0;
  constructor(
    /** TDX level of the entries in this table */
    readonly level: number,
    /** floor(gfn / 512^(level+1)) of every gfn the table covers */
    readonly key: number,
    /** host pfn of the S-EPT page itself (the mirror sp's external_spt) */
    readonly hpa: number,
  ) {}
  /** first gfn covered by this table */
  get baseGfn(): number {
    return this.key * SEPT_SPAN[this.level + 1]!;
  }
}

export class SecureEpt {
  /** TDX level of the root table's entries: 3 with 4-level EPT (GPAW 48), 4 with 5-level (GPAW 52) */
  readonly rootLevel: number;
  private readonly tables: Map<number, SeptTable>[] = [];
  /* one-entry lookup cache per level: consecutive gfns hit the same table */
  private readonly cacheKey = new Float64Array(6).fill(-1);
  private readonly cacheTable: (SeptTable | undefined)[] = [undefined, undefined, undefined, undefined, undefined, undefined];
  /** by S-EPT page pfn (root included) */
  private readonly byHpa = new Map<number, SeptTable>();

  /** after a failed walk: the level and state of the entry where the walk stopped */
  walkLevel = 0;
  walkState = 0;

  constructor(eptLevels: 4 | 5, rootHpa: number) {
    this.rootLevel = eptLevels - 1;
    for (let l = 0; l <= this.rootLevel; l++) this.tables.push(new Map());
    const root = new SeptTable(this.rootLevel, 0, rootHpa);
    this.tables[this.rootLevel]!.set(0, root);
    this.byHpa.set(rootHpa, root);
  }

  static index(level: number, gfn: number): number {
    return Math.floor(gfn / SEPT_SPAN[level]!) % 512;
  }

  /** The table holding the level-`level` entry for `gfn`, or undefined if the walk cannot reach it. */
  table(level: number, gfn: number): SeptTable | undefined {
    const key = Math.floor(gfn / SEPT_SPAN[level + 1]!);
    if (this.cacheKey[level] === key) return this.cacheTable[level];
    const t = this.tables[level]!.get(key);
    if (t) {
      this.cacheKey[level] = key;
      this.cacheTable[level] = t;
    }
    return t;
  }

  /**
   * Walk to the entry at `level` for `gfn` (the module's `walk_private_gpa`). On failure returns
   * undefined and sets walkLevel/walkState to the entry that ended the walk (a FREE entry or a
   * leaf at a higher level), as the module reports in RCX/RDX.
   */
  walk(level: number, gfn: number): SeptTable | undefined {
    const t = this.table(level, gfn);
    if (t) return t;
    for (let l = level + 1; l <= this.rootLevel; l++) {
      const p = this.table(l, gfn);
      if (p) {
        this.walkLevel = l;
        this.walkState = p.state[SecureEpt.index(l, gfn)]!;
        break;
      }
    }
    return undefined;
  }

  /** Entry at (level, gfn) now links a new table of level-1 entries stored in page `hpa`. */
  linkTable(parent: SeptTable, level: number, gfn: number, hpa: number): SeptTable {
    const i = SecureEpt.index(level, gfn);
    const child = new SeptTable(level - 1, Math.floor(gfn / SEPT_SPAN[level]!), hpa);
    if (parent.state[i] === SEPT_FREE) parent.used++;
    parent.state[i] = SEPT_NL_PRESENT;
    parent.pfn[i] = hpa;
    this.tables[level - 1]!.set(child.key, child);
    this.byHpa.set(hpa, child);
    this.cacheKey[level - 1] = -1;
    return child;
  }

  /** The S-EPT page `hpa` is gone (TDH.PHYMEM.PAGE.RECLAIM at teardown). */
  dropTable(t: SeptTable): void {
    this.tables[t.level]!.delete(t.key);
    this.byHpa.delete(t.hpa);
    this.cacheKey[t.level] = -1;
  }

  tableByHpa(hpa: number): SeptTable | undefined {
    return this.byHpa.get(hpa);
  }

  get tableCount(): number {
    return this.byHpa.size;
  }

  forEachTable(cb: (t: SeptTable) => void): void {
    for (const m of this.tables) for (const t of m.values()) cb(t);
  }

  /** Every leaf entry that is not FREE: (gfn, TDX level, state, pfn). */
  forEachLeaf(cb: (gfn: number, level: number, state: number, pfn: number) => void): void {
    for (let l = 0; l <= this.rootLevel; l++) {
      for (const t of this.tables[l]!.values()) {
        if (t.used === 0) continue;
        const base = t.baseGfn;
        for (let i = 0; i < 512; i++) {
          const s = t.state[i]!;
          if (septIsLeafState(s)) cb(base + i * SEPT_SPAN[l]!, l, s, t.pfn[i]!);
        }
      }
    }
  }

  /** The deepest entry for `gfn`: a leaf, a FREE entry, or a link whose table is missing. */
  lookup(gfn: number): { level: number; state: number; pfn: number } {
    for (let l = this.rootLevel; l >= 0; l--) {
      const t = this.table(l, gfn);
      // a table page reclaimed at teardown (TDH.PHYMEM.PAGE.RECLAIM) leaves nothing below it
      if (t === undefined) return { level: l, state: SEPT_FREE, pfn: 0 };
      const i = SecureEpt.index(l, gfn);
      const s = t.state[i]!;
      if (s !== SEPT_NL_PRESENT && s !== SEPT_NL_BLOCKED) return { level: l, state: s, pfn: t.pfn[i]! };
      if (l === 0) break;
    }
    return { level: 0, state: SEPT_FREE, pfn: 0 };
  }
}
