/**
 * A picture of the model's guest memory at one point of a run, for `ccmem report`: every
 * memslot of every address space, and for each slot the layers the report draws, as runs of
 * gfns with one label each (never one entry per page, so a 4 TiB slot with a few changes is a
 * few runs).
 *
 * Everything is read through the model's own inspection paths, the ones `assert` steps and
 * `ccmem explain` use: memslots (`Vm.memslots`, `Vm.inspectMemslot`), the attribute runs
 * (`Vm.attributes`, kvm->mem_attr_array), the TDP MMU's leaves (`TdpMmu.forEachLeaf`, as the
 * invariant checker walks them), guest_memfd's page store (`GuestMemfd.forEachPage`), and the
 * vendor backend's `inspect()` (the RMP entry and direct-map level of a frame on SEV-SNP, the
 * Secure EPT entry of a gpa on TDX). Vendor state is read only for frames a guest_memfd holds:
 * memory follows what was touched, and so does the picture.
 */
import {
  KVM_FILTER_PRIVATE,
  KVM_FILTER_SHARED,
  KVM_MEMORY_ATTRIBUTE_PRIVATE,
  KVM_X86_SNP_VM,
  KVM_X86_TDX_VM,
  PAGE_SIZE,
  kvmGfnDirectBits,
  sptePfn,
  vmTypeName,
} from '@ccmem/core';
import { DeviceFdFile, GuestMemfd, PAGE_HWPOISON, PAGE_PREPARED, PAGE_UPTODATE } from '@ccmem/gmem';
import type { ModelVm } from '../model-target.js';
import { describeFlags } from '../numbers.js';

/** `[first gfn, end gfn (exclusive), label]`, or with the frame of the first gfn when frames run on */
export type Run = [start: number, end: number, label: string] | [start: number, end: number, label: string, pfn: number];

/** the layers of a slot lane, in drawing order */
export const LAYERS = ['memslot', 'dirty', 'attributes', 'mapping', 'mirror', 'shadow', 'gmem', 'rmp', 'directmap', 'sept'] as const;
export type LayerName = (typeof LAYERS)[number];

export interface SnapshotSlot {
  as_id: number;
  id: number;
  base_gfn: number;
  npages: number;
  flags: string[];
  userspace_addr: number;
  /** the guest memory file bound to the slot (KVM_MEM_GUEST_MEMFD) */
  guest_memfd: { fd: number | null; kind: string; offset: number } | null;
  /** runs per layer, clipped to [base_gfn, base_gfn + npages), in gfn order; absent layers are empty */
  layers: Partial<Record<LayerName, Run[]>>;
}

export interface StateSnapshot {
  vm_type: string;
  /** the VM was marked bugged (KVM_BUG_ON) or destroyed */
  dead: boolean;
  slots: SnapshotSlot[];
  /** what the picture leaves out, in words */
  notes: string[];
}

const LEVEL_NAMES: Record<number, string> = { 1: '4K', 2: '2M', 3: '1G', 4: '512G' };
/** pages per leaf at each level (PAGES_PER_LEVEL) */
const LEVEL_PAGES: Record<number, number> = { 1: 1, 2: 512, 3: 512 * 512, 4: 512 * 512 * 512 };

/** appends a page range to `runs`, merging with the last run when the label matches (and frames run on) */
class RunBuilder {
  readonly runs: Run[] = [];
  add(start: number, end: number, label: string, pfn?: number): void {
    const last = this.runs[this.runs.length - 1];
    if (last && last[1] === start && last[2] === label) {
      const lastPfn = last[3];
      if (pfn === undefined && lastPfn === undefined) {
        last[1] = end;
        return;
      }
      if (pfn !== undefined && lastPfn !== undefined && lastPfn + (start - last[0]) === pfn) {
        last[1] = end;
        return;
      }
    }
    this.runs.push(pfn === undefined ? [start, end, label] : [start, end, label, pfn]);
  }
}

interface Leaf {
  gfn: number;
  level: number;
  pfn: number;
  mirror: boolean;
  alias: boolean;
}

/** The state of `vm` now (see the file comment). */
export function snapshotVm(vm: ModelVm): StateSnapshot {
  const notes: string[] = [];
  const leaves = collectLeaves(vm);
  const shadowLeaves = collectShadowLeaves(vm);
  const fds = new Map<unknown, number>();
  for (const fd of vm.process.openFds()) {
    const f = vm.process.getFile(fd);
    if (f) fds.set(f, fd);
  }
  const slots: SnapshotSlot[] = [];
  for (let asId = 0; asId < vm.nrMemslotAsIds; asId++) {
    for (const slot of vm.memslots.slots.memslots(asId).slots()) {
      const lo = slot.baseGfn;
      const hi = slot.baseGfn + slot.npages;
      const layers: Partial<Record<LayerName, Run[]>> = {};
      const flags = describeFlags('memslot', slot.flags & 0xffff);
      if (slot.flags & (1 << 16)) flags.push('KVM_MEMSLOT_INVALID');
      if (slot.flags & (1 << 17)) flags.push('KVM_MEMSLOT_GMEM_ONLY');
      layers.memslot = [[lo, hi, flags.length ? flags.join(' ') : 'no flags']];

      // dirty bits (slot->dirty_bitmap) as runs: a clear chunk costs nothing, a full one a run
      if (slot.dirtyBitmap) {
        const b = new RunBuilder();
        slot.dirtyBitmap.forEachSetRun((s, e) => b.add(lo + s, lo + e, 'dirty'));
        layers.dirty = b.runs;
      }

      // attributes (kvm->mem_attr_array) only where a VM can have private memory
      if (vm.hasPrivateMem) {
        const b = new RunBuilder();
        vm.attributes.forEachRun(lo, hi, (s, e, v) => b.add(s, e, v & KVM_MEMORY_ATTRIBUTE_PRIVATE ? 'private' : 'shared'));
        layers.attributes = b.runs;
      }

      // TDP leaves over the slot: the direct root (on TDX, the shared alias) and the mirror root
      {
        const direct = new RunBuilder();
        const mirror = new RunBuilder();
        for (const l of leaves) {
          const span = LEVEL_PAGES[l.level] ?? 1;
          if (l.gfn + span <= lo || l.gfn >= hi) continue;
          const s = Math.max(lo, l.gfn);
          const e = Math.min(hi, l.gfn + span);
          const label = `${LEVEL_NAMES[l.level] ?? `level ${l.level}`}${l.alias ? ' shared alias' : ''}`;
          (l.mirror ? mirror : direct).add(s, e, label, l.pfn + (s - l.gfn));
        }
        if (vm.tdpEnabled || direct.runs.length) layers.mapping = direct.runs;
        if (vm.backend?.hasMirroredTdp) layers.mirror = mirror.runs;
      }
      // the shadow MMU's leaves (tdp_mmu off, or guest paging shadowed): several shadow pages
      // may map one gfn (other roles); the first leaf over a gfn is drawn
      if (shadowLeaves) {
        const b = new RunBuilder();
        let end = -Infinity;
        for (const l of shadowLeaves) {
          const span = LEVEL_PAGES[l.level] ?? 1;
          const s = Math.max(lo, l.gfn, end);
          const e = Math.min(hi, l.gfn + span);
          if (e <= s) continue;
          b.add(s, e, LEVEL_NAMES[l.level] ?? `level ${l.level}`, l.pfn + (s - l.gfn));
          end = e;
        }
        layers.shadow = b.runs;
      }

      // the guest memory file, and the vendor state of each frame it holds
      let gm: SnapshotSlot['guest_memfd'] = null;
      const file = slot.gmemFile;
      if (file instanceof GuestMemfd) {
        gm = { fd: fds.get(file) ?? null, kind: 'guest_memfd', offset: slot.gmemPgoff * PAGE_SIZE };
        const pages: [gfn: number, pfn: number][] = [];
        const b = new RunBuilder();
        file.forEachPage(slot.gmemPgoff, slot.gmemPgoff + slot.npages, (pgoff, pfn, f) => {
          const gfn = lo + (pgoff - slot.gmemPgoff);
          const label = ['allocated', f & PAGE_PREPARED ? 'prepared' : '', f & PAGE_UPTODATE ? 'uptodate' : '', f & PAGE_HWPOISON ? 'poisoned' : ''].filter(Boolean).join(' ');
          b.add(gfn, gfn + 1, label, pfn);
          pages.push([gfn, pfn]);
        });
        layers.gmem = b.runs;
        Object.assign(layers, vendorLayers(vm, pages, hi));
      } else if (file instanceof DeviceFdFile) {
        gm = { fd: fds.get(file) ?? null, kind: 'device_fd', offset: slot.gmemPgoff * PAGE_SIZE };
        layers.gmem = [[lo, hi, file.revoked ? 'device memory (revoked)' : 'device memory']];
      } else if (file) {
        gm = { fd: fds.get(file) ?? null, kind: 'guest memory file', offset: slot.gmemPgoff * PAGE_SIZE };
      }

      slots.push({
        as_id: asId,
        id: slot.id,
        base_gfn: lo,
        npages: slot.npages,
        flags,
        userspace_addr: slot.userspaceAddr,
        guest_memfd: gm,
        layers,
      });
    }
  }
  return { vm_type: vmTypeName(vm.vmType), dead: vm.dead, slots, notes };
}

/** every leaf SPTE of the shadow MMU (when it was used), in gfn order */
function collectShadowLeaves(vm: ModelVm): Leaf[] | null {
  const mmu = vm.shadowMmuIfUsed;
  if (!mmu) return vm.tdpEnabled ? null : [];
  const out: Leaf[] = [];
  mmu.forEachLeaf((_sptep, _sp, level, gfn, _access, lo, hi) => {
    const span = LEVEL_PAGES[level] ?? 1;
    const base = Math.floor(gfn / span) * span;
    out.push({ gfn: base, level, pfn: sptePfn(lo, hi), mirror: false, alias: false });
  });
  out.sort((a, b) => a.gfn - b.gfn);
  return out;
}

/** every TDP leaf (direct and mirror roots), gfns without the TDX shared bit, in gfn order */
function collectLeaves(vm: ModelVm): Leaf[] {
  const out: Leaf[] = [];
  const direct = kvmGfnDirectBits(vm);
  vm.mmu.forEachLeaf(0, Number.MAX_SAFE_INTEGER, KVM_FILTER_PRIVATE | KVM_FILTER_SHARED, (gfn, level, pfn, _w, _d, isMirror) => {
    out.push({ gfn, level, pfn, mirror: isMirror, alias: !isMirror && direct !== 0 });
  });
  out.sort((a, b) => a.gfn - b.gfn);
  return out;
}

/** RMP entry and direct-map level (SEV-SNP) or S-EPT entry (TDX) of each guest_memfd page */
function vendorLayers(vm: ModelVm, pages: readonly [number, number][], slotEnd: number): Partial<Record<LayerName, Run[]>> {
  const backend = vm.backend;
  if (!backend?.inspect || pages.length === 0) return {};
  if (vm.vmType === KVM_X86_SNP_VM) {
    const rmp = new RunBuilder();
    const dm = new RunBuilder();
    for (const [gfn, pfn] of pages) {
      const e = backend.inspect({ what: 'rmp', pfn }) as { assigned: boolean; validated: boolean; pagesize: number; asid: number; vmsa: boolean; immutable: boolean } | null;
      if (e) {
        const label = e.assigned
          ? ['assigned', `asid ${e.asid}`, e.pagesize ? '2M' : '4K', e.validated ? 'validated' : '', e.vmsa ? 'vmsa' : '', e.immutable ? 'immutable' : ''].filter(Boolean).join(' ')
          : 'hypervisor';
        rmp.add(gfn, gfn + 1, label);
      }
      const d = backend.inspect({ what: 'directmap', pfn }) as { present: boolean; levelName: string } | undefined;
      if (d) dm.add(gfn, gfn + 1, d.present ? `mapped ${d.levelName}` : 'unmapped');
    }
    return { rmp: rmp.runs, directmap: dm.runs };
  }
  if (vm.vmType === KVM_X86_TDX_VM) {
    const sept = new RunBuilder();
    let skipTo = -1;
    for (const [gfn] of pages) {
      if (gfn < skipTo) continue;
      const e = backend.inspect({ what: 'sept', gpa: gfn * PAGE_SIZE }) as { level: number; state: string } | undefined;
      if (!e || e.state === 'FREE' || e.level === 0) continue;
      // a huge S-EPT leaf answers for every gfn it covers
      const span = LEVEL_PAGES[e.level] ?? 1;
      const s = Math.floor(gfn / span) * span;
      sept.add(Math.max(s, gfn), Math.min(s + span, slotEnd), `${e.state} ${LEVEL_NAMES[e.level] ?? e.level}`);
      skipTo = s + span;
    }
    return { sept: sept.runs };
  }
  return {};
}
