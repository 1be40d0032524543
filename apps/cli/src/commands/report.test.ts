import { existsSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ccmemInProcess } from '../../test-support/ccmem-in-process.js';
import { ROOT } from '../../test-support/ccmem-process.js';

/** the report data a page embeds */
function embedded(file: string): { kind: string; pass: boolean; steps: { op: string; state: number | null }[]; states: unknown[]; explore?: { schedules: { schedule: string; violation: string | null }[] } } {
  const html = readFileSync(file, 'utf8');
  const m = /<script type="application\/json" id="ccmem-data">(.*?)<\/script>/s.exec(html);
  expect(m, 'the page embeds its data').not.toBeNull();
  return JSON.parse(m![1]!);
}

const dir = mkdtempSync(join(tmpdir(), 'ccmem-report-cli-'));
const FAILING = join(dir, 'failing.yaml');
writeFileSync(
  FAILING,
  `name: a wrong expectation
vm: { type: default }
steps:
  - mmap: { size: 2MiB }
    as: ram
  - set_user_memory_region2: { slot: 0, guest_phys_addr: 0x100000, memory_size: 2MiB, userspace_addr: ram }
  - create_vcpu: { id: 0 }
  - guest_write: { vcpu: 0, gpa: 0x100000, size: 4, value: 7 }
  - guest_read: { vcpu: 0, gpa: 0x100000, size: 4 }
    expect: { value: 8 }
`,
);

describe('ccmem report', () => {
  it('writes one self-contained page for a scenario; exit 0 when every step passed', async () => {
    const out = join(dir, 'psc.html');
    const r = await ccmemInProcess(['report', `${ROOT}packages/scenario/scenarios/snp/psc-shared-to-private.yaml`, '-o', out]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/report: .*psc\.html \(\d+(\.\d)? KiB, 15 steps, \d+ distinct states\)/);
    const d = embedded(out);
    expect(d.kind).toBe('run');
    expect(d.steps).toHaveLength(15);
    expect(d.steps.every((s) => s.state !== null)).toBe(true);
  });

  it('a failing scenario: the page is still written, exit 1; a bad file: exit 2 and no page', async () => {
    const out = join(dir, 'failing.html');
    const r = await ccmemInProcess(['report', FAILING, '-o', out]);
    expect(r.code).toBe(1);
    expect(embedded(out).pass).toBe(false);
    const bad = join(dir, 'bad.yaml');
    writeFileSync(bad, 'name: x\nvm: { type: nope }\nsteps: []\n');
    const b = await ccmemInProcess(['report', bad, '-o', join(dir, 'bad.html')]);
    expect(b.code).toBe(2);
    expect(existsSync(join(dir, 'bad.html'))).toBe(false);
  });

  it('explore --report: the counterexample, phase by phase', async () => {
    const out = join(dir, 'fvc.html');
    const r = await ccmemInProcess(['explore', '--builtin', 'fault-vs-conversion', '--skip-retry-check', '--no-progress', '--report', out]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`report: ${out}`);
    const d = embedded(out);
    expect(d.kind).toBe('explore');
    expect(d.explore!.schedules[0]!.violation).toMatch(/SPTE gfn/);
  });

  it('explore --replay --report: the chosen schedule', async () => {
    const out = join(dir, 'replay.html');
    const r = await ccmemInProcess(['explore', '--builtin', 'snp-rmp-timing', '--replay', 'cpu0.vmm', '--report', out]);
    expect(r.code).toBe(0);
    expect(embedded(out).explore!.schedules.map((s) => s.schedule)).toEqual(['cpu0.vmm']);
  });

  it('matrix --report: an index linking a report for each failing cell', async () => {
    const sdir = join(dir, 'suite');
    const { mkdirSync, copyFileSync } = await import('node:fs');
    mkdirSync(sdir, { recursive: true });
    copyFileSync(FAILING, join(sdir, 'failing.yaml'));
    const out = join(dir, 'matrix.html');
    const r = await ccmemInProcess(['matrix', '--dir', sdir, '--no-kvm', '--report', out]);
    expect(r.code).toBe(1);
    const index = readFileSync(out, 'utf8');
    const links = [...index.matchAll(/href="([^"]+)"/g)].map((m) => m[1]!);
    expect(links.length).toBe(1);
    expect(readdirSync(join(dir, 'matrix.files'))).toHaveLength(1);
    expect(embedded(join(dir, links[0]!)).pass).toBe(false);
  });
});
