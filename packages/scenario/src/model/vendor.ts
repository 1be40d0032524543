/** Model handlers: SEV-SNP and TDX ioctls and guest instructions, and MapGPA for both. */
import { PAGE_SIZE, KVM_X86_TDX_VM } from '@ccmem/core';
import { guestOpOutcome, ioctlOutcome, type ModelHandlers } from './run.js';

const SZ_2M = 2 * 1024 * 1024;

export const VENDOR_HANDLERS = {
  snp_launch_start: (a, m) => ioctlOutcome(m.vm.memoryEncryptOp('snp_launch_start', { policy: a.policy, flags: a.flags ?? 0 })),
  snp_launch_update: (a, m) =>
    ioctlOutcome(m.vm.memoryEncryptOp('snp_launch_update', { gfn_start: a.gfn_start, len: a.len, type: a.type, uaddr: a.uaddr ?? 0, flags: a.flags ?? 0 })),
  snp_launch_finish: (a, m) =>
    ioctlOutcome(m.vm.memoryEncryptOp('snp_launch_finish', { flags: a.flags ?? 0, ...(a.host_data !== undefined && { host_data: a.host_data }) })),
  guest_pvalidate: (a, m) =>
    guestOpOutcome(m.guestVcpu(a.vcpu).guestOp({ op: 'pvalidate', args: { gpa: a.gpa, size: a.page_size === SZ_2M ? '2M' : '4K', validate: a.validate } }), 'pvalidate'),
  guest_rmpadjust(a, m) {
    const args = { gpa: a.gpa, size: a.page_size === SZ_2M ? '2M' : '4K', vmpl: a.vmpl, perms: a.perms, vmsa: a.vmsa === true };
    return guestOpOutcome(m.guestVcpu(a.vcpu).guestOp({ op: 'rmpadjust', args }), 'other');
  },
  guest_psc_msr: (a, m) => guestOpOutcome(m.guestVcpu(a.vcpu).guestOp({ op: 'psc_msr', args: { gpa: a.gpa, op: a.operation } }), 'other'),
  guest_psc(a, m) {
    const entries = a.entries.map((e) => ({ gfn: Math.floor(e.gpa / PAGE_SIZE), op: e.operation, pagesize: e.page_size === SZ_2M ? '2M' : '4K' }));
    return guestOpOutcome(m.guestVcpu(a.vcpu).guestOp({ op: 'psc', args: { entries } }), 'other');
  },

  tdx_init_vm: (a, m) =>
    ioctlOutcome(m.vm.memoryEncryptOp('tdx_init_vm', { ...(a.attributes !== undefined && { attributes: a.attributes }), ...(a.xfam !== undefined && { xfam: a.xfam }) })),
  tdx_finalize_vm: (_a, m) => ioctlOutcome(m.vm.memoryEncryptOp('tdx_finalize_vm', {})),
  tdx_init_vcpu: (a, m) => ioctlOutcome(m.vcpu(a.vcpu).memoryEncryptOp('tdx_init_vcpu', {})),
  tdx_init_mem_region: (a, m) =>
    ioctlOutcome(m.vcpu(a.vcpu).memoryEncryptOp('tdx_init_mem_region', { source_addr: a.source_addr, gpa: a.gpa, nr_pages: a.nr_pages, flags: a.flags ?? 0 })),
  guest_accept: (a, m) => guestOpOutcome(m.guestVcpu(a.vcpu).guestOp({ op: 'accept', args: { gpa: a.gpa, level: a.page_size === SZ_2M ? 2 : 1 } }), 'tdx'),

  guest_map_gpa_range(a, m) {
    const vcpu = m.guestVcpu(a.vcpu);
    if (m.vm.vmType === KVM_X86_TDX_VM) {
      // TDG.VP.VMCALL<MapGPA>: the shared bit of the gpa says which way
      return guestOpOutcome(vcpu.guestOp({ op: 'map_gpa', args: { gpa: a.gpa, size: a.npages * PAGE_SIZE } }), 'tdx');
    }
    if (m.vm.dead) return { errno: 'EIO', detail: { check: `KVM_RUN: the VM is dead (${m.vm.deadReason})` } };
    return guestOpOutcome(m.hypercalls.mapGpaRange(m.vm, vcpu.id, a.gpa, a.npages, a.attributes ?? 0), 'hypercall');
  },
} satisfies ModelHandlers;
