import { describe, expect, it } from 'vitest';
import { KvmError } from '@ccmem/core';
import { parseScenario } from './parse.js';
import { collectEvents, compareOutcome, diffOutcomes, diffResults, jsonReplacer, resolveStep, runScenario, sameValue } from './runner.js';
import type { Scenario } from './schema.js';
import { SkipScenario, type Outcome, type ResolvedStep, type RunContext, type Target } from './target.js';

/** A target that answers each op from a script and records what it was asked. */
function scripted(answers: Record<string, (step: ResolvedStep, ctx: RunContext) => Outcome>, extra: Partial<Target> = {}) {
  const seen: ResolvedStep[] = [];
  let began = 0;
  let ended = 0;
  const target: Target = {
    name: 'model',
    begin: () => void began++,
    end: () => void ended++,
    execute(step, ctx) {
      seen.push(step);
      const f = answers[step.op];
      return f ? f(step, ctx) : {};
    },
    ...extra,
  };
  return { target, seen, counts: () => ({ began, ended }) };
}

const HEAD = 'name: t\nvm: { type: default }\nsteps:\n';

describe('runScenario', () => {
  it('resolves names before the target sees a step and passes on matching outcomes', () => {
    const sc = parseScenario(`${HEAD}  - mmap: { size: 2MiB }
    as: ram
  - write: { addr: ram+0x10, size: 4, value: 0xcafef00d }
  - set_user_memory_region2: { slot: 3, as_id: 1, guest_phys_addr: 0x100000, memory_size: 2MiB, userspace_addr: ram }
  - punch_hole: { fd: 5, offset: 0, len: 4KiB }
  - set_user_memory_region: { slot: 0, guest_phys_addr: 0, memory_size: 0 }
`);
    const f = scripted({ mmap: () => ({ result: 0x7f0000000000 }) });
    const r = runScenario(sc, f.target, { file: 'a.yaml' });
    expect(r.pass).toBe(true);
    expect(r).toMatchObject({ file: 'a.yaml', name: 't', target: 'model', vm_type: 'default', provider: 'guest_memfd' });
    expect(f.seen[1]).toEqual({ index: 1, op: 'write', args: { addr: 0x7f0000000010, size: 4, value: 0xcafef00dn } });
    expect(f.seen[2]!.args).toEqual({ slot: 0x10003, guest_phys_addr: 0x100000, memory_size: 0x200000, userspace_addr: 0x7f0000000000 });
    expect(f.seen[3]).toEqual({ index: 3, op: 'fallocate', args: { fd: 5, mode: 3, offset: 0, len: 4096 } });
    expect(r.steps[3]!.op).toBe('punch_hole');
    expect(f.seen[4]!.args).toMatchObject({ userspace_addr: 0 });
    expect(f.counts()).toEqual({ began: 1, ended: 1 });
  });

  it('a failing step says expected vs happened and the kernel rule, and the run continues', () => {
    const sc = parseScenario(`${HEAD}  - create_vcpu: { id: 0 }
    expect: { errno: EEXIST }
  - create_vcpu: { id: 1 }
  - create_vcpu: { id: 2 }
`);
    const f = scripted({
      create_vcpu: (s) =>
        s.index === 1 ? { errno: 'EINVAL', detail: { check: 'kvm_vm_ioctl_create_vcpu: id >= KVM_MAX_VCPU_IDS' } } : { result: 0 },
    });
    const r = runScenario(sc, f.target);
    expect(r.pass).toBe(false);
    expect(r.steps.map((s) => s.pass)).toEqual([false, false, true]);
    expect(r.steps[0]!.mismatches).toEqual(['expected errno EEXIST (happened: ok (0))']);
    expect(r.steps[1]!.mismatches).toEqual(['expected success (happened: errno EINVAL)']);
    expect(r.steps[1]!.rule).toBe('kvm_vm_ioctl_create_vcpu: id >= KVM_MAX_VCPU_IDS');
    const stop = runScenario(sc, scripted({ create_vcpu: () => ({ errno: 'EINVAL' }) }).target, { stopOnFailure: true });
    expect(stop.steps).toHaveLength(1);
  });

  it('a thrown KvmError counts as the errno; other throws fail the step', () => {
    const sc = parseScenario(`${HEAD}  - create_vcpu: { id: 0 }
    expect: { errno: EEXIST }
  - create_vcpu: { id: 1 }
`);
    const f = scripted({
      create_vcpu: (s) => {
        if (s.index === 0) throw new KvmError('EEXIST', 'vcpu id in use');
        throw new Error('boom');
      },
    });
    const r = runScenario(sc, f.target);
    expect(r.steps[0]).toMatchObject({ pass: true, rule: 'vcpu id in use' });
    expect(r.steps[1]).toMatchObject({ pass: false, mismatches: ['target error: boom'] });
  });

  it('unsupported ops and SkipScenario skip the scenario', () => {
    const sc = parseScenario(`${HEAD}  - create_vcpu: { id: 0 }\n  - set_memory_attributes: { address: 0, size: 4KiB, attributes: 0 }\n  - create_vcpu: { id: 1 }\n`);
    const f = scripted({}, { supports: (op) => (op === 'set_memory_attributes' ? { ok: false, reason: 'missing KVM_CAP_MEMORY_ATTRIBUTES' } : { ok: true }) });
    const r = runScenario(sc, f.target);
    expect(r.pass).toBe(true);
    expect(r.skipped).toBe('step 1 (set_memory_attributes): missing KVM_CAP_MEMORY_ATTRIBUTES');
    expect(r.steps).toHaveLength(2);
    expect(f.seen).toHaveLength(1);
    const skip = scripted({}, { begin: () => { throw new SkipScenario('no SNP on this host'); } });
    const r2 = runScenario(sc, skip.target);
    expect(r2).toMatchObject({ pass: true, skipped: 'no SNP on this host', steps: [] });
  });

  it('a named step must produce a result', () => {
    const sc = parseScenario(`${HEAD}  - mmap: { size: 4KiB }\n    as: ram\n  - read: { addr: ram, size: 1 }\n    expect: { value: 0 }\n`);
    const r = runScenario(sc, scripted({ read: () => ({ value: 0n }) }).target);
    expect(r.steps[0]!.mismatches).toEqual(['the step is named "ram" but produced no result']);
    expect(r.steps[1]!.mismatches[0]).toMatch(/no earlier step is named "ram"/);
  });

  it('assert steps compare named fields against the reported state', () => {
    const sc = parseScenario(`name: t\nvm: { type: sw-protected }\nsteps:\n  - assert: { what: spte, gfn: 0x100, level: 2, present: true, pfn: 7 }\n`);
    const f = scripted({ assert: () => ({ detail: { level: 1, present: true } }) });
    const r = runScenario(sc, f.target);
    expect(r.steps[0]!.expected).toEqual({ level: 2, present: true });
    expect(r.steps[0]!.mismatches).toEqual(['expected level 2, happened 1']);
    expect(f.seen[0]!.args).toEqual({ what: 'spte', gfn: 0x100, level: 2, present: true, pfn: 7 });
  });

  it('a mapping in an assert step compares only the sub-fields it names', () => {
    const sc = parseScenario(
      `name: t\nvm: { type: snp }\nsteps:\n  - assert: { what: stats, host: { rmpupdates: 3, psmashes: 0x1 }, backend: { rmpFaults: 1 }, rmp: { chunks: 1 } }\n`,
    );
    const f = scripted({ assert: () => ({ detail: { host: { rmpupdates: 2, psmashes: 1, leakedPages: 9 }, backend: 7 } }) });
    const r = runScenario(sc, f.target);
    expect(r.steps[0]!.mismatches).toEqual([
      'expected host.rmpupdates 3, happened 2',
      'expected backend to hold rmpFaults, happened 7',
      'expected rmp { chunks: 1 }, the target reported no rmp',
    ]);
  });

  it('runs concurrent actors round robin, then invariants', () => {
    const sc = parseScenario(`${HEAD}  - create_vcpu: { id: 0 }
concurrent:
  actors:
    a:
      - create_vcpu: { id: 1 }
      - create_vcpu: { id: 2 }
    b:
      - create_vcpu: { id: 3 }
  invariants:
    - no-stale-spte
`);
    const f = scripted({}, { checkInvariant: (name) => (name === 'no-stale-spte' ? ['gfn 0x10 maps a freed pfn'] : []) });
    const r = runScenario(sc, f.target);
    expect(f.seen.map((s) => [s.args, s.actor])).toEqual([
      [{ id: 0 }, undefined],
      [{ id: 1 }, 'a'],
      [{ id: 3 }, 'b'],
      [{ id: 2 }, 'a'],
    ]);
    expect(r.steps.at(-1)).toMatchObject({ op: 'invariant no-stale-spte', pass: false, mismatches: ['gfn 0x10 maps a freed pfn'] });
    expect(r.pass).toBe(false);
  });

  it('the matrix override changes the VM type and drops foreign options', () => {
    const sc = parseScenario(`name: t\nvm: { type: snp, directmap: unmap }\napplies_to: { vm_types: [snp, tdx] }\nsteps:\n  - create_vcpu: { id: 0 }\n`);
    let vm: unknown;
    const f = scripted({}, { begin: (_s, ctx) => void (vm = ctx.vm) });
    const r = runScenario(sc, f.target, { vmType: 'tdx', provider: 'device_fd' });
    expect(vm).toEqual({ type: 'tdx', provider: 'device_fd' });
    expect(r).toMatchObject({ vm_type: 'tdx', provider: 'device_fd' });
    const sev = parseScenario(`name: t\nvm: { type: sev, memlock_limit: 0, min_sev_asid: 5, max_sev_asid: 9 }\napplies_to: { vm_types: [sev, sev-es, default], targets: [model] }\nsteps:\n  - create_vcpu: { id: 0 }\n`);
    runScenario(sev, f.target, { vmType: 'sev-es' });
    expect(vm).toEqual({ type: 'sev-es', memlock_limit: 0, min_sev_asid: 5, max_sev_asid: 9 });
    runScenario(sev, f.target, { vmType: 'default' });
    expect(vm).toEqual({ type: 'default' });
  });
});

describe('compareOutcome', () => {
  it('success means no errno, exit or signal', () => {
    expect(compareOutcome({}, {})).toEqual([]);
    expect(compareOutcome({}, { result: 3 })).toEqual([]);
    expect(compareOutcome({}, { signal: 'SIGBUS' })).toHaveLength(1);
    expect(compareOutcome({}, { exit: { reason: 'KVM_EXIT_SHUTDOWN' } })).toHaveLength(1);
  });

  it('compares exit reason and only the listed exit fields', () => {
    const exit: Outcome = { exit: { reason: 'KVM_EXIT_MMIO', mmio: { phys_addr: 0x1000, len: 4, is_write: true, data: 0xdeadbeefn } } };
    expect(compareOutcome({ exit: 'KVM_EXIT_MMIO', mmio: { is_write: true } }, exit)).toEqual([]);
    expect(compareOutcome({ exit: 'KVM_EXIT_MMIO', mmio: { data: 0xdeadbeefn, phys_addr: 0x1000 } }, exit)).toEqual([]);
    expect(compareOutcome({ exit: 'KVM_EXIT_MMIO', mmio: { len: 8 } }, exit)).toEqual(['expected mmio.len 8, happened 4']);
    expect(compareOutcome({ exit: 'KVM_EXIT_MEMORY_FAULT' }, exit)[0]).toMatch(/expected exit KVM_EXIT_MEMORY_FAULT/);
  });

  it('a memory-fault exit may carry its errno', () => {
    const o: Outcome = { errno: 'EFAULT', exit: { reason: 'KVM_EXIT_MEMORY_FAULT', memory_fault: { flags: 8, gpa: 0x2000, size: 4096 } } };
    expect(compareOutcome({ exit: 'KVM_EXIT_MEMORY_FAULT', memory_fault: { flags: 8, gpa: 0x2000 } }, o)).toEqual([]);
    expect(compareOutcome({ errno: 'EFAULT' }, o)).toEqual([]);
    expect(compareOutcome({ errno: 'EHWPOISON', exit: 'KVM_EXIT_MEMORY_FAULT' }, o)).toHaveLength(1);
  });

  it('values compare as 64-bit numbers; dirty pages as sorted lists', () => {
    expect(compareOutcome({ value: 0xffffffffffffffffn }, { value: 0xffffffffffffffffn })).toEqual([]);
    expect(compareOutcome({ value: 3n }, { value: 3 })).toEqual([]);
    expect(compareOutcome({ value: 3n }, { value: 4 })).toEqual(['expected value 3, happened 4']);
    expect(compareOutcome({ dirty_pages: [3, 0, 511] }, { dirty_pages: [511, 3, 0] })).toEqual([]);
    expect(compareOutcome({ dirty_pages: [0] }, { dirty_pages: [0, 1] })).toEqual(['expected dirty_pages [0], happened [0, 1]']);
    expect(compareOutcome({ errno: 'ENOENT', gpa: 0x8000, size: 4096 }, { errno: 'ENOENT', gpa: 0x8000, size: 4096 })).toEqual([]);
    expect(compareOutcome({ gpa: 0x8000 }, { gpa: 0x9000 })).toEqual(['expected gpa 0x8000, happened 0x9000']);
  });

  it('sameValue treats numbers, bigints and numeric strings alike', () => {
    expect(sameValue(16n, '0x10')).toBe(true);
    expect(sameValue('private', 'private')).toBe(true);
    expect(sameValue([1, 2n], [1n, 2])).toBe(true);
    expect(sameValue(1, undefined)).toBe(false);
  });
});

describe('diffOutcomes', () => {
  it('compares errno, value, exit fields and dirty pages, not results or events', () => {
    expect(diffOutcomes({ result: 1, events: [{ name: 'x', fields: {} }] }, { result: 2 })).toEqual([]);
    expect(diffOutcomes({ errno: 'EINVAL' }, { errno: 'EEXIST' })).toEqual(['errno: EINVAL vs EEXIST']);
    expect(diffOutcomes({ dirty_pages: [2, 1] }, { dirty_pages: [1, 2] })).toEqual([]);
    expect(
      diffOutcomes(
        { exit: { reason: 'KVM_EXIT_MMIO', mmio: { phys_addr: 0, len: 4, is_write: false, data: 0n } } },
        { exit: { reason: 'KVM_EXIT_MMIO', mmio: { phys_addr: 0, len: 8, is_write: false, data: 0n } } },
      ),
    ).toEqual(['mmio.len: 4 vs 8']);
    expect(diffOutcomes({ value: 1n }, {})).toEqual(['value: 1 vs nothing']);
  });

  it('a step skipped on one side differs by that alone; skipped on both, nothing else is compared', () => {
    expect(diffOutcomes({ skipped: 'no guest_memfd' }, { errno: 'EINVAL' })).toEqual(['skipped: no guest_memfd vs nothing']);
    expect(diffOutcomes({ value: 1n }, { skipped: 'no attributes' })).toEqual(['skipped: nothing vs no attributes']);
    expect(diffOutcomes({ skipped: 'a', value: 1n }, { skipped: 'b', value: 2n })).toEqual([]);
  });

  it('an exit group or a params field present on one side only is a difference per field', () => {
    const mmio = { phys_addr: 0x1000, len: 4, is_write: true, data: 7n };
    expect(diffOutcomes({ exit: { reason: 'KVM_EXIT_MMIO', mmio } }, { exit: { reason: 'KVM_EXIT_MMIO' } as Outcome['exit'] })).toEqual([
      'mmio.phys_addr: 0x1000 vs nothing',
      'mmio.len: 4 vs nothing',
      'mmio.is_write: true vs nothing',
      'mmio.data: 7 vs nothing',
    ]);
    expect(diffOutcomes({ params: { cur_entry: 2 } }, {})).toEqual(['params.cur_entry: 2 vs nothing']);
    expect(diffOutcomes({}, { params: { len: 48 } })).toEqual(['params.len: nothing vs 48']);
  });

  it('collectEvents lists each step\'s kernel events, none for a step without', () => {
    const sc = parseScenario(`${HEAD}  - create_vcpu: { id: 0 }\n  - create_vcpu: { id: 1 }\n`);
    const ev = { name: 'kvm_create_vcpu', fields: { vcpu_id: 0 } };
    const r = runScenario(sc, scripted({ create_vcpu: (st) => (st.index === 0 ? { events: [ev] } : {}) }).target);
    expect(collectEvents(r).slice(0, 2)).toEqual([
      { index: 0, op: 'create_vcpu', events: [ev] },
      { index: 1, op: 'create_vcpu', events: [] },
    ]);
  });

  it('diffResults lists the steps that differ', () => {
    const sc = parseScenario(`${HEAD}  - create_vcpu: { id: 0 }\n  - create_vcpu: { id: 1 }\n`);
    const a = runScenario(sc, scripted({}).target);
    const b = runScenario(sc, scripted({ create_vcpu: (s) => (s.index === 1 ? { errno: 'EINVAL' } : {}) }).target);
    expect(diffResults(a, b)).toEqual([{ index: 1, op: 'create_vcpu', differences: ['errno: nothing vs EINVAL'] }]);
  });

  it('diffResults: a step on one side only differs, except the model\'s VMM exit', () => {
    const sc = parseScenario(`${HEAD}  - create_vcpu: { id: 0 }\n`);
    const withExit = runScenario(sc, scripted({}, { exit: () => [] }).target);
    const plain = runScenario(sc, scripted({}).target);
    expect(withExit.steps.map((s) => s.op)).toEqual(['create_vcpu', 'exit']);
    expect(diffResults(withExit, plain)).toEqual([]);
    const longer = runScenario(parseScenario(`${HEAD}  - create_vcpu: { id: 0 }\n  - create_vcpu: { id: 1 }\n`), scripted({}).target);
    expect(diffResults(plain, longer)).toEqual([{ index: 1, op: 'create_vcpu', differences: ['step ran only on model'] }]);
  });

  it('jsonReplacer prints bigints as hex', () => {
    expect(JSON.stringify({ v: 0xdeadbeefn }, jsonReplacer)).toBe('{"v":"0xdeadbeef"}');
  });
});

describe('compareOutcome: failures nobody expected fail the step', () => {
  it('a non-success vendor return code fails a step that expects success', () => {
    expect(compareOutcome({}, { ret: 6 })).toHaveLength(1);
    expect(compareOutcome({}, { ret: 'TDX_OPERAND_BUSY' })).toHaveLength(1);
    expect(compareOutcome({}, { ret: 0 })).toEqual([]);
    expect(compareOutcome({}, { ret: 'TDX_SUCCESS' })).toEqual([]);
    expect(compareOutcome({}, { ret: 'SUCCESS', detail: { ret_alias: 0 } })).toEqual([]);
    expect(compareOutcome({ ret: 'FAIL_SIZEMISMATCH' }, { ret: 6, detail: { ret_alias: 'FAIL_SIZEMISMATCH' } })).toEqual([]);
  });

  it('an expected memory-fault exit accepts only KVM_RUN errnos EFAULT and EHWPOISON', () => {
    const exit = { reason: 'KVM_EXIT_MEMORY_FAULT' as const, memory_fault: { flags: 0, gpa: 0x1000, size: 0x1000 } };
    expect(compareOutcome({ exit: 'KVM_EXIT_MEMORY_FAULT' }, { errno: 'EFAULT', exit })).toEqual([]);
    expect(compareOutcome({ exit: 'KVM_EXIT_MEMORY_FAULT' }, { errno: 'EHWPOISON', exit })).toEqual([]);
    expect(compareOutcome({ exit: 'KVM_EXIT_MEMORY_FAULT' }, { errno: 'EINVAL', exit })).toHaveLength(1);
  });
});

describe('concurrent invariants: the steps they add', () => {
  const sc = (invariants: string) =>
    parseScenario(`${HEAD}  - create_vcpu: { id: 0 }
concurrent:
  actors:
    a:
      - create_vcpu: { id: 1 }
  invariants:
${invariants}`);

  it('a string invariant that holds expects it to hold and reports no mismatch', () => {
    const f = scripted({}, { checkInvariant: () => [] });
    const r = runScenario(sc('    - no-stale-spte\n'), f.target);
    expect(r.pass).toBe(true);
    expect(r.steps.at(-1)).toStrictEqual({
      index: 2,
      op: 'invariant no-stale-spte',
      expected: { holds: true },
      pass: true,
      outcome: { detail: { violations: [] } },
      mismatches: [],
    });
  });

  /** the step result of an invariant the run skipped (the scenario's third step) */
  const skippedInvariant = (name: string, reason: string) => ({
    index: 2,
    op: `invariant ${name}`,
    expected: { holds: true },
    pass: true,
    outcome: { skipped: reason },
    mismatches: [],
    skipped: reason,
  });

  it('an invariant only ccmem explore judges is skipped without asking the target, and the run still passes', () => {
    let asked = 0;
    const f = scripted({}, { checkInvariant: () => (asked++, ['broken']) });
    const r = runScenario(sc('    - no-stale-data\n'), f.target);
    const reason = 'only ccmem explore checks invariant "no-stale-data" (it speaks about every interleaving)';
    expect(asked).toBe(0);
    expect(r.pass).toBe(true);
    expect(r.skipped).toBeUndefined();
    expect(r.steps.at(-1)).toStrictEqual(skippedInvariant('no-stale-data', reason));
  });

  it('a target that cannot check invariants skips the invariant step', () => {
    const f = scripted({});
    const r = runScenario(sc('    - no-stale-spte\n'), f.target);
    const reason = 'target model cannot check invariant "no-stale-spte"';
    expect(r.pass).toBe(true);
    expect(r.steps.at(-1)).toStrictEqual(skippedInvariant('no-stale-spte', reason));
  });

  it('an outcome invariant expects one of its forms and reports the offending step once', () => {
    const inv = '    - outcome: { actor: a, one_of: [ok, { errno: EEXIST }] }\n';
    const ok = runScenario(sc(inv), scripted({}).target);
    expect(ok.pass).toBe(true);
    expect(ok.steps.at(-1)).toStrictEqual({
      index: 2,
      op: 'invariant outcome of a',
      expected: { one_of: [{}, { errno: 'EEXIST' }] },
      pass: true,
      outcome: {},
      mismatches: [],
    });
    const bad = runScenario(sc(inv), scripted({ create_vcpu: (s) => (s.actor === 'a' ? { errno: 'EINVAL' } : {}) }).target);
    expect(bad.pass).toBe(false);
    expect(bad.steps.at(-1)).toMatchObject({ op: 'invariant outcome of a', pass: false });
    expect(bad.steps.at(-1)!.mismatches).toEqual(['a step 0 (create_vcpu): errno EINVAL, which is none of: ok | errno EEXIST']);
  });
});

describe('fields left undefined', () => {
  it('a field whose value is undefined does not reach the target as a key', () => {
    const r = resolveStep({ op: 'create_vcpu', args: { id: 1, extra: undefined } as never, expect: {} } as never, 0, new Map());
    expect(r.args).toStrictEqual({ id: 1 });
    expect('extra' in r.args).toBe(false);
    const withNull = resolveStep({ op: 'create_vcpu', args: { id: 1, extra: null, list: [null, 2] } as never, expect: {} } as never, 0, new Map());
    expect(withNull.args).toStrictEqual({ id: 1, extra: null, list: [null, 2] });
  });

  it('an assert field whose value is undefined is not expected', () => {
    const sc = parseScenario('name: t\nvm: { type: sw-protected }\nsteps:\n  - assert: { what: spte, gfn: 0x100, present: true }\n');
    const step = { ...sc.steps[0]!, args: { ...(sc.steps[0]!.args as Record<string, unknown>), level: undefined } };
    const r = runScenario({ ...sc, steps: [step] } as Scenario, scripted({ assert: () => ({ detail: { present: true } }) }).target);
    expect(r.steps[0]!.expected).toStrictEqual({ present: true });
    expect(r.steps[0]!.mismatches).toEqual([]);
  });
});

describe('invariants a target found broken after a step', () => {
  it('fail the step with each sentence; anything but a list of them is not read', () => {
    const sc = parseScenario(`${HEAD}  - create_vcpu: { id: 0 }\n`);
    const run = (invariants: unknown) => runScenario(sc, scripted({ create_vcpu: () => ({ detail: { invariants } }) }).target).steps[0]!;
    expect(run(['a is negative', 'b leaked'])).toMatchObject({ pass: false, mismatches: ['invariant violated: a is negative', 'invariant violated: b leaked'] });
    expect(run([])).toMatchObject({ pass: true, mismatches: [] });
    expect(run('a is negative')).toMatchObject({ pass: true, mismatches: [] });
    expect(run(undefined)).toMatchObject({ pass: true, mismatches: [] });
  });
});
