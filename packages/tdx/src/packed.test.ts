/**
 * @ccmem/core + @ccmem/tdx as a user installs them: packed tarballs, nothing else, in an empty
 * ESM project (test-support/packed-install.ts). The README example runs and a TypeScript
 * consumer type-checks against the published declarations.
 */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { packAndInstall, readmeExample, type PackedProject } from '../../../test-support/packed-install.js';

let project: PackedProject;

beforeAll(() => {
  project = packAndInstall(['@ccmem/core', '@ccmem/tdx']);
}, 300_000);

afterAll(() => project?.dispose());

describe('@ccmem/core + @ccmem/tdx from their tarballs', () => {
  it('the tarball holds the built package, README and LICENSE, and no tests or test helpers', () => {
    const files = project.contents.get('@ccmem/tdx')!;
    expect(files).toEqual(expect.arrayContaining(['package.json', 'README.md', 'LICENSE', 'dist/index.js', 'dist/index.d.ts']));
    expect(files.filter((f) => /\.test\.ts$|(^|\/)testing\//.test(f))).toEqual([]);
  });

  it('installs with core as a peer and nothing else', () => {
    const tdx = project.installedManifest('@ccmem/tdx');
    expect(tdx.peerDependencies).toEqual({ '@ccmem/core': expect.stringMatching(/^>=0\.\d+\.\d+ <1\.0\.0$/) });
    expect(tdx.dependencies ?? {}).toEqual({});
    expect(readdirSync(join(project.dir, 'node_modules/@ccmem')).sort()).toEqual(['core', 'tdx']);
  });

  it('runs the README example: the TD is built and measured, shared accesses land', () => {
    project.write('readme.mjs', readmeExample('@ccmem/tdx'));
    const out = project.node('readme.mjs').trim().split('\n');
    expect(out[0]).toMatch(/^[0-9a-f]{96}$/); // MRTD, SHA-384
    expect(out[1]).toBe('4660n');
    expect(out.slice(2).join('\n')).toContain("reason: 'KVM_EXIT_MEMORY_FAULT'");
  });

  it('a TypeScript consumer type-checks against the published declarations', () => {
    project.write(
      'consumer.ts',
      `import { Kvm, KVM_X86_TDX_VM, isKvmError, type Vm } from '@ccmem/core';
import { tdxBackendFactory, tdxStatusName, TDX_SUCCESS, type TdxEdge, type TdxBackend } from '@ccmem/tdx';

const kvm = new Kvm({ backends: { [KVM_X86_TDX_VM]: tdxBackendFactory } });
const vm: Vm<TdxEdge> = kvm.createVm({ type: KVM_X86_TDX_VM, options: { hugePages: false } });
const init = vm.memoryEncryptOp({ cmd: 'tdx_init_vm' });
const backend = vm.backend as TdxBackend;
export const summary = { ret: init.ret, status: tdxStatusName(TDX_SUCCESS), backend, isError: isKvmError(null) };
// @ts-expect-error a misspelled TDX command is a compile error
vm.memoryEncryptOp({ cmd: 'tdx_init_vmm' });
// @ts-expect-error the old huge_pages alias is gone
kvm.createVm({ type: KVM_X86_TDX_VM, options: { huge_pages: true } });
`,
    );
    const r = project.typecheck();
    expect(r.output).toBe('');
    expect(r.status).toBe(0);
  });
});
