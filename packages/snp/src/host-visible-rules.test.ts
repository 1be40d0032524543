/**
 * What users see of the SNP host side: the #NPF reasons of the guest RMP instructions (the
 * `kvm_page_fault` event of PVALIDATE / RMPADJUST), the host's trace events (`rmpupdate_failed`,
 * `snp_leak_pages`), the RMP #PF texts of host writes through the direct map or a user
 * mapping, `inspect` of the direct map, the SEV firmware's ACTIVATE ASID checks, and the
 * messages of bad arguments to the launch digest and the ASID table.
 */
import { describe, expect, it } from 'vitest';
import { PG_LEVEL_1G, PG_LEVEL_2M, PG_LEVEL_4K, Tracer, recordTrace } from '@ccmem/core';
import { DirectMap, rmpCheckHostWrite } from './directmap.js';
import { PFERR_GUEST_ENC_MASK, PFERR_GUEST_RMP_MASK, PFERR_GUEST_SIZEM_MASK, RMPUPDATE_FAIL_INPUT, SnpHost, pvalidateInsn, rmpupdateInsn } from './instructions.js';
import { LaunchDigest, SNP_PAGE_TYPE_NORMAL, buildPageInfo } from './launch-digest.js';
import { Rmp } from './rmp.js';
import { SevAsids, SevPlatform } from './sev/platform.js';
import { SEV_POLICY_ES, SEV_RET_INVALID_ASID, SEV_RET_SUCCESS } from './sev/uapi.js';

const ENC = PFERR_GUEST_RMP_MASK + PFERR_GUEST_ENC_MASK;
const priv = (gpa: number, asid = 5, pagesize = 0) => ({ gpa, assigned: true, pagesize, immutable: false, asid });

describe('the guest RMP check of PVALIDATE / RMPADJUST: #NPF reasons', () => {
  it('unassigned, another ASID, another gpa, a 4K operation on a 2M entry', () => {
    const rmp = new Rmp({ maxPfn: 4096 });
    const op = (over: object) => ({ pfn: 0x100, gpa: 0x5000, asid: 5, level: PG_LEVEL_4K, ...over });
    expect(pvalidateInsn(rmp, op({}), true)).toEqual({ npf: ENC, reason: 'pfn 0x100 is not assigned in the RMP' });
    // a 2M operation on a frame that is not 2M-aligned and not assigned
    expect(pvalidateInsn(rmp, op({ pfn: 0x201, gpa: 0x200000, level: PG_LEVEL_2M }), true)).toEqual({ npf: ENC, reason: 'pfn 0x201 is not assigned in the RMP' });
    expect(rmpupdateInsn(rmp, 0x100, priv(0x5000, 7))).toBe(0);
    expect(pvalidateInsn(rmp, op({}), true)).toEqual({ npf: ENC, reason: 'RMP asid 7 != guest asid 5' });
    expect(pvalidateInsn(rmp, op({ asid: 7, gpa: 0x6000 }), true)).toEqual({ npf: ENC, reason: 'RMP gpa 0x5000 != 0x6000' });
    expect(rmpupdateInsn(rmp, 0x400, priv(0x400000, 5, 1))).toBe(0);
    expect(pvalidateInsn(rmp, op({ pfn: 0x401, gpa: 0x401000 }), true)).toEqual({ npf: ENC + PFERR_GUEST_SIZEM_MASK, reason: '4K operation on a 2M RMP entry' });
  });
});

describe('SnpHost trace events', () => {
  it('rmpupdate_failed with the pfn, the level and the return code; snp_leak_pages per frame', () => {
    const host = new SnpHost({ maxPfn: 4096 });
    const tracer = new Tracer();
    const { events } = recordTrace(tracer);
    host.tracer = tracer;
    // ASID 0 is the hypervisor's: RMPUPDATE refuses it for a guest page
    expect(host.rmpMakePrivate(0x101, 0x5000, PG_LEVEL_4K, 0, false)).toBeLessThan(0);
    expect(events).toEqual([{ name: 'rmpupdate_failed', fields: { pfn: 0x101, level: PG_LEVEL_4K, ret: RMPUPDATE_FAIL_INPUT } }]);
    events.length = 0;
    host.snpLeakPages(0x300, 2);
    host.snpLeakPages(0x301, 1); // already leaked: no second event
    expect(events).toEqual([
      { name: 'snp_leak_pages', fields: { pfn: 0x300 } },
      { name: 'snp_leak_pages', fields: { pfn: 0x301 } },
    ]);
  });
});

describe('host writes and the RMP (#PF texts)', () => {
  it('through the direct map at 4K, 2M and 1G; a frame missing from the direct map', () => {
    const rmp = new Rmp({ maxPfn: 2 ** 20 });
    expect(rmpupdateInsn(rmp, 0x1000, priv(0x5000))).toBe(0);
    expect(rmpCheckHostWrite(rmp, 0x1000, PG_LEVEL_4K, 'direct map')).toBe('RMP #PF: host write through a 4K direct map mapping to assigned pfn 0x1000');
    expect(rmpCheckHostWrite(rmp, 0x1000, PG_LEVEL_2M, 'user')).toBe(
      'RMP #PF: host write to assigned pfn 0x1000 through a 2M user mapping whose 2M region holds an assigned page',
    );
    expect(rmpCheckHostWrite(rmp, 0x1001, PG_LEVEL_1G, 'direct map')).toBe(
      'RMP #PF: host write to shared pfn 0x1001 through a 1G direct map mapping whose 2M region holds an assigned page',
    );
    const dm = new DirectMap({ maxPfn: 2 ** 20 });
    expect(dm.checkHostWrite(0x1001, rmp)).toMatch(/^RMP #PF: host write to shared pfn 0x1001 through a (1G|2M) direct map mapping/);
    dm.adjustDirectMap(0x1000, PG_LEVEL_4K);
    expect(dm.checkHostWrite(0x1000, rmp)).toBe('RMP #PF: host write through a 4K direct map mapping to assigned pfn 0x1000');
    dm.unmap(0x1002, 1);
    expect(dm.checkHostWrite(0x1002, rmp)).toBe('#PF: pfn 0x1002 is not mapped in the direct map (kernel oops)');
    expect(dm.checkHostRead(0x1002)).toBe('#PF: pfn 0x1002 is not mapped in the direct map (kernel oops)');
  });

  it('inspect names the mapping level', () => {
    const dm = new DirectMap({ maxPfn: 2 ** 20 });
    dm.adjustDirectMap(0x1000, PG_LEVEL_4K);
    expect(dm.inspect(0x1000)).toEqual({ pfn: 0x1000, present: true, level: PG_LEVEL_4K, levelName: '4K' });
    dm.unmap(0x1000, 1);
    expect(dm.inspect(0x1000)).toEqual({ pfn: 0x1000, present: false, level: 0, levelName: 'none' });
    const big = dm.inspect(0x80000);
    expect(big.levelName).toBe(big.level === PG_LEVEL_1G ? '1G' : '2M');
  });
});

describe('SEV firmware ACTIVATE: the ASID must exist and match the policy', () => {
  it('ASID 0 and ASIDs above both ranges are INVALID_ASID, also when there are no SEV ASIDs', () => {
    // min_sev_asid 5, max_sev_asid 3: ASIDs 1..4 are SEV-ES, there is no SEV ASID
    const p = new SevPlatform({ minSevAsid: 5, maxSevAsid: 3 });
    const es = p.firmware.launchStart(SEV_POLICY_ES).handle!;
    expect(p.firmware.activate(es, 0).fwError).toBe(SEV_RET_INVALID_ASID);
    expect(p.firmware.activate(es, 4).fwError).toBe(SEV_RET_SUCCESS);
    const sev = p.firmware.launchStart(0).handle!;
    expect(p.firmware.activate(sev, 5).fwError).toBe(SEV_RET_INVALID_ASID);
    expect(p.firmware.activate(sev, 6).fwError).toBe(SEV_RET_INVALID_ASID);
  });

  it('bad ASID table bounds are refused with a message', () => {
    expect(() => new SevAsids({ minSevAsid: 0, maxSevAsid: 4 })).toThrow('SevAsids: min_sev_asid must be >= 1 and max_sev_asid >= 0');
  });
});

describe('launch digest arguments', () => {
  it('PAGE_INFO needs 48-byte digests; NORMAL pages need their 4096 bytes', () => {
    expect(() => buildPageInfo(new Uint8Array(32), new Uint8Array(48), SNP_PAGE_TYPE_NORMAL, 0)).toThrow('PAGE_INFO: digest and contents are 48 bytes');
    expect(() => new LaunchDigest().update(SNP_PAGE_TYPE_NORMAL, 0, new Uint8Array(100))).toThrow('LaunchDigest: NORMAL and VMSA pages need their 4096 bytes');
  });
});
