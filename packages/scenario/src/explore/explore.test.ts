import { describe, expect, it } from 'vitest';
import { builtinExplorationNames, explore, formatSchedule, loadBuiltinExploration, parseExploration, replaySchedule, shrinkSchedule } from '../index.js';
import { createModelTarget } from '../model-target.js';
import { resolveStep } from '../runner.js';
import { World } from './world.js';

function load(name: string) {
  const l = loadBuiltinExploration(name);
  if (!l.ok) throw new Error(l.errors.map((e) => e.message).join('\n'));
  return l.exploration;
}

describe('built-in explorations', () => {
  for (const name of builtinExplorationNames()) {
    it(`${name}: the exhaustive search finds what the file expects`, () => {
      const x = load(name);
      const r = explore(x.scenario, { ...x.options, timeLimitMs: 9000 });
      expect(r.schedules).toBeGreaterThan(1);
      expect(r.pass).toBe((x.header.expect ?? 'pass') === 'pass');
    });
  }

  it('snp-rmp-timing: the set-attributes window is found, and the guest completes; with prepare it never opens', () => {
    const a = explore(load('snp-rmp-timing').scenario, load('snp-rmp-timing').options);
    expect(a.pass).toBe(true);
    expect(a.stats.observations['rmp-window']).toBeGreaterThan(0);
    expect(a.stats.vendorFaultRuns).toBeGreaterThan(0);
    const b = explore(load('snp-rmp-timing-prepare').scenario, load('snp-rmp-timing-prepare').options);
    expect(b.pass).toBe(true);
    expect(b.stats.observations['rmp-window'] ?? 0).toBe(0);
    expect(b.stats.vendorFaultRuns).toBe(0);
  });
});

describe('fault injection proves the checks bite', () => {
  for (const name of ['fault-vs-conversion', 'gmem-punch-vs-fault']) {
    it(`${name} with skipRetryCheck: a stale mapping is found, replayed and shrunk`, () => {
      const x = load(name);
      const opts = { ...x.options, faultInjection: { skipRetryCheck: true } };
      const r = explore(x.scenario, opts);
      expect(r.pass).toBe(false);
      const v = r.violations[0]!;
      expect(v.violation).toMatch(/SPTE gfn .* maps pfn/);
      expect(v.events.length).toBeGreaterThan(0);
      // replay reproduces the same events
      const again = replaySchedule(x.scenario, v.schedule, opts);
      expect(again.violation).toBe(v.violation);
      // (inode numbers and VM ids are global counters: every run has its own)
      const norm = (ev: typeof v.events) => ev.map((e) => ({ name: e.name, fields: { ...e.fields, ino: 0, vm: 0 } }));
      expect(norm(again.events)).toEqual(norm(v.events));
      // shrinking gave a schedule no longer than the one found
      if (v.original) expect(v.schedule.split('.').length).toBeLessThan(v.original.split('.').length);
    });
  }

  it('shrinkSchedule drops choices that do not matter', () => {
    const x = load('fault-vs-conversion');
    const opts = { bound: 40, faultInjection: { skipRetryCheck: true } };
    const long = 'vmm.cpu1.cpu0.cpu0.vmm.vmm.vmm.vmm.cpu0';
    const s = replaySchedule(x.scenario, long, opts);
    expect(s.violation).not.toBeNull();
    const shrunk = shrinkSchedule(x.scenario, s.schedule, opts);
    expect(shrunk.length).toBeLessThan(s.schedule.length);
    expect(replaySchedule(x.scenario, formatSchedule(x.scenario, shrunk), opts).violation).not.toBeNull();
  });

  it('without the mutation the same schedule is clean', () => {
    const x = load('fault-vs-conversion');
    expect(replaySchedule(x.scenario, 'vmm.cpu1.cpu0.cpu0.vmm.vmm.vmm.vmm.cpu0', {}).violation).toBeNull();
  });
});

describe('random and pct modes', () => {
  it('are deterministic for a seed and find the injected bug', () => {
    const x = load('fault-vs-conversion');
    for (const mode of ['random', 'pct'] as const) {
      const o = { mode, seed: 7, schedules: 200, bound: 30, faultInjection: { skipRetryCheck: true }, shrink: false };
      const a = explore(x.scenario, o);
      const b = explore(x.scenario, o);
      expect(a.pass).toBe(false);
      expect(a.violations[0]!.schedule).toBe(b.violations[0]!.schedule);
      expect(a.schedules).toBe(b.schedules);
    }
  });
});

describe('exploration files', () => {
  it('rejects an unknown invariant name and a missing concurrent block', () => {
    const base = `name: x\nvm: { type: sw-protected }\nsteps:\n  - create_vcpu: { id: 0 }\n`;
    expect(parseExploration(base).ok).toBe(false);
    const bad = `${base}concurrent:\n  actors:\n    a:\n      - guest_read: { vcpu: 0, gpa: 0x1000, size: 4 }\n  invariants: [no-such-thing]\n`;
    const r = parseExploration(bad);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.errors[0]!.message).toMatch(/unknown invariant/);
  });
});

describe('per-phase checks scoped to the phase range', () => {
  // the explorer re-checks only the SPTEs of a phase's gfn range (and the whole VM after
  // global phases and at the end of every run); checking the whole VM after every phase
  // must give exactly the same exploration
  const same = (a: ReturnType<typeof explore>, b: ReturnType<typeof explore>) => {
    expect(a.schedules).toBe(b.schedules);
    expect(a.pass).toBe(b.pass);
    expect(a.stats.steps).toBe(b.stats.steps);
    expect(a.stats.sleepBlocked).toBe(b.stats.sleepBlocked);
    expect(a.stats.observations).toEqual(b.stats.observations);
    expect(a.stats.vendorFaultRuns).toBe(b.stats.vendorFaultRuns);
    expect(a.stats.violatingRuns).toBe(b.stats.violatingRuns);
    expect(a.violations.map((v) => [v.schedule, v.violation])).toEqual(b.violations.map((v) => [v.schedule, v.violation]));
  };

  for (const name of builtinExplorationNames()) {
    it(`${name}: the same result as full checks after every phase`, () => {
      const x = load(name);
      same(explore(x.scenario, x.options), explore(x.scenario, { ...x.options, fullChecks: true }));
    });
  }

  for (const name of ['fault-vs-conversion', 'gmem-punch-vs-fault']) {
    it(`${name} with skipRetryCheck: every violating run is found at the same phase`, () => {
      const x = load(name);
      const o = { ...x.options, mode: 'random' as const, seed: 3, schedules: 150, bound: 30, maxViolations: 1000, shrink: false, faultInjection: { skipRetryCheck: true } };
      const scoped = explore(x.scenario, o);
      expect(scoped.stats.violatingRuns).toBeGreaterThan(0);
      same(scoped, explore(x.scenario, { ...o, fullChecks: true }));
    });
  }
});

describe('setup without per-step checks', () => {
  it('createModelTarget({ checkEachStep: false }) reports no invariants per step; the World checks once after setup', () => {
    const x = load('fault-vs-conversion');
    const sc = x.scenario;
    const outcomes = (checkEachStep: boolean) => {
      const t = createModelTarget({ checkEachStep });
      const ctx = { scenario: sc, vm: sc.vm, names: new Map<string, number>(), trace: false };
      t.begin(sc, ctx);
      sc.steps.forEach((step, i) => {
        const o = t.execute(resolveStep(step, i, ctx.names), ctx);
        if (step.as !== undefined && o.result !== undefined) ctx.names.set(step.as, o.result);
      });
      // map the gfn, then flip its attribute behind KVM's back: the shared SPTE is now wrong
      t.execute(resolveStep({ op: 'guest_read', args: { vcpu: 0, gpa: 0x1_0000_0000, size: 8 }, expect: {} } as never, 90, ctx.names), ctx);
      t.vm!.attributes.set(0x100000, 0x100001, 8);
      return t.execute(resolveStep({ op: 'create_vcpu', args: { id: 7 }, expect: {} } as never, 91, ctx.names), ctx);
    };
    expect((outcomes(true).detail?.invariants as string[] | undefined)?.length).toBeGreaterThan(0);
    expect(outcomes(false).detail?.invariants).toBeUndefined();
    // the explorer's world: the setup of fault-vs-conversion is clean
    expect(new World(sc).setupViolations).toEqual([]);
  });
});

describe('liveness', () => {
  it('finds a livelock: under set-attributes timing a punched private page is never assigned again; under prepare it is', () => {
    const x = load('snp-set-attributes-punch-livelock');
    const r = explore(x.scenario, x.options);
    expect(r.pass).toBe(false);
    expect(r.violations[0]!.violation).toMatch(/^livelock: cpu0 .* cannot finish once the other actors are done$/);
    expect(r.violations[0]!.schedule).toBe('vmm');
    const upstream = { ...x.scenario, vm: { ...x.scenario.vm, rmp_timing: 'prepare' as const } };
    const u = explore(upstream, x.options);
    expect(u.pass).toBe(true);
    expect(u.schedules).toBeGreaterThan(1);
  });
});
