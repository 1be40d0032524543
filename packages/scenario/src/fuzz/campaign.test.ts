import { describe, expect, it } from 'vitest';
import { createModelTarget } from '../model-target.js';
import type { Outcome, Target } from '../target.js';
import { runFuzzCampaign } from './campaign.js';
import { fuzzScenario, scenarioToYaml } from './generate.js';
import { parseScenario } from '../parse.js';

const features = { guestMemfd: true, gmemFlags: [0, 1, 3], crossPage: true };

describe('fuzz campaigns', () => {
  it('a bounded model campaign runs its step budget and finds nothing wrong', () => {
    let progressCalls = 0;
    const s = runFuzzCampaign({ mode: 'model', model: createModelTarget(), features, steps: 3000, seed: 0x5eed, onProgress: () => void progressCalls++ });
    expect(s.complete).toBe(true);
    expect(s.steps).toBeGreaterThanOrEqual(3000);
    expect(s.sequences).toBeGreaterThan(50);
    expect(progressCalls).toBeGreaterThan(0);
    expect(s.found.map((f) => f.details.join('\n'))).toEqual([]);
  });

  it('a bounded model campaign with dirty rings (harvests, resets) keeps every invariant', () => {
    const ringFeatures = { ...features, dirtyRing: true };
    const s = runFuzzCampaign({ mode: 'model', model: createModelTarget(), features: ringFeatures, steps: 3000, seed: 0x71ce });
    expect(s.complete).toBe(true);
    expect(s.found.map((f) => f.details.join('\n'))).toEqual([]);
    // the generator does make ring VMs
    const sc = fuzzScenario([{ k: 'harvest', max: 2 }, { k: 'reset' }], 0, ringFeatures);
    expect(sc.steps.map((x) => x.op)).toEqual(['mmap', 'create_guest_memfd', 'enable_cap', 'create_vcpu', 'harvest_dirty_ring', 'reset_dirty_rings']);
  });

  it('a disagreement is shrunk, kept once per symptom, and written as a scenario file that parses', () => {
    // a "kernel" that disagrees with the model on every 4-byte guest read
    const model = createModelTarget();
    const kvmLike: Target = {
      name: 'kvm',
      begin: (sc, ctx) => model.begin(sc, ctx),
      end: () => model.end(),
      execute: (step, ctx): Outcome => {
        const o = model.execute(step, ctx);
        return step.op === 'guest_read' && step.args.size === 4 ? { ...o, value: 0xdeadn } : o;
      },
    };
    const s = runFuzzCampaign({ mode: 'diff', model: createModelTarget(), kvm: kvmLike, features, steps: 2000, seed: 7 });
    expect(s.findings).toBeGreaterThan(0);
    const f = s.found[0]!;
    expect(f.symptom).toMatch(/^guest_read: value/);
    // shrunk: the setup steps plus the one read
    const sc = parseScenario(f.yaml, 'finding.yaml');
    expect(sc.steps.filter((st) => st.op === 'guest_read')).toHaveLength(1);
    expect(sc.steps.length).toBeLessThanOrEqual(4);
    // one finding per symptom
    expect(new Set(s.found.map((x) => x.symptom)).size).toBe(s.found.length);
  });

  it('a time limit ends the campaign early and says so', () => {
    const s = runFuzzCampaign({ mode: 'model', model: createModelTarget(), features, steps: 10_000_000, seed: 1, timeMs: 200 });
    expect(s.complete).toBe(false);
    expect(s.elapsedMs).toBeLessThan(10_000);
  });

  it('without guest_memfd no guest_memfd step is generated', () => {
    const sc = fuzzScenario([{ k: 'gread', base: 0x10_0000, page: 0, size: 8, at: 0xffc }], 0, { guestMemfd: false, gmemFlags: [], crossPage: true });
    expect(sc.steps.map((s) => s.op)).toEqual(['mmap', 'create_vcpu', 'guest_read']);
    // the unaligned read crosses into the next page
    expect((sc.steps[2]!.args as { gpa: number }).gpa).toBe(0x10_0ffc);
    expect(scenarioToYaml(sc)).toContain('gpa: 1052668');
  });
});
