/**
 * The Reverse Map Table (RMP): one entry per host page frame, saying who owns the frame.
 *
 * Entry fields follow the raw 16-byte entry the kernel dumps (arch/x86/virt/svm/sev.c,
 * `struct rmpentry_raw`, from the Fam19h PPR) plus the VMPL permission masks the APM
 * describes for RMPADJUST:
 *   assigned:1, pagesize:1 (0 = 4K, 1 = 2M), immutable:1, gpa (page frame), asid:10,
 *   vmsa:1, validated:1, and a 4-bit permission mask for each of VMPL1..3
 *   (VMPL0 always has full access).
 *
 * Storage is sparse: a Map from 2M-region index to a chunk of typed arrays holding the
 * 512 entries of that region. A chunk exists only while one of its entries differs from
 * the all-zero default (a hypervisor-owned page), so a 1 TiB host with nothing assigned costs
 * nothing, where the hardware table would cost 4 GiB (16 bytes per frame).
 *
 * Entries are written only by the instructions in instructions.ts (RMPUPDATE, PSMASH,
 * PVALIDATE, RMPADJUST); everything else gets a read-only view.
 */
import { PG_LEVEL_2M, PG_LEVEL_4K } from '@ccmem/core';

/** Entries per 2M region (PTRS_PER_PMD). */
export const RMP_ENTRIES_PER_2M = 512;
/** RMP page-size values (asm/sev.h RMP_PG_SIZE_4K / RMP_PG_SIZE_2M). */
export const RMP_PG_SIZE_4K = 0;
export const RMP_PG_SIZE_2M = 1;
/** Highest ASID the 10-bit field holds. */
export const RMP_MAX_ASID = 1023;

/** VMPL permission bits (APM vol. 2, RMPADJUST): read, write, user execute, supervisor execute. */
export const VMPL_R = 1 << 0;
export const VMPL_W = 1 << 1;
export const VMPL_X_USER = 1 << 2;
export const VMPL_X_SUPER = 1 << 3;
export const VMPL_PERMS_MASK = 0xf;

/* Packed flag word, one Uint32 per entry. Bits are the model's, not the hardware's. */
export const RMPW_ASSIGNED = 1 << 0;
export const RMPW_PAGESIZE = 1 << 1;
export const RMPW_IMMUTABLE = 1 << 2;
export const RMPW_VMSA = 1 << 3;
export const RMPW_VALIDATED = 1 << 4;
export const RMPW_ASID_SHIFT = 5;
export const RMPW_ASID_MASK = 0x3ff << RMPW_ASID_SHIFT;
/** VMPLn permissions live at bit 15 + 4*(n-1), n = 1..3 */
export const RMPW_VMPL_SHIFT = 15;

/** Bytes the model charges per chunk beyond its typed arrays (Map slot, object, headers). */
export const RMP_CHUNK_OVERHEAD_BYTES = 64;

/** One 2M region's entries. */
interface RmpChunk {
  readonly words: Uint32Array;
  /** guest page frame (gpa >> 12) of each entry */
  readonly gfns: Float64Array;
  /** entries that differ from the default (word 0 and gfn 0) */
  nonDefault: number;
  /** entries with the assigned bit */
  assigned: number;
}

/** A read-only copy of one RMP entry, with the raw fields' names. */
export interface RmpEntryView {
  readonly pfn: number;
  readonly assigned: boolean;
  /** RMP_PG_SIZE_4K (0) or RMP_PG_SIZE_2M (1), as stored in this entry */
  readonly pagesize: 0 | 1;
  readonly immutable: boolean;
  /** guest physical address the entry is bound to */
  readonly gpa: number;
  readonly asid: number;
  readonly vmsa: boolean;
  readonly validated: boolean;
  /** permission masks for VMPL1, VMPL2, VMPL3 */
  readonly vmpl: readonly [number, number, number];
  /** kernel view: the level of the authoritative (2M-aligned) entry, PG_LEVEL_4K or PG_LEVEL_2M */
  readonly level: number;
}

/** snp_lookup_rmpentry(): the entry's assigned bit and the authoritative level. */
export interface RmpLookup {
  assigned: boolean;
  level: number;
}

export class Rmp {
  /** frames covered: valid pfns are [0, maxPfn) */
  readonly maxPfn: number;
  private readonly chunks = new Map<number, RmpChunk>();
  private assignedCount = 0;
  /** one-entry cache of the last region looked up (hot paths walk neighbouring frames) */
  private cacheIdx = -1;
  private cacheChunk: RmpChunk | undefined = undefined;

  constructor(opts: { maxPfn: number }) {
    if (!Number.isSafeInteger(opts.maxPfn) || opts.maxPfn <= 0) throw new RangeError('Rmp: maxPfn must be a positive integer');
    this.maxPfn = opts.maxPfn;
  }

  /** get_rmpentry(): pfn > rmptable_max_pfn is -EFAULT in the kernel */
  isValidPfn(pfn: number): boolean {
    return Number.isInteger(pfn) && pfn >= 0 && pfn < this.maxPfn;
  }

  /* ---------------- raw reads (hot paths) ---------------- */

  private chunk(idx: number): RmpChunk | undefined {
    if (idx === this.cacheIdx) return this.cacheChunk;
    const c = this.chunks.get(idx);
    this.cacheIdx = idx;
    this.cacheChunk = c;
    return c;
  }

  /**
   * The packed flag word of `pfn`; 0 for a default entry. (Chunks exist only for valid pfns,
   * so `pfn - idx * 512` is pfn % 512 wherever a chunk is found, without a float modulo.)
   */
  word(pfn: number): number {
    const idx = Math.floor(pfn / RMP_ENTRIES_PER_2M);
    const c = this.chunk(idx);
    return c === undefined ? 0 : c.words[pfn - idx * RMP_ENTRIES_PER_2M]!;
  }

  /** the entry's guest frame number (gpa >> 12) */
  gfn(pfn: number): number {
    const idx = Math.floor(pfn / RMP_ENTRIES_PER_2M);
    const c = this.chunk(idx);
    return c === undefined ? 0 : c.gfns[pfn - idx * RMP_ENTRIES_PER_2M]!;
  }

  isAssigned(pfn: number): boolean {
    return (this.word(pfn) & RMPW_ASSIGNED) !== 0;
  }

  /**
   * The authoritative page level for `pfn` (__snp_lookup_rmpentry): the pagesize of the
   * 2M-aligned entry. If that entry says 2M, every frame in the region is treated as 2M.
   */
  level(pfn: number): number {
    // the 2M-aligned head (rounded down: a negative pfn has no entry, its head neither)
    const head = Math.floor(pfn / RMP_ENTRIES_PER_2M) * RMP_ENTRIES_PER_2M;
    return (this.word(head) & RMPW_PAGESIZE) !== 0 ? PG_LEVEL_2M : PG_LEVEL_4K;
  }

  /** snp_lookup_rmpentry(pfn, &assigned, &level); null where the kernel returns -EFAULT */
  lookup(pfn: number, out: RmpLookup = { assigned: false, level: PG_LEVEL_4K }): RmpLookup | null {
    if (!this.isValidPfn(pfn)) return null;
    out.assigned = this.isAssigned(pfn);
    out.level = this.level(pfn);
    return out;
  }

  /** assigned entries in the 2M region holding `pfn` */
  assignedIn2M(pfn: number): number {
    const c = this.chunk(Math.floor(pfn / RMP_ENTRIES_PER_2M));
    return c === undefined ? 0 : c.assigned;
  }

  /** read-only copy of the entry (for `assert` steps, `ccmem explain`, dumps) */
  inspect(pfn: number): RmpEntryView {
    if (!this.isValidPfn(pfn)) throw new RangeError(`Rmp.inspect: pfn 0x${pfn.toString(16)} outside the RMP`);
    const w = this.word(pfn);
    return Object.freeze({
      pfn,
      assigned: (w & RMPW_ASSIGNED) !== 0,
      pagesize: (w & RMPW_PAGESIZE) !== 0 ? 1 : 0,
      immutable: (w & RMPW_IMMUTABLE) !== 0,
      gpa: this.gfn(pfn) * 4096,
      asid: (w & RMPW_ASID_MASK) >>> RMPW_ASID_SHIFT,
      vmsa: (w & RMPW_VMSA) !== 0,
      validated: (w & RMPW_VALIDATED) !== 0,
      vmpl: Object.freeze([vmplPerms(w, 1), vmplPerms(w, 2), vmplPerms(w, 3)]) as readonly [number, number, number],
      level: this.level(pfn),
    });
  }

  /** calls `fn` for every assigned pfn, in increasing order within each region */
  forEachAssigned(fn: (pfn: number, word: number, gfn: number) => void): void {
    for (const [idx, c] of this.chunks) {
      if (c.assigned === 0) continue;
      const base = idx * RMP_ENTRIES_PER_2M;
      for (let i = 0; i < RMP_ENTRIES_PER_2M; i++) {
        const w = c.words[i]!;
        if ((w & RMPW_ASSIGNED) !== 0) fn(base + i, w, c.gfns[i]!);
      }
    }
  }

  /** calls `fn` for every entry that differs from the default (assigned or not) */
  forEachNonDefault(fn: (pfn: number, word: number, gfn: number) => void): void {
    for (const [idx, c] of this.chunks) {
      const base = idx * RMP_ENTRIES_PER_2M;
      for (let i = 0; i < RMP_ENTRIES_PER_2M; i++) {
        const w = c.words[i]!;
        if (w !== 0 || c.gfns[i] !== 0) fn(base + i, w, c.gfns[i]!);
      }
    }
  }

  /* ---------------- accounting ---------------- */

  /** frames whose entry has the assigned bit */
  get assignedPages(): number {
    return this.assignedCount;
  }
  /** 2M regions with at least one non-default entry */
  get chunkCount(): number {
    return this.chunks.size;
  }
  /** bytes the sparse table holds: typed arrays plus a fixed per-chunk overhead */
  get bytes(): number {
    return this.chunks.size * (RMP_ENTRIES_PER_2M * (4 + 8) + RMP_CHUNK_OVERHEAD_BYTES);
  }
  /** bytes per assigned frame; 0 when nothing is assigned (and then nothing is stored) */
  get bytesPerAssignedPage(): number {
    return this.assignedCount === 0 ? 0 : this.bytes / this.assignedCount;
  }

  /* ---------------- writes (instructions.ts only) ---------------- */

  /**
   * Store one entry. Used by the instruction models; everything else must go through them.
   * Creates the region's chunk on the first non-default entry and drops it when the last
   * entry returns to the default.
   */
  writeEntry(pfn: number, word: number, gfn: number): void {
    const idx = Math.floor(pfn / RMP_ENTRIES_PER_2M);
    // pfn % 512 (the instructions write only valid pfns, so pfn >= 0)
    const i = pfn - idx * RMP_ENTRIES_PER_2M;
    let c = this.chunk(idx);
    const isDefault = word === 0 && gfn === 0;
    if (c === undefined) {
      if (isDefault) return;
      c = { words: new Uint32Array(RMP_ENTRIES_PER_2M), gfns: new Float64Array(RMP_ENTRIES_PER_2M), nonDefault: 0, assigned: 0 };
      this.chunks.set(idx, c);
      this.cacheIdx = idx;
      this.cacheChunk = c;
    }
    const oldWord = c.words[i]!;
    const wasDefault = oldWord === 0 && c.gfns[i] === 0;
    const wasAssigned = (oldWord & RMPW_ASSIGNED) !== 0;
    const isAssigned = (word & RMPW_ASSIGNED) !== 0;
    c.words[i] = word;
    c.gfns[i] = gfn;
    if (wasAssigned !== isAssigned) {
      const d = isAssigned ? 1 : -1;
      c.assigned += d;
      this.assignedCount += d;
    }
    if (wasDefault !== isDefault) c.nonDefault += isDefault ? -1 : 1;
    if (c.nonDefault === 0) {
      this.chunks.delete(idx);
      if (this.cacheIdx === idx) this.cacheChunk = undefined;
    }
  }

  /** set or clear flag bits of an existing entry, keeping its gfn */
  updateWord(pfn: number, set: number, clear: number): void {
    const w = this.word(pfn);
    const nw = (w & ~clear) | set;
    if (nw !== w) this.writeEntry(pfn, nw >>> 0, this.gfn(pfn));
  }
}

/** the 4-bit permission mask of VMPL `vmpl` (1..3) in a packed word */
export function vmplPerms(word: number, vmpl: number): number {
  return (word >>> (RMPW_VMPL_SHIFT + 4 * (vmpl - 1))) & VMPL_PERMS_MASK;
}

/** pack the fields RMPUPDATE writes */
export function packRmpWord(f: { assigned: boolean; pagesize: number; immutable: boolean; asid: number }): number {
  return packRmpFields(f.assigned, f.pagesize, f.immutable, f.asid);
}

/** packRmpWord() from the fields themselves (no object) */
export function packRmpFields(assigned: boolean, pagesize: number, immutable: boolean, asid: number): number {
  let w = 0;
  if (assigned) w |= RMPW_ASSIGNED;
  if (pagesize === RMP_PG_SIZE_2M) w |= RMPW_PAGESIZE;
  if (immutable) w |= RMPW_IMMUTABLE;
  w |= (asid << RMPW_ASID_SHIFT) & RMPW_ASID_MASK;
  return w >>> 0;
}

export function wordAsid(word: number): number {
  return (word & RMPW_ASID_MASK) >>> RMPW_ASID_SHIFT;
}
