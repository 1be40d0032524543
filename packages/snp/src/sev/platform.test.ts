/** SevAsids (sev_asid_new / sev_asid_free / __sev_recycle_asids) and the SEV firmware's states. */
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { ERRNO } from '@ccmem/core';
import { SevAsids, SevFirmware } from './platform.js';
import {
  SEV_GUEST_STATE_LAUNCH_SECRET, SEV_GUEST_STATE_LAUNCH_UPDATE, SEV_GUEST_STATE_RUNNING, SEV_POLICY_ES, SEV_RET_ASID_OWNED, SEV_RET_INVALID_ADDRESS,
  SEV_RET_INVALID_ASID, SEV_RET_INVALID_GUEST, SEV_RET_INVALID_GUEST_STATE, SEV_RET_INVALID_LEN, SEV_RET_SUCCESS, ghcbMsrSevInfo, ghcbMsrTermReq,
} from './uapi.js';

describe('SevAsids', () => {
  it('SEV-ES ASIDs are [1, min_sev_asid - 1], SEV ASIDs [min_sev_asid, max_sev_asid], the lowest free first', () => {
    const a = new SevAsids({ minSevAsid: 3, maxSevAsid: 4 });
    expect([a.asidNew(true), a.asidNew(true), a.asidNew(true)]).toEqual([1, 2, -ERRNO.EBUSY]);
    expect([a.asidNew(false), a.asidNew(false), a.asidNew(false)]).toEqual([3, 4, -ERRNO.EBUSY]);
  });

  it('an empty range is ENOTTY (min_sev_asid 1 leaves no SEV-ES ASID)', () => {
    const a = new SevAsids({ minSevAsid: 1, maxSevAsid: 10 });
    expect(a.asidNew(true)).toBe(-ERRNO.ENOTTY);
    expect(a.asidNew(false)).toBe(1);
  });

  it('a freed ASID waits for reclaim: reused only when the range is full, and the flush frees both ranges', () => {
    const a = new SevAsids({ minSevAsid: 3, maxSevAsid: 4 });
    const es = [a.asidNew(true), a.asidNew(true)];
    const sev = a.asidNew(false);
    a.asidFree(es[0]!);
    a.asidFree(sev);
    // the SEV range still has 4 free: no flush, 3 stays taken
    expect(a.asidNew(false)).toBe(4);
    expect(a.isInUse(3)).toBe(true);
    expect(a.flushes).toBe(0);
    // the ES range is full: the flush reclaims 1 (and 3)
    expect(a.asidNew(true)).toBe(1);
    expect(a.flushes).toBe(1);
    expect(a.isInUse(3)).toBe(false);
    // nothing reclaimable: EBUSY without a flush
    expect(a.asidNew(true)).toBe(-ERRNO.EBUSY);
    expect(a.flushes).toBe(1);
  });

  it('a requested ASID must be in range and free (a reclaimable one is flushed)', () => {
    const a = new SevAsids({ minSevAsid: 3, maxSevAsid: 4 });
    expect(a.asidNew(true, 3)).toBe(-ERRNO.EBUSY);
    expect(a.asidNew(true, 2)).toBe(2);
    expect(a.asidNew(true, 2)).toBe(-ERRNO.EBUSY);
    a.asidFree(2);
    expect(a.asidNew(true, 2)).toBe(2);
  });
});

describe('SevFirmware', () => {
  it('the launch digest is SHA-256 over every LAUNCH_UPDATE_DATA and LAUNCH_UPDATE_VMSA in order; a refused command adds nothing', () => {
    const fw = new SevFirmware(new SevAsids({ minSevAsid: 3, maxSevAsid: 4 }));
    const h = fw.launchStart(0).handle!;
    expect(fw.launchDigest(h)).toBe(createHash('sha256').digest('hex'));
    const a = Uint8Array.from({ length: 32 }, (_, i) => i);
    const v = new Uint8Array(4096).fill(7);
    expect(fw.launchUpdateData(h, 0, a).fwError).toBe(SEV_RET_SUCCESS);
    expect(fw.launchUpdateData(h, 0, a.subarray(0, 8)).fwError).toBe(SEV_RET_INVALID_LEN);
    expect(fw.launchUpdateVmsa(h, v).fwError).toBe(SEV_RET_SUCCESS);
    expect(fw.launchDigest(h)).toBe(createHash('sha256').update(a).update(v).digest('hex'));
    expect(fw.launchDigest(h + 1)).toBeNull();
    fw.decommission(h);
    expect(fw.launchDigest(h)).toBeNull();
  });

  it('walks LAUNCH_UPDATE → LAUNCH_SECRET → RUNNING and refuses out-of-state commands', () => {
    const fw = new SevFirmware(new SevAsids({ minSevAsid: 3, maxSevAsid: 4 }));
    expect(fw.launchUpdateData(0, 0, new Uint8Array(16)).fwError).toBe(SEV_RET_INVALID_GUEST);
    const { handle } = fw.launchStart(0);
    expect(fw.activate(handle!, 1).fwError).toBe(SEV_RET_INVALID_ASID); // SEV-ES ASID, plain policy
    expect(fw.activate(handle!, 5).fwError).toBe(SEV_RET_INVALID_ASID); // out of range
    expect(fw.activate(handle!, 3).fwError).toBe(SEV_RET_SUCCESS);
    const other = fw.launchStart(0).handle!;
    expect(fw.activate(other, 3).fwError).toBe(SEV_RET_ASID_OWNED);
    expect(fw.launchUpdateData(handle!, 0, new Uint8Array(15)).fwError).toBe(SEV_RET_INVALID_LEN);
    expect(fw.launchUpdateData(handle!, 8, new Uint8Array(16)).fwError).toBe(SEV_RET_INVALID_ADDRESS);
    expect(fw.launchUpdateData(handle!, 0, new Uint8Array(32)).fwError).toBe(SEV_RET_SUCCESS);
    expect(fw.guestStatus(handle!)).toMatchObject({ state: SEV_GUEST_STATE_LAUNCH_UPDATE, measuredBytes: 32 });
    expect(fw.launchMeasure(handle!, 0)).toEqual({ fwError: SEV_RET_INVALID_LEN, len: 48 });
    const m = fw.launchMeasure(handle!, 48);
    expect(m.fwError).toBe(SEV_RET_SUCCESS);
    expect(m.measurement).toHaveLength(48);
    expect(fw.guestStatus(handle!).state).toBe(SEV_GUEST_STATE_LAUNCH_SECRET);
    expect(fw.launchUpdateVmsa(handle!, new Uint8Array(4096)).fwError).toBe(SEV_RET_INVALID_GUEST_STATE);
    expect(fw.launchFinish(handle!).fwError).toBe(SEV_RET_SUCCESS);
    expect(fw.guestStatus(handle!).state).toBe(SEV_GUEST_STATE_RUNNING);
    expect(fw.launchFinish(handle!).fwError).toBe(SEV_RET_INVALID_GUEST_STATE);
    fw.decommission(handle!);
    expect(fw.guestStatus(handle!).fwError).toBe(SEV_RET_INVALID_GUEST);
    // the ASID is free for another context once decommissioned
    expect(fw.activate(other, 3).fwError).toBe(SEV_RET_SUCCESS);
  });

  it('an ES policy needs an SEV-ES ASID', () => {
    const fw = new SevFirmware(new SevAsids({ minSevAsid: 3, maxSevAsid: 4 }));
    const h = fw.launchStart(SEV_POLICY_ES).handle!;
    expect(fw.activate(h, 3).fwError).toBe(SEV_RET_INVALID_ASID);
    expect(fw.activate(h, 2).fwError).toBe(SEV_RET_SUCCESS);
  });
});

describe('GHCB MSR values', () => {
  it('encode the termination reason and the SEV information response as the spec lays them out', () => {
    expect(ghcbMsrTermReq(0, 0)).toBe(0x100);
    expect(ghcbMsrTermReq(1, 3)).toBe(0x31100);
    expect(ghcbMsrSevInfo(2, 1, 51)).toBe(0x0002_0001_3300_0001);
  });
});
