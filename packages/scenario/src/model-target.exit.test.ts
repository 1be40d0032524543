import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { snpHostFor } from '@ccmem/snp';
import { createModelTarget, type ModelTarget, type ModelVm } from './model-target.js';
import { parseScenario } from './parse.js';
import { runScenario } from './runner.js';
import type { RunContext } from './target.js';

const scenarioFile = (rel: string) => fileURLToPath(new URL(`../scenarios/${rel}`, import.meta.url));
const builtin = (rel: string) => parseScenario(readFileSync(scenarioFile(rel), 'utf8'), rel);

/** a model target that keeps its VMs past end(), and runs `before` just before the VMM exits */
function watched(before?: (t: ModelTarget) => void): { target: ModelTarget; vms: () => ModelVm[] } {
  const target = createModelTarget();
  let vms: ModelVm[] = [];
  const exit = target.exit!.bind(target);
  target.exit = (ctx: RunContext) => {
    before?.(target);
    vms = [target.vm!];
    return exit(ctx);
  };
  return { target, vms: () => vms };
}

describe('the model VMM exit (process teardown, kvm_destroy_vm)', () => {
  it('an SNP guest with private pages and a launch leaves nothing behind: VM destroyed, RMP and host pages given back', () => {
    const w = watched();
    const r = runScenario(builtin('snp/launch-finish-adds-vmsa.yaml'), w.target);
    expect(r.pass, JSON.stringify(r.steps.filter((s) => !s.pass))).toBe(true);
    expect(r.steps.at(-1)).toMatchObject({ op: 'exit', pass: true });
    expect(w.vms().map((vm) => vm.alive)).toEqual([false]);
  });

  it('a TD tears down through the HKID release and the reclaim of every TD page', () => {
    const w = watched();
    const r = runScenario(builtin('tdx/huge-pages-2m-and-demote.yaml'), w.target);
    expect(r.pass, JSON.stringify(r.steps.filter((s) => !s.pass))).toBe(true);
    const vm = w.vms()[0]!;
    expect(vm.alive).toBe(false);
    // tdx_mmu_release_hkid() then tdx_vm_destroy(): the S-EPT root is reclaimed last
    expect(vm.backend!.inspect!({ what: 'stats' } as never)).toMatchObject({ hkidAssigned: false, septTables: 0, tdh_mng_key_freeid: 1 });
  });

  it('a VM reference never dropped is reported', () => {
    const w = watched((t) => t.vm!.get());
    const r = runScenario(builtin('snp/launch-finish-adds-vmsa.yaml'), w.target);
    expect(r.pass).toBe(false);
    // (and, as it was never destroyed, what its teardown would have released)
    expect(r.steps.at(-1)!.mismatches[0]).toBe('the VM outlived the VMM: a reference to it was never dropped');
    expect(r.steps.at(-1)!.mismatches).toContainEqual(expect.stringMatching(/host pages? still allocated/));
  });

  it('a host page nobody frees is reported', () => {
    const w = watched((t) => void t.kvm!.process.phys.allocPage());
    const r = runScenario(parseScenario('name: t\nvm: { type: default }\nsteps:\n  - create_vcpu: { id: 0 }\n'), w.target);
    expect(r.steps.at(-1)!.mismatches).toEqual(['1 host page still allocated after the VMM exited']);
  });

  it('an RMP entry still assigned to the guest\'s ASID is reported by the SNP backend', () => {
    const w = watched((t) => {
      const phys = t.kvm!.process.phys;
      const asid = (t.vm!.backend!.inspect!({ what: 'sev' } as never) as { asid: number }).asid;
      const pfn = phys.allocPage();
      expect(snpHostFor(phys).rmpMakePrivate(pfn, 0x7000_0000, 1, asid, false)).toBe(0);
    });
    const r = runScenario(builtin('snp/launch-finish-adds-vmsa.yaml'), w.target);
    const leaks = r.steps.at(-1)!.mismatches;
    expect(leaks).toContainEqual(expect.stringMatching(/^pfn 0x[0-9a-f]+ still assigned to ASID \d+ in the RMP \(never made shared\)$/));
    expect(leaks).toContain('1 host page still allocated after the VMM exited');
  });

  it('memfd pages go when the last fd and mapping are gone (shmem_evict_inode())', () => {
    const r = runScenario(builtin('selftests/mmu-stress-upstream.yaml'), createModelTarget());
    expect(r.pass, JSON.stringify(r.steps.filter((s) => !s.pass))).toBe(true);
    expect(r.steps.at(-1)).toMatchObject({ op: 'exit', pass: true });
  });
});
