import { describe, expect, it } from 'vitest';
import { parseScenario } from './parse.js';
import { appliesToTarget, buildMatrix, matrixCells, summarizeMatrix } from './matrix.js';
import type { Target } from './target.js';

const entries = [
  {
    file: 'a.yaml',
    scenario: parseScenario(`name: memslot basic\nvm: { type: default }\napplies_to: { vm_types: [default, sw-protected] }\nsteps:\n  - create_vcpu: { id: 0 }\n`),
  },
  {
    file: 'b.yaml',
    scenario: parseScenario(
      `name: private fault\nvm: { type: snp, profile: upstream }\napplies_to: { vm_types: [snp, tdx], providers: [guest_memfd, device_fd] }\nsteps:\n  - create_vcpu: { id: 0 }\n`,
    ),
  },
];

function target(name: 'model' | 'kvm', failOn?: string): Target {
  let type = '';
  return {
    name,
    begin: (_s, ctx) => void (type = ctx.vm.type),
    end: () => {},
    execute: () => (type === failOn ? { errno: 'EINVAL' } : {}),
  };
}

describe('matrix', () => {
  it('expands scenarios over VM types × providers × targets', () => {
    const cells = matrixCells(entries, ['model', 'kvm']);
    expect(cells).toHaveLength(2 * 2 + 2 * 2 * 2);
    expect(cells[0]).toEqual({ scenario: 'memslot basic', file: 'a.yaml', vm_type: 'default', provider: 'guest_memfd', target: 'model' });
    expect(cells.filter((c) => c.scenario === 'private fault').map((c) => `${c.vm_type}/${c.provider}`)).toContain('tdx/device_fd');
  });

  it('runs each cell with its VM type and reports pass/fail/skip', () => {
    const rows = buildMatrix(entries, { model: () => target('model', 'tdx'), kvm: () => target('kvm') });
    expect(rows).toHaveLength(12);
    const status = (s: string, t: string, p: string, tg: string) =>
      rows.find((r) => r.scenario === s && r.vm_type === t && r.provider === p && r.target === tg)!.status;
    expect(status('memslot basic', 'default', 'guest_memfd', 'kvm')).toBe('pass');
    expect(status('private fault', 'snp', 'device_fd', 'model')).toBe('pass');
    expect(status('private fault', 'tdx', 'guest_memfd', 'model')).toBe('fail');
    // the target decides whether a profile-pinned scenario runs (this fake one runs it)
    expect(status('private fault', 'snp', 'guest_memfd', 'kvm')).toBe('pass');
    expect(summarizeMatrix(rows)).toEqual({ passed: 10, failed: 2, skipped: 0 });
    expect(rows.find((r) => r.status === 'fail')!.reason).toMatch(/step 0 \(create_vcpu\): expected success/);
  });

  it('filters cells and reports progress', () => {
    const seen: number[] = [];
    const rows = buildMatrix(entries, { model: () => target('model') }, { filter: 'TDX', onRow: (_r, done, total) => seen.push(done, total) });
    expect(rows.map((r) => `${r.vm_type}/${r.provider}`)).toEqual(['tdx/guest_memfd', 'tdx/device_fd']);
    expect(seen).toEqual([1, 2, 2, 2]);
  });

  it('an unavailable target becomes skip rows', () => {
    const rows = buildMatrix(entries.slice(0, 1), {
      model: () => target('model'),
      kvm: () => {
        throw new Error('/dev/kvm: permission denied');
      },
    });
    expect(rows.filter((r) => r.target === 'kvm').map((r) => r.status)).toEqual(['skip', 'skip']);
    expect(appliesToTarget(entries[1]!.scenario, 'kvm')).toBe(true);
    expect(appliesToTarget({ ...entries[1]!.scenario, applies_to: { targets: ['model'] } }, 'kvm')).toBe(false);
  });
});
