/**
 * `assert` steps on the model: the state a locator names, as a flat record whose keys an
 * assert step compares (docs/scenarios.md, "assert: model state"). Throws KvmError when the
 * state does not exist on this VM (no RMP on a TDX VM, an fd that is not open, ...).
 */
import { fail, gpaToGfn, kvmGfnDirectBits, kvmIsGfnAlias, PAGE_SIZE, type KvmFile, type Process } from '@ccmem/core';
import type { ModelVm } from '../model-target.js';
import { DeviceFdFile, GuestMemfd, PAGE_HWPOISON, PAGE_PREPARED, PAGE_UPTODATE } from '@ccmem/gmem';
import type { ASSERT_LOCATORS, AssertWhat } from '../ops/assert.js';

/** what an assert step inspects, and where (every locator resolved to a number) */
export type AssertLocators = { what: AssertWhat } & { [K in Exclude<(typeof ASSERT_LOCATORS)[number], 'what'>]?: number };

export function inspectState(vm: ModelVm, process: Process, loc: AssertLocators): Record<string, unknown> {
  switch (loc.what) {
    case 'attributes':
      return inspectAttributes(vm, loc);
    case 'spte':
      return inspectSpte(vm, loc);
    case 'rmp':
    case 'sept':
    case 'td':
    case 'directmap':
    case 'sev':
    case 'launch':
      return inspectVendor(vm, loc);
    case 'stats':
      return inspectStats(vm);
    case 'memslot':
      return inspectMemslot(vm, loc);
    case 'gmem':
      return inspectGmem(process, loc);
  }
}

/** gfn of a locator without the TDX shared bit; `shared` when the gpa named the shared alias */
function locateGfn(vm: ModelVm, loc: AssertLocators): { gfn: number; shared: boolean } {
  let gfn: number;
  if (loc.gfn !== undefined) gfn = loc.gfn;
  else if (loc.gpa !== undefined) gfn = gpaToGfn(loc.gpa);
  else fail('EINVAL', `assert ${loc.what}: needs gfn or gpa`);
  if (kvmIsGfnAlias(vm, gfn)) return { gfn: gfn - kvmGfnDirectBits(vm), shared: true };
  return { gfn, shared: false };
}

function inspectAttributes(vm: ModelVm, loc: AssertLocators): Record<string, unknown> {
  const { gfn } = locateGfn(vm, loc);
  return { gfn, attributes: vm.getMemoryAttributes(gfn), private: vm.memIsPrivate(gfn) };
}

/**
 * The TDP leaf translating the gfn. On TDX a private gfn is looked up in the mirror root
 * unless the locator's gpa carries the shared bit; other VM types have one root.
 */
function inspectSpte(vm: ModelVm, loc: AssertLocators): Record<string, unknown> {
  const { gfn, shared } = locateGfn(vm, loc);
  const isPrivate = !shared && vm.memIsPrivate(gfn);
  const leaf = vm.mmu.leafAt(gfn, isPrivate);
  if (!leaf) return { gfn, present: false, level: 0, pfn: null, private: isPrivate };
  return {
    gfn,
    present: true,
    level: leaf.level,
    pfn: leaf.pfn + (gfn - leaf.gfn),
    leaf_gfn: leaf.gfn,
    leaf_pfn: leaf.pfn,
    writable: leaf.writable,
    mmu_writable: leaf.mmuWritable,
    dirty: leaf.dirty,
    accessed: leaf.accessed,
    mirror: leaf.isMirror,
    private: isPrivate,
  };
}

/** the pfn a locator names: `pfn`, or the guest_memfd page behind gpa/gfn */
function locatePfn(vm: ModelVm, loc: AssertLocators): number {
  if (loc.pfn !== undefined) return loc.pfn;
  const { gfn } = locateGfn(vm, loc);
  const pfn = vm.gmemPeekPfn(gfn);
  if (pfn < 0) fail('ENOENT', `assert ${loc.what}: gfn 0x${gfn.toString(16)} has no guest_memfd page allocated`);
  return pfn;
}

function inspectVendor(vm: ModelVm, loc: AssertLocators): Record<string, unknown> {
  const backend = vm.backend;
  if (!backend?.inspect) fail('EINVAL', `assert ${loc.what}: this VM type has no vendor state`);
  let state: unknown;
  if (loc.what === 'sept') {
    const gpa = loc.gpa ?? (loc.gfn !== undefined ? loc.gfn * PAGE_SIZE : undefined);
    if (gpa === undefined) fail('EINVAL', 'assert sept: needs gpa or gfn');
    state = backend.inspect({ what: 'sept', gpa });
  } else if (loc.what === 'rmp') {
    state = loc.pfn !== undefined ? backend.inspect({ what: 'rmp', pfn: loc.pfn }) : backend.inspect({ what: 'rmp', gpa: locateGfn(vm, loc).gfn * PAGE_SIZE });
    if (state === null) return { assigned: false, present: false };
  } else if (loc.what === 'sev' || loc.what === 'launch') {
    state = backend.inspect({ what: loc.what });
  } else if (loc.what === 'td') {
    const td = backend.inspect({ what: 'td' }) as ({ vcpus: { id: number }[] } & Record<string, unknown>) | undefined;
    // the vCPUs by id, so that a step names the one it checks: `vcpus: { 1: { initialized: true } }`
    // (a vCPU the TDX module never saw leaves a hole in the list, which forEach skips)
    const vcpus: Record<string, unknown> = {};
    td?.vcpus.forEach((v) => (vcpus[String(v.id)] = v));
    state = td && { ...td, vcpus };
  } else {
    state = backend.inspect({ what: 'directmap', pfn: locatePfn(vm, loc) });
  }
  if (state === undefined) fail('EINVAL', `assert ${loc.what}: the ${backend.name} backend has no such state`);
  // the RMP entry's Guest_Physical_Address field as `rmp_gpa`: `gpa` is the assert's locator
  if (loc.what === 'rmp') return { ...(state as Record<string, unknown>), rmp_gpa: (state as { gpa: number }).gpa };
  return { ...(state as Record<string, unknown>) };
}

function inspectStats(vm: ModelVm): Record<string, unknown> {
  const vendor = vm.backend?.inspect?.({ what: 'stats' });
  return {
    ...(typeof vendor === 'object' && vendor !== null ? (vendor as Record<string, unknown>) : {}),
    ...vm.mmu.stats,
    // the binary stats' names (KVM_GET_STATS_FD): both MMUs' leaves, the shadow MMU's counters
    ...vm.mmuStats(),
    metadata_bytes: vm.mmu.metadataBytes(),
    vm_dead: vm.dead,
    vcpus: vm.nrVcpus,
  };
}

function inspectMemslot(vm: ModelVm, loc: AssertLocators): Record<string, unknown> {
  if (loc.slot === undefined) fail('EINVAL', 'assert memslot: needs slot');
  const asId = loc.as_id ?? (loc.slot >>> 16);
  const id = loc.slot & 0xffff;
  const s = vm.inspectMemslot(asId, id);
  if (!s) return { present: false, slot: id, as_id: asId };
  return {
    present: true,
    slot: s.id,
    as_id: s.asId,
    base_gfn: s.baseGfn,
    guest_phys_addr: s.baseGfn * PAGE_SIZE,
    npages: s.npages,
    memory_size: s.npages * PAGE_SIZE,
    userspace_addr: s.userspaceAddr,
    flags: s.flags,
    guest_memfd: s.gmemFile !== null,
    guest_memfd_offset: s.gmemFile !== null ? s.gmemPgoff * PAGE_SIZE : null,
  };
}

function inspectGmem(process: Process, loc: AssertLocators): Record<string, unknown> {
  if (loc.fd === undefined) fail('EINVAL', 'assert gmem: needs fd');
  const file: KvmFile | undefined = process.getFile(loc.fd);
  if (!file) fail('EBADF', 'assert gmem: fd not open');
  const pgoff = Math.floor((loc.offset ?? 0) / PAGE_SIZE);
  if (file instanceof GuestMemfd) {
    const pfn = file.pfnAt(pgoff);
    const flags = file.pageFlags(pgoff);
    const st = file.stats;
    return {
      kind: file.kind,
      size: file.size,
      flags: file.flags,
      allocated: pfn >= 0,
      pfn: pfn >= 0 ? pfn : null,
      uptodate: (flags & PAGE_UPTODATE) !== 0,
      prepared: (flags & PAGE_PREPARED) !== 0,
      poisoned: (flags & PAGE_HWPOISON) !== 0,
      allocated_pages: st.allocatedPages,
      poisoned_pages: st.poisonedPages,
      bindings: st.bindings,
      mappings: st.mappings,
    };
  }
  if (file instanceof DeviceFdFile) {
    const revoked = file.revoked;
    return {
      kind: file.kind,
      size: file.size,
      revoked,
      live: file.live,
      allocated: !revoked,
      pfn: revoked ? null : file.region.pfnAt(pgoff),
      bindings: file.boundRanges().length,
    };
  }
  fail('EINVAL', `assert gmem: fd is a ${file.kind}, not a guest memory file`);
}
