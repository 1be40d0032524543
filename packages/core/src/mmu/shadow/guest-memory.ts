/**
 * Guest page tables as KVM reads and writes them: through the memslot's userspace address
 * (kvm_vcpu_gfn_to_hva_prot() + __get_user() / __try_cmpxchg_user() in paging_tmpl.h,
 * kvm_vcpu_read_guest_atomic() in mmu.c). No fault is taken on the guest's side: a gpte in a
 * gfn without a memslot, or whose host page cannot be read, fails the read.
 */
import type { KvmMemorySlot } from '../../memslot/memslot.js';
import type { HvaToPfnOut } from '../../host/address-space.js';
import type { Process } from '../../host/process.js';
import { type PhysMem, ZERO_PFN } from '../../host/phys-mem.js';
import { KVM_MEM_READONLY, KVM_MEMSLOT_INVALID, PAGE_SIZE, PG_LEVEL_4K } from '../../uapi.js';
import type { GpteHalves, GuestPteMemory } from '../paging-tmpl.js';

export interface GuestMemoryVm {
  readonly process: Process;
  /** what a cached gfn → pfn translation depends on: the memslots and the mmu-notifier */
  readonly mmuInvalidate: { readonly seq: number; readonly inProgress: number };
  memslotGeneration(): number;
  gfnToMemslot(gfn: number): KvmMemorySlot | null;
  /** mark_page_dirty_in_slot() */
  markPageDirty(slot: KvmMemorySlot, gfn: number): void;
}


/**
 * gpa >> PAGE_SHIFT. Page tables almost always sit below 4 GiB: there it is an integer
 * shift, not a float division and floor (every gpte read computes it).
 */
function gpaToGfn(gpa: number): number {
  return gpa >= 0 && gpa <= 0xffffffff ? gpa >>> 12 : Math.floor(gpa / PAGE_SIZE);
}

/** gpa & ~PAGE_MASK, the same way */
function gpaOffset(gpa: number): number {
  return gpa >= 0 && gpa <= 0xffffffff ? gpa & (PAGE_SIZE - 1) : gpa - Math.floor(gpa / PAGE_SIZE) * PAGE_SIZE;
}

/** entries of the gfn → pfn cache (direct-mapped) */
const CACHE = 256;

export class VmGuestMemory implements GuestPteMemory {
  private readonly out: HvaToPfnOut = { pfn: 0, writable: false, level: PG_LEVEL_4K };
  /*
   * A small cache of gfn → (slot, host pfn) for page-table reads. A cached translation is
   * used only while the memslot generation and the mmu-notifier sequence are what they were
   * when it was filled and no invalidation is in progress: any change of either (slot
   * change, munmap, CoW of the zero page) can change the answer. Zero-page answers are not
   * cached (a later VMM write replaces them).
   *
   * An entry also keeps the frame's contents slot once a read has resolved it (0: not yet,
   * or the frame holds no contents), so the next read of the same table is one line lookup
   * (what __get_user() through the hva costs the kernel: no memslot or page-table search).
   * The slots are dropped when the host drops any frame's contents (contentsGeneration).
   */
  private readonly cGfn = new Float64Array(CACHE).fill(-1);
  private readonly cPfn = new Float64Array(CACHE);
  private readonly cWritable = new Uint8Array(CACHE);
  private readonly cSlot: (KvmMemorySlot | null)[] = new Array<KvmMemorySlot | null>(CACHE).fill(null);
  private readonly cContents = new Int32Array(CACHE);
  private cSlotsGen = -1;
  private cSeq = -1;
  private cContentsGen = -1;
  /** the cache entry that holds the last pfnOf() answer, -1 when it was not cached */
  private lastK = -1;
  /** the slot of the last lookup (for gptWritable) */
  private lastSlot: KvmMemorySlot | null = null;
  private readonly phys: PhysMem;
  /** the gpte cmpxchgGpte() found */
  private readonly cur: GpteHalves = { lo: 0, hi: 0 };

  constructor(private readonly vm: GuestMemoryVm) {
    this.phys = vm.process.phys;
  }

  private cacheValid(): boolean {
    const inv = this.vm.mmuInvalidate;
    if (inv.inProgress > 0) return false;
    const gen = this.vm.memslotGeneration();
    if (gen !== this.cSlotsGen || inv.seq !== this.cSeq) {
      this.cGfn.fill(-1);
      this.cSlotsGen = gen;
      this.cSeq = inv.seq;
    }
    const contentsGen = this.phys.contentsGeneration;
    if (contentsGen !== this.cContentsGen) {
      this.cContents.fill(0);
      this.cContentsGen = contentsGen;
    }
    return true;
  }

  /** the hva of `gpa`, or -1 without a usable memslot */
  hvaOf(gpa: number): number {
    const gfn = gpaToGfn(gpa);
    const slot = this.vm.gfnToMemslot(gfn);
    if (!slot || slot.flags & KVM_MEMSLOT_INVALID) return -1;
    return slot.userspaceAddr + (gfn - slot.baseGfn) * PAGE_SIZE + (gpa % PAGE_SIZE);
  }

  /** the host pfn behind `gpa` (faulting it in like GUP does), or -1 */
  pfnOf(gpa: number, write: boolean): number {
    const gfn = gpaToGfn(gpa);
    const valid = this.cacheValid();
    const k = (gfn >>> 0) & (CACHE - 1);
    if (valid && this.cGfn[k] === gfn && (!write || this.cWritable[k])) {
      this.lastSlot = this.cSlot[k]!;
      this.lastK = k;
      return this.cPfn[k]!;
    }
    this.lastK = -1;
    const slot = this.vm.gfnToMemslot(gfn);
    this.lastSlot = slot;
    if (!slot || slot.flags & KVM_MEMSLOT_INVALID) return -1;
    const hva = slot.userspaceAddr + (gfn - slot.baseGfn) * PAGE_SIZE;
    if (this.vm.process.mm.hvaToPfnInto(hva, write, this.out) !== null) return -1;
    const pfn = this.out.pfn;
    if (valid && pfn !== ZERO_PFN) {
      this.cGfn[k] = gfn;
      this.cPfn[k] = pfn;
      this.cWritable[k] = this.out.writable ? 1 : 0;
      this.cSlot[k] = slot;
      this.cContents[k] = 0;
      this.lastK = k;
    }
    return pfn;
  }

  /** the contents slot of `pfn`, the answer of the pfnOf() just made (cached in its entry) */
  private contentsOf(pfn: number): number {
    const k = this.lastK;
    if (k < 0) return this.phys.contentsSlot(pfn);
    let s1 = this.cContents[k]!;
    if (s1 === 0) {
      s1 = this.phys.contentsSlot(pfn);
      this.cContents[k] = s1;
    }
    return s1;
  }

  readGpte(gpa: number, out: GpteHalves): boolean {
    // the common case, kept small so the walker's calls inline it: the table's frame is in
    // the cache with its contents slot
    const gfn = gpaToGfn(gpa);
    const k = (gfn >>> 0) & (CACHE - 1);
    const off = gpaOffset(gpa);
    if (this.cacheValid() && this.cGfn[k] === gfn && this.cContents[k] !== 0 && (off & 7) === 0) {
      const s1 = this.cContents[k]!;
      this.lastSlot = this.cSlot[k]!;
      this.lastK = k;
      this.phys.readI64InSlot(s1, off, out);
      return true;
    }
    return this.readGpteSlow(gpa, out);
  }

  private readGpteSlow(gpa: number, out: GpteHalves): boolean {
    const off = gpaOffset(gpa);
    if ((off & 7) !== 0) throw new RangeError(`readGpte: gpa 0x${gpa.toString(16)} is not 8-aligned`);
    const pfn = this.pfnOf(gpa, false);
    if (pfn < 0) return false;
    const s1 = this.contentsOf(pfn);
    if (s1 === 0) {
      out.lo = 0;
      out.hi = 0;
      return true;
    }
    this.phys.readI64InSlot(s1, off, out);
    return true;
  }

  /** kvm_vcpu_read_guest_atomic() of `n` gptes in one page */
  readGptes(gpa: number, n: number, lo: Int32Array, hi: Int32Array): boolean {
    const gfn = gpaToGfn(gpa);
    const k = (gfn >>> 0) & (CACHE - 1);
    if (this.cacheValid() && this.cGfn[k] === gfn && this.cContents[k] !== 0) {
      this.lastSlot = this.cSlot[k]!;
      this.lastK = k;
      this.phys.readI64HalvesInSlot(this.cContents[k]!, gpaOffset(gpa), n, lo, hi);
      return true;
    }
    return this.readGptesSlow(gpa, n, lo, hi);
  }

  private readGptesSlow(gpa: number, n: number, lo: Int32Array, hi: Int32Array): boolean {
    const pfn = this.pfnOf(gpa, false);
    if (pfn < 0) return false;
    const s1 = this.contentsOf(pfn);
    const off = gpaOffset(gpa);
    if (s1 === 0) this.phys.readI64Halves(pfn, off, n, lo, hi);
    else this.phys.readI64HalvesInSlot(s1, off, n, lo, hi);
    return true;
  }

  gptWritable(gfn: number): boolean {
    const slot = this.lastSlot !== null && gfn >= this.lastSlot.baseGfn && gfn < this.lastSlot.baseGfn + this.lastSlot.npages ? this.lastSlot : this.vm.gfnToMemslot(gfn);
    return !!slot && !(slot.flags & KVM_MEM_READONLY);
  }

  cmpxchgGpte(gpa: number, oldLo: number, oldHi: number, newLo: number, newHi: number): number {
    const pfn = this.pfnOf(gpa, true);
    if (pfn < 0) return -14; // -EFAULT
    const off = gpaOffset(gpa);
    const phys = this.phys;
    const s1 = this.contentsOf(pfn);
    let lo: number;
    let hi: number;
    if (s1 !== 0 && (off & 7) === 0) {
      // both halves with one line lookup
      const cur = this.cur;
      phys.readI64InSlot(s1, off, cur);
      lo = cur.lo;
      hi = cur.hi;
    } else {
      lo = s1 === 0 ? phys.readI32(pfn, off) : phys.readI32InSlot(s1, off);
      hi = s1 === 0 ? phys.readI32(pfn, off + 4) : phys.readI32InSlot(s1, off + 4);
    }
    if (lo !== (oldLo | 0) || hi !== (oldHi | 0)) return 1;
    if ((newLo | 0) !== lo && !(s1 !== 0 && phys.writeI32InSlot(s1, off, newLo))) phys.writeI32(pfn, off, newLo);
    if ((newHi | 0) !== hi && !(s1 !== 0 && phys.writeI32InSlot(s1, off + 4, newHi))) phys.writeI32(pfn, off + 4, newHi);
    const gfn = gpaToGfn(gpa);
    const slot = this.lastSlot;
    if (slot) this.vm.markPageDirty(slot, gfn);
    return 0;
  }

  /** a 64-bit store by the VMM / the test harness into guest memory (no MMU involvement) */
  write64(gpa: number, lo: number, hi: number): void {
    const pfn = this.pfnOf(gpa, true);
    if (pfn < 0) throw new RangeError(`gpa 0x${gpa.toString(16)} is not backed by a memslot`);
    this.vm.process.phys.writeValue(pfn, gpaOffset(gpa), 8, (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0));
  }
}
