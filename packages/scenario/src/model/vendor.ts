/** Model handlers: SEV-SNP and TDX ioctls and guest instructions, and MapGPA for both. */
import { fail, gpaToGfn, KVM_X86_TDX_VM, PAGE_SIZE, PG_LEVEL_2M, PG_LEVEL_4K } from '@ccmem/core';
import { SNP_PAGE_STATE_PRIVATE, SNP_PAGE_STATE_PSMASH, SNP_PAGE_STATE_SHARED, SNP_PAGE_STATE_UNSMASH } from '@ccmem/snp';
import type { Outcome } from '../target.js';
import { guestOpOutcome, ioctlOutcome, type ModelHandlers } from './run.js';

const SZ_2M = 2 * 1024 * 1024;

/** a scenario's page size → the PG_LEVEL_* operand of PVALIDATE, RMPADJUST and TDG.MEM.PAGE.ACCEPT */
function level(pageSize: number | undefined): typeof PG_LEVEL_4K | typeof PG_LEVEL_2M {
  return pageSize === SZ_2M ? PG_LEVEL_2M : PG_LEVEL_4K;
}

/**
 * KVM_TDX_INIT_MEM_REGION: tdx_vcpu_init_mem_region() copies the region back to userspace after
 * its page loop, also when a page after the first failed: what is left (`gpa`, `nr_pages`) says
 * how far it got.
 */
function initMemRegionOutcome(r: { ret: number; out?: object }): Outcome {
  const o = ioctlOutcome(r);
  const region = r.out as { gpa?: unknown; nr_pages?: unknown } | undefined;
  if (typeof region?.gpa !== 'number' || typeof region.nr_pages !== 'number') return o;
  return { ...o, gpa: region.gpa, nr_pages: region.nr_pages };
}

const PAGE_STATE = { private: SNP_PAGE_STATE_PRIVATE, shared: SNP_PAGE_STATE_SHARED, psmash: SNP_PAGE_STATE_PSMASH, unsmash: SNP_PAGE_STATE_UNSMASH } as const;

/** a scenario's page-state operation → SNP_PAGE_STATE_* */
function pageState(op: keyof typeof PAGE_STATE): number {
  return PAGE_STATE[op];
}

export const VENDOR_HANDLERS = {
  snp_launch_start: (a, m) => ioctlOutcome(m.vm.memoryEncryptOp({ cmd: 'snp_launch_start', policy: a.policy, flags: a.flags ?? 0 })),
  snp_launch_update(a, m) {
    const o = ioctlOutcome(m.vm.memoryEncryptOp({ cmd: 'snp_launch_update', gfn_start: a.gfn_start, len: a.len, type: a.type, uaddr: a.uaddr ?? 0, flags: a.flags ?? 0 }));
    // snp_launch_update() copies struct kvm_sev_snp_launch_update back only when it succeeds
    if (o.errno !== undefined || o.detail === undefined) return o;
    const d = o.detail;
    return { ...o, params: { gfn_start: Number(d.gfn_start), uaddr: Number(d.uaddr), len: Number(d.len), type: Number(d.type), flags: Number(d.flags) } };
  },
  snp_launch_finish: (a, m) =>
    ioctlOutcome(m.vm.memoryEncryptOp({ cmd: 'snp_launch_finish', flags: a.flags ?? 0, ...(a.host_data !== undefined && { host_data: a.host_data }) })),
  guest_pvalidate: (a, m) =>
    guestOpOutcome(m.guestVcpu(a.vcpu).guestOp({ op: 'pvalidate', gpa: a.gpa, level: level(a.page_size), validate: a.validate }), 'pvalidate'),
  guest_rmpadjust: (a, m) =>
    guestOpOutcome(
      m.guestVcpu(a.vcpu).guestOp({ op: 'rmpadjust', gpa: a.gpa, level: level(a.page_size), vmpl: a.vmpl, perms: a.perms, vmsa: a.vmsa === true }),
      'other',
    ),
  guest_psc_msr: (a, m) => guestOpOutcome(m.guestVcpu(a.vcpu).guestOp({ op: 'psc_msr', gpa: a.gpa, operation: pageState(a.operation) }), 'other'),
  guest_psc(a, m) {
    // struct psc_entry: cur_page is a 12-bit field
    for (const e of a.entries) if (e.cur_page !== undefined && !(Number.isInteger(e.cur_page) && e.cur_page >= 0 && e.cur_page <= 0xfff)) fail('EINVAL', `guest_psc: cur_page ${e.cur_page} does not fit the entry's 12-bit field`);
    const entries = a.entries.map((e) => ({
      gfn: gpaToGfn(e.gpa),
      operation: pageState(e.operation),
      pagesize: e.page_size === SZ_2M ? (1 as const) : (0 as const),
      ...(e.cur_page !== undefined && { cur_page: e.cur_page }),
    }));
    return guestOpOutcome(m.guestVcpu(a.vcpu).guestOp({ op: 'psc', entries }), 'other');
  },

  tdx_init_vm: (a, m) =>
    ioctlOutcome(m.vm.memoryEncryptOp({ cmd: 'tdx_init_vm', ...(a.attributes !== undefined && { attributes: a.attributes }), ...(a.xfam !== undefined && { xfam: a.xfam }) })),
  tdx_finalize_vm: (_a, m) => ioctlOutcome(m.vm.memoryEncryptOp({ cmd: 'tdx_finalize_vm' })),
  tdx_init_vcpu: (a, m) => ioctlOutcome(m.vcpu(a.vcpu).memoryEncryptOp({ cmd: 'tdx_init_vcpu' })),
  tdx_init_mem_region: (a, m) =>
    initMemRegionOutcome(m.vcpu(a.vcpu).memoryEncryptOp({ cmd: 'tdx_init_mem_region', source_addr: a.source_addr, gpa: a.gpa, nr_pages: a.nr_pages, flags: a.flags ?? 0 })),
  tdx_pending_interrupt(a, m) {
    const b = m.tdxBackend('tdx_pending_interrupt');
    // no KVM_RUN: the interrupt is posted to the vCPU's PID (kvm_vcpu_has_events() sees it)
    return guestOpOutcome(b.guestOp(m.vcpu(a.vcpu).id, { op: 'pending_interrupt', pending: a.pending ?? true }), 'tdx');
  },
  guest_accept: (a, m) => guestOpOutcome(m.guestVcpu(a.vcpu).guestOp({ op: 'accept', gpa: a.gpa, level: level(a.page_size) }), 'tdx'),

  guest_map_gpa_range(a, m) {
    const vcpu = m.guestVcpu(a.vcpu);
    if (m.vm.vmType === KVM_X86_TDX_VM) {
      // TDG.VP.VMCALL<MapGPA>: the shared bit of the gpa says which way
      return guestOpOutcome(vcpu.guestOp({ op: 'map_gpa', gpa: a.gpa, size: a.npages * PAGE_SIZE }), 'tdx');
    }
    if (m.vm.dead) return { errno: 'EIO', detail: { check: `KVM_RUN: the VM is dead (${m.vm.deadReason})` } };
    return guestOpOutcome(m.hypercalls.mapGpaRange(m.vm, vcpu.id, a.gpa, a.npages, a.attributes ?? 0), 'hypercall');
  },
} satisfies ModelHandlers;
