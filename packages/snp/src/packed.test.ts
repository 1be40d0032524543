/**
 * @ccmem/core + @ccmem/snp as a user installs them: packed tarballs, nothing else, in an empty
 * ESM project (test-support/packed-install.ts). The README example runs, a TypeScript consumer
 * type-checks against the published declarations, and errors are recognised across two copies
 * of core.
 */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { copyInstalled, packAndInstall, readmeExample, type PackedProject } from '../../../test-support/packed-install.js';

let project: PackedProject;

beforeAll(() => {
  project = packAndInstall(['@ccmem/core', '@ccmem/snp']);
}, 300_000);

afterAll(() => project?.dispose());

describe('@ccmem/core + @ccmem/snp from their tarballs', () => {
  it('the tarballs hold the built package, README and LICENSE, and no tests or test helpers', () => {
    for (const name of ['@ccmem/core', '@ccmem/snp']) {
      const files = project.contents.get(name)!;
      expect(files).toEqual(expect.arrayContaining(['package.json', 'README.md', 'LICENSE', 'dist/index.js', 'dist/index.d.ts']));
      expect(files.filter((f) => /\.test\.ts$|(^|\/)testing\//.test(f))).toEqual([]);
    }
  });

  it('installs with core as a peer and without @ccmem/gmem', () => {
    const snp = project.installedManifest('@ccmem/snp');
    expect(snp.peerDependencies).toEqual({ '@ccmem/core': expect.stringMatching(/^>=0\.\d+\.\d+ <1\.0\.0$/) });
    expect(snp.dependencies ?? {}).toEqual({});
    expect(JSON.stringify(snp)).not.toContain('workspace:');
    expect(readdirSync(join(project.dir, 'node_modules/@ccmem')).sort()).toEqual(['core', 'snp']);
  });

  it('runs the README example', () => {
    project.write('readme.mjs', readmeExample('@ccmem/snp'));
    const out = project.node('readme.mjs');
    expect(out).toContain('{ ret: 0 }');
    expect(out).toContain('4660n');
    expect(out).toContain("reason: 'KVM_EXIT_MEMORY_FAULT'");
  });

  it('a KvmError from one copy of core is recognised by another copy', () => {
    copyInstalled(project, '@ccmem/core', 'second-core');
    project.write(
      'two-copies.mjs',
      `import { Kvm, KVM_X86_SNP_VM, KvmError } from '@ccmem/core';
import * as second from './second-core/dist/index.js';
import { snpBackendFactory } from '@ccmem/snp';

const kvm = new Kvm({ backends: { [KVM_X86_SNP_VM]: snpBackendFactory } });
let err;
try { kvm.createVm({ type: KVM_X86_SNP_VM, options: { policy: 1 } }); } catch (e) { err = e; }
console.log(JSON.stringify({
  distinctClasses: second.KvmError !== KvmError,
  isKvmError: second.isKvmError(err),
  instanceOf: err instanceof second.KvmError,
  code: err?.code,
}));
`,
    );
    expect(JSON.parse(project.node('two-copies.mjs'))).toEqual({ distinctClasses: true, isKvmError: true, instanceOf: true, code: 'EINVAL' });
  });

  it('a TypeScript consumer type-checks against the published declarations', () => {
    project.write(
      'consumer.ts',
      `import { Kvm, KVM_X86_SNP_VM, PG_LEVEL_4K, isKvmError, type Vm } from '@ccmem/core';
import { snpBackendFactory, type SnpEdge, type SnpBackend } from '@ccmem/snp';

const kvm = new Kvm({ backends: { [KVM_X86_SNP_VM]: snpBackendFactory } });
const vm: Vm<SnpEdge> = kvm.createVm({ type: KVM_X86_SNP_VM, options: { directmap: 'split' } });
const vcpu = vm.createVcpu(0);
const r = vcpu.guestOp({ op: 'pvalidate', gpa: 0x1000, level: PG_LEVEL_4K, validate: true });
const ret: number | string | bigint | undefined = r.ret;
const backend = vm.backend as SnpBackend;
export const summary = { ret, asid: backend.asid, isError: isKvmError(new Error('x')) };
// @ts-expect-error a misspelled SNP op is a compile error
vcpu.guestOp({ op: 'pvalidat', gpa: 0, level: PG_LEVEL_4K, validate: true });
// @ts-expect-error an unknown SNP VM option is a compile error
kvm.createVm({ type: KVM_X86_SNP_VM, options: { policy: 1 } });
`,
    );
    const r = project.typecheck();
    expect(r.output).toBe('');
    expect(r.status).toBe(0);
  });
});
