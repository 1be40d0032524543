import { describe, expect, it } from 'vitest';
import { GuestWalker, type GpteHalves, type GuestPteMemory, PT_ACCESSED_MASK, PT_DIRTY_MASK, isRsvdBitsSet, pt64Index } from './paging-tmpl.js';
import { GuestPageTableBuilder } from './guest-pt-builder.js';
import {
  EFER_LME,
  EFER_NX,
  PFERR_FETCH_MASK,
  PFERR_PRESENT_MASK,
  PFERR_RSVD_MASK,
  PFERR_USER_MASK,
  PFERR_WRITE_MASK,
  VMX_EPTP_AD_ENABLE_BIT,
  VMX_EPTP_PWL_4,
  X86_CR0_PE,
  X86_CR0_PG,
  X86_CR0_WP,
  X86_CR4_LA57,
  X86_CR4_PAE,
  X86_CR4_SMAP,
  X86_CR4_SMEP,
  X86_EFLAGS_AC,
  calcCpuRole,
  calcEptCpuRole,
} from './guest-paging.js';
import { ACC_EXEC_MASK, ACC_USER_MASK, ACC_WRITE_MASK } from './mmu-internal.js';

/** guest memory as a map of 8-byte words, with a bump allocator for table pages */
class MapMem implements GuestPteMemory {
  readonly words = new Map<number, [number, number]>();
  readonly dirtied: number[] = [];
  readonly readonlyGfns = new Set<number>();
  next = 0x100000;
  alloc = (): number => {
    const p = this.next;
    this.next += 4096;
    return p;
  };
  readGpte(gpa: number, out: GpteHalves): boolean {
    if (gpa >= 0x40000000) return false; // no memslot above 1 GiB
    const w = this.words.get(gpa) ?? [0, 0];
    out.lo = w[0];
    out.hi = w[1];
    return true;
  }
  gptWritable(gfn: number): boolean {
    return !this.readonlyGfns.has(gfn);
  }
  cmpxchgGpte(gpa: number, oldLo: number, oldHi: number, newLo: number, newHi: number): number {
    const w = this.words.get(gpa) ?? [0, 0];
    if (w[0] !== oldLo || w[1] !== oldHi) return 1;
    this.words.set(gpa, [newLo, newHi]);
    this.dirtied.push(Math.floor(gpa / 4096));
    return 0;
  }
  write64(gpa: number, lo: number, hi: number): void {
    this.words.set(gpa, [lo | 0, hi | 0]);
  }
  get(gpa: number): [number, number] {
    return this.words.get(gpa) ?? [0, 0];
  }
}

const LONG = { cr0: X86_CR0_PE | X86_CR0_PG | X86_CR0_WP, cr3: 0, cr4: X86_CR4_PAE, efer: EFER_LME | EFER_NX, rflags: 2 };

function setup(levels: 4 | 5 = 4, regs: Partial<typeof LONG> = {}) {
  const mem = new MapMem();
  const b = new GuestPageTableBuilder(mem, mem.alloc, levels);
  const role = calcCpuRole({ ...LONG, ...(levels === 5 ? { cr4: LONG.cr4 | X86_CR4_LA57 } : {}), ...regs });
  return { mem, b, role, w: new GuestWalker() };
}

describe('FNAME(walk_addr_generic), 64-bit paging', () => {
  it('translates a 4K mapping and sets A on every level (D only on a write)', () => {
    const { mem, b, role, w } = setup();
    const leaf = b.map(0x7f0000001000, 0x2345000, { write: true });
    expect(w.walk(role, b.root, mem, 0x7f0000001abc, 0)).toBe(1);
    expect(w.gfn).toBe(0x2345);
    expect(w.level).toBe(1);
    expect(w.pteAccess).toBe(ACC_USER_MASK | ACC_EXEC_MASK); // clean: read-only (protect_clean_gpte)
    expect(mem.get(leaf)[0] & PT_ACCESSED_MASK).toBeTruthy();
    expect(mem.get(leaf)[0] & PT_DIRTY_MASK).toBe(0);
    expect(mem.get(b.root + 254 * 8)[0] & PT_ACCESSED_MASK).toBeTruthy();
    expect(w.walk(role, b.root, mem, 0x7f0000001abc, PFERR_WRITE_MASK)).toBe(1);
    expect(mem.get(leaf)[0] & PT_DIRTY_MASK).toBeTruthy();
    expect(w.pteAccess & ACC_WRITE_MASK).toBeTruthy();
  });

  it('5-level paging walks the PML5 first', () => {
    const { mem, b, role, w } = setup(5);
    expect(role.level).toBe(5);
    b.map(2 ** 50 + 0x5000, 0x9000, {});
    expect(w.walk(role, b.root, mem, 2 ** 50 + 0x5008, 0)).toBe(1);
    expect(w.gfn).toBe(9);
    expect(w.maxLevel).toBe(5);
  });

  it('a 2M guest page gives the gfn inside it and level 2', () => {
    const { mem, b, role, w } = setup();
    b.map(0x40000000, 0x600000, { level: 2, write: true, dirty: true, accessed: true });
    expect(w.walk(role, b.root, mem, 0x40000000 + 0x12345, PFERR_WRITE_MASK)).toBe(1);
    expect(w.level).toBe(2);
    expect(w.gfn).toBe(0x600 + 0x12);
  });

  it('not present: error code has only the access bits', () => {
    const { mem, b, role, w } = setup();
    b.map(0x1000, 0x5000, {});
    expect(w.walk(role, b.root, mem, 0x3000, PFERR_WRITE_MASK | PFERR_USER_MASK)).toBe(0);
    expect(w.faultErrorCode).toBe(PFERR_WRITE_MASK | PFERR_USER_MASK);
    expect(w.faultAddress).toBe(0x3000);
  });

  it('protection faults: write to read-only, user to supervisor, fetch of NX', () => {
    const { mem, b, role, w } = setup();
    b.map(0x1000, 0x5000, { write: false });
    b.map(0x2000, 0x6000, { user: false, write: true });
    b.map(0x3000, 0x7000, { nx: true });
    expect(w.walk(role, b.root, mem, 0x1000, PFERR_WRITE_MASK)).toBe(0);
    expect(w.faultErrorCode).toBe(PFERR_PRESENT_MASK | PFERR_WRITE_MASK);
    expect(w.walk(role, b.root, mem, 0x2000, PFERR_USER_MASK)).toBe(0);
    expect(w.faultErrorCode).toBe(PFERR_PRESENT_MASK | PFERR_USER_MASK);
    expect(w.walk(role, b.root, mem, 0x3000, PFERR_FETCH_MASK)).toBe(0);
    expect(w.faultErrorCode).toBe(PFERR_PRESENT_MASK | PFERR_FETCH_MASK);
    expect(w.walk(role, b.root, mem, 0x3000, 0)).toBe(1);
  });

  it('CR0.WP=0 lets a supervisor write a read-only page, not a user one', () => {
    const { mem, b, role, w } = setup(4, { cr0: X86_CR0_PE | X86_CR0_PG });
    b.map(0x1000, 0x5000, { write: false, dirty: true });
    expect(w.walk(role, b.root, mem, 0x1000, PFERR_WRITE_MASK)).toBe(1);
    expect(w.walk(role, b.root, mem, 0x1000, PFERR_WRITE_MASK | PFERR_USER_MASK)).toBe(0);
  });

  it('SMEP faults a supervisor fetch of a user page; SMAP a supervisor read unless EFLAGS.AC', () => {
    const { mem, b, role, w } = setup(4, { cr4: X86_CR4_PAE | X86_CR4_SMEP | X86_CR4_SMAP });
    b.map(0x1000, 0x5000, { user: true });
    expect(w.walk(role, b.root, mem, 0x1000, PFERR_FETCH_MASK)).toBe(0);
    expect(w.faultErrorCode).toBe(PFERR_PRESENT_MASK | PFERR_FETCH_MASK);
    expect(w.walk(role, b.root, mem, 0x1000, 0)).toBe(0);
    expect(w.walk(role, b.root, mem, 0x1000, 0, X86_EFLAGS_AC)).toBe(1);
    expect(w.walk(role, b.root, mem, 0x1000, PFERR_USER_MASK | PFERR_FETCH_MASK)).toBe(1);
  });

  it('the fetch bit is reported only with EFER.NX or SMEP', () => {
    const { mem, b, w } = setup();
    const noNx = calcCpuRole({ ...LONG, efer: EFER_LME });
    b.map(0x1000, 0x5000, {});
    expect(w.walk(noNx, b.root, mem, 0x9000, PFERR_FETCH_MASK)).toBe(0);
    expect(w.faultErrorCode).toBe(0);
  });

  it('reserved bits: NX without EFER.NX, PS in a PML4E, address bits above MAXPHYADDR', () => {
    const { mem, b, w } = setup();
    const noNx = calcCpuRole({ ...LONG, efer: EFER_LME });
    b.map(0x1000, 0x5000, { nx: true });
    expect(w.walk(noNx, b.root, mem, 0x1000, 0)).toBe(0);
    expect(w.faultErrorCode).toBe(PFERR_RSVD_MASK | PFERR_PRESENT_MASK);
    const { mem: m2, b: b2, role: r2 } = setup();
    m2.write64(b2.root, 0x200000 | 0x81, 0); // P | PS in the PML4E
    expect(w.walk(r2, b2.root, m2, 0x1000, 0)).toBe(0);
    expect(w.faultErrorCode & PFERR_RSVD_MASK).toBeTruthy();
    const { mem: m3, b: b3, role: r3 } = setup();
    b3.map(0x1000, 2 ** 47, {}); // bit 47 >= MAXPHYADDR 46
    expect(w.walk(r3, b3.root, m3, 0x1000, 0)).toBe(0);
    expect(w.faultErrorCode & PFERR_RSVD_MASK).toBeTruthy();
  });

  it('a non-leaf or 4K gpte faults as reserved exactly when FNAME(is_rsvd_bits_set) says so', () => {
    // the walk decides these gptes with one mask of the high half; every high bit, at every
    // level, with and without EFER.NX, for three MAXPHYADDRs
    let reserved = 0;
    for (const efer of [EFER_LME | EFER_NX, EFER_LME]) {
      for (const maxPhyAddr of [36, 46, 52]) {
        const role = calcCpuRole({ ...LONG, efer }, maxPhyAddr);
        const { mem, b, w } = setup();
        b.map(0x7f0000001000, 0x5000, { write: true });
        expect(w.walk(role, b.root, mem, 0x7f0000001000, 0)).toBe(1);
        const gpas = [1, 2, 3, 4].map((level) => w.pteGpa[level - 1]!);
        for (let level = 1; level <= 4; level++) {
          const gpa = gpas[level - 1]!;
          const [lo, hi] = mem.get(gpa);
          for (let bit = 0; bit < 32; bit++) {
            const hi2 = (hi | (1 << bit)) | 0;
            mem.write64(gpa, lo, hi2);
            const ok = w.walk(role, b.root, mem, 0x7f0000001000, 0);
            const rsvd = isRsvdBitsSet(role, lo, hi2, level);
            if (rsvd) reserved++;
            expect(ok === 0 && (w.faultErrorCode & PFERR_RSVD_MASK) !== 0).toBe(rsvd);
            mem.write64(gpa, lo, hi);
          }
        }
      }
    }
    expect(reserved).toBeGreaterThan(0);
  });

  it('a table in a read-only slot: the walk succeeds but A/D are not written', () => {
    const { mem, b, role, w } = setup();
    const leaf = b.map(0x1000, 0x5000, {});
    mem.readonlyGfns.add(Math.floor(leaf / 4096));
    expect(w.walk(role, b.root, mem, 0x1000, 0)).toBe(1);
    expect(mem.get(leaf)[0] & PT_ACCESSED_MASK).toBe(0);
    expect(mem.dirtied).not.toContain(Math.floor(leaf / 4096));
  });

  it('a table outside any memslot ends the walk', () => {
    const { mem, role, w } = setup();
    expect(w.walk(role, 0x40000000, mem, 0x1000, 0)).toBe(0);
  });
});

describe('FNAME(walk_addr_generic), EPT (nested)', () => {
  function ept() {
    const mem = new MapMem();
    const b = new GuestPageTableBuilder(mem, mem.alloc, 4, true);
    const role = calcEptCpuRole(b.root | VMX_EPTP_PWL_4 | 6 | VMX_EPTP_AD_ENABLE_BIT);
    return { mem, b, role, w: new GuestWalker() };
  }
  it('R maps to ACC_USER; a read is PFERR_USER_MASK', () => {
    const { mem, b, role, w } = ept();
    b.map(0x200000, 0x800000, { level: 2, write: false, exec: false });
    expect(w.walk(role, b.root, mem, 0x200000 + 0x3000, PFERR_USER_MASK)).toBe(1);
    expect(w.pteAccess).toBe(ACC_USER_MASK);
    expect(w.gfn).toBe(0x803);
    expect(w.walk(role, b.root, mem, 0x200000, PFERR_WRITE_MASK)).toBe(0);
    expect(w.faultNested).toBe(true);
    expect(w.faultEptRwx).toBe(1);
  });
  it('write-only is a misconfiguration (reserved)', () => {
    const { mem, b, role, w } = ept();
    const at = b.map(0x1000, 0x5000, {});
    mem.write64(at, 0x5000 | 2, 0);
    expect(w.walk(role, b.root, mem, 0x1000, PFERR_USER_MASK)).toBe(0);
    expect(w.faultErrorCode & PFERR_RSVD_MASK).toBeTruthy();
  });
});

describe('PT64_INDEX', () => {
  it('gives bits 12 + 9 * (level - 1) .. +8 of any address below 2^57, every level', () => {
    for (let i = 0; i < 5000; i++) {
      const addr = Math.floor(Math.random() * 2 ** [32, 48, 57][i % 3]!);
      for (let level = 1; level <= 5; level++) {
        expect(pt64Index(addr, level)).toBe(Number((BigInt(addr) >> BigInt(12 + 9 * (level - 1))) & 511n));
      }
    }
    expect(pt64Index(0x7f0000000000 + 0x1ff * 0x1000, 1)).toBe(0x1ff);
    expect(pt64Index(0x7f0000000000, 4)).toBe(0xfe);
  });
});
