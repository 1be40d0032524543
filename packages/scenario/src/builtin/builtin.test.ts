import { describe, expect, it } from 'vitest';
import { builtinScenarioFiles, builtinScenarios } from './index.js';
import { matrixCells } from '../matrix.js';

describe('built-in scenarios', () => {
  const all = builtinScenarios();

  it('every file parses and validates', () => {
    expect(all.length).toBe(builtinScenarioFiles().length);
    expect(all.length).toBeGreaterThanOrEqual(40);
  });

  it('names are unique and files are grouped by area', () => {
    const names = all.map((e) => e.scenario.name);
    expect(new Set(names).size).toBe(names.length);
    for (const { file } of all) expect(file).toMatch(/^[a-z-]+\/[a-z0-9-]+\.yaml$/);
  });

  it('each scenario has a description and at least one expectation or state check', () => {
    for (const { file, scenario } of all) {
      expect(scenario.description, file).toBeTruthy();
      const checks = scenario.steps.filter((s) => Object.keys(s.expect).length > 0 || s.op === 'assert');
      expect(checks.length, file).toBeGreaterThan(0);
    }
  });

  it('profile-specific scenarios say so', () => {
    const upstreamOnly = all.filter((e) => e.scenario.vm.profile === 'upstream').map((e) => e.file);
    expect(upstreamOnly).toEqual(expect.arrayContaining(['memslots/smm-address-space-upstream.yaml', 'attributes/default-vm-rejects-private.yaml']));
    expect(matrixCells(all, ['model']).length).toBeGreaterThan(all.length);
  });

  it('selftests/ transcribes kernel selftests: each scenario names its selftest file', () => {
    const selftests = all.filter((e) => e.file.startsWith('selftests/'));
    expect(selftests.length).toBeGreaterThanOrEqual(30);
    for (const { file, scenario } of selftests) expect(scenario.name, file).toMatch(/^[a-z0-9_]+\.c[ :]/);
    expect(matrixCells(selftests, ['model', 'kvm']).length).toBeGreaterThan(selftests.length);
  });
});
