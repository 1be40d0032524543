import { describe, expect, it } from 'vitest';
import { parseScenario } from './parse.js';
import { tryParseScenario } from './parse.js';
import { compareLeftBehind, runScenario } from './runner.js';
import { SkipScenario, type Target } from './target.js';

const SCENARIO = parseScenario('name: t\nvm: { type: default }\nsteps:\n  - create_vcpu: { id: 0 }\n');

/** a target whose steps all succeed and whose exit answers `exit` */
function target(exit?: () => string[], extra: Partial<Target> = {}): Target & { exits: number } {
  const t = {
    name: 'model' as const,
    exits: 0,
    begin: () => {},
    end: () => {},
    execute: () => ({}),
    ...extra,
  };
  if (exit) {
    return Object.assign(t, {
      exit: () => {
        t.exits++;
        return exit();
      },
    });
  }
  return t;
}

describe('the VMM exit after the last step', () => {
  it('is the run\'s last step: it passes when nothing is left behind', () => {
    const t = target(() => []);
    const r = runScenario(SCENARIO, t);
    expect(r.pass).toBe(true);
    expect(r.steps.map((s) => s.op)).toEqual(['create_vcpu', 'exit']);
    expect(r.steps[1]).toMatchObject({ index: 1, pass: true, mismatches: [], outcome: { detail: { leaks: [] } } });
    expect(t.exits).toBe(1);
  });

  it('fails the scenario with one mismatch per leak', () => {
    const r = runScenario(SCENARIO, target(() => ['VM 1 outlived the VMM', '2 host pages still allocated']));
    expect(r.pass).toBe(false);
    expect(r.steps.at(-1)).toMatchObject({ op: 'exit', pass: false, mismatches: ['VM 1 outlived the VMM', '2 host pages still allocated'] });
  });

  it('a teardown that throws is a failed exit, not a crash of the runner', () => {
    const r = runScenario(SCENARIO, target(() => {
      throw new Error('TdpMmu: used after destroy()');
    }));
    expect(r.pass).toBe(false);
    expect(r.steps.at(-1)!.mismatches).toEqual(['the teardown failed: TdpMmu: used after destroy()']);
  });

  it('a target without an exit (real KVM: the process lives on) adds no step', () => {
    const r = runScenario(SCENARIO, target());
    expect(r.steps.map((s) => s.op)).toEqual(['create_vcpu']);
  });

  it('a skipped scenario or a skipped step does not exit', () => {
    const skipBegin = target(() => ['never'], {
      begin: () => {
        throw new SkipScenario('no such VM type');
      },
    });
    expect(runScenario(SCENARIO, skipBegin)).toMatchObject({ pass: true, skipped: 'no such VM type', steps: [] });
    expect(skipBegin.exits).toBe(0);
    const skipStep = target(() => ['never'], { supports: () => ({ ok: false, reason: 'missing KVM_CAP_X' }) });
    const r = runScenario(SCENARIO, skipStep);
    expect(r.skipped).toMatch(/missing KVM_CAP_X/);
    expect(skipStep.exits).toBe(0);
  });

  it('a failed step does not keep the exit from running', () => {
    const sc = parseScenario('name: t\nvm: { type: default }\nsteps:\n  - create_vcpu: { id: 0 }\n    expect: { errno: EEXIST }\n');
    const t = target(() => []);
    const r = runScenario(sc, t);
    expect(r.pass).toBe(false);
    expect(r.steps.map((s) => [s.op, s.pass])).toEqual([['create_vcpu', false], ['exit', true]]);
  });

  it('exit.left_behind names what the kernel leaves on purpose: exactly those pass, as a multiset', () => {
    const sc = parseScenario('name: t\nvm: { type: default }\nsteps:\n  - create_vcpu: { id: 0 }\nexit:\n  left_behind: [a, a, b]\n');
    expect(runScenario(sc, target(() => ['b', 'a', 'a'])).pass).toBe(true);
    const r = runScenario(sc, target(() => ['a', 'c']));
    expect(r.steps.at(-1)).toMatchObject({ pass: false, expected: { left_behind: ['a', 'a', 'b'] } });
    expect(r.steps.at(-1)!.mismatches).toEqual(['left behind, not expected: c', 'expected to be left behind, but released: a', 'expected to be left behind, but released: b']);
    expect(compareLeftBehind([], [])).toEqual([]);
    expect(compareLeftBehind(['x'], [])).toEqual(['x']);
  });

  it('a bad exit block is a located error', () => {
    for (const bad of ['exit: { left_behind: [] }\n', 'exit: { leaks: [a] }\n', 'exit: { left_behind: [""] }\n']) {
      const r = tryParseScenario(`name: t\nvm: { type: default }\nsteps:\n  - create_vcpu: { id: 0 }\n${bad}`, 'e.yaml');
      expect(r.ok, bad).toBe(false);
      if (!r.ok) expect(r.errors[0]).toMatchObject({ file: 'e.yaml', line: 5 });
    }
  });
});
