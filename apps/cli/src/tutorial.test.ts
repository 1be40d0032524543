/**
 * docs/tutorial.md cannot rot: every `pnpm ccmem …` line in its sh blocks is run from the
 * repository root and must end with the exit status written after it (`# exit N`; `# exit N
 * where /dev/kvm exists` is checked only on such a host, and elsewhere must end without a crash).
 * The scenario files it uses are checked for what the text says about them.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT, ccmem } from '../test-support/ccmem-process.js';

const TUTORIAL = readFileSync(join(ROOT, 'docs/tutorial.md'), 'utf8');
const HAS_KVM = existsSync('/dev/kvm');

interface Command {
  line: string;
  args: string[];
  exit: number;
  kvmOnly: boolean;
}

/** the `pnpm ccmem` lines of the tutorial's sh blocks */
function tutorialCommands(): Command[] {
  const out: Command[] = [];
  for (const block of TUTORIAL.matchAll(/```sh\n([\s\S]*?)```/g)) {
    for (const line of block[1]!.split('\n')) {
      if (!line.startsWith('pnpm ccmem ')) continue;
      const m = /^pnpm ccmem (.*?)\s+# exit (\d)( where \/dev\/kvm exists)?$/.exec(line);
      if (!m) throw new Error(`tutorial line without "# exit N": ${line}`);
      out.push({ line, args: m[1]!.split(/\s+/), exit: Number(m[2]), kvmOnly: m[3] !== undefined });
    }
  }
  return out;
}

const commands = tutorialCommands();

describe('docs/tutorial.md', () => {
  it('has the commands of every part', () => {
    const verbs = new Set(commands.map((c) => c.args[0]));
    for (const v of ['run', 'explain', 'host', 'diff', 'matrix', 'explore']) expect(verbs, v).toContain(v);
    expect(commands.length).toBeGreaterThanOrEqual(12);
  });

  for (const c of commands) {
    it(c.line.replace(/\s+# exit.*$/, ''), () => {
      for (const a of c.args) if (a.startsWith('docs/')) expect(existsSync(join(ROOT, a)), a).toBe(true);
      const r = ccmem(c.args);
      expect(r.stderr).not.toMatch(/\n\s+at .*\(.*:\d+:\d+\)/); // no stack trace
      if (c.kvmOnly && !HAS_KVM) {
        expect([0, 2]).toContain(r.code);
        return;
      }
      expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(c.exit);
    });
  }

  it('shows the scenario file as it is', () => {
    const file = readFileSync(join(ROOT, 'docs/tutorial/scenarios/snp-page-conversion.yaml'), 'utf8');
    const shown = /```yaml\n(name: tutorial SNP guest converts[\s\S]*?)```/.exec(TUTORIAL)![1]!;
    // every line shown is in the file, in order (the file has a header comment and a description)
    const lines = file.split('\n');
    let at = 0;
    for (const l of shown.trimEnd().split('\n')) {
      const found = lines.indexOf(l, at);
      expect(found, l).toBeGreaterThanOrEqual(0);
      at = found + 1;
    }
  });

  it('the broken scenario fails where the text says, with the memory-fault exit', () => {
    const r = ccmem(['run', '--stop-on-failure', 'docs/tutorial/broken/snp-page-conversion-no-attributes.yaml']);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/step 9 guest_pvalidate line 31\n {6}expected: ret SUCCESS\n {6}happened: errno EFAULT, exit KVM_EXIT_MEMORY_FAULT \{ flags: 8, gpa: 0x100010000, size: 0x1000 \}\n(.*\n)*? {6}kernel rule: private access to a shared gfn\n/);
    const all = ccmem(['run', 'docs/tutorial/broken/snp-page-conversion-no-attributes.yaml']);
    expect(all.stdout).toContain('kernel rule: private access to a shared gfn');
  });

  it('explain shows the invalidation of the conversion and the RMP assignment at PVALIDATE', () => {
    const r = ccmem(['explain', 'docs/tutorial/scenarios/snp-page-conversion.yaml', '--json']);
    expect(r.code).toBe(0);
    const doc = JSON.parse(r.stdout) as { steps: { index: number; op: string; events: { name: string; fields: Record<string, unknown> }[] }[] };
    const names = (i: number) => doc.steps[i]!.events.map((e) => e.name);
    expect(doc.steps[8]!.op).toBe('set_memory_attributes');
    expect(names(8)).toEqual(expect.arrayContaining(['kvm_mmu_invalidate_begin', 'kvm_mmu_invalidate_end']));
    expect(doc.steps[10]!.op).toBe('guest_pvalidate');
    expect(doc.steps[10]!.events).toContainEqual(expect.objectContaining({ name: 'rmpupdate', fields: expect.objectContaining({ assigned: true }) }));
  });

  it('the explorations find what the text says', () => {
    const ok = ccmem(['explore', 'docs/tutorial/explore/snp-conversion-race.yaml', '--json', '--no-progress']);
    expect(JSON.parse(ok.stdout)).toMatchObject({ result: 'pass', complete: true, schedules: 321 });
    const bad = ccmem(['explore', 'docs/tutorial/explore/snp-conversion-race-set-attributes.yaml', '--json', '--no-progress']);
    const r = JSON.parse(bad.stdout) as { result: string; violations: { schedule: string; violation: string }[] };
    expect(r.result).toBe('violation');
    expect(r.violations[0]!.violation).toMatch(/private NPT mapping .* has no assigned RMP entry/);
    expect(TUTORIAL).toContain(`--replay ${r.violations[0]!.schedule}`);
  });
});
