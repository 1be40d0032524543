import { describe, expect, it } from 'vitest';
import { createKvmTarget } from '../kvm-target.js';
import { createModelTarget } from '../model-target.js';
import { parseScenario, tryParseScenario } from '../parse.js';
import { runScenario } from '../runner.js';
import type { RunContext } from '../target.js';
import { MAX_INJECTIONS, rmpFailureCode } from './inject.js';

const TDX_HEAD = 'name: n\nvm: { type: tdx }\nsteps:\n';
const SNP_HEAD = 'name: n\nvm: { type: snp }\nsteps:\n';

/** the first error of a scenario that must not parse */
function firstError(yaml: string) {
  const r = tryParseScenario(yaml, 'inj.yaml');
  if (r.ok) throw new Error('the scenario parsed');
  return r.errors[0]!;
}

describe('inject ops: parsing', () => {
  it('tdx_inject_busy takes a leaf of the module, a count and `after`; all optional', () => {
    const s = parseScenario(`${TDX_HEAD}  - tdx_inject_busy: { leaf: TDH.MR.EXTEND, count: 2, after: 16 }\n  - tdx_inject_busy: {}\n`, 'a.yaml');
    expect(s.steps[0]).toMatchObject({ op: 'tdx_inject_busy', args: { leaf: 'TDH.MR.EXTEND', count: 2, after: 16 } });
    expect(s.steps[1]).toMatchObject({ op: 'tdx_inject_busy', args: {} });
  });

  it('bad arguments are errors at their file, line and field', () => {
    expect(firstError(`${TDX_HEAD}  - create_vcpu: { id: 0 }\n  - tdx_inject_busy: { leaf: TDH.MEM.PAGE.EATEN }\n`)).toMatchObject({
      file: 'inj.yaml',
      line: 5,
      field: 'steps[1].tdx_inject_busy.leaf',
    });
    // a TDCALL is not a SEAMCALL the host makes
    expect(firstError(`${TDX_HEAD}  - tdx_inject_busy: { leaf: TDG.MEM.PAGE.ACCEPT }\n`)).toMatchObject({ line: 4, field: 'steps[0].tdx_inject_busy.leaf' });
    const zero = firstError(`${TDX_HEAD}  - tdx_inject_busy: { count: 0 }\n`);
    expect(zero).toMatchObject({ line: 4, field: 'steps[0].tdx_inject_busy.count' });
    expect(zero.message).toMatch(/integer from 1 to 4096, got 0/);
    expect(firstError(`${SNP_HEAD}  - snp_inject_fail: { insn: rmpupdate, code: FAIL_INUSE, times: ${MAX_INJECTIONS + 1} }\n`)).toMatchObject({
      field: 'steps[0].snp_inject_fail.times',
    });
    expect(firstError(`${SNP_HEAD}  - snp_inject_fail: { insn: rmpupdate, code: FAIL_INUSE, after: -1 }\n`)).toMatchObject({ field: 'steps[0].snp_inject_fail.after' });
    expect(firstError(`${TDX_HEAD}  - tdx_inject_busy: { leaf: TDH.MEM.TRACK, times: 1 }\n`)).toMatchObject({ line: 4 });
  });

  it('snp_inject_fail accepts the firmware names, with or without the prefix, and the numbers; per instruction', () => {
    const s = parseScenario(
      `${SNP_HEAD}  - snp_inject_fail: { insn: rmpupdate, code: FAIL_OVERLAP }\n  - snp_inject_fail: { insn: psmash, code: PSMASH_FAIL_BADADDR, times: 2, after: 1 }\n  - snp_inject_fail: { insn: rmpupdate, code: 3 }\n`,
      's.yaml',
    );
    expect(s.steps.map((x) => x.args)).toEqual([
      { insn: 'rmpupdate', code: 'FAIL_OVERLAP' },
      { insn: 'psmash', code: 'PSMASH_FAIL_BADADDR', times: 2, after: 1 },
      { insn: 'rmpupdate', code: 3 },
    ]);
    // FAIL_OVERLAP is RMPUPDATE's, FAIL_BADADDR PSMASH's; SUCCESS (0) and other numbers are none
    for (const [insn, code] of [['psmash', 'FAIL_OVERLAP'], ['rmpupdate', 'FAIL_BADADDR'], ['rmpupdate', 'SUCCESS'], ['rmpupdate', '0'], ['psmash', '5'], ['psmash', 'RMPUPDATE_FAIL_INUSE']]) {
      const e = firstError(`${SNP_HEAD}  - snp_inject_fail: { insn: ${insn}, code: ${code} }\n`);
      expect(e).toMatchObject({ line: 4, field: 'steps[0].snp_inject_fail.code' });
      expect(e.message).toContain(`${insn} has no failure code ${code}`);
    }
    expect(rmpFailureCode('rmpupdate', 'RMPUPDATE_FAIL_OVERLAP')).toBe(4);
    expect(rmpFailureCode('psmash', 'FAIL_BADADDR')).toBe(4);
    expect(rmpFailureCode('psmash', 'constructor')).toBeUndefined();
  });
});

describe('inject ops: targets', () => {
  it('the model queues the injection and reports what is pending', () => {
    const t = runScenario(
      parseScenario(`${TDX_HEAD}  - tdx_inject_busy: { leaf: TDH.MEM.TRACK, count: 3 }\n  - tdx_inject_busy: { count: 2, after: 1 }\n`, 't.yaml'),
      createModelTarget(),
    );
    expect(t.steps.filter((s) => s.op !== 'exit').map((s) => s.outcome.detail)).toEqual([{ pending: 3 }, { pending: 2 }]);
    const s = runScenario(
      parseScenario(`${SNP_HEAD}  - snp_inject_fail: { insn: rmpupdate, code: RMPUPDATE_FAIL_INUSE, times: 2, after: 1 }\n  - snp_inject_fail: { insn: psmash, code: 1 }\n  - snp_inject_fail: { insn: rmpupdate, code: FAIL_INPUT }\n`, 's.yaml'),
      createModelTarget(),
    );
    expect(s.steps.filter((x) => x.op !== 'exit').map((x) => x.outcome.detail)).toEqual([{ code: 3, pending: 3 }, { code: 1, pending: 1 }, { code: 1, pending: 4 }]);
  });

  it('the model refuses an injection into the other vendor', () => {
    const r = runScenario(parseScenario(`name: n\nvm: { type: default }\nsteps:\n  - tdx_inject_busy: {}\n    expect: { errno: EINVAL }\n  - snp_inject_fail: { insn: psmash, code: FAIL_INUSE }\n    expect: { errno: EINVAL }\n`, 'd.yaml'), createModelTarget());
    expect(r.steps.map((s) => [s.op, s.pass, s.outcome.errno])).toEqual([
      ['tdx_inject_busy', true, 'EINVAL'],
      ['snp_inject_fail', true, 'EINVAL'],
      ['exit', true, undefined],
    ]);
  });

  it('the real-KVM target reports both ops unsupported with the reason', () => {
    const k = createKvmTarget();
    const scenario = parseScenario(`${TDX_HEAD}  - tdx_inject_busy: {}\n`, 'k.yaml');
    const ctx: RunContext = { scenario, vm: scenario.vm, names: new Map(), trace: false };
    expect(k.supports!('tdx_inject_busy', ctx)).toEqual({ ok: false, reason: expect.stringMatching(/TDX_OPERAND_BUSY on demand \(model only\)/) });
    expect(k.supports!('snp_inject_fail', ctx)).toEqual({ ok: false, reason: expect.stringMatching(/RMPUPDATE or PSMASH on demand \(model only\)/) });
  });
});
