import { existsSync, mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ccmem } from '../../test-support/ccmem-process.js';

describe('ccmem fuzz', () => {
  it('--target model runs a bounded campaign and prints its summary as JSON', () => {
    const out = mkdtempSync(join(tmpdir(), 'ccmem-fuzz-'));
    const r = ccmem(['fuzz', '--target', 'model', '--steps', '400', '--seed', '3', '--out', out, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const j = JSON.parse(r.stdout) as { target: string; seed: number; steps: number; complete: boolean; findings: unknown[] };
    expect(j).toMatchObject({ target: 'model', seed: 3, complete: true, findings: [] });
    expect(j.steps).toBeGreaterThanOrEqual(400);
    // nothing found, nothing written
    expect(readdirSync(out)).toEqual([]);
  });

  it('--target diff needs /dev/kvm and says so where it is missing', () => {
    if (existsSync('/dev/kvm')) return;
    const r = ccmem(['fuzz', '--target', 'diff', '--steps', '10']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('/dev/kvm is missing');
  });

  it('bad arguments are exit 2 with the flag named', () => {
    expect(ccmem(['fuzz', '--target', 'model', '--steps', '-4']).stderr).toContain('--steps must be a positive integer');
    const r = ccmem(['fuzz', '--target', 'model', '--time', 'soon']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--time must be a duration');
  });
});
