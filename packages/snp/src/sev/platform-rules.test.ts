/**
 * The SEV platform's rules one at a time, at their boundaries: the ASID ranges and the reclaim
 * bitmap of arch/x86/kvm/svm/sev.c (sev_hardware_setup(), sev_asid_new(), sev_asid_free(),
 * __sev_recycle_asids()) and the PSP firmware's guest-context checks (SEV API: ACTIVATE,
 * LAUNCH_UPDATE_VMSA, LAUNCH_MEASURE, LAUNCH_FINISH, GUEST_STATUS, DECOMMISSION). Found missing
 * by mutation testing (docs/testing.md).
 */
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { ERRNO } from '@ccmem/core';
import { SevAsids, SevFirmware, SevPlatform } from './platform.js';
import {
  SEV_GUEST_STATE_LAUNCH_UPDATE,
  SEV_GUEST_STATE_RUNNING,
  SEV_RET_INVALID_ASID,
  SEV_RET_INVALID_GUEST,
  SEV_RET_INVALID_GUEST_STATE,
  SEV_RET_INVALID_LEN,
  SEV_RET_SUCCESS,
  SVM_SEV_FEAT_DEBUG_SWAP,
} from './uapi.js';

describe('SevAsids ranges', () => {
  it('refuses a min_sev_asid below 1, a negative max_sev_asid and fractions', () => {
    expect(() => new SevAsids({ minSevAsid: 0, maxSevAsid: 4 })).toThrow(RangeError);
    expect(() => new SevAsids({ minSevAsid: 1, maxSevAsid: -1 })).toThrow(RangeError);
    expect(() => new SevAsids({ minSevAsid: 1.5, maxSevAsid: 4 })).toThrow(RangeError);
    expect(() => new SevAsids({ minSevAsid: 2, maxSevAsid: 4.5 })).toThrow(RangeError);
    expect(() => new SevAsids({ minSevAsid: 1, maxSevAsid: 0 })).not.toThrow();
  });

  it('SEV-ES ASIDs exist below min_sev_asid even when max_sev_asid is smaller (no SEV ASID at all)', () => {
    const a = new SevAsids({ minSevAsid: 5, maxSevAsid: 0 });
    expect(a.asidNew(false)).toBe(-ERRNO.ENOTTY);
    expect([1, 2, 3, 4].map(() => a.asidNew(true))).toEqual([1, 2, 3, 4]);
    expect(a.isInUse(4)).toBe(true);
    expect(a.inUseCount(true)).toBe(4);
    expect(a.asidNew(true)).toBe(-ERRNO.EBUSY);
  });

  it('counts the ASIDs in use per range, reclaimable ones included until the flush', () => {
    const a = new SevAsids({ minSevAsid: 3, maxSevAsid: 6 });
    a.asidNew(true);
    a.asidNew(false);
    a.asidNew(false);
    expect(a.inUseCount(true)).toBe(1);
    expect(a.inUseCount(false)).toBe(2);
    a.asidFree(4);
    expect(a.inUseCount(false)).toBe(2);
  });
});

describe('sev_asid_new() with a requested ASID', () => {
  it('takes the first and the last ASID of the range, nothing outside it', () => {
    const a = new SevAsids({ minSevAsid: 3, maxSevAsid: 6 });
    expect(a.asidNew(false, 2)).toBe(-ERRNO.EBUSY);
    expect(a.asidNew(false, 7)).toBe(-ERRNO.EBUSY);
    expect(a.asidNew(false, 3.5)).toBe(-ERRNO.EBUSY);
    expect(a.asidNew(false, 3)).toBe(3);
    expect(a.asidNew(false, 6)).toBe(6);
    expect(a.asidNew(true, 0)).toBe(-ERRNO.EBUSY);
    expect(a.asidNew(true, 1)).toBe(1);
    expect(a.asidNew(true, 2)).toBe(2);
    expect(a.asidNew(true, 3)).toBe(-ERRNO.EBUSY);
  });

  it('an empty range is ENOTTY even for a requested ASID', () => {
    const a = new SevAsids({ minSevAsid: 1, maxSevAsid: 4 });
    expect(a.asidNew(true, 1)).toBe(-ERRNO.ENOTTY);
  });

  it('an ASID in use and not freed is EBUSY without a flush', () => {
    const a = new SevAsids({ minSevAsid: 3, maxSevAsid: 6 });
    expect(a.asidNew(false, 4)).toBe(4);
    a.asidFree(5); // a free ASID in the reclaim bitmap does not make 4 reclaimable
    expect(a.asidNew(false, 4)).toBe(-ERRNO.EBUSY);
    expect(a.flushes).toBe(0);
  });
});

describe('__sev_recycle_asids()', () => {
  it('finds a reclaimable ASID at the last place of the range', () => {
    const a = new SevAsids({ minSevAsid: 3, maxSevAsid: 5 });
    expect([a.asidNew(false), a.asidNew(false), a.asidNew(false)]).toEqual([3, 4, 5]);
    a.asidFree(5);
    expect(a.asidNew(false)).toBe(5);
    expect(a.flushes).toBe(1);
  });

  it('an ASID freed in the other range does not let this one flush', () => {
    const a = new SevAsids({ minSevAsid: 3, maxSevAsid: 3 });
    expect([a.asidNew(true), a.asidNew(true), a.asidNew(false)]).toEqual([1, 2, 3]);
    a.asidFree(3);
    expect(a.asidNew(true)).toBe(-ERRNO.EBUSY);
    expect(a.flushes).toBe(0);
    expect(a.isInUse(3)).toBe(true);
  });

  it('sev_asid_free() ignores ASID 0 and ASIDs past the bitmap', () => {
    const a = new SevAsids({ minSevAsid: 2, maxSevAsid: 2 });
    expect(a.asidNew(true)).toBe(1);
    a.asidFree(0);
    a.asidFree(3);
    expect(a.asidNew(true)).toBe(-ERRNO.EBUSY);
    expect(a.flushes).toBe(0);
  });
});

describe('SevFirmware guest contexts', () => {
  const fwWith = () => new SevFirmware(new SevAsids({ minSevAsid: 3, maxSevAsid: 4 }));

  it('ACTIVATE: ASID 0 and past the last ASID are INVALID_ASID; an unknown handle INVALID_GUEST; the owner may activate again', () => {
    const fw = fwWith();
    const h = fw.launchStart(0).handle!;
    expect(fw.activate(h + 1, 3).fwError).toBe(SEV_RET_INVALID_GUEST);
    expect(fw.activate(h, 0).fwError).toBe(SEV_RET_INVALID_ASID);
    expect(fw.activate(h, 4).fwError).toBe(SEV_RET_SUCCESS);
    expect(fw.activate(h, 4).fwError).toBe(SEV_RET_SUCCESS);
    expect(fw.guestStatus(h)).toMatchObject({ fwError: SEV_RET_SUCCESS, handle: h, policy: 0, asid: 4 });
  });

  it('ACTIVATE: the highest SEV-ES ASID when min_sev_asid - 1 is above max_sev_asid', () => {
    const fw = new SevFirmware(new SevAsids({ minSevAsid: 5, maxSevAsid: 2 }));
    const h = fw.launchStart(4 /* SEV_POLICY_ES */).handle!;
    expect(fw.activate(h, 5).fwError).toBe(SEV_RET_INVALID_ASID);
    expect(fw.activate(h, 4).fwError).toBe(SEV_RET_SUCCESS);
  });

  it('ACTIVATE checks the ASID range before the guest kind: ASID 0 is invalid for an ES policy too', () => {
    const fw = new SevFirmware(new SevAsids({ minSevAsid: 5, maxSevAsid: 2 }));
    const es = fw.launchStart(4 /* SEV_POLICY_ES */).handle!;
    expect(fw.activate(es, 0).fwError).toBe(SEV_RET_INVALID_ASID);
    // no SEV ASID exists above min_sev_asid - 1 here: 5 is out of range for a plain policy
    const plain = fw.launchStart(0).handle!;
    expect(fw.activate(plain, 5).fwError).toBe(SEV_RET_INVALID_ASID);
  });

  it('every command on an unknown handle is INVALID_GUEST', () => {
    const fw = fwWith();
    expect(fw.launchUpdateVmsa(7, new Uint8Array(16)).fwError).toBe(SEV_RET_INVALID_GUEST);
    expect(fw.launchMeasure(7, 48).fwError).toBe(SEV_RET_INVALID_GUEST);
    expect(fw.launchFinish(7).fwError).toBe(SEV_RET_INVALID_GUEST);
    expect(fw.guestStatus(7).fwError).toBe(SEV_RET_INVALID_GUEST);
    fw.decommission(7);
    expect(fw.guestCount).toBe(0);
  });

  it('LAUNCH_UPDATE_VMSA measures the save area; LAUNCH_FINISH may follow LAUNCH_UPDATE directly', () => {
    const fw = fwWith();
    const h = fw.launchStart(0).handle!;
    expect(fw.launchUpdateVmsa(h, new Uint8Array(4096)).fwError).toBe(SEV_RET_SUCCESS);
    expect(fw.guestStatus(h)).toMatchObject({ state: SEV_GUEST_STATE_LAUNCH_UPDATE, measuredBytes: 4096 });
    expect(fw.launchFinish(h).fwError).toBe(SEV_RET_SUCCESS);
    expect(fw.guestStatus(h).state).toBe(SEV_GUEST_STATE_RUNNING);
    expect(fw.launchUpdateVmsa(h, new Uint8Array(16)).fwError).toBe(SEV_RET_INVALID_GUEST_STATE);
    expect(fw.launchUpdateData(h, 0, new Uint8Array(16)).fwError).toBe(SEV_RET_INVALID_GUEST_STATE);
  });

  it('LAUNCH_UPDATE_DATA: any 16-byte aligned address offset is fine', () => {
    const fw = fwWith();
    const h = fw.launchStart(0).handle!;
    expect(fw.launchUpdateData(h, 16, new Uint8Array(16)).fwError).toBe(SEV_RET_SUCCESS);
    expect(fw.launchUpdateData(h, 0x7f0, new Uint8Array(16)).fwError).toBe(SEV_RET_SUCCESS);
  });

  it('LAUNCH_MEASURE: a 47-byte buffer is INVALID_LEN, 48 is enough, and only from LAUNCH_UPDATE', () => {
    const fw = fwWith();
    const h = fw.launchStart(0).handle!;
    expect(fw.launchMeasure(h, 47)).toEqual({ fwError: SEV_RET_INVALID_LEN, len: 48 });
    expect(fw.guestStatus(h).state).toBe(SEV_GUEST_STATE_LAUNCH_UPDATE);
    expect(fw.launchMeasure(h, 48).fwError).toBe(SEV_RET_SUCCESS);
    expect(fw.launchMeasure(h, 48).fwError).toBe(SEV_RET_INVALID_GUEST_STATE);
  });

  it('the measurement is SHA-256(0x04 || POLICY || LD || MNONCE), the nonce after it', () => {
    const fw = fwWith();
    const policy = 0x8001_0005;
    const h = fw.launchStart(policy).handle!;
    const data = new Uint8Array(32).map((_, i) => i);
    const vmsa = new Uint8Array(64).fill(0xee);
    fw.launchUpdateData(h, 0, data);
    fw.launchUpdateVmsa(h, vmsa);
    const m = fw.launchMeasure(h, 64);
    expect(m.len).toBe(48);
    const blob = m.measurement!;
    const nonce = blob.subarray(32, 48);
    const ld = createHash('sha256').update(data).update(vmsa).digest();
    const pol = Buffer.alloc(4);
    pol.writeUInt32LE(policy >>> 0, 0);
    const expected = createHash('sha256').update(Uint8Array.of(4)).update(pol).update(ld).update(nonce).digest();
    expect(Buffer.from(blob.subarray(0, 32)).equals(expected)).toBe(true);
    // the nonce is fixed per context: another context with the same launch measures differently
    expect(nonce.some((b) => b !== 0)).toBe(true);
  });

  it('DECOMMISSION frees the context and its ASID binding', () => {
    const fw = fwWith();
    const a = fw.launchStart(0).handle!;
    const b = fw.launchStart(0).handle!;
    expect(fw.guestCount).toBe(2);
    fw.activate(a, 3);
    fw.decommission(b); // b has no ASID: a keeps 3
    expect(fw.guestCount).toBe(1);
    const c = fw.launchStart(0).handle!;
    expect(fw.activate(c, 3).fwError).not.toBe(SEV_RET_SUCCESS);
    fw.decommission(a);
    expect(fw.activate(c, 3).fwError).toBe(SEV_RET_SUCCESS);
  });
});

describe('SevPlatform', () => {
  it('offers DebugSwap as the supported VMSA feature unless told otherwise', () => {
    expect(new SevPlatform({ minSevAsid: 2, maxSevAsid: 4 }).supportedVmsaFeatures).toBe(SVM_SEV_FEAT_DEBUG_SWAP);
    expect(new SevPlatform({ minSevAsid: 2, maxSevAsid: 4, supportedVmsaFeatures: 0 }).supportedVmsaFeatures).toBe(0);
  });
});
