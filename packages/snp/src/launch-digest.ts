/**
 * The SNP launch digest: the measurement the firmware accumulates over SNP_LAUNCH_UPDATE.
 *
 * Each measured page extends the digest with SHA-384 over a PAGE_INFO structure
 * (SEV-SNP Firmware ABI, "Layout of the PAGE_INFO structure", section 8.17.2 table 67 in the
 * revision the reference tool cites). Layout, 0x70 bytes, little-endian:
 *
 *   0x00  DIGEST_CUR   48 B  the launch digest so far (starts as 48 zero bytes)
 *   0x30  CONTENTS     48 B  SHA-384 of the 4 KiB page for NORMAL and VMSA pages, zero otherwise
 *   0x60  LENGTH       u16   0x70
 *   0x62  PAGE_TYPE    u8    SNP_PAGE_TYPE_*
 *   0x63  IMI_PAGE     u8    1 for pages of an incoming migration image, else 0
 *   0x64  VMPL3_PERMS  u8
 *   0x65  VMPL2_PERMS  u8
 *   0x66  VMPL1_PERMS  u8
 *   0x67  reserved     u8
 *   0x68  GPA          u64   guest physical address of the page
 *
 * New digest = SHA-384(PAGE_INFO). The layout was checked against virtee/sev-snp-measure
 * `sevsnpmeasure/gctx.py` (GCTX._update, which cites the same table), the reference tool used
 * to predict attestation measurements. The VMSA page is measured at GPA 0xFFFFFFFFF000
 * (INITIAL_VMSA_GPA in arch/x86/kvm/svm/sev.c; gctx.py VMSA_GPA).
 */
import { createHash } from 'node:crypto';

/** SNP_PAGE_TYPE_* (include/linux/psp-sev.h); KVM_SEV_SNP_PAGE_TYPE_* use the same numbers */
export const SNP_PAGE_TYPE_NORMAL = 0x1;
export const SNP_PAGE_TYPE_VMSA = 0x2;
export const SNP_PAGE_TYPE_ZERO = 0x3;
export const SNP_PAGE_TYPE_UNMEASURED = 0x4;
export const SNP_PAGE_TYPE_SECRETS = 0x5;
export const SNP_PAGE_TYPE_CPUID = 0x6;

/** SHA-384 digest size */
export const LD_SIZE = 48;
export const PAGE_INFO_LEN = 0x70;
/** INITIAL_VMSA_GPA: where VMSA pages are recorded in the RMP and measured */
export const INITIAL_VMSA_GPA = 0xfffffffff000;

export function sha384(data: Uint8Array): Uint8Array {
  return new Uint8Array(createHash('sha384').update(data).digest());
}

export interface PageInfoExtra {
  imiPage?: boolean;
  vmpl3Perms?: number;
  vmpl2Perms?: number;
  vmpl1Perms?: number;
}

/** Build one PAGE_INFO structure. */
export function buildPageInfo(digestCur: Uint8Array, contents: Uint8Array, pageType: number, gpa: number, extra: PageInfoExtra = {}): Uint8Array {
  if (digestCur.length !== LD_SIZE || contents.length !== LD_SIZE) throw new RangeError('PAGE_INFO: digest and contents are 48 bytes');
  const b = new Uint8Array(PAGE_INFO_LEN);
  const v = new DataView(b.buffer);
  b.set(digestCur, 0x00);
  b.set(contents, 0x30);
  v.setUint16(0x60, PAGE_INFO_LEN, true);
  v.setUint8(0x62, pageType);
  v.setUint8(0x63, extra.imiPage ? 1 : 0);
  v.setUint8(0x64, extra.vmpl3Perms ?? 0);
  v.setUint8(0x65, extra.vmpl2Perms ?? 0);
  v.setUint8(0x66, extra.vmpl1Perms ?? 0);
  v.setUint8(0x67, 0);
  v.setBigUint64(0x68, BigInt(gpa), true);
  return b;
}

/** Page types whose contents are hashed into PAGE_INFO.CONTENTS. */
export function isMeasuredContents(pageType: number): boolean {
  return pageType === SNP_PAGE_TYPE_NORMAL || pageType === SNP_PAGE_TYPE_VMSA;
}

/** The running launch digest of one guest context. */
export class LaunchDigest {
  private ld: Uint8Array = new Uint8Array(LD_SIZE);
  /** pages measured so far */
  pages = 0;

  /** extend the digest with one 4 KiB page (`page` is needed for NORMAL and VMSA) */
  update(pageType: number, gpa: number, page?: Uint8Array, extra?: PageInfoExtra): void {
    let contents: Uint8Array;
    if (isMeasuredContents(pageType)) {
      if (page === undefined || page.length !== 4096) throw new RangeError('LaunchDigest: NORMAL and VMSA pages need their 4096 bytes');
      contents = sha384(page);
    } else {
      contents = new Uint8Array(LD_SIZE);
    }
    this.ld = sha384(buildPageInfo(this.ld, contents, pageType, gpa, extra));
    this.pages++;
  }

  get digest(): Uint8Array {
    return this.ld.slice();
  }

  hex(): string {
    return Buffer.from(this.ld).toString('hex');
  }
}
