import { describe, expect, it } from 'vitest';
import { createModelTarget } from '../model-target.js';
import { parseScenario } from '../parse.js';
import { runScenario } from '../runner.js';

const SNP_HEAD = `name: t
vm: { type: snp }
steps:
  - create_guest_memfd: { size: 4MiB }
    as: gmem
  - mmap: { size: 4MiB }
    as: shared
  - set_user_memory_region2: { slot: 0, flags: [KVM_MEM_GUEST_MEMFD], guest_phys_addr: 0x1_0000_0000, memory_size: 4MiB, userspace_addr: shared, guest_memfd: gmem }
  - create_vcpu: { id: 0 }
    as: cpu
  - snp_launch_start: {}
  - snp_launch_finish: {}
  - enable_cap: { cap: KVM_CAP_EXIT_HYPERCALL, args: [0x1000] }
`;

function lastOutcome(step: string) {
  const r = runScenario(parseScenario(`${SNP_HEAD}${step}`), createModelTarget());
  return r.steps.filter((s) => s.op !== 'exit').at(-1)!.outcome;
}

describe('guest_psc entries', () => {
  it('hand cur_page to the backend: a partly done 2M entry exits for the pages left, at 4K', () => {
    const o = lastOutcome('  - guest_psc: { vcpu: cpu, entries: [{ gpa: 0x1_0020_0000, operation: shared, page_size: 2MiB, cur_page: 0x1f0 }] }\n');
    expect(o.exit).toMatchObject({ reason: 'KVM_EXIT_HYPERCALL', hypercall: { args: [0x1_0020_0000 + 0x1f0 * 4096, 0x10, 1] } });
    expect(o.params).toEqual({ cur_entry: 0 });
  });

  it('map psmash and unsmash to GHCB operations 3 and 4, which KVM completes without an exit', () => {
    const o = lastOutcome('  - guest_psc: { vcpu: cpu, entries: [{ gpa: 0x1_0000_0000, operation: psmash, page_size: 2MiB }, { gpa: 0x1_0020_0000, operation: unsmash, page_size: 2MiB }] }\n');
    expect(o.exit).toBeUndefined();
    expect(o.ret).toBe(0);
    expect(o.params).toEqual({ cur_entry: 2 });
  });

  it('refuse a cur_page that does not fit the 12-bit field', () => {
    const o = lastOutcome('  - guest_psc: { vcpu: cpu, entries: [{ gpa: 0x1_0000_0000, operation: private, cur_page: 0x1000 }] }\n');
    expect(o.errno).toBe('EINVAL');
    expect(String(o.detail?.check)).toMatch(/12-bit/);
  });
});

const TDX_HEAD = `name: t
vm: { type: tdx }
steps:
  - create_guest_memfd: { size: 8MiB }
    as: gmem
  - mmap: { size: 8MiB }
    as: shared
  - set_user_memory_region2: { slot: 0, flags: [KVM_MEM_GUEST_MEMFD], guest_phys_addr: 0x100_0000, memory_size: 8MiB, userspace_addr: shared, guest_memfd: gmem }
  - tdx_init_vm: {}
  - create_vcpu: { id: 0 }
    as: cpu
  - tdx_init_vcpu: { vcpu: cpu }
  - tdx_finalize_vm: {}
  - enable_cap: { cap: KVM_CAP_EXIT_HYPERCALL, args: [0x1000] }
  - guest_map_gpa_range: { vcpu: cpu, gpa: 0x100_0000, npages: 1024 }
`;

describe('tdx_pending_interrupt', () => {
  function tdxOutcomes(steps: string) {
    const r = runScenario(parseScenario(`${TDX_HEAD}${steps}`), createModelTarget());
    return r.steps.filter((s) => s.op !== 'exit').slice(-2).map((s) => s.outcome);
  }

  it('posts an interrupt without entering the guest: the MapGPA in progress stops with RETRY at the next step', () => {
    const [set, done] = tdxOutcomes('  - tdx_pending_interrupt: { vcpu: cpu }\n  - complete_hypercall: { vcpu: cpu, ret: 0 }\n');
    expect(set!.errno).toBeUndefined();
    expect(set!.exit).toBeUndefined();
    expect(done!.ret).toBe('TDVMCALL_STATUS_RETRY');
    expect(done!.r11).toBe(0x120_0000);
  });

  it('pending: false takes it back: the next step is forwarded', () => {
    const [, next] = tdxOutcomes('  - tdx_pending_interrupt: { vcpu: cpu }\n  - tdx_pending_interrupt: { vcpu: cpu, pending: false }\n  - complete_hypercall: { vcpu: cpu, ret: 0 }\n');
    expect(next!.exit).toMatchObject({ reason: 'KVM_EXIT_HYPERCALL', hypercall: { args: [0x120_0000, 512, 0x10] } });
  });
});
