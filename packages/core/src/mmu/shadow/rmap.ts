/**
 * Reverse maps: for each (gfn, level), the leaf SPTEs that map it (`struct kvm_rmap_head`,
 * `pte_list_add()` / `pte_list_remove()` in arch/x86/kvm/mmu/mmu.c). The kernel keeps an
 * array of rmap heads per memslot per level (`slot->arch.rmap[level - 1]`), allocated for the
 * whole slot; the model allocates the heads in 512-entry blocks on first use, so memory
 * follows what is mapped, not the slot's size.
 *
 * A head is one int32: 0 = empty, v > 0 = one SPTE (sptep v - 1, the kernel's "bit 0 clear"
 * case), v < 0 = a descriptor chain starting at -v - 1 (`struct pte_list_desc`, PTE_LIST_EXT
 * SPTEs each). An sptep is `table * 512 + index`.
 */

/** PTE_LIST_EXT: SPTEs per descriptor */
export const PTE_LIST_EXT = 14;
/** descriptor words: count, next (-1 = none), then PTE_LIST_EXT spteps */
const DESC_WORDS = 16;

export class Rmap {
  /** heads by level (1..3), by block index (gfn >> 9 at that level's granularity) */
  private readonly blocks: Map<number, Int32Array>[] = [new Map(), new Map(), new Map(), new Map()];
  private descs = new Int32Array(DESC_WORDS * 16);
  private descFree: number[] = [];
  private descTop = 0;
  /** max_mmu_rmap_size */
  maxRmapSize = 0;

  /** the rmap index of `gfn` at `level` (gfn_to_index without the slot base) */
  private static index(gfn: number, level: number): number {
    return level === 1 ? gfn : Math.floor(gfn / 2 ** (9 * (level - 1)));
  }

  /** the head block of (gfn, level) with the head's index in `this.at`, or null */
  private at = 0;
  private lastKey = -1;
  private lastLevel = -1;
  private lastBlockRef: Int32Array | null = null;
  private headBlock(gfn: number, level: number, create: boolean): Int32Array | null {
    const idx = Rmap.index(gfn, level);
    // below 2^32 (every gfn of a 44-bit guest-physical space) integer shifts, not a float
    // division and an integer modulo
    const small = idx >= 0 && idx <= 0xffffffff;
    const key = small ? idx >>> 9 : Math.floor(idx / 512);
    this.at = small ? idx & 511 : idx % 512;
    if (key === this.lastKey && level === this.lastLevel && this.lastBlockRef !== null) return this.lastBlockRef;
    let block = this.blocks[level]!.get(key);
    if (!block) {
      if (!create) return null;
      block = new Int32Array(512);
      this.blocks[level]!.set(key, block);
    }
    this.lastKey = key;
    this.lastLevel = level;
    this.lastBlockRef = block;
    return block;
  }

  private allocDesc(): number {
    const d = this.descFree.length > 0 ? this.descFree.pop()! : this.descTop++;
    if ((d + 1) * DESC_WORDS > this.descs.length) {
      const n = new Int32Array(this.descs.length * 2);
      n.set(this.descs);
      this.descs = n;
    }
    this.descs[d * DESC_WORDS] = 0;
    this.descs[d * DESC_WORDS + 1] = -1;
    return d;
  }

  /** pte_list_add(): returns the number of SPTEs the head held before */
  add(gfn: number, level: number, sptep: number): number {
    const block = this.headBlock(gfn, level, true)!;
    const at = this.at;
    const v = block[at]!;
    if (v === 0) {
      block[at] = sptep + 1;
      return 0;
    }
    const h = { block, at };
    if (v > 0) {
      const d = this.allocDesc();
      const w = this.descs;
      w[d * DESC_WORDS] = 2;
      w[d * DESC_WORDS + 2] = v - 1;
      w[d * DESC_WORDS + 3] = sptep;
      h.block[h.at] = -d - 1;
      return 1;
    }
    let d = -v - 1;
    let count = 0;
    const head = d;
    // the kernel adds to the head descriptor, starting a new head when it is full
    let n = this.descs[d * DESC_WORDS]!;
    for (let x = d; x >= 0; x = this.descs[x * DESC_WORDS + 1]!) count += this.descs[x * DESC_WORDS]!;
    if (n === PTE_LIST_EXT) {
      const nd = this.allocDesc();
      this.descs[nd * DESC_WORDS + 1] = head;
      h.block[h.at] = -nd - 1;
      d = nd;
      n = 0;
    }
    this.descs[d * DESC_WORDS + 2 + n] = sptep;
    this.descs[d * DESC_WORDS] = n + 1;
    if (count + 1 > this.maxRmapSize) this.maxRmapSize = count + 1;
    return count;
  }

  /**
   * pte_list_add() for the `n` (<= 512) consecutive gfns from `gfn` (aligned to 512 at
   * `level`'s granularity) mapped by spteps `sptep0 + i`: one head block, the single-SPTE case
   * written directly. Returns how many heads already had SPTEs.
   */
  addRun(gfn: number, level: number, sptep0: number, n: number): number {
    const idx = Rmap.index(gfn, level);
    const key = Math.floor(idx / 512);
    let block = this.blocks[level]!.get(key);
    if (!block) {
      block = new Int32Array(512);
      this.blocks[level]!.set(key, block);
    }
    const at0 = idx % 512;
    let shared = 0;
    for (let i = 0; i < n; i++) {
      if (block[at0 + i] === 0) block[at0 + i] = sptep0 + i + 1;
      else {
        this.add(gfn + i * 2 ** (9 * (level - 1)), level, sptep0 + i);
        shared++;
      }
    }
    return shared;
  }

  /** pte_list_remove(): false (the kernel's KVM_BUG_ON) when the SPTE is not in the list */
  remove(gfn: number, level: number, sptep: number): boolean {
    const block = this.headBlock(gfn, level, false);
    if (!block) return false;
    const at = this.at;
    const v = block[at]!;
    if (v === 0) return false;
    if (v > 0) {
      if (v - 1 !== sptep) return false;
      block[at] = 0;
      return true;
    }
    const h = { block, at };
    const first = -v - 1;
    const w = this.descs;
    for (let d = first; d >= 0; d = w[d * DESC_WORDS + 1]!) {
      const n = w[d * DESC_WORDS]!;
      for (let i = 0; i < n; i++) {
        if (w[d * DESC_WORDS + 2 + i] !== sptep) continue;
        // pte_list_desc_remove_entry(): move the head's last entry into the hole
        const hn = w[first * DESC_WORDS]!;
        w[d * DESC_WORDS + 2 + i] = w[first * DESC_WORDS + 2 + hn - 1]!;
        w[first * DESC_WORDS] = hn - 1;
        if (hn - 1 === 0) {
          const next = w[first * DESC_WORDS + 1]!;
          this.descFree.push(first);
          h.block[h.at] = next >= 0 ? -next - 1 : 0;
        }
        // a single remaining SPTE goes back into the head word
        const v2 = h.block[h.at]!;
        if (v2 < 0) {
          const d2 = -v2 - 1;
          if (w[d2 * DESC_WORDS] === 1 && w[d2 * DESC_WORDS + 1] === -1) {
            h.block[h.at] = w[d2 * DESC_WORDS + 2]! + 1;
            this.descFree.push(d2);
          }
        }
        return true;
      }
    }
    return false;
  }

  /** for_each_rmap_spte(): calls `cb` for a snapshot of the SPTEs of (gfn, level) */
  forEach(gfn: number, level: number, cb: (sptep: number) => void): void {
    const block = this.headBlock(gfn, level, false);
    if (!block) return;
    const v = block[this.at]!;
    if (v === 0) return;
    if (v > 0) {
      cb(v - 1);
      return;
    }
    const list: number[] = [];
    const w = this.descs;
    for (let d = -v - 1; d >= 0; d = w[d * DESC_WORDS + 1]!) {
      const n = w[d * DESC_WORDS]!;
      for (let i = 0; i < n; i++) list.push(w[d * DESC_WORDS + 2 + i]!);
    }
    for (const s of list) cb(s);
  }

  /** number of SPTEs in (gfn, level)'s list */
  count(gfn: number, level: number): number {
    let n = 0;
    this.forEach(gfn, level, () => n++);
    return n;
  }

  /** bytes of rmap heads and descriptors */
  metadataBytes(): number {
    let b = this.descs.byteLength;
    for (const m of this.blocks) b += m.size * 512 * 4;
    return b;
  }
}
