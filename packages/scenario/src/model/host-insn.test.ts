import { describe, expect, it } from 'vitest';
import { createModelTarget } from '../model-target.js';
import { parseScenario, tryParseScenario } from '../parse.js';
import { runScenario } from '../runner.js';

const SNP_HEAD = `name: t
vm: { type: snp }
steps:
  - create_guest_memfd: { size: 2MiB }
    as: gmem
  - mmap: { size: 2MiB }
    as: shared
  - set_user_memory_region2: { slot: 0, flags: [KVM_MEM_GUEST_MEMFD], guest_phys_addr: 0x1_0000_0000, memory_size: 2MiB, userspace_addr: shared, guest_memfd: gmem }
`;

function outcomes(yaml: string) {
  const r = runScenario(parseScenario(yaml), createModelTarget());
  return r.steps.filter((s) => s.op !== 'exit').map((s) => s.outcome);
}

describe('snp_host_access', () => {
  it('returns the frame; a frame no guest owns is read and written without a fault', () => {
    const [, , , read, write] = outcomes(`${SNP_HEAD}  - snp_host_access: { pfn: 0x5000 }\n  - snp_host_access: { pfn: 0x5000, write: true }\n`);
    expect(read).toEqual({ result: 0x5000 });
    expect(write).toEqual({ result: 0x5000 });
  });

  it('a write to a frame the RMP assigns is #PF with the reason; the read is not', () => {
    const o = outcomes(`${SNP_HEAD}  - snp_rmp_insn: { insn: rmpupdate, pfn: 0x5000, rmp_gpa: 0 }
  - snp_host_access: { pfn: 0x5000, write: true }
  - snp_host_access: { pfn: 0x5000 }
  - snp_rmp_insn: { insn: rmpupdate, pfn: 0x5000, assigned: false }
`);
    expect(o[4]).toMatchObject({ result: 0x5000, exception: '#PF', detail: { reason: expect.stringMatching(/^RMP #PF: host write through a 4K direct map mapping to assigned pfn 0x5000$/) } });
    expect(o[5]).toEqual({ result: 0x5000 });
  });

  it('needs pfn or a gpa with a guest_memfd page, on an SNP VM', () => {
    const o = outcomes(`${SNP_HEAD}  - snp_host_access: {}\n  - snp_host_access: { gpa: 0x1_0000_0000 }\n`);
    expect(o[3]).toMatchObject({ errno: 'EINVAL', detail: { check: 'snp_host_access: needs pfn or gpa' } });
    expect(o[4]).toMatchObject({ errno: 'ENOENT', detail: { check: 'snp_host_access: no guest_memfd page backs gpa 0x100000000' } });
    const other = parseScenario('name: t\nvm: { type: snp }\nsteps:\n  - snp_host_access: { pfn: 1 }\n');
    const sw = runScenario(other, createModelTarget(), { vmType: 'sw-protected' });
    expect(sw.steps[0]?.outcome).toMatchObject({ errno: 'EINVAL', detail: { check: 'snp_host_access: the VM is not an SEV-SNP VM' } });
  });

  it('the file names a bad field where it is written', () => {
    const r = tryParseScenario('name: t\nvm: { type: snp }\nsteps:\n  - snp_host_access: { pfn: 1, writes: true }\n', 'f.yaml');
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.errors[0]).toMatchObject({ line: 4 });
    // a frame number is never negative (the name of a result is fine: `frame+1`)
    const neg = tryParseScenario('name: t\nvm: { type: snp }\nsteps:\n  - snp_host_access: { pfn: -1 }\n  - snp_rmp_insn: { insn: psmash, pfn: -5 }\n  - assert: { what: rmp, pfn: -1, assigned: false }\n', 'n.yaml');
    expect(neg.ok).toBe(false);
    if (!neg.ok) expect(neg.errors.map((e) => [e.line, e.field])).toEqual([[4, 'steps[0].snp_host_access.pfn'], [5, 'steps[1].snp_rmp_insn.pfn'], [6, 'steps[2].assert.pfn']]);
  });
});
