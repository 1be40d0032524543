/**
 * The CLI in CI: --version, a closed stdout pipe, report files, matrix selections, colour
 * switches, explore expectations. Spawned as a process (the source entry, as `pnpm ccmem` runs it).
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseXml } from '../test-support/parse-xml.js';
import { FAKE_TARGET, ROOT, SOURCE_ENTRY, childEnv, fakeTargetEnv, ccmem as spawnCcmem, tempDir } from '../test-support/ccmem-process.js';

const COMMANDER_ONLY = join(ROOT, 'apps/cli/test-support/commander-only.mjs');

/** `ccmem <args>` in a child process; `env` replaces NO_COLOR=1 */
const ccmem = (args: string[], env?: Record<string, string>, nodeArgs?: string[]) => spawnCcmem(args, { ...(env && { env }), ...(nodeArgs && { nodeArgs }) });

const { dir } = tempDir('ccmem-ci-');
const suite = join(dir, 'suite');
mkdirSync(join(suite, 'memslots'), { recursive: true });
const GOOD = join(suite, 'memslots', 'good.yaml');
const FAILING = join(suite, 'memslots', 'failing.yaml');
const MODEL_ONLY = join(suite, 'memslots', 'model-only.yaml');
writeFileSync(
  GOOD,
  `name: readonly slot write exits to userspace
vm: { type: default }
steps:
  - mmap: { size: 2MiB }
    as: ram
  - set_user_memory_region2: { slot: 0, flags: [KVM_MEM_READONLY], guest_phys_addr: 0x100000, memory_size: 2MiB, userspace_addr: ram }
  - create_vcpu: { id: 0 }
  - guest_write: { vcpu: 0, gpa: 0x100000, size: 4, value: 0xdeadbeef }
    expect: { exit: KVM_EXIT_MMIO, mmio: { phys_addr: 0x100000, len: 4, is_write: true } }
`,
);
writeFileSync(
  FAILING,
  `name: wrong expectation
vm: { type: default }
steps:
  - mmap: { size: 2MiB }
    as: ram
  - set_user_memory_region2: { slot: 0, guest_phys_addr: 0x100000, memory_size: 2MiB, userspace_addr: ram }
  - set_user_memory_region2: { slot: 1, guest_phys_addr: 0x100000, memory_size: 2MiB, userspace_addr: ram }
    expect: { errno: EINVAL, exit: KVM_EXIT_MMIO }
`,
);
writeFileSync(
  MODEL_ONLY,
  `name: model only
vm: { type: default }
applies_to: { targets: [model] }
steps:
  - mmap: { size: 2MiB }
    as: ram
  - set_user_memory_region2: { slot: 0, guest_phys_addr: 0x100000, memory_size: 2MiB, userspace_addr: ram }
`,
);

describe('ccmem in CI', () => {
  it('--version prints the version of @ccmem/cli', () => {
    const version = (JSON.parse(readFileSync(join(ROOT, 'apps/cli/package.json'), 'utf8')) as { version: string }).version;
    for (const flag of ['--version', '-V']) {
      const r = ccmem([flag]);
      expect(r.code).toBe(0);
      expect(r.stdout).toBe(`${version}\n`);
    }
  });

  it('--help, --version and help <command> load no @ccmem package (they stay fast)', () => {
    for (const args of [['--help'], ['--version'], ['help', 'explore'], ['matrix', '--help']]) {
      const r = ccmem(args, { NO_COLOR: '1' }, ['--import', COMMANDER_ONLY]);
      expect(r.code, args.join(' ')).toBe(0);
      expect(r.stdout).not.toBe('');
    }
    // the hook works: a command that runs does need them
    expect(ccmem(['run', GOOD], { NO_COLOR: '1' }, ['--import', COMMANDER_ONLY]).stderr).toMatch(/@ccmem\/scenario is unresolvable/);
  });

  it('a reader that closes the pipe early (`ccmem matrix | head -1`) ends ccmem quietly', async () => {
    const child = spawn(process.execPath, [...SOURCE_ENTRY, 'matrix', '--no-kvm'], { cwd: ROOT, env: childEnv({ NO_COLOR: '1' }), stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const first = await new Promise<string>((resolve) => child.stdout.once('data', (d: Buffer) => resolve(d.toString())));
    child.stdout.destroy(); // as `head -1` exits after its line
    const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
    expect(first.split('\n')[0]).toBe('status  vm type       provider     target  scenario');
    expect(stderr).toBe('');
    expect(code).toBe(0);
    // and in a shell pipeline, as a user types it (pipefail: ccmem's own status counts)
    const cmd = [process.execPath, ...SOURCE_ENTRY, 'matrix', '--no-kvm'].map((a) => `'${a}'`).join(' ');
    const sh = spawnSync('bash', ['-o', 'pipefail', '-c', `${cmd} | head -1`], { cwd: ROOT, encoding: 'utf8', env: childEnv({ NO_COLOR: '1' }) });
    expect(sh.stdout).toBe('status  vm type       provider     target  scenario\n');
    expect(sh.stderr).toBe('');
    expect(sh.status).toBe(0);
  });

  it('matrix --vm-type snp --reporter junit: a valid JUnit document with only SNP rows', () => {
    const r = ccmem(['matrix', '--vm-type', 'snp', '--reporter', 'junit']);
    expect(r.code).toBe(0);
    const root = parseXml(r.stdout);
    expect(root.tagName).toBe('testsuites');
    const cases = Array.from(root.getElementsByTagName('testcase'));
    expect(cases.length).toBeGreaterThan(20);
    expect(Number(root.getAttribute('tests'))).toBe(cases.length);
    for (const c of cases) expect(c.getAttribute('name')).toMatch(/ \[snp\/(guest_memfd|device_fd)\/(model|kvm)\]$/);
    for (const s of Array.from(root.getElementsByTagName('testsuite'))) expect(s.getAttribute('name')).toMatch(/^(model|kvm) snp$/);
    // skipped rows (the real-KVM column runs default VMs only, where it exists) carry their reason
    for (const s of Array.from(root.getElementsByTagName('skipped'))) expect(s.getAttribute('message')).not.toBe('');
    // the loose substring filter would also take non-SNP rows of scenarios named "snp …"; --vm-type does not
    const json = JSON.parse(ccmem(['matrix', '--vm-type', 'snp', '--json', '--no-kvm']).stdout) as { rows: { vm_type: string }[] };
    expect(json.rows.every((x) => x.vm_type === 'snp')).toBe(true);
  });

  it('matrix --scenario takes exact names, suite paths and globs; --provider and --target select exactly', () => {
    const rows = (args: string[]) => (JSON.parse(ccmem(['matrix', '--json', '--no-kvm', ...args]).stdout) as { rows: { scenario: string; file: string; provider: string; vm_type: string }[] }).rows;
    const exact = rows(['--scenario', 'snp LAUNCH_UPDATE argument checks']);
    expect(exact.map((x) => x.scenario)).toEqual(['snp LAUNCH_UPDATE argument checks']);
    const byPath = rows(['--scenario', 'snp/launch-*.yaml']);
    expect(byPath.length).toBeGreaterThan(5);
    expect(byPath.every((x) => x.file.startsWith('snp/launch-'))).toBe(true);
    // names may hold commas: a value is taken whole
    const comma = 'snp guest on 2 MiB guest_memfd folios: 2M RMPUPDATE, 2M PVALIDATE, PSMASH on 4K, 2M reclaim';
    expect(rows(['--scenario', comma]).map((x) => x.scenario)).toEqual([comma]);
    const byNameGlob = rows(['--scenario', 'snp LAUNCH_UPDATE*']);
    expect(new Set(byNameGlob.map((x) => x.scenario)).size).toBeGreaterThan(3);
    expect(byNameGlob.every((x) => x.scenario.startsWith('snp LAUNCH_UPDATE'))).toBe(true);
    const deviceFd = rows(['--provider', 'device_fd', '--vm-type', 'sw-protected,tdx']);
    expect(deviceFd.length).toBeGreaterThan(0);
    expect(deviceFd.every((x) => x.provider === 'device_fd' && (x.vm_type === 'sw-protected' || x.vm_type === 'tdx'))).toBe(true);
    const bad = ccmem(['matrix', '--vm-type', 'sev-snp']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--vm-type: unknown "sev-snp" \(known: default, sw-protected, sev, sev-es, snp, tdx\)/);
  });

  it('matrix text off a terminal: a header, skip reasons, totals per VM type and target; --fail-on-skip', () => {
    const r = ccmem(['matrix', '--dir', suite, '--scenario', 'model only', '--scenario', 'readonly*'], fakeTargetEnv({ CCMEM_FAKE_TARGETS: 'model,kvm' }));
    expect(r.code).toBe(0);
    const lines = r.stdout.split('\n');
    expect(lines[0]).toBe('status  vm type       provider     target  scenario');
    expect(r.stdout).toMatch(/^skip    default       guest_memfd  kvm     model only {2}\(applies_to\.targets excludes kvm\)$/m);
    expect(r.stdout).toMatch(/^by VM type +passed failed skipped\n {2}default +3 +0 +1$/m);
    expect(r.stdout).toMatch(/^by target +passed failed skipped\n {2}model +2 +0 +0\n {2}kvm +1 +0 +1$/m);
    expect(lines.filter((l) => l !== '').at(-1)).toBe('3 passed, 0 failed, 1 skipped');
    const strict = ccmem(['matrix', '--dir', suite, '--scenario', 'model only', '--fail-on-skip'], fakeTargetEnv({ CCMEM_FAKE_TARGETS: 'model,kvm' }));
    expect(strict.code).toBe(1);
    expect(strict.stdout).toMatch(/--fail-on-skip: 1 rows skipped/);
    expect(ccmem(['matrix', '--dir', suite, '--scenario', 'model only', '--target', 'model', '--fail-on-skip'], fakeTargetEnv({ CCMEM_FAKE_TARGETS: 'model,kvm' })).code).toBe(0);
  });

  it('run takes directories and globs', () => {
    const all = ccmem(['run', suite, '--json'], fakeTargetEnv());
    expect(all.code).toBe(1);
    expect((JSON.parse(all.stdout) as { scenarios: { file: string }[] }).scenarios.map((s) => s.file)).toEqual([FAILING, GOOD, MODEL_ONLY]);
    const glob = ccmem(['run', join(suite, '**', 'g*.yaml'), '--json'], fakeTargetEnv());
    expect(glob.code).toBe(0);
    expect((JSON.parse(glob.stdout) as { scenarios: { file: string }[] }).scenarios.map((s) => s.file)).toEqual([GOOD]);
    const none = ccmem(['run', join(suite, '*.nothing.yaml')], fakeTargetEnv());
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(/no scenario files \(\.yaml, \.yml\) match this glob/);
  });

  it('run prints each mismatch once', () => {
    const r = ccmem(['run', FAILING], fakeTargetEnv());
    expect(r.code).toBe(1);
    expect(r.stdout).toContain('expected: errno EINVAL, exit KVM_EXIT_MMIO');
    expect(r.stdout).toContain('happened: errno EEXIST');
    // the outcome once (it was repeated in every mismatch sentence), the expectation once
    expect(r.stdout.match(/EEXIST/g)).toHaveLength(1);
    expect(r.stdout.match(/EINVAL/g)).toHaveLength(1);
    expect(r.stdout).toMatch(/kernel rule: .*overlaps another memslot/);
  });

  it('run --reporter tap on stdout; --reporter junit --output keeps the text on stdout', () => {
    const tap = ccmem(['run', GOOD, FAILING, '--reporter', 'tap'], fakeTargetEnv());
    expect(tap.code).toBe(1);
    expect(tap.stdout.split('\n').slice(0, 4)).toEqual(['TAP version 13', '1..2', `ok 1 - ccmem run model: readonly slot write exits to userspace (${GOOD})`, `not ok 2 - ccmem run model: wrong expectation (${FAILING})`]);
    const out = join(dir, 'run.xml');
    const junit = ccmem(['run', GOOD, FAILING, '--reporter', 'junit', '--output', out], fakeTargetEnv());
    expect(junit.code).toBe(1);
    expect(junit.stdout).toContain('1 passed, 1 failed');
    const root = parseXml(readFileSync(out, 'utf8'));
    const failures = Array.from(root.getElementsByTagName('failure'));
    expect(failures).toHaveLength(1);
    expect(failures[0]!.getAttribute('message')).toMatch(/^step 2 set_user_memory_region2 line 7: expected errno EINVAL/);
    expect(failures[0]!.textContent).toContain('happened: errno EEXIST');
    expect(ccmem(['run', GOOD, '--output', out], fakeTargetEnv()).code).toBe(2);
  });

  it('diff --reporter junit', () => {
    const r = ccmem(['diff', GOOD, '--reporter', 'junit'], fakeTargetEnv({ CCMEM_FAKE_TARGETS: 'model,kvm' }));
    expect(r.code).toBe(0);
    const root = parseXml(r.stdout);
    expect(root.getAttribute('tests')).toBe('1');
    expect(root.getElementsByTagName('testcase')[0]!.getAttribute('name')).toBe('readonly slot write exits to userspace');
  });

  it('explain --json: every step with its arguments, outcome, rule and kernel events', () => {
    const r = ccmem(['explain', FAILING, '--json'], fakeTargetEnv());
    expect(r.code).toBe(1);
    const doc = JSON.parse(r.stdout) as { name: string; pass: boolean; steps: { index: number; op: string; args: Record<string, unknown>; outcome: Record<string, unknown>; events: { name: string }[]; rule?: string; pass: boolean }[] };
    expect(doc).toMatchObject({ name: 'wrong expectation', pass: false, target: 'model' });
    expect(doc.steps).toHaveLength(3);
    expect(doc.steps[1]).toMatchObject({ index: 1, op: 'set_user_memory_region2', pass: true, args: { slot: 0, userspace_addr: 'ram' } });
    expect(doc.steps[1]!.events[0]!.name).toBe('kvm_userspace_memory_region');
    expect(doc.steps[2]).toMatchObject({ pass: false, outcome: { errno: 'EEXIST' }, expected: { errno: 'EINVAL' } });
  });

  it('colour follows FORCE_COLOR and NO_COLOR', () => {
    const ansi = /\x1b\[/;
    expect(ccmem(['run', GOOD], { CCMEM_TARGET_MODULE: FAKE_TARGET }).stdout).not.toMatch(ansi); // not a terminal
    expect(ccmem(['run', GOOD], { CCMEM_TARGET_MODULE: FAKE_TARGET, FORCE_COLOR: '1' }).stdout).toMatch(ansi);
    expect(ccmem(['run', GOOD], { CCMEM_TARGET_MODULE: FAKE_TARGET, FORCE_COLOR: '1', NO_COLOR: '1' }).stdout).toMatch(ansi);
    expect(ccmem(['run', GOOD], { CCMEM_TARGET_MODULE: FAKE_TARGET, FORCE_COLOR: '0' }).stdout).not.toMatch(ansi);
  });
});

describe('ccmem explore expectations', () => {
  it('the built-in that must find a livelock exits 0 when it does, 1 when told to expect a pass', () => {
    const r = ccmem(['explore', '--builtin', 'snp-set-attributes-punch-livelock']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^✓ snp-set-attributes-punch-livelock: /);
    expect(r.stdout).toContain('found the expected livelock (explore: expect: livelock)');
    // progress goes to stderr, starting with what is searched
    expect(r.stderr).toMatch(/^explore: snp-set-attributes-punch-livelock: exhaustive, bound 8, 2 actors, expecting livelock$/m);
    // a livelock prints thousands of events: the text shows the first ones
    expect(r.stdout).toMatch(/… \d+ more kernel events/);
    expect(ccmem(['explore', '--builtin', 'snp-set-attributes-punch-livelock', '--expect', 'pass', '--no-progress']).code).toBe(1);
  });

  it('expect: violation in a file: exit 0 when the search finds one, 1 when it does not', () => {
    const text = readFileSync(join(ROOT, 'packages/scenario/explorations/fault-vs-conversion.yaml'), 'utf8');
    const mutated = join(dir, 'must-find.yaml');
    writeFileSync(mutated, text.replace('  expect: pass\n', '  expect: violation\n  fault_injection: { skip_retry_check: true }\n'));
    const found = ccmem(['explore', mutated, '--no-progress', '--json']);
    expect(found.code).toBe(0);
    expect(JSON.parse(found.stdout)).toMatchObject({ result: 'violation', expect: 'violation', as_expected: true });
    const intact = join(dir, 'must-find-but-fixed.yaml');
    writeFileSync(intact, text.replace('  expect: pass\n', '  expect: violation\n'));
    const none = ccmem(['explore', intact, '--no-progress']);
    expect(none.code).toBe(1);
    expect(none.stdout).toContain('expected a violation (explore: expect: violation), but the complete search found none');
  });

  it('explore --reporter junit --output', () => {
    const out = join(dir, 'explore.xml');
    const r = ccmem(['explore', '--builtin', 'prefault-vs-memslot-delete', '--no-progress', '--reporter', 'junit', '--output', out]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^✓ prefault-vs-memslot-delete/);
    const root = parseXml(readFileSync(out, 'utf8'));
    expect(root.getAttribute('tests')).toBe('1');
    expect(root.getAttribute('failures')).toBe('0');
  });

  it('help explore prints one usage text', () => {
    const r = ccmem(['help', 'explore']);
    expect(r.code).toBe(0);
    expect(r.stdout.match(/Usage:/g)).toHaveLength(1);
    expect(r.stdout).toContain('Usage: ccmem explore <file> | --builtin <name> [options]');
    // the command list says the same
    expect(ccmem(['--help']).stdout).toMatch(/^ {2}explore <file> \| --builtin <name> +explore the interleavings/m);
    expect(r.stdout).toMatch(/Exit codes: 0 the expected result/);
  });
});
