/** Model handlers: SEV and SEV-ES (KVM_SEV_* ioctls, encrypted regions, GHCB requests). */
import { ghcbMsrTermReq } from '@ccmem/snp';
import { guestOpOutcome, ioctlOutcome, type ModelHandlers } from './run.js';
import type { Outcome } from '../target.js';

/** an ioctl outcome with one of its outputs as the step's value */
function withValue(o: Outcome, value: number | undefined): Outcome {
  return o.errno === undefined && value !== undefined ? { ...o, value } : o;
}

export const SEV_HANDLERS = {
  sev_init2: (a, m) =>
    ioctlOutcome(
      m.vmOf(a.vm).memoryEncryptOp({
        cmd: 'sev_init2',
        ...(a.vmsa_features !== undefined && { vmsa_features: a.vmsa_features }),
        ...(a.flags !== undefined && { flags: a.flags }),
        ...(a.ghcb_version !== undefined && { ghcb_version: a.ghcb_version }),
      }),
    ),
  sev_init: (a, m) => ioctlOutcome(m.vm.memoryEncryptOp({ cmd: a.es === true ? 'sev_es_init' : 'sev_init' })),
  sev_launch_start: (a, m) => ioctlOutcome(m.vmOf(a.vm).memoryEncryptOp({ cmd: 'sev_launch_start', ...(a.policy !== undefined && { policy: a.policy }) })),
  sev_launch_update_data: (a, m) => ioctlOutcome(m.vm.memoryEncryptOp({ cmd: 'sev_launch_update_data', uaddr: a.uaddr, len: a.len })),
  sev_launch_update_vmsa: (_a, m) => ioctlOutcome(m.vm.memoryEncryptOp({ cmd: 'sev_launch_update_vmsa' })),
  sev_launch_measure(a, m) {
    const r = m.vm.memoryEncryptOp({ cmd: 'sev_launch_measure', ...(a.uaddr !== undefined && { uaddr: a.uaddr }), ...(a.len !== undefined && { len: a.len }) });
    // params.len as KVM copied it back: also after the length query's EIO
    const len = (r.out as { len?: number } | undefined)?.len;
    const o = ioctlOutcome(r);
    return len === undefined ? o : { ...o, value: len };
  },
  sev_launch_finish: (_a, m) => ioctlOutcome(m.vm.memoryEncryptOp({ cmd: 'sev_launch_finish' })),
  sev_guest_status(_a, m) {
    const r = m.vm.memoryEncryptOp({ cmd: 'sev_guest_status' });
    return withValue(ioctlOutcome(r), (r.out as { state?: number } | undefined)?.state);
  },
  memory_encrypt_reg_region(a, m) {
    m.vm.memoryEncryptRegRegion({ addr: a.addr, size: a.size });
    return {};
  },
  memory_encrypt_unreg_region(a, m) {
    m.vm.memoryEncryptUnregRegion({ addr: a.addr, size: a.size });
    return {};
  },
  guest_ghcb_msr: (a, m) => guestOpOutcome(m.guestVcpu(a.vcpu).guestOp({ op: 'ghcb_msr', value: a.value }), 'other'),
  guest_ghcb_terminate(a, m) {
    const vcpu = m.guestVcpu(a.vcpu);
    if (a.ghcb_gpa !== undefined) {
      return guestOpOutcome(
        vcpu.guestOp({
          op: 'ghcb_term_request',
          ghcb_gpa: a.ghcb_gpa,
          ...(a.reason_set !== undefined && { reason_set: a.reason_set }),
          ...(a.reason_code !== undefined && { reason_code: a.reason_code }),
        }),
        'other',
      );
    }
    return guestOpOutcome(vcpu.guestOp({ op: 'ghcb_msr', value: ghcbMsrTermReq(a.reason_set ?? 0, a.reason_code ?? 0) }), 'other');
  },
} satisfies ModelHandlers;
