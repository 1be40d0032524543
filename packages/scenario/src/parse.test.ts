import { describe, expect, it } from 'vitest';
import { formatPath, parseScenario, tryParseScenario, ScenarioParseError, type ScenarioError } from './parse.js';
import { OP_NAMES } from './schema.js';
import { READONLY_SLOT_SCENARIO } from '../../../test-support/readonly-slot-scenario.js';

function errorsOf(text: string): ScenarioError[] {
  const r = tryParseScenario(text, 'x.yaml');
  if (r.ok) throw new Error('expected errors');
  return r.errors;
}

describe('parseScenario', () => {
  it('parses the issue example into typed steps with lines', () => {
    const s = parseScenario(READONLY_SLOT_SCENARIO, 'ex.yaml');
    expect(s.name).toBe('readonly slot write exits to userspace');
    expect(s.vm).toEqual({ type: 'default' });
    expect(s.steps.map((x) => x.op)).toEqual([
      'mmap',
      'write',
      'set_user_memory_region2',
      'create_vcpu',
      'guest_read',
      'guest_write',
      'set_user_memory_region2',
    ]);
    expect(s.steps[0]).toMatchObject({ args: { size: 0x200000 }, as: 'ram', expect: {}, line: 4 });
    expect(s.steps[1]!.args).toEqual({ addr: { ref: 'ram', offset: 16 }, size: 4, value: 0xcafef00dn });
    expect(s.steps[2]!.args).toMatchObject({ slot: 0, flags: 2, guest_phys_addr: 0x100000, userspace_addr: { ref: 'ram', offset: 0 } });
    expect(s.steps[4]!.expect).toEqual({ value: 0xcafef00dn });
    expect(s.steps[5]!.expect).toEqual({
      exit: 'KVM_EXIT_MMIO',
      mmio: { phys_addr: 0x100000, len: 4, is_write: true, data: 0xdeadbeefn },
    });
    expect(s.steps[6]!.expect).toEqual({ errno: 'EEXIST' });
    expect(s.steps[6]!.line).toBe(13);
  });

  it('expect: ok is success, mmio alone implies the exit reason', () => {
    const s = parseScenario(
      `name: t\nvm: { type: default }\nsteps:\n  - create_vcpu: { id: 0 }\n    expect: ok\n  - guest_read: { vcpu: 0, gpa: 0, size: 1 }\n    expect: { mmio: { len: 1 } }\n`,
    );
    expect(s.steps[0]!.expect).toEqual({});
    expect(s.steps[1]!.expect).toEqual({ exit: 'KVM_EXIT_MMIO', mmio: { len: 1 } });
  });

  it('reports file, line, column and dotted field for a bad value', () => {
    const errs = errorsOf(READONLY_SLOT_SCENARIO.replace('{ slot: 1,', '{ slot: nope,'));
    expect(errs).toHaveLength(1);
    expect(errs[0]).toMatchObject({ file: 'x.yaml', line: 13, column: 38, field: 'steps[6].set_user_memory_region2.slot' });
    expect(errs[0]!.message).toMatch(/"nope" is not a number/);
  });

  it('unknown ops are errors at the op key', () => {
    const errs = errorsOf(READONLY_SLOT_SCENARIO.replace('create_vcpu:', 'create_vcpus:'));
    expect(errs).toEqual([
      { file: 'x.yaml', line: 8, column: 5, field: 'steps[3].create_vcpus', message: 'unknown operation or step field "create_vcpus"' },
    ]);
  });

  it('unknown fields are errors (strict)', () => {
    const errs = errorsOf(READONLY_SLOT_SCENARIO.replace('{ id: 0 }', '{ id: 0, apic: 1 }'));
    expect(errs).toEqual([{ file: 'x.yaml', line: 8, column: 27, field: 'steps[3].create_vcpu.apic', message: 'unknown field "apic"' }]);
    const top = errorsOf(`name: t\nvm: { type: default }\nsteps: []\nextra: 1\n`);
    expect(top.map((e) => e.field)).toContain('extra');
    const vm = errorsOf(`name: t\nvm: { type: default, colour: red }\nsteps:\n  - create_vcpu: { id: 0 }\n`);
    expect(vm[0]).toMatchObject({ field: 'vm.colour', line: 2 });
  });

  it('missing required fields name the field', () => {
    const errs = errorsOf(`name: t\nvm: { type: default }\nsteps:\n  - guest_read: { vcpu: 0, gpa: 0 }\n`);
    expect(errs).toEqual([
      { file: 'x.yaml', line: 4, column: 17, field: 'steps[0].guest_read.size', message: 'required field "size" is missing' },
    ]);
    const noName = errorsOf(`vm: { type: default }\nsteps:\n  - create_vcpu: { id: 0 }\n`);
    expect(noName[0]).toMatchObject({ field: 'name', line: 1 });
  });

  it('duplicate keys are errors', () => {
    const errs = errorsOf(`name: t\nvm: { type: default }\nsteps:\n  - create_vcpu: { id: 0 }\n    create_vcpu: { id: 1 }\n`);
    expect(errs).toHaveLength(1);
    expect(errs[0]).toMatchObject({ line: 5, column: 5, field: 'steps[0].create_vcpu' });
    expect(errs[0]!.message).toMatch(/duplicate key/);
  });

  it('YAML syntax errors carry positions', () => {
    const errs = errorsOf(`name: t\nvm: { type: default\nsteps: []\n`);
    expect(errs.length).toBeGreaterThan(0);
    expect(errs[0]!.line).toBeGreaterThanOrEqual(2);
  });

  it('a step has exactly one op', () => {
    const two = errorsOf(`name: t\nvm: { type: default }\nsteps:\n  - create_vcpu: { id: 0 }\n    mmap: { size: 4KiB }\n`);
    expect(two[0]!.message).toMatch(/one operation/);
    const none = errorsOf(`name: t\nvm: { type: default }\nsteps:\n  - as: x\n`);
    expect(none[0]).toMatchObject({ field: 'steps[0]', line: 4 });
  });

  it('names must be defined by an earlier step and be unique', () => {
    const errs = errorsOf(
      `name: t\nvm: { type: default }\nsteps:\n  - write: { addr: ram, size: 1, value: 0 }\n  - mmap: { size: 4KiB }\n    as: ram\n  - mmap: { size: 4KiB }\n    as: ram\n`,
    );
    expect(errs.map((e) => e.field)).toEqual(['steps[0].write.addr', 'steps[2].as']);
    expect(errs[0]!.message).toMatch(/"ram" is not the name of an earlier step/);
  });

  it('expectations are validated', () => {
    const errs = errorsOf(
      `name: t\nvm: { type: default }\nsteps:\n  - create_vcpu: { id: 0 }\n    expect: { errno: EWHAT, exit: KVM_EXIT_NOPE }\n  - create_vcpu: { id: 1 }\n    expect: okay\n`,
    );
    expect(errs.map((e) => e.field)).toEqual(['steps[0].expect.errno', 'steps[0].expect.exit', 'steps[1].expect']);
    const kind = errorsOf(`name: t\nvm: { type: default }\nsteps:\n  - create_vcpu: { id: 0 }\n    expect: { exit: KVM_EXIT_MMIO, memory_fault: { gpa: 0 } }\n`);
    expect(kind[0]!.field).toBe('steps[0].expect.memory_fault');
  });

  it('backend options belong to their VM type', () => {
    const errs = errorsOf(`name: t\nvm: { type: default, directmap: unmap }\nsteps:\n  - create_vcpu: { id: 0 }\n`);
    expect(errs[0]).toMatchObject({ field: 'vm.directmap', message: 'directmap is an option of snp VMs' });
    const ok = parseScenario(`name: t\nvm: { type: tdx, huge_pages: true, gpaw: 52 }\nsteps:\n  - tdx_finalize_vm: {}\n`);
    expect(ok.vm).toEqual({ type: 'tdx', huge_pages: true, gpaw: 52 });
    const asid = errorsOf(`name: t\nvm: { type: snp, min_sev_asid: 5, max_sev_asid: 9 }\napplies_to: { targets: [model] }\nsteps:\n  - create_vcpu: { id: 0 }\n`);
    expect(asid.map((e) => [e.field, e.message])).toEqual([
      ['vm.min_sev_asid', 'min_sev_asid is an option of sev VMs'],
      ['vm.max_sev_asid', 'max_sev_asid is an option of sev VMs'],
    ]);
    const half = errorsOf(`name: t\nvm: { type: sev, min_sev_asid: 5 }\nsteps:\n  - create_vcpu: { id: 0 }\n`);
    expect(half[0]).toMatchObject({ field: 'vm.min_sev_asid', message: 'min_sev_asid and max_sev_asid come together (CPUID 0x8000001F EDX and ECX)' });
    const kvm = errorsOf(`name: t\nvm: { type: sev-es, min_sev_asid: 5, max_sev_asid: 9 }\nsteps:\n  - create_vcpu: { id: 0 }\n`);
    expect(kvm[0]).toMatchObject({ field: 'vm.min_sev_asid', message: expect.stringContaining('targets: [model]') });
    const both = parseScenario(`name: t\nvm: { type: sev-es, min_sev_asid: 5, max_sev_asid: 9 }\napplies_to: { targets: [model] }\nsteps:\n  - create_vcpu: { id: 0 }\n`);
    expect(both.vm).toEqual({ type: 'sev-es', min_sev_asid: 5, max_sev_asid: 9 });
  });

  it('accepts a concurrent block with actors and invariants', () => {
    const s = parseScenario(`name: t
vm: { type: sw-protected }
steps:
  - create_vcpu: { id: 0 }
    as: cpu
concurrent:
  actors:
    vmm:
      - set_memory_attributes: { address: 0, size: 4KiB, attributes: [KVM_MEMORY_ATTRIBUTE_PRIVATE] }
    guest:
      - guest_read: { vcpu: cpu, gpa: 0, size: 1, private: true }
  invariants:
    - no-stale-spte
    - assert: { what: attributes, gfn: 0, private: true }
`);
    expect(Object.keys(s.concurrent!.actors)).toEqual(['vmm', 'guest']);
    expect(s.concurrent!.actors.guest![0]!.args).toMatchObject({ vcpu: { ref: 'cpu', offset: 0 }, private: true });
    expect(s.concurrent!.invariants).toHaveLength(2);
    const bad = errorsOf(`name: t\nvm: { type: default }\nsteps: []\nconcurrent:\n  actors:\n    a:\n      - guest_read: { vcpu: nobody, gpa: 0, size: 1 }\n`);
    expect(bad[0]!.field).toBe('concurrent.actors.a[0].guest_read.vcpu');
  });

  it('every op has a schema that accepts its documented minimal form', () => {
    expect(OP_NAMES).toContain('punch_hole');
    expect(OP_NAMES).toContain('gmem_poison');
    expect(OP_NAMES).toContain('device_revoke');
    expect(OP_NAMES).toContain('guest_psc_msr');
    expect(OP_NAMES).toContain('guest_rmpadjust');
    expect(OP_NAMES).toContain('guest_read_gva');
    expect(OP_NAMES).toContain('l2_write');
    expect(OP_NAMES).toContain('sev_init2');
    expect(OP_NAMES).toContain('memory_encrypt_reg_region');
    expect(OP_NAMES).toContain('guest_ghcb_terminate');
    expect(OP_NAMES).toContain('fstat');
    expect(OP_NAMES).toContain('guest_exception');
    expect(OP_NAMES).toContain('move_pages');
    for (const op of ['harvest_dirty_ring', 'reset_dirty_rings', 'mmap_dirty_ring', 'guest_touch', 'run_vcpu']) expect(OP_NAMES).toContain(op);
    expect(OP_NAMES).toContain('snp_rmp_insn');
    expect(OP_NAMES).toContain('tdx_seamcall');
    expect(OP_NAMES).toContain('snp_host_access');
    expect(OP_NAMES).toContain('vcpu_fd');
    expect(OP_NAMES).toContain('tdx_pending_interrupt');
    expect(OP_NAMES).toHaveLength(87);
    const v = parseScenario(
      'name: n\nvm: { type: tdx }\nsteps:\n  - tdx_seamcall: { leaf: TDH.MEM.TRACK }\n',
      'v.yaml',
    );
    expect(v.steps[0]).toMatchObject({ op: 'tdx_seamcall', args: { leaf: 'TDH.MEM.TRACK' } });
    const p = parseScenario('name: n\nvm: { type: tdx }\nsteps:\n  - tdx_pending_interrupt: { vcpu: 0 }\n', 'p.yaml');
    expect(p.steps[0]).toMatchObject({ op: 'tdx_pending_interrupt', args: { vcpu: 0 } });
    const w = parseScenario('name: n\nvm: { type: snp }\nsteps:\n  - snp_rmp_insn: { insn: psmash, pfn: 0x200 }\n', 'w.yaml');
    expect(w.steps[0]).toMatchObject({ op: 'snp_rmp_insn', args: { insn: 'psmash', pfn: 0x200 } });
    const s = parseScenario(
      'name: n\nvm: { type: snp }\nsteps:\n  - guest_rmpadjust: { vcpu: 0, gpa: 0x1000, vmpl: 1, perms: 3 }\n  - guest_psc_msr: { vcpu: 0, gpa: 0x1000, operation: shared }\n',
      'm.yaml',
    );
    expect(s.steps.map((x) => x.op)).toEqual(['guest_rmpadjust', 'guest_psc_msr']);
  });

  it('parseScenario throws ScenarioParseError with all errors', () => {
    try {
      parseScenario('name: 1\nvm: {}\n', 'y.yaml');
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(ScenarioParseError);
      expect((e as ScenarioParseError).errors.map((x) => x.field)).toEqual(expect.arrayContaining(['vm.type', 'steps']));
      expect((e as Error).message).toMatch(/^y\.yaml:\d+:\d+: /);
    }
  });

  it('formats paths like steps[3].op.field', () => {
    expect(formatPath(['steps', 3, 'set_user_memory_region2', 'slot'])).toBe('steps[3].set_user_memory_region2.slot');
    expect(formatPath([])).toBe('');
  });
});

describe('concurrent invariants', () => {
  it('an unknown invariant name is an error at its line and field', () => {
    const r = tryParseScenario('name: n\nvm: { type: default }\nsteps: []\nconcurrent:\n  actors:\n    a:\n      - create_vcpu: { id: 0 }\n  invariants: [no-such-invariant]\n', 'i.yaml');
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.errors[0]).toMatchObject({ file: 'i.yaml', line: 8, field: 'concurrent.invariants[0]' });
    const ok = tryParseScenario('name: n\nvm: { type: default }\nsteps: []\nconcurrent:\n  actors:\n    a:\n      - create_vcpu: { id: 0 }\n  invariants: [no-stale-spte, guest-completes]\n', 'i.yaml');
    expect(ok.ok).toBe(true);
  });
});

describe('expect.ret', () => {
  const withRet = (ret: string) => `name: r
vm: { type: snp }
steps:
  - create_vcpu: { id: 0 }
    expect: { ret: ${ret} }
`;
  it('a number literal with _ separators is a number, not a name', () => {
    const s = parseScenario(withRet('0x1_0000_0001'), 'r.yaml');
    expect(s.steps[0]!.expect.ret).toBe(0x100000001);
    expect(parseScenario(withRet('1_000'), 'r.yaml').steps[0]!.expect.ret).toBe(1000);
  });
  it('a name stays a name, and a 64-bit status stays exact', () => {
    expect(parseScenario(withRet('TDX_SUCCESS'), 'r.yaml').steps[0]!.expect.ret).toBe('TDX_SUCCESS');
    expect(parseScenario(withRet('0xC000_0100_0000_0001'), 'r.yaml').steps[0]!.expect.ret).toBe(0xc000010000000001n);
  });
});

describe('profiles', () => {
  it('a scenario names `host` or one of the model kernel profiles, no other', async () => {
    const { PROFILES } = await import('./schema.js');
    const core = await import('@ccmem/core');
    expect([...PROFILES].sort()).toEqual(['host', ...Object.keys(core.PROFILES)].sort());
  });
});
