import { describe, expect, it } from 'vitest';
import { UPSTREAM_PROFILE } from '@ccmem/core';
import { builtinScenarios } from './builtin/index.js';
import { ASSERT_FIELDS, ASSERT_LOCATORS, type AssertWhat } from './ops/assert.js';
import { buildMatrix, summarizeMatrix } from './matrix.js';
import { createModelTarget, modelProfileName, backendOptions } from './model-target.js';
import { parseScenario } from './parse.js';
import { runScenario, type ScenarioResult } from './runner.js';
import type { Outcome, ResolvedStep, RunContext, Target } from './target.js';

function run(yaml: string, opts: { trace?: boolean } = {}): ScenarioResult {
  return runScenario(parseScenario(yaml), createModelTarget(), { trace: opts.trace ?? false });
}

/** the failing steps, one line each, for readable assertion messages */
function failures(r: ScenarioResult): string[] {
  const out = r.steps.filter((s) => !s.pass).map((s) => `step ${s.index} ${s.op}: ${s.mismatches.join('; ')}`);
  if (r.error) out.push(r.error);
  return out;
}

function outcomeOf(r: ScenarioResult, index: number): Outcome {
  return r.steps[index]!.outcome;
}

describe('model target: setup', () => {
  it('maps scenario profiles and backend options onto the model', () => {
    expect(modelProfileName(undefined)).toBe('upstream');
    expect(modelProfileName('upstream')).toBe('upstream');
    // `host` without a detected host profile: the fallback; with one: that one
    expect(modelProfileName('host')).toBe('linux-6.18-pvm');
    expect(modelProfileName('host', { ...UPSTREAM_PROFILE, name: 'host-x' })).toBe('host-x');
    expect(modelProfileName('linux-6.18-pvm-no-gmem')).toBe('linux-6.18-pvm-no-gmem');
    expect(backendOptions({ type: 'snp', directmap: 'unmap', rmp_timing: 'set-attributes' })).toEqual({ directmap: 'unmap', rmpTiming: 'set-attributes' });
    expect(backendOptions({ type: 'tdx', huge_pages: true, gpaw: 52 })).toEqual({ hugePages: true, gpaw: 52 });
    expect(backendOptions({ type: 'default' })).toEqual({});
    expect(backendOptions({ type: 'sev-es', memlock_limit: 0, min_sev_asid: 5, max_sev_asid: 9 })).toEqual({ memlockLimit: 0, minSevAsid: 5, maxSevAsid: 9 });
  });

  it('creates the VM type the run asks for, with its backend options', () => {
    const t = createModelTarget();
    const sc = parseScenario('name: t\nvm: { type: snp, directmap: unmap }\nsteps:\n  - create_vcpu: { id: 0 }\n');
    t.begin(sc, { scenario: sc, vm: sc.vm, names: new Map(), trace: false });
    expect(t.vm!.backend!.name).toBe('snp');
    expect((t.vm!.backend as unknown as { directmapPolicy: string }).directmapPolicy).toBe('unmap');
    expect(t.kvm!.profile.name).toBe('upstream');
    t.end();
    expect(t.vm).toBeNull();
  });

  it('issues KVM_SEV_INIT2 on an snp VM at setup, as a VMM does, unless a step issues sev_init2', () => {
    const sevState = (yaml: string, vm?: string) => {
      const t = createModelTarget();
      const sc = parseScenario(yaml);
      const cfg = vm ? { ...sc.vm, type: vm as typeof sc.vm.type } : sc.vm;
      t.begin(sc, { scenario: sc, vm: cfg, names: new Map(), trace: false });
      const state = t.vm!.backend!.inspect!({ what: 'sev' } as never) as { active: boolean; need_init: boolean };
      t.end();
      return state;
    };
    const plain = 'name: t\nvm: { type: snp }\nsteps:\n  - create_vcpu: { id: 0 }\n';
    expect(sevState(plain)).toMatchObject({ active: true, need_init: false });
    const own = 'name: t\nvm: { type: snp }\nsteps:\n  - create_vcpu: { id: 0 }\n  - sev_init2: {}\n    expect: { errno: EINVAL }\n';
    expect(sevState(own)).toMatchObject({ active: false, need_init: true });
    const actor = 'name: t\nvm: { type: snp }\nsteps: []\nconcurrent:\n  actors:\n    a:\n      - sev_init2: {}\n';
    expect(sevState(actor)).toMatchObject({ active: false, need_init: true });
    // SEV and SEV-ES scenarios always write the step; a matrix cell running a scenario as snp gets it
    const sev = 'name: t\nvm: { type: sev-es }\napplies_to: { vm_types: [sev-es, snp] }\nsteps:\n  - create_vcpu: { id: 0 }\n';
    expect(sevState(sev)).toMatchObject({ active: false, need_init: true });
    expect(sevState(sev, 'snp')).toMatchObject({ active: true, need_init: false });
  });

  it('skips VM types the host profile does not offer', () => {
    const r = run('name: t\nvm: { type: tdx, profile: host }\nsteps:\n  - create_vcpu: { id: 0 }\n');
    expect(r.skipped).toMatch(/linux-6.18-pvm kernel profile has no tdx VMs/);
    expect(r.pass).toBe(true);
  });
});

describe('model target: the VMM process', () => {
  it('mmap, write, read, munmap; a read after munmap is SIGSEGV; bad fds are EBADF / ENODEV', () => {
    const r = run(`name: vmm
vm: { type: default }
steps:
  - mmap: { size: 8KiB }
    as: ram
  - write: { addr: ram+0x1008, size: 8, value: 0xdeadbeefcafef00d }
  - read: { addr: ram+0x1008, size: 8 }
    expect: { value: 0xdeadbeefcafef00d }
  - read: { addr: ram+0x100c, size: 2 }
    expect: { value: 0xbeef }
  - munmap: { addr: ram, size: 8KiB }
  - read: { addr: ram+0x1008, size: 4 }
    expect: { signal: SIGSEGV }
  - close: { fd: 77 }
    expect: { errno: EBADF }
  - mmap: { size: 4KiB, fd: 3 }
    expect: { errno: ENODEV }
  - mmap: { size: 4KiB, flags: 0 }
    expect: { errno: EINVAL }
`);
    expect(failures(r)).toEqual([]);
    expect(outcomeOf(r, 0).result).toBeGreaterThan(0);
  });
});

describe('model target: memory providers', () => {
  it('guest_memfd: mmap needs GUEST_MEMFD_FLAG_MMAP, fallocate and punch_hole reach the file, close releases it', () => {
    // INIT_SHARED: only VMs without private memory (kvm_arch_supports_gmem_init_shared)
    const r = run(`name: gmem
vm: { type: default }
steps:
  - create_guest_memfd: { size: 2MiB }
    as: plain
  - mmap: { size: 4KiB, fd: plain }
    expect: { errno: ENODEV }
  - create_guest_memfd: { size: 2MiB, flags: [GUEST_MEMFD_FLAG_MMAP, GUEST_MEMFD_FLAG_INIT_SHARED] }
    as: gmem
  - mmap: { size: 2MiB, fd: gmem }
    as: view
  - mmap: { size: 2MiB, fd: gmem, flags: [MAP_PRIVATE] }
    expect: { errno: EINVAL }
  - write: { addr: view+0x2000, size: 4, value: 0x1234 }
  - assert: { what: gmem, fd: gmem, offset: 0x2000, allocated: true }
  - fallocate: { fd: gmem, mode: 0, offset: 0x3000, len: 4KiB }
    expect: { errno: EOPNOTSUPP }
  - fallocate: { fd: gmem, mode: [FALLOC_FL_KEEP_SIZE], offset: 0x3000, len: 4KiB }
  - assert: { what: gmem, fd: gmem, offset: 0x3000, allocated: true }
  - punch_hole: { fd: gmem, offset: 0x2000, len: 4KiB }
  - assert: { what: gmem, fd: gmem, offset: 0x2000, allocated: false }
  - read: { addr: view+0x2000, size: 4 }
    expect: { value: 0 }
  - fallocate: { fd: gmem, mode: [FALLOC_FL_KEEP_SIZE], offset: 0x1001, len: 4KiB }
    expect: { errno: EINVAL }
  - close: { fd: plain }
  - fallocate: { fd: plain, mode: [FALLOC_FL_KEEP_SIZE], offset: 0, len: 4KiB }
    expect: { errno: EBADF }
`);
    expect(failures(r)).toEqual([]);
    expect(outcomeOf(r, 7).detail?.check).toBe('kvm_gmem_fallocate: FALLOC_FL_KEEP_SIZE required');
    expect(outcomeOf(r, 13).detail?.check).toBe('kvm_gmem_fallocate: offset or len not page aligned');
    expect(outcomeOf(r, 15).errno).toBe("EBADF");
  });

  it('gmem_poison: the page faults with EHWPOISON afterwards', () => {
    const r = run(`name: poison
vm: { type: sw-protected }
steps:
  - create_guest_memfd: { size: 2MiB }
    as: gmem
  - set_user_memory_region2: { slot: 0, flags: [KVM_MEM_GUEST_MEMFD], guest_phys_addr: 0x100000, memory_size: 2MiB, guest_memfd: gmem }
  - set_memory_attributes: { address: 0x100000, size: 2MiB, attributes: [KVM_MEMORY_ATTRIBUTE_PRIVATE] }
  - create_vcpu: { id: 0 }
  - guest_write: { vcpu: 0, gpa: 0x101000, size: 4, value: 7, private: true }
  - gmem_poison: { fd: gmem, offset: 0x1000 }
  - assert: { what: gmem, fd: gmem, offset: 0x1000, poisoned: true }
  - assert: { what: spte, gpa: 0x101000, present: false }
  - guest_read: { vcpu: 0, gpa: 0x101000, size: 4, private: true }
    expect: { errno: EHWPOISON, memory_fault: { gpa: 0x101000, size: 4KiB, flags: [KVM_MEMORY_EXIT_FLAG_PRIVATE] } }
`);
    expect(failures(r)).toEqual([]);
    expect(outcomeOf(r, 5).detail).toMatchObject({ poisoned: true });
  });

  it('device_fd provider: create_guest_memfd makes a device fd; device_revoke withdraws it', () => {
    const r = run(`name: device
vm: { type: sw-protected, provider: device_fd }
steps:
  - create_guest_memfd: { size: 2MiB }
    as: dev
  - assert: { what: gmem, fd: dev, kind: device-fd, revoked: false }
  - fallocate: { fd: dev, mode: 0, offset: 0, len: 4KiB }
    expect: { errno: EOPNOTSUPP }
  - mmap: { size: 4KiB, fd: dev }
    expect: { errno: ENODEV }
  - mmap: { size: 2MiB }
    as: ram
  - set_user_memory_region2: { slot: 0, flags: [KVM_MEM_GUEST_MEMFD], guest_phys_addr: 0x100000, memory_size: 2MiB, userspace_addr: ram, guest_memfd: dev }
  - set_memory_attributes: { address: 0x100000, size: 2MiB, attributes: [KVM_MEMORY_ATTRIBUTE_PRIVATE] }
  - create_vcpu: { id: 0 }
  - guest_write: { vcpu: 0, gpa: 0x100000, size: 4, value: 0x55, private: true }
  - guest_read: { vcpu: 0, gpa: 0x100000, size: 4, private: true }
    expect: { value: 0x55 }
  - device_revoke: { fd: dev }
  - assert: { what: gmem, fd: dev, revoked: true }
  - assert: { what: spte, gpa: 0x100000, present: false }
  - guest_read: { vcpu: 0, gpa: 0x100000, size: 4, private: true }
    expect: { errno: EFAULT, exit: KVM_EXIT_MEMORY_FAULT }
`);
    expect(failures(r)).toEqual([]);
  });
});

describe('model target: VM ioctls', () => {
  it('memslots, attributes, dirty log, capabilities and enable_cap', () => {
    const r = run(`name: vm ioctls
vm: { type: sw-protected }
steps:
  - check_extension: { cap: KVM_CAP_MEMORY_ATTRIBUTES }
    expect: { value: 8 }
  - check_extension: { cap: KVM_CAP_GUEST_MEMFD, on: system }
    expect: { value: 1 }
  - enable_cap: { cap: KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, args: [[KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE, KVM_DIRTY_LOG_INITIALLY_SET]] }
  - enable_cap: { cap: KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, flags: 1, args: [1] }
    expect: { errno: EINVAL }
  - mmap: { size: 2MiB }
    as: ram
  - set_user_memory_region: { slot: 0, flags: [KVM_MEM_LOG_DIRTY_PAGES], guest_phys_addr: 0x100000, memory_size: 256KiB, userspace_addr: ram }
  - assert: { what: memslot, slot: 0, present: true, base_gfn: 0x100, npages: 64, flags: 1 }
  - get_dirty_log: { slot: 0 }
    expect: { dirty_pages: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63] }
  - clear_dirty_log: { slot: 0, first_page: 0, num_pages: 64 }
  - clear_dirty_log: { slot: 0, first_page: 1, num_pages: 63 }
    expect: { errno: EINVAL }
  - create_vcpu: { id: 0 }
  - guest_write: { vcpu: 0, gpa: 0x105000, size: 4, value: 1 }
  - get_dirty_log: { slot: 0 }
    expect: { dirty_pages: [5] }
  - set_memory_attributes: { address: 0x104000, size: 8KiB, attributes: [KVM_MEMORY_ATTRIBUTE_PRIVATE] }
  - assert: { what: attributes, gpa: 0x105000, private: true, attributes: 8 }
  - assert: { what: attributes, gfn: 0x106, private: false }
  - set_memory_attributes: { address: 0x104000, size: 8KiB, attributes: 0x10 }
    expect: { errno: EINVAL }
  - set_user_memory_region2: { slot: 0, guest_phys_addr: 0x100000, memory_size: 0 }
  - assert: { what: memslot, slot: 0, present: false }
  - get_dirty_log: { slot: 0 }
    expect: { errno: ENOENT }
  - create_vcpu: { id: 0 }
    expect: { errno: EEXIST }
`);
    expect(failures(r)).toEqual([]);
    expect(outcomeOf(r, 16).detail?.check).toMatch(/attribute/i);
  });
});

describe('model target: guest accesses', () => {
  it('MMIO exits, complete_mmio, and a guest op completing a pending MMIO read with zero', () => {
    const r = run(`name: mmio
vm: { type: default }
steps:
  - mmap: { size: 2MiB }
    as: ram
  - set_user_memory_region2: { slot: 0, flags: [KVM_MEM_READONLY], guest_phys_addr: 0x100000, memory_size: 2MiB, userspace_addr: ram }
  - create_vcpu: { id: 0 }
    as: cpu
  - guest_read: { vcpu: cpu, gpa: 0xfed00000, size: 4 }
    expect: { mmio: { phys_addr: 0xfed00000, len: 4, is_write: false } }
  - complete_mmio: { vcpu: cpu, data: 0x1_0000_8086 }
    expect: { value: 0x8086 }
  - guest_write: { vcpu: cpu, gpa: 0x100000, size: 2, value: 0xabcdef }
    expect: { mmio: { phys_addr: 0x100000, len: 2, is_write: true, data: 0xcdef } }
  - complete_mmio: { vcpu: cpu }
  - guest_read: { vcpu: cpu, gpa: 0xfed00000, size: 8 }
    expect: { exit: KVM_EXIT_MMIO }
  - guest_fetch: { vcpu: cpu, gpa: 0x100000 }
    expect: { value: 0 }
  - guest_read: { vcpu: 7, gpa: 0x100000, size: 4 }
    expect: { errno: EBADF }
`);
    expect(failures(r)).toEqual([]);
  });

  it('a guest op on a vCPU with a pending MMIO read completes that read first', () => {
    const t = createModelTarget();
    const sc = parseScenario(`name: pending
vm: { type: default }
steps:
  - create_vcpu: { id: 0 }
  - guest_read: { vcpu: 0, gpa: 0xfed00000, size: 4 }
    expect: { exit: KVM_EXIT_MMIO }
`);
    const ctx: RunContext = { scenario: sc, vm: sc.vm, names: new Map(), trace: false };
    t.begin(sc, ctx);
    t.execute({ index: 0, op: 'create_vcpu', args: { id: 0 } }, ctx);
    t.execute({ index: 1, op: 'guest_read', args: { vcpu: 0, gpa: 0xfed00000, size: 4 } }, ctx);
    expect(t.vm!.vcpu(0)!.pendingMmioRead).toEqual({ gpa: 0xfed00000, size: 4 });
    // complete_mmio afterwards has nothing left to complete
    const probe = t.execute({ index: 2, op: 'guest_map_gpa_range', args: { vcpu: 0, gpa: 0x1000, npages: 1 } }, ctx);
    expect(t.vm!.vcpu(0)!.pendingMmioRead).toBeNull();
    expect(probe.ret).toBe(-1000); // KVM_ENOSYS: KVM_CAP_EXIT_HYPERCALL not enabled
    expect(t.execute({ index: 3, op: 'complete_mmio', args: { vcpu: 0, data: 5n } }, ctx)).toEqual({});
    t.end();
  });

  it('pre_fault_memory copies gpa/size back, also when it fails', () => {
    const r = run(`name: prefault
vm: { type: default }
steps:
  - mmap: { size: 2MiB }
    as: ram
  - set_user_memory_region2: { slot: 0, guest_phys_addr: 0x200000, memory_size: 2MiB, userspace_addr: ram }
  - create_vcpu: { id: 0 }
  - pre_fault_memory: { vcpu: 0, gpa: 0x3ff000, size: 8KiB }
    expect: { gpa: 0x400000, size: 4KiB }
  - pre_fault_memory: { vcpu: 0, gpa: 0x400000, size: 4KiB }
    expect: { errno: ENOENT, gpa: 0x400000, size: 4KiB }
  - assert: { what: spte, gfn: 0x3ff, present: true }
  - assert: { what: stats, pages_4k: 1 }
`);
    expect(failures(r)).toEqual([]);
  });

  it('traces kernel events per step when asked', () => {
    const r = run(`name: trace
vm: { type: default }
steps:
  - create_vcpu: { id: 0 }
`, { trace: true });
    expect(outcomeOf(r, 0).events?.map((e) => e.name)).toContain('kvm_create_vcpu');
    const quiet = run('name: quiet\nvm: { type: default }\nsteps:\n  - create_vcpu: { id: 0 }\n');
    expect(outcomeOf(quiet, 0).events).toBeUndefined();
  });
});

describe('model target: SEV', () => {
  it('sev_init2 on another VM (vm:) initializes that VM; the scenario VM of an snp scenario still gets its implicit KVM_SEV_INIT2', () => {
    const r = run(`name: other
vm: { type: snp }
steps:
  - assert: { what: sev, active: true, asid: 1 }
  - create_vm: {}
    as: other
  - sev_init2: { vm: other }
  # an SNP guest takes only the SNP commands (sev_mem_enc_ioctl(): EPERM)
  - sev_init2: { vm: other }
    expect: { errno: EPERM }
  - assert: { what: sev, asid: 1 }
  - close: { fd: other }
  - sev_init2: { vm: other }
    expect: { errno: EBADF }
`);
    expect(failures(r)).toEqual([]);
    const own = run(`name: own
vm: { type: snp }
steps:
  - assert: { what: sev, active: false, need_init: true }
  - sev_init2: {}
  - assert: { what: sev, active: true, asid: 1 }
`);
    expect(failures(own)).toEqual([]);
  });

  it('sev_launch_start on another VM (vm:) starts that VM\'s guest context, not the scenario VM\'s', () => {
    const r = run(`name: other-launch
vm: { type: sev }
steps:
  - sev_init2: {}
  - create_vm: {}
    as: other
  - sev_launch_start: { vm: other }
    expect: { errno: ENOTTY }
  - sev_init2: { vm: other }
  - sev_launch_start: { vm: other, policy: 1 }
  - assert: { what: sev, asid: 100, handle: 0, state: 0 }
  - sev_launch_start: { policy: 0 }
  - assert: { what: sev, state: 1, policy: 0 }
  - close: { fd: other }
  - sev_launch_start: { vm: other }
    expect: { errno: EBADF }
`);
    expect(failures(r)).toEqual([]);
  });
});

describe('model target: SEV-SNP', () => {
  it('launch, PVALIDATE, RMP state, KVM_HC_MAP_GPA_RANGE and GHCB PSC', () => {
    const r = run(`name: snp
vm: { type: snp }
steps:
  - create_guest_memfd: { size: 2MiB }
    as: gmem
  - mmap: { size: 2MiB }
    as: ram
  - set_user_memory_region2: { slot: 1, flags: [KVM_MEM_GUEST_MEMFD], guest_phys_addr: 0x1_0000_0000, memory_size: 2MiB, userspace_addr: ram, guest_memfd: gmem }
  - create_vcpu: { id: 0 }
  - set_memory_attributes: { address: 0x1_0000_0000, size: 16KiB, attributes: [KVM_MEMORY_ATTRIBUTE_PRIVATE] }
  - write: { addr: ram, size: 8, value: 0x1122 }
  - snp_launch_start: {}
  - snp_launch_update: { gfn_start: 0x100000, len: 4KiB, type: KVM_SEV_SNP_PAGE_TYPE_NORMAL, uaddr: ram }
  - snp_launch_update: { gfn_start: 0x100000, len: 4KiB, type: KVM_SEV_SNP_PAGE_TYPE_NORMAL, uaddr: ram }
    expect: { errno: EIO }
  - snp_launch_finish: {}
  - assert: { what: rmp, gpa: 0x1_0000_0000, assigned: true, validated: true }
  - guest_read: { vcpu: 0, gpa: 0x1_0000_0000, size: 8, private: true }
    expect: { value: 0x1122 }
  - guest_write: { vcpu: 0, gpa: 0x1_0000_1000, size: 8, value: 1, private: true }
    expect: { exception: '#VC' }
  - guest_pvalidate: { vcpu: 0, gpa: 0x1_0000_1000, validate: true }
    expect: { ret: 0 }
  - guest_pvalidate: { vcpu: 0, gpa: 0x1_0000_1000, page_size: 2MiB, validate: true }
    expect: { ret: FAIL_INPUT }
  - guest_write: { vcpu: 0, gpa: 0x1_0000_1000, size: 8, value: 0x77, private: true }
  - guest_read: { vcpu: 0, gpa: 0x1_0000_1000, size: 8, private: true }
    expect: { value: 0x77 }
  - guest_pvalidate: { vcpu: 0, gpa: 0x1_0000_8000, validate: true }
    expect: { memory_fault: { gpa: 0x1_0000_8000, flags: [KVM_MEMORY_EXIT_FLAG_PRIVATE] } }
  - guest_map_gpa_range: { vcpu: 0, gpa: 0x1_0000_8000, npages: 1, attributes: [KVM_MAP_GPA_RANGE_ENCRYPTED] }
    expect: { ret: KVM_ENOSYS }
  - enable_cap: { cap: KVM_CAP_EXIT_HYPERCALL, args: [0x1000] }
  - guest_map_gpa_range: { vcpu: 0, gpa: 0x1_0000_8000, npages: 1, attributes: [KVM_MAP_GPA_RANGE_ENCRYPTED] }
    expect: { hypercall: { nr: 12, args: [0x1_0000_8000, 1, 0x10], flags: [KVM_EXIT_HYPERCALL_LONG_MODE] } }
  - complete_hypercall: { vcpu: 0, ret: 0 }
    expect: { ret: 0 }
  - guest_map_gpa_range: { vcpu: 0, gpa: 0x1_0000_8001, npages: 1 }
    expect: { ret: KVM_EINVAL }
  - guest_psc: { vcpu: 0, entries: [{ gpa: 0x1_0000_9000, operation: private }, { gpa: 0x1_0000_a000, operation: private }] }
    expect: { hypercall: { nr: 12, args: [0x1_0000_9000, 2, 0x10] } }
  - set_memory_attributes: { address: 0x1_0000_9000, size: 8KiB, attributes: [KVM_MEMORY_ATTRIBUTE_PRIVATE] }
  - complete_hypercall: { vcpu: 0, ret: 0 }
    expect: { ret: 0 }
  - assert: { what: stats, rmpTiming: prepare }
`);
    expect(failures(r)).toEqual([]);
    // the first private write before PVALIDATE: the guest takes #VC itself
    expect(outcomeOf(r, 12).exception).toBe('#VC');
    expect(outcomeOf(r, 12).detail?.exception).toMatchObject({ vector: '#VC' });
    expect(outcomeOf(r, 14).ret).toBe(1);
  });
});

describe('model target: TDX', () => {
  it('INIT_VM, INIT_VCPU, INIT_MEM_REGION, FINALIZE, ACCEPT, MapGPA and the S-EPT state', () => {
    const r = run(`name: tdx
vm: { type: tdx }
steps:
  - create_guest_memfd: { size: 2MiB }
    as: gmem
  - mmap: { size: 2MiB }
    as: src
  - set_user_memory_region2: { slot: 0, flags: [KVM_MEM_GUEST_MEMFD], guest_phys_addr: 0, memory_size: 2MiB, userspace_addr: src, guest_memfd: gmem }
  - set_memory_attributes: { address: 0, size: 2MiB, attributes: [KVM_MEMORY_ATTRIBUTE_PRIVATE] }
  - tdx_init_vm: {}
  - create_vcpu: { id: 0 }
  - tdx_init_vcpu: { vcpu: 0 }
  - tdx_init_vcpu: { vcpu: 0 }
    expect: { errno: EINVAL }
  - write: { addr: src, size: 8, value: 0xabcd }
  - tdx_init_mem_region: { vcpu: 0, source_addr: src, gpa: 0, nr_pages: 1, flags: [KVM_TDX_MEASURE_MEMORY_REGION] }
  - tdx_finalize_vm: {}
  - assert: { what: sept, gpa: 0, state: PRESENT, level: 1 }
  - guest_read: { vcpu: 0, gpa: 0, size: 8, private: true }
    expect: { value: 0xabcd }
  - guest_accept: { vcpu: 0, gpa: 0x1000 }
    expect: { ret: TDX_SUCCESS }
  - guest_accept: { vcpu: 0, gpa: 0x1000 }
    expect: { ret: TDX_PAGE_ALREADY_ACCEPTED }
  - assert: { what: sept, gpa: 0x1000, state: PRESENT }
  - guest_map_gpa_range: { vcpu: 0, gpa: 0x8000_0000_2000, npages: 1 }
    expect: { ret: TDVMCALL_STATUS_SUBFUNC_UNSUPPORTED }
  - enable_cap: { cap: KVM_CAP_EXIT_HYPERCALL, args: [0x1000] }
  - guest_map_gpa_range: { vcpu: 0, gpa: 0x8000_0000_2000, npages: 1 }
    expect: { hypercall: { nr: 12, args: [0x2000, 1, 0] } }
  - complete_hypercall: { vcpu: 0, ret: 0 }
    expect: { ret: 0 }
  - assert: { what: rmp, gpa: 0 }
    expect: ok
`);
    const bad = failures(r);
    // the last step asks for RMP state on a TDX VM: it cannot be inspected
    expect(bad).toHaveLength(1);
    expect(bad[0]).toMatch(/step 20 assert: the state could not be inspected/);
    expect(outcomeOf(r, 19).ret).toBe('TDVMCALL_STATUS_SUCCESS');
  });
});

describe('model target: invariants', () => {
  it('a step after which the model breaks an invariant fails with the violated rule', () => {
    const model = createModelTarget();
    // delegate to the model, but corrupt the VM just before step 1 runs
    const target: Target = {
      name: 'model',
      begin: (s, c) => model.begin(s, c),
      end: () => model.end(),
      execute(step: ResolvedStep, ctx: RunContext) {
        if (step.index === 1) (model.vm!.mmuInvalidate as unknown as { inProgress: number }).inProgress = -1;
        return model.execute(step, ctx);
      },
    };
    const sc = parseScenario('name: inv\nvm: { type: default }\nsteps:\n  - create_vcpu: { id: 0 }\n  - create_vcpu: { id: 1 }\n  - create_vcpu: { id: 2 }\n');
    const r = runScenario(sc, target);
    expect(r.pass).toBe(false);
    expect(r.steps[0]!.pass).toBe(true);
    expect(r.steps[1]!.pass).toBe(false);
    expect(r.steps[1]!.mismatches).toEqual(['invariant violated: mmu_invalidate_in_progress is negative (-1)']);
    expect(r.steps[1]!.outcome.detail?.invariants).toEqual(['mmu_invalidate_in_progress is negative (-1)']);
    // reported once, when it appeared
    expect(r.steps[2]!.pass).toBe(true);
  });

  it('checks named invariants of concurrent blocks', () => {
    const r = run(`name: concurrent
vm: { type: sw-protected }
steps:
  - create_guest_memfd: { size: 2MiB }
    as: gmem
  - set_user_memory_region2: { slot: 0, flags: [KVM_MEM_GUEST_MEMFD], guest_phys_addr: 0x100000, memory_size: 2MiB, guest_memfd: gmem }
  - create_vcpu: { id: 0 }
    as: cpu
concurrent:
  actors:
    vmm:
      - set_memory_attributes: { address: 0x100000, size: 4KiB, attributes: [KVM_MEMORY_ATTRIBUTE_PRIVATE] }
    guest:
      - guest_write: { vcpu: cpu, gpa: 0x100000, size: 4, value: 3, private: true }
  invariants:
    - no-stale-spte
    - assert: { what: attributes, gfn: 0x100, private: true }
`);
    expect(failures(r)).toEqual([]);
    const inv = r.steps.find((s) => s.op === 'invariant no-stale-spte');
    expect(inv).toMatchObject({ pass: true });
    expect(inv!.outcome.detail).toEqual({ violations: [] });
  });
});

describe('the built-in suite on the model', () => {
  it('every scenario passes in every matrix cell it applies to', () => {
    const rows = buildMatrix(builtinScenarios(), { model: () => createModelTarget() });
    // a `profile: host` scenario that needs guest_memfd skips: the host profile has no CONFIG_KVM_GUEST_MEMFD
    const noGmem = (r: (typeof rows)[number]) => r.status === 'skip' && /CONFIG_KVM_GUEST_MEMFD/.test(r.reason ?? '');
    const bad = rows.filter((r) => r.status !== 'pass' && !noGmem(r)).map((r) => `${r.file} [${r.vm_type}/${r.provider}]: ${r.status} ${r.reason ?? ''}`);
    expect(bad).toEqual([]);
    expect(summarizeMatrix(rows).passed).toBe(rows.length - rows.filter(noGmem).length);
    expect(rows.length).toBeGreaterThanOrEqual(builtinScenarios().length);
  });
});

describe('assert fields', () => {
  it('every field the model reports for an assert step is listed in ASSERT_FIELDS (or is a locator), and every listed field is reported somewhere', () => {
    const reported = new Map<AssertWhat, Set<string>>();
    const model = createModelTarget();
    const spy: Target = {
      name: 'model',
      begin: (s, c) => model.begin(s, c),
      end: () => model.end(),
      stats: () => model.stats!(),
      execute(step, ctx) {
        const o = model.execute(step, ctx);
        if (step.op === 'assert' && o.errno === undefined && o.detail) {
          const what = (step.args as { what: AssertWhat }).what;
          const keys = reported.get(what) ?? new Set<string>();
          for (const k of Object.keys(o.detail)) keys.add(k);
          reported.set(what, keys);
        }
        return o;
      },
    };
    const rows = buildMatrix(builtinScenarios(), { model: () => spy });
    expect(rows.filter((r) => r.status === 'fail')).toEqual([]);
    const locators: readonly string[] = ASSERT_LOCATORS;
    for (const what of Object.keys(ASSERT_FIELDS) as AssertWhat[]) {
      const keys = reported.get(what);
      expect(keys, `no built-in scenario asserts ${what}`).toBeDefined();
      const unlisted = [...keys!].filter((k) => !ASSERT_FIELDS[what].includes(k) && !locators.includes(k) && k !== 'check');
      expect(unlisted, `assert ${what}`).toEqual([]);
      const never = ASSERT_FIELDS[what].filter((k) => !keys!.has(k));
      expect(never, `assert ${what}: listed but never reported`).toEqual([]);
    }
  });
});
