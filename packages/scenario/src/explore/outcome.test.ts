import { describe, expect, it } from 'vitest';
import { explore, loadBuiltinExploration, parseExploration } from '../index.js';
import { createModelTarget } from '../model-target.js';
import { parseScenario } from '../parse.js';
import { runScenario } from '../runner.js';
import type { Invariant } from '../schema.js';

const BASE = `
vm: { type: default }
steps:
  - mmap: { size: 2MiB }
    as: region
  - set_user_memory_region: { slot: 10, guest_phys_addr: 0xc0000000, memory_size: 2MiB, userspace_addr: region }
  - create_vcpu: { id: 0 }
concurrent:
  actors:
    vmm:
      - set_user_memory_region: { slot: 10, guest_phys_addr: 0xc0000000, memory_size: 0 }
    cpu0:
      - guest_read: { vcpu: 0, gpa: 0xc0000000, size: 8 }
  invariants:
`;

function exploration(invariants: string) {
  const l = parseExploration(`name: outcome${BASE}${invariants}`);
  if (!l.ok) throw new Error(l.errors.map((e) => `${e.field}: ${e.message}`).join('\n'));
  return l.exploration;
}

describe('the outcome invariant', () => {
  it('holds when every order ends in one of the outcomes, and names the step and the order when one does not', () => {
    const both = exploration(`    - outcome: { actor: cpu0, one_of: [{ value: 0 }, { mmio: { phys_addr: 0xc0000000, len: 8, is_write: false } }] }\n`);
    const ok = explore(both.scenario, both.options);
    expect(ok.pass).toBe(true);
    expect(ok.schedules).toBeGreaterThan(1);
    // the read can come before the delete (0) or after it (MMIO): either alone is violated
    for (const only of ['{ value: 0 }', '{ mmio: { phys_addr: 0xc0000000, len: 8, is_write: false } }']) {
      const x = exploration(`    - outcome: { actor: cpu0, one_of: [${only}] }\n`);
      const r = explore(x.scenario, x.options);
      expect(r.pass).toBe(false);
      expect(r.violations[0]!.violation).toMatch(/^cpu0 step 0 \(guest_read\): .*, which is none of: /);
    }
  });

  it('after / before hold only the steps that began after, or finished before, the other step', () => {
    const x = exploration(
      [
        `    - outcome: { actor: cpu0, after: { actor: vmm, step: 0 }, one_of: [{ mmio: { phys_addr: 0xc0000000, len: 8, is_write: false } }] }`,
        `    - outcome: { actor: cpu0, before: { actor: vmm, step: 0 }, one_of: [{ value: 0 }] }`,
        '',
      ].join('\n'),
    );
    expect(explore(x.scenario, x.options).pass).toBe(true);
    const wrong = exploration(`    - outcome: { actor: cpu0, after: { actor: vmm, step: 0 }, one_of: [{ value: 0 }] }\n`);
    const r = explore(wrong.scenario, wrong.options);
    expect(r.pass).toBe(false);
    expect(r.violations[0]!.violation).toContain('begun after vmm step 0 finished');
  });

  it('an unknown actor or step is an error in the file', () => {
    for (const [inv, msg] of [
      ['{ actor: cpu9, one_of: [ok] }', 'no actor "cpu9"'],
      ['{ actor: cpu0, steps: [3], one_of: [ok] }', 'actor cpu0 has 1 steps'],
      ['{ actor: cpu0, after: { actor: vmm, step: 1 }, one_of: [ok] }', 'actor vmm has 1 steps'],
    ] as const) {
      const l = parseExploration(`name: outcome${BASE}    - outcome: ${inv}\n`);
      expect(l.ok).toBe(false);
      if (!l.ok) expect(l.errors.map((e) => e.message).join('\n')).toContain(msg);
    }
  });

  it('ccmem run (one round-robin order) checks it too', () => {
    const pass = parseScenario(`name: outcome${BASE}    - outcome: { actor: cpu0, one_of: [{ mmio: { phys_addr: 0xc0000000, len: 8, is_write: false } }] }\n`);
    // (the round-robin run also holds each actor step to its own `expect`: the read's MMIO
    // exit fails the step itself; the invariant's own result is the last step)
    const r = runScenario(pass, createModelTarget());
    // (then the VMM's exit, the run's last step)
    expect(r.steps.at(-1)).toMatchObject({ op: 'exit', pass: true });
    expect(r.steps.at(-2)!.op).toBe('invariant outcome of cpu0');
    expect(r.steps.at(-2)!.pass).toBe(true);
    const fail = parseScenario(`name: outcome${BASE}    - outcome: { actor: cpu0, one_of: [{ value: 0 }] }\n`);
    const f = runScenario(fail, createModelTarget());
    expect(f.steps.at(-2)!.pass).toBe(false);
    expect(f.steps.at(-2)!.mismatches[0]).toMatch(/which is none of: value 0/);
  });

  it('the selftest explorations are violated when a value the selftest forbids is allowed to be missing', () => {
    const l = loadBuiltinExploration('set-memory-region-delete-race');
    if (!l.ok) throw new Error('load');
    const x = l.exploration;
    const invariants = (x.scenario.concurrent!.invariants ?? []).map(
      (inv): Invariant => (typeof inv !== 'string' && 'outcome' in inv && inv.outcome.after?.step === 3 ? { outcome: { ...inv.outcome, one_of: [{ value: 0x90n }] } } : inv),
    );
    const r = explore({ ...x.scenario, concurrent: { ...x.scenario.concurrent!, invariants } }, x.options);
    expect(r.pass).toBe(false);
    expect(r.violations[0]!.violation).toMatch(/cpu0 step 2 \(guest_fetch, begun after vmm step 3 finished\): exit KVM_EXIT_INTERNAL_ERROR/);
  });
});
