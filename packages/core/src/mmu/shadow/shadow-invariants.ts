/**
 * The shadow MMU's rules, as sentences (the invariant checker runs them):
 *  - the WARNs of the shadowed_translation patch (access / gfn mismatch under a direct page)
 *    and the other kernel WARN_ONs the model records;
 *  - every leaf SPTE of a synced indirect page agrees with the guest PTE it shadows (present,
 *    same gfn, cached access no wider than the gpte's), or is zapped;
 *  - every direct page that shadows a guest huge page has the huge page's access, no wider;
 *  - no write-tracked gfn, and no gfn a synced 4K shadow page shadows, is writable through
 *    any SPTE;
 *  - no SPTE outlives its memslot, and W implies MMU-writable implies host-writable;
 *  - pages_4k / pages_2m / pages_1g count the leaves.
 */
import { KVM_MEMSLOT_INVALID, PAGE_SIZE } from '../../uapi.js';
import { ACC_WRITE_MASK } from '../mmu-internal.js';
import { PT_WRITABLE_LO } from '../spte.js';
import { gpteToGfn, isLastGpte, type GpteHalves } from '../paging-tmpl.js';
import { ShadowMmu, gpteAccessOf, protectCleanGpte } from './shadow-mmu.js';
import { roleAccess, roleDirect, roleLevel } from './mmu-page.js';
import type { CpuRole } from '../guest-paging.js';
import type { KvmMemorySlot } from '../../memslot/memslot.js';

export interface ShadowCheckVm {
  gfnToMemslot(gfn: number): KvmMemorySlot | null;
  readGpte(gpa: number, out: GpteHalves): boolean;
  /** the cpu role of guest tables a page with guest_mode = `nested` shadows */
  gpteRole(nested: boolean): CpuRole | null;
  allowInvalidSlots?: boolean;
}

export function checkShadowMmu(mmu: ShadowMmu, vm: ShadowCheckVm): string[] {
  const out: string[] = [];
  for (const w of mmu.warnings) out.push(`shadow MMU WARN: ${w.message}`);
  const g: GpteHalves = { lo: 0, hi: 0 };
  const counts = [0, 0, 0, 0];
  const f = mmu.format;
  const gpteAgrees = (gpa: number, nested: boolean, level: number): { gfn: number; access: number } | null => {
    const role = vm.gpteRole(nested);
    if (!role || !vm.readGpte(gpa, g)) return null;
    const present = role.ept ? (g.lo & 7) !== 0 : (g.lo & 1) !== 0;
    if (!present || !isLastGpte(level, g.lo)) return null;
    return { gfn: gpteToGfn(g.lo, g.hi), access: gpteAccessOf(role, g.lo, g.hi) };
  };
  mmu.forEachLeaf((sptep, sp, level, gfn, access, lo, hi) => {
    counts[level]!++;
    const where = `shadow SPTE sp ${sp}[${sptep & 511}] (gfn 0x${gfn.toString(16)}, level ${level})`;
    const slot = vm.gfnToMemslot(gfn);
    if (!slot) out.push(`${where} outlives its memslot`);
    else if (slot.flags & KVM_MEMSLOT_INVALID && !vm.allowInvalidSlots) out.push(`${where} maps a memslot that is being deleted`);
    const writable = (lo & PT_WRITABLE_LO) !== 0;
    const mmuW = mmu.isMmuWritable(lo, hi);
    const hostW = ((lo & f.hostWritableLo) | (hi & f.hostWritableHi)) !== 0;
    if (writable && !mmuW) out.push(`${where}: writable SPTE is not MMU-writable`);
    if (mmuW && !hostW) out.push(`${where}: MMU-writable SPTE is not host-writable`);
    if (writable && !(access & ACC_WRITE_MASK)) out.push(`${where}: writable although the shadowed access 0x${access.toString(16)} is not`);
    if (writable) {
      const pages = 2 ** (9 * (level - 1));
      for (let k = 0; k < Math.min(pages, 512); k++) {
        if (mmu.gfnIsWriteTracked(gfn + k)) out.push(`${where}: write-tracked gfn 0x${(gfn + k).toString(16)} is writable`);
      }
      mmu.forEachGfnValidSpWithGptes(gfn, (s) => {
        if (!mmu.spUnsync(s)) out.push(`${where}: gfn 0x${gfn.toString(16)} is a synced guest page table (sp ${s}) but writable`);
      });
    }
    const role = mmu.spRole(sp);
    const nested = (role & (1 << 17)) !== 0;
    if (!roleDirect(role) && !mmu.spUnsync(sp)) {
      const gpa = mmu.spGfn(sp) * PAGE_SIZE + (sptep & 511) * 8;
      const want = gpteAgrees(gpa, nested, level);
      if (want && vm.gpteRole(nested)) {
        const r = vm.gpteRole(nested)!;
        let gpteAccess = protectCleanGpte(r, roleAccess(role) & want.access, g.lo);
        // CR0.WP=0: KVM makes a supervisor write to a read-only gpte writable (FNAME(page_fault))
        if (!r.ept && !r.cr0_wp) gpteAccess |= ACC_WRITE_MASK;
        if (want.gfn - (want.gfn % 2 ** (9 * (level - 1))) !== gfn) out.push(`${where}: the guest PTE now maps gfn 0x${want.gfn.toString(16)}`);
        if (access & ~gpteAccess) out.push(`${where}: cached access 0x${access.toString(16)} is wider than the guest PTE's 0x${gpteAccess.toString(16)}`);
      } else if (vm.gpteRole(nested)) out.push(`${where}: the guest PTE it shadows is gone`);
    }
  });
  // direct pages under a guest huge page: role.access no wider than the guest's huge PTE
  mmu.forEachPage((sp) => {
    const role = mmu.spRole(sp);
    if (!roleDirect(role)) return;
    const nested = (role & (1 << 17)) !== 0;
    const r = vm.gpteRole(nested);
    if (!r || r.level === 0) return;
    for (const p of mmu.parents(sp)) {
      const parent = p >>> 9;
      const prole = mmu.spRole(parent);
      if (roleDirect(prole)) continue;
      if (!vm.readGpte(mmu.spGfn(parent) * PAGE_SIZE + (p & 511) * 8, g)) continue;
      const present = r.ept ? (g.lo & 7) !== 0 : (g.lo & 1) !== 0;
      if (!present || !isLastGpte(roleLevel(prole), g.lo)) continue;
      const guest = roleAccess(prole) & gpteAccessOf(r, g.lo, g.hi);
      if (roleAccess(role) & ~guest)
        out.push(`direct shadow page ${sp} (gfn 0x${mmu.spGfn(sp).toString(16)}) has access 0x${roleAccess(role).toString(16)}, wider than the guest huge page's 0x${guest.toString(16)}`);
    }
  });
  const s = mmu.stats;
  if (s.pages_4k !== counts[1] || s.pages_2m !== counts[2] || s.pages_1g !== counts[3])
    out.push(`shadow page stats (${s.pages_4k}/${s.pages_2m}/${s.pages_1g}) do not count the leaves (${counts[1]}/${counts[2]}/${counts[3]})`);
  return out;
}
