/**
 * Builds guest page tables in guest memory: 4- or 5-level x86-64 tables (what a guest kernel
 * writes before it sets CR3) or EPT tables (what an L1 hypervisor writes for its L2). Tests,
 * benches and scenarios use it; the kvm target can write the same bytes into a real guest.
 */
import { PAGE_SIZE } from '../uapi.js';
import {
  PT64_NX_HI,
  PT_ACCESSED_MASK,
  PT_DIRTY_MASK,
  PT_PAGE_SIZE_MASK,
  PT_PRESENT_MASK,
  PT_USER_MASK,
  PT_WRITABLE_MASK,
  VMX_EPT_ACCESS_BIT,
  VMX_EPT_DIRTY_BIT,
  VMX_EPT_EXECUTABLE_MASK,
  VMX_EPT_MT_WB,
  VMX_EPT_READABLE_MASK,
  VMX_EPT_RWX_MASK,
  VMX_EPT_WRITABLE_MASK,
  type GpteHalves,
  gpteToGfn,
  pt64Index,
} from './paging-tmpl.js';

export interface GuestPtMemory {
  readGpte(gpa: number, out: GpteHalves): boolean;
  write64(gpa: number, lo: number, hi: number): void;
}

/** permissions of a leaf (x86-64: W, U, NX; EPT: R, W, X) */
export interface GuestPteFlags {
  /** leaf level: 1 (4K, default), 2 (2M) or 3 (1G) */
  level?: number;
  write?: boolean;
  /** x86-64 U/S (default true) */
  user?: boolean;
  /** x86-64 NX (default false) */
  nx?: boolean;
  /** EPT R (default true) */
  read?: boolean;
  /** EPT X (default true) */
  exec?: boolean;
  accessed?: boolean;
  dirty?: boolean;
}

const TWO_20 = 2 ** 20;

export class GuestPageTableBuilder {
  /** gpa of the top-level table (CR3 / EPTP address) */
  readonly root: number;
  private readonly g: GpteHalves = { lo: 0, hi: 0 };

  constructor(
    private readonly mem: GuestPtMemory,
    private readonly allocPage: () => number,
    readonly levels: 4 | 5 = 4,
    readonly ept = false,
  ) {
    this.root = allocPage();
  }

  /** the gpa of the entry for `va` at `level`, creating the tables above it; -1 if a huge leaf is in the way */
  entryGpa(va: number, level: number): number {
    let table = this.root;
    for (let l = this.levels; l > level; l--) {
      const gpa = table + pt64Index(va, l) * 8;
      this.mem.readGpte(gpa, this.g);
      const present = this.ept ? (this.g.lo & VMX_EPT_RWX_MASK) !== 0 : (this.g.lo & PT_PRESENT_MASK) !== 0;
      if (present && this.g.lo & PT_PAGE_SIZE_MASK) return -1;
      if (!present) {
        const next = this.allocPage();
        const lo = this.ept ? VMX_EPT_RWX_MASK : PT_PRESENT_MASK | PT_WRITABLE_MASK | PT_USER_MASK;
        this.mem.write64(gpa, (lo | ((next % (TWO_20 * PAGE_SIZE)) & ~0xfff)) | 0, Math.floor(next / 2 ** 32));
        table = next;
      } else table = gpteToGfn(this.g.lo, this.g.hi) * PAGE_SIZE;
    }
    return table + pt64Index(va, level) * 8;
  }

  /** the leaf gpte halves for `gpa` with `flags` */
  static leaf(gpa: number, flags: GuestPteFlags, ept: boolean): GpteHalves {
    const level = flags.level ?? 1;
    let lo = (gpa >>> 0) & ~0xfff;
    let hi = Math.floor(gpa / 2 ** 32);
    if (ept) {
      if (flags.read ?? true) lo |= VMX_EPT_READABLE_MASK;
      if (flags.write) lo |= VMX_EPT_WRITABLE_MASK;
      if (flags.exec ?? true) lo |= VMX_EPT_EXECUTABLE_MASK;
      lo |= VMX_EPT_MT_WB;
      if (flags.accessed) lo |= VMX_EPT_ACCESS_BIT;
      if (flags.dirty) lo |= VMX_EPT_DIRTY_BIT;
    } else {
      lo |= PT_PRESENT_MASK;
      if (flags.write) lo |= PT_WRITABLE_MASK;
      if (flags.user ?? true) lo |= PT_USER_MASK;
      if (flags.nx) hi |= PT64_NX_HI;
      if (flags.accessed) lo |= PT_ACCESSED_MASK;
      if (flags.dirty) lo |= PT_DIRTY_MASK;
    }
    if (level > 1) lo |= PT_PAGE_SIZE_MASK;
    return { lo: lo | 0, hi: hi | 0 };
  }

  /** map `va` → `gpa` (both aligned to the leaf level) */
  map(va: number, gpa: number, flags: GuestPteFlags = {}): number {
    const level = flags.level ?? 1;
    const at = this.entryGpa(va, level);
    if (at < 0) throw new Error(`va 0x${va.toString(16)}: a huge mapping is in the way`);
    const g = GuestPageTableBuilder.leaf(gpa, flags, this.ept);
    this.mem.write64(at, g.lo, g.hi);
    return at;
  }

  /** clear the leaf for `va` at `level` */
  unmap(va: number, level = 1): void {
    const at = this.entryGpa(va, level);
    if (at >= 0) this.mem.write64(at, 0, 0);
  }
}
