import { describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import {
  LaunchDigest,
  buildPageInfo,
  INITIAL_VMSA_GPA,
  SNP_PAGE_TYPE_CPUID,
  SNP_PAGE_TYPE_NORMAL,
  SNP_PAGE_TYPE_SECRETS,
  SNP_PAGE_TYPE_UNMEASURED,
  SNP_PAGE_TYPE_VMSA,
  SNP_PAGE_TYPE_ZERO,
} from './launch-digest.js';

/** An independent reference written the way sev-snp-measure's gctx.py concatenates bytes. */
function refUpdate(ld: Uint8Array, pageType: number, gpa: number, page: Uint8Array | null): Uint8Array {
  const contents = page ? createHash('sha384').update(page).digest() : Buffer.alloc(48);
  const tail = Buffer.alloc(16);
  tail.writeUInt16LE(0x70, 0);
  tail.writeUInt8(pageType, 2);
  tail.writeBigUInt64LE(BigInt(gpa), 8);
  return new Uint8Array(createHash("sha384").update(Buffer.concat([ld, contents, tail])).digest());
}

describe('launch digest', () => {
  it('lays PAGE_INFO out as the ABI table says', () => {
    const cur = new Uint8Array(48).fill(0xaa);
    const contents = new Uint8Array(48).fill(0xbb);
    const pi = buildPageInfo(cur, contents, SNP_PAGE_TYPE_CPUID, 0x1234_5000, { vmpl1Perms: 7, vmpl2Perms: 3, vmpl3Perms: 1 });
    expect(pi.length).toBe(0x70);
    expect(pi[0]).toBe(0xaa);
    expect(pi[0x2f]).toBe(0xaa);
    expect(pi[0x30]).toBe(0xbb);
    expect(pi[0x5f]).toBe(0xbb);
    expect(pi[0x60]).toBe(0x70);
    expect(pi[0x61]).toBe(0);
    expect(pi[0x62]).toBe(6);
    expect(pi[0x63]).toBe(0);
    expect([pi[0x64], pi[0x65], pi[0x66], pi[0x67]]).toEqual([1, 3, 7, 0]);
    expect(new DataView(pi.buffer).getBigUint64(0x68, true)).toBe(0x1234_5000n);
  });

  it('chains SHA-384 over PAGE_INFO like the reference tool', () => {
    const page = Buffer.alloc(4096);
    for (let i = 0; i < 4096; i++) page[i] = (i * 7) & 0xff;
    const vmsa = Buffer.alloc(4096, 0x5a);
    const ld = new LaunchDigest();
    ld.update(SNP_PAGE_TYPE_NORMAL, 0x10000, page);
    ld.update(SNP_PAGE_TYPE_ZERO, 0x11000);
    ld.update(SNP_PAGE_TYPE_CPUID, 0x12000);
    ld.update(SNP_PAGE_TYPE_VMSA, INITIAL_VMSA_GPA, vmsa);
    let ref: Uint8Array = new Uint8Array(48);
    ref = refUpdate(ref, 1, 0x10000, page);
    ref = refUpdate(ref, 3, 0x11000, null);
    ref = refUpdate(ref, 6, 0x12000, null);
    ref = refUpdate(ref, 2, INITIAL_VMSA_GPA, vmsa);
    expect(ld.hex()).toBe(Buffer.from(ref).toString("hex"));
    expect(ld.pages).toBe(4);
  });

  it('depends on order, gpa and page type', () => {
    const p = new Uint8Array(4096).fill(1);
    const a = new LaunchDigest();
    a.update(SNP_PAGE_TYPE_NORMAL, 0, p);
    a.update(SNP_PAGE_TYPE_ZERO, 0x1000);
    const b = new LaunchDigest();
    b.update(SNP_PAGE_TYPE_ZERO, 0x1000);
    b.update(SNP_PAGE_TYPE_NORMAL, 0, p);
    expect(a.hex()).not.toBe(b.hex());
    const c = new LaunchDigest();
    c.update(SNP_PAGE_TYPE_NORMAL, 0x2000, p);
    const d = new LaunchDigest();
    d.update(SNP_PAGE_TYPE_NORMAL, 0x3000, p);
    expect(c.hex()).not.toBe(d.hex());
    expect(() => new LaunchDigest().update(SNP_PAGE_TYPE_NORMAL, 0)).toThrow();
  });

  it('sets IMI_PAGE for a page of an incoming migration image, and checks its inputs', () => {
    const z = new Uint8Array(48);
    expect(buildPageInfo(z, z, SNP_PAGE_TYPE_NORMAL, 0, { imiPage: true })[0x63]).toBe(1);
    expect(buildPageInfo(z, z, SNP_PAGE_TYPE_NORMAL, 0, { imiPage: false })[0x63]).toBe(0);
    expect(() => buildPageInfo(new Uint8Array(47), z, SNP_PAGE_TYPE_NORMAL, 0)).toThrow(RangeError);
    expect(() => buildPageInfo(z, new Uint8Array(49), SNP_PAGE_TYPE_NORMAL, 0)).toThrow(RangeError);
  });

  it('hashes the contents of NORMAL and VMSA pages only (ABI: CONTENTS is zero for the other types)', () => {
    const page = new Uint8Array(4096).fill(9);
    for (const t of [SNP_PAGE_TYPE_ZERO, SNP_PAGE_TYPE_UNMEASURED, SNP_PAGE_TYPE_SECRETS, SNP_PAGE_TYPE_CPUID]) {
      const withPage = new LaunchDigest();
      withPage.update(t, 0x5000, page);
      expect(withPage.hex()).toBe(Buffer.from(refUpdate(new Uint8Array(48), t, 0x5000, null)).toString('hex'));
    }
    for (const t of [SNP_PAGE_TYPE_NORMAL, SNP_PAGE_TYPE_VMSA]) {
      expect(() => new LaunchDigest().update(t, 0x5000, new Uint8Array(4095))).toThrow(RangeError);
      expect(() => new LaunchDigest().update(t, 0x5000)).toThrow(RangeError);
    }
  });

  it('hands out a copy of the digest', () => {
    const ld = new LaunchDigest();
    ld.update(SNP_PAGE_TYPE_ZERO, 0x1000);
    const d = ld.digest;
    expect(Buffer.from(d).toString('hex')).toBe(ld.hex());
    d.fill(0);
    expect(ld.hex()).not.toBe('00'.repeat(48));
  });
});
