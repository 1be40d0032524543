/**
 * The invariant checker: rules that must hold between any two kernel steps. Tests run it
 * after every operation; the explorer after every scheduled step. Each violation is a
 * sentence naming the rule.
 */
import { KVM_MEM_LOG_DIRTY_PAGES, KVM_MEM_PCI_HOLE, KVM_MEMSLOT_INVALID, PAGE_SIZE, PG_LEVEL_4K, pagesPerHpage } from './uapi.js';
import { KVM_FILTER_PRIVATE, KVM_FILTER_SHARED } from './backend.js';
import type { Vm } from './vm.js';
import { checkShadowMmu } from './mmu/shadow/shadow-invariants.js';
import type { DirtyBitmap } from './memslot/dirty-bitmap.js';

export interface InvariantOptions {
  /** stop after this many 4K pages of huge leaves were checked page by page */
  pageBudget?: number;
  /** skip the "no SPTE outlives its slot" rule (while a memslot change is mid-flight) */
  allowInvalidSlots?: boolean;
  /**
   * Check only the SPTEs that map a gfn in [start, end) (a huge leaf overlapping the range is
   * checked whole). The invalidation counters and the vendor backend's rules always run (the
   * memslot rules unless `memslots: false`). For callers that know which gfns the last operation could have changed, e.g.
   * the explorer after a phase whose footprint is a gfn range; it runs the full check at the
   * end of every schedule.
   */
  gfnRange?: { start: number; end: number };
  /**
   * Run the memslot rules (`vm.memslots.checkInvariants()`; default true). A caller may skip
   * them after an operation that cannot change memslots (a guest access, a pre-fault, an
   * attribute change), as the explorer does between phases; it checks them at the end.
   */
  memslots?: boolean;
}

export function checkVmInvariants(vm: Vm, opts: InvariantOptions = {}): string[] {
  const out: string[] = [];
  const inv = vm.mmuInvalidate;
  if (inv.inProgress < 0) out.push(`mmu_invalidate_in_progress is negative (${inv.inProgress})`);
  if (inv.warnings > 0) out.push(`${inv.warnings} invalidation(s) began without adding a range or ended unbalanced`);
  if (opts.memslots !== false) out.push(...vm.memslots.checkInvariants());

  let budget = opts.pageBudget ?? 1 << 16;
  const start = opts.gfnRange?.start ?? 0;
  const end = opts.gfnRange?.end ?? Number.MAX_SAFE_INTEGER;
  const ringGfns = vm.dirtyRingSize !== 0 && !vm.dirtyLog.initiallySet ? dirtyRingGfns(vm) : null;
  if (start < end) vm.mmu.forEachLeaf(start, end, KVM_FILTER_PRIVATE | KVM_FILTER_SHARED, (gfn, level, pfn, writable, _dirty, isMirror) => {
    const slot = vm.gfnToMemslot(gfn);
    if (!slot) {
      out.push(`${where(gfn, level)} outlives its memslot (no slot maps this gfn)`);
      return;
    }
    if (slot.flags & KVM_MEMSLOT_INVALID) {
      if (!opts.allowInvalidSlots) out.push(`${where(gfn, level)} maps a memslot that is being deleted`);
      return;
    }
    if (level > PG_LEVEL_4K) {
      // Huge mappings may stay in a dirty-logging slot (a read-only slot's, or all of them with
      // KVM_DIRTY_LOG_INITIALLY_SET until KVM_CLEAR_DIRTY_LOG splits them:
      // kvm_mmu_slot_apply_flags()), but a writable one may only cover pages whose dirty bits
      // are all still set, or a write would be lost
      if (slot.dirtyBitmap && vm.dirtyRingSize === 0 && writable && !allDirty(slot.dirtyBitmap, gfn - slot.baseGfn, pagesPerHpage(level)))
        out.push(`${where(gfn, level)} is huge and writable in a dirty-logging memslot over pages not marked dirty`);
      // disallow_lpage, written out from the kernel (kvm_alloc_memslot_metadata(),
      // hugepage_has_attrs()) rather than through the fault path's disallowLpage(): the huge
      // page must lie inside the slot, gfn and hva must share their offset in it, a PCI-hole
      // slot is never huge; mixed attributes are checked page by page below
      const n = pagesPerHpage(level);
      const ugfn = Math.floor(slot.userspaceAddr / PAGE_SIZE);
      const reason =
        gfn < slot.baseGfn || gfn + n > slot.baseGfn + slot.npages
          ? 'it sticks out of its memslot'
          : (slot.baseGfn - ugfn) % n !== 0
            ? 'gfn and hva are not equally aligned'
            : (slot.flags & KVM_MEM_PCI_HOLE) !== 0
              ? 'the slot is a PCI hole'
              : null;
      if (reason !== null) out.push(`${where(gfn, level)} is huge where disallow_lpage requires a smaller mapping: ${reason}`);
    }
    // KVM_LPAGE_MIXED_FLAG: every page of a huge leaf has the attributes of its first page
    const attrs0 = level > PG_LEVEL_4K && vm.hasPrivateMem ? vm.getMemoryAttributes(gfn) : -1;
    let mixedReported = false;
    const n = pagesPerHpage(level);
    for (let i = 0; i < n && budget > 0; i++, budget--) {
      const g = gfn + i;
      if (attrs0 >= 0 && !mixedReported && vm.getMemoryAttributes(g) !== attrs0) {
        mixedReported = true;
        out.push(`${where(gfn, level)} is huge where disallow_lpage requires a smaller mapping: gfn 0x${g.toString(16)} has other attributes than the first page (mixed)`);
      }
      const isPrivate = vm.memIsPrivate(g);
      if (isMirror && !isPrivate) out.push(`mirror (private) SPTE for gfn 0x${g.toString(16)} whose attribute is shared`);
      let expected: number;
      const gmemPath = isPrivate || isMirror || (slot.gmemFile !== null && (slot.flags & (1 << 17)) !== 0);
      if (gmemPath) {
        expected = slot.gmemFile?.peekPfn ? slot.gmemFile.peekPfn(slot, g) : pfn + i;
        if (slot.gmemFile && !slot.gmemFile.live) out.push(`SPTE gfn 0x${g.toString(16)} maps a closed guest_memfd`);
      } else {
        if (vm.hasPrivateMem && !isMirror && vm.backend?.hasMirroredTdp && isPrivate)
          out.push(`direct (shared) SPTE for private gfn 0x${g.toString(16)}`);
        expected = vm.process.mm.peekPfn(slot.userspaceAddr + (g - slot.baseGfn) * PAGE_SIZE);
      }
      if (expected !== pfn + i)
        out.push(
          `SPTE gfn 0x${g.toString(16)} maps pfn 0x${(pfn + i).toString(16)} but its backing is pfn ${expected < 0 ? 'none' : '0x' + expected.toString(16)} (${gmemPath ? 'guest_memfd' : 'hva'})`,
        );
      if (writable && ringGfns !== null && level === PG_LEVEL_4K && slot.flags & KVM_MEM_LOG_DIRTY_PAGES) {
        // with dirty rings: the page is in some vCPU's ring, not yet reset (a reset re-protects it)
        if (!ringGfns.has(`${((slot.asId << 16) | slot.id) >>> 0}:${g - slot.baseGfn}`))
          out.push(`writable SPTE gfn 0x${g.toString(16)} in a dirty-logging slot is in no vCPU's dirty ring (a write would be lost)`);
      }
      if (writable && slot.dirtyBitmap && vm.dirtyRingSize === 0 && level === PG_LEVEL_4K) {
        const rel = g - slot.baseGfn;
        if (!slot.dirtyBitmap.test(rel))
          out.push(`writable SPTE gfn 0x${g.toString(16)} in a dirty-logging slot whose dirty bit is clear (a write would be lost)`);
      }
    }
  });
  if (vm.backend?.checkInvariants) out.push(...vm.backend.checkInvariants());
  const shadow = vm.shadowMmuIfUsed;
  if (shadow) {
    const mem = vm.guestMemory;
    out.push(
      ...checkShadowMmu(shadow, {
        gfnToMemslot: (gfn) => vm.gfnToMemslot(gfn),
        readGpte: (gpa, o) => mem.readGpte(gpa, o),
        gpteRole: (nested) => {
          for (const v of vm.vcpus) {
            if (nested && v.paging.nested) return v.paging.nested.ctx.role;
            if (!nested) return v.paging.cpuRole;
          }
          return null;
        },
        ...(opts.allowInvalidSlots ? { allowInvalidSlots: true } : {}),
      }),
    );
    // no write-tracked gfn is writable through the TDP MMU either (L1's mapping of an L2's EPT table)
    for (const gfn of shadow.writeTrackedGfns()) {
      vm.mmu.forEachLeaf(gfn, gfn + 1, KVM_FILTER_SHARED, (g, level, _pfn, writable) => {
        if (writable) out.push(`${where(g, level)} (TDP) is writable over write-tracked gfn 0x${gfn.toString(16)}`);
      });
    }
  }
  return out;
}

function allDirty(bitmap: DirtyBitmap, rel: number, n: number): boolean {
  return bitmap.allSet(rel, rel + n);
}

function where(gfn: number, level: number): string {
  return `SPTE gfn 0x${gfn.toString(16)} level ${level}`;
}

/** Throws with every violation listed; for tests. */
export function assertVmInvariants(vm: Vm, opts?: InvariantOptions): void {
  const v = checkVmInvariants(vm, opts);
  if (v.length) throw new Error(`invariants violated:\n  - ${v.slice(0, 20).join('\n  - ')}`);
}

export { KVM_FILTER_SHARED };

/** every (slot, offset) a vCPU's dirty ring holds between reset_index and dirty_index */
function dirtyRingGfns(vm: Vm): Set<string> {
  const out = new Set<string>();
  for (const v of vm.vcpus) {
    const ring = v.dirtyRing;
    if (ring === null) continue;
    for (let i = 0; i < ring.used; i++) {
      const e = ring.entry(ring.resetIndex + i);
      out.add(`${e.slot}:${e.offset}`);
    }
  }
  return out;
}
