/**
 * snp/launch-digest.yaml expects launch digests as literal hex strings. They are recomputed here
 * from the SEV-SNP Firmware ABI's PAGE_INFO hashing (SNP_LAUNCH_UPDATE: SHA-384 over
 * DIGEST_CUR | CONTENTS | LENGTH 0x70 | PAGE_TYPE | IMI_PAGE | VMPL3..1_PERMS | reserved | GPA),
 * written with node:crypto alone, so the scenario pins the model against the spec rather than
 * against the model's own output.
 */
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { builtinScenarios } from './index.js';

function pageInfoHash(cur: Buffer, type: number, gpa: bigint, page: Buffer | null): Buffer {
  const contents = page === null ? Buffer.alloc(48) : createHash('sha384').update(page).digest();
  const tail = Buffer.alloc(16);
  tail.writeUInt16LE(0x70, 0);
  tail.writeUInt8(type, 2); // IMI_PAGE, the VMPL masks and the reserved byte stay 0
  tail.writeBigUInt64LE(gpa, 8);
  return createHash('sha384').update(Buffer.concat([cur, contents, tail])).digest();
}

describe('snp/launch-digest.yaml', () => {
  it('expects the digests the firmware ABI gives for its pages', () => {
    const entry = builtinScenarios().find((e) => e.file === 'snp/launch-digest.yaml');
    expect(entry).toBeDefined();
    const expected = entry!.scenario.steps
      .filter((s) => s.op === 'assert' && (s.args as { what: string }).what === 'launch' && 'digest' in (s.args as object))
      .map((s) => String((s.args as { digest: unknown }).digest));

    // the NORMAL page: the source page with 0x0123456789abcdef at offset 0x40
    const normal = Buffer.alloc(4096);
    normal.writeBigUInt64LE(0x0123456789abcdefn, 0x40);
    const base = 0x1_0000_0000n;
    let ld: Buffer = Buffer.alloc(48);
    const digests = [ld.toString('hex')];
    ld = pageInfoHash(ld, 1, base, normal); // KVM_SEV_SNP_PAGE_TYPE_NORMAL
    digests.push(ld.toString('hex'));
    ld = pageInfoHash(ld, 3, base + 0x1000n, null); // ZERO
    ld = pageInfoHash(ld, 4, base + 0x2000n, null); // UNMEASURED
    ld = pageInfoHash(ld, 5, base + 0x3000n, null); // SECRETS
    ld = pageInfoHash(ld, 6, base + 0x4000n, null); // CPUID
    digests.push(ld.toString('hex'));
    // LAUNCH_FINISH: two vCPUs, one VMSA page each (all zeros in the model) at INITIAL_VMSA_GPA
    for (let i = 0; i < 2; i++) ld = pageInfoHash(ld, 2, 0xffff_ffff_f000n, Buffer.alloc(4096));
    digests.push(ld.toString('hex'));

    expect(expected).toEqual(digests);
  });
});
