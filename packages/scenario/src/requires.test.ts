import { describe, expect, it } from 'vitest';
import { LINUX_6_18_PVM_NO_GMEM_PROFILE, LINUX_6_18_PVM_PROFILE, UPSTREAM_PROFILE } from '@ccmem/core';
import { parseScenario } from './parse.js';
import { unmetRequirement } from './requires.js';
import { createModelTarget } from './model-target.js';
import { runScenario } from './runner.js';

describe('requires:', () => {
  it('names the first fact a profile lacks, with defaults for absent fields', () => {
    expect(unmetRequirement({ guest_memfd: false }, LINUX_6_18_PVM_NO_GMEM_PROFILE)).toBeNull();
    expect(unmetRequirement({ guest_memfd: false }, UPSTREAM_PROFILE)).toBe('requires no CONFIG_KVM_GUEST_MEMFD; the upstream profile has it');
    expect(unmetRequirement({ tdp: false }, LINUX_6_18_PVM_PROFILE)).toBeNull();
    expect(unmetRequirement({ tdp: true }, LINUX_6_18_PVM_PROFILE)).toMatch(/requires TDP/);
    expect(unmetRequirement({ max_vcpus: 1024 }, UPSTREAM_PROFILE)).toBe('requires KVM_MAX_VCPUS 1024; the upstream profile has 4096');
    expect(unmetRequirement(undefined, UPSTREAM_PROFILE)).toBeNull();
  });

  it('a scenario whose kernel lacks a required fact is skipped with the reason; an unknown fact is a parse error', () => {
    const sc = parseScenario('name: r\nvm: { type: default, profile: host }\nrequires: { guest_memfd: false }\nsteps:\n  - create_vcpu: { id: 0 }\n');
    const r = runScenario(sc, createModelTarget({ hostProfile: UPSTREAM_PROFILE }));
    expect(r.skipped).toBe('requires no CONFIG_KVM_GUEST_MEMFD; the upstream profile has it');
    expect(runScenario(sc, createModelTarget({ hostProfile: LINUX_6_18_PVM_NO_GMEM_PROFILE })).pass).toBe(true);
    expect(() => parseScenario('name: r\nvm: { type: default }\nrequires: { gmem: true }\nsteps:\n  - create_vcpu: { id: 0 }\n', 'x.yaml')).toThrow(/requires/);
  });
});
