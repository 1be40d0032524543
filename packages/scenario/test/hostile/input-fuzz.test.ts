/**
 * A bounded run of the scenario-text fuzzer (the long campaign is `ccmem fuzz --target input`):
 * random, mutated and hostile scenario text never makes the reader or the runner throw, every
 * refused file has located errors, and memory stays under the bound.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { checkScenarioText, mutate, runInputFuzzCampaign, scenarioTextArb } from '../../src/fuzz/input.js';
import { createModelTarget } from '../../src/model-target.js';

const features = { guestMemfd: true, gmemFlags: [0, 1, 3], crossPage: true } as const;

describe('scenario text fuzzing (bounded)', () => {
  it('a few hundred random inputs: no finding, each exit code seen', () => {
    const s = runInputFuzzCampaign({ model: createModelTarget(), features, inputs: 300, seed: Number(process.env.CCMEM_FUZZ_SEED ?? 42), timeMs: 20_000, rssLimitBytes: 1.5 * 2 ** 30 });
    expect(s.found.map((f) => `${f.problem}\n${f.text}`)).toEqual([]);
    expect(s.inputs).toBeGreaterThan(50);
    expect(s.codes[2]).toBeGreaterThan(0);
    expect(s.codes[0] + s.codes[1]).toBeGreaterThan(0);
  });

  it('hostile values reach the reader: mutations replace numbers, lines and bytes', () => {
    const text = 'name: t\nvm: { type: default }\nsteps:\n  - create_vcpu: { id: 0 }\n';
    expect(mutate(text, { k: 'number', at: 0, value: '0x1_0000_0000' })).toContain('id: 0x1_0000_0000');
    expect(mutate(text, { k: 'dropLine', at: 1 })).not.toContain('vm:');
    expect(mutate(text, { k: 'truncate', at: 10 })).toBe(text.slice(0, 10));
    const samples = fc.sample(scenarioTextArb(features), { numRuns: 200, seed: 3 });
    expect(new Set(samples).size).toBeGreaterThan(150);
  });

  it('checkScenarioText maps inputs to the exit codes of ccmem run', () => {
    const m = createModelTarget();
    expect(checkScenarioText('name: [', m).code).toBe(2);
    // the step, then the VMM's exit
    expect(checkScenarioText('name: t\nvm: { type: default }\nsteps:\n  - create_vcpu: { id: 0 }\n', m)).toEqual({ code: 0, steps: 2 });
    expect(checkScenarioText('name: t\nvm: { type: default }\nsteps:\n  - create_vcpu: { id: 0 }\n    expect: { errno: EINVAL }\n', m).code).toBe(1);
  });
});
