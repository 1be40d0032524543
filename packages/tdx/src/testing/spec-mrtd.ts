/** Test support for the TDX package's measurement tests (not published). */
import { createHash } from 'node:crypto';

/**
 * MRTD written out from the TDX module spec, independently of the model's code: SHA-384 over
 * 128-byte blocks, per page in order: "MEM.PAGE.ADD" + gpa (TDH.MEM.PAGE.ADD), then, when
 * measured, "MR.EXTEND" + gpa and the 256 bytes of each chunk (TDH.MR.EXTEND); the name in
 * ASCII at byte 0, the gpa little-endian at byte 16, zeros elsewhere.
 */
export function specMrtd(pages: readonly { gpa: number; data: Uint8Array }[], measured: boolean): string {
  const block = (name: string, gpa: number) => {
    const b = Buffer.alloc(128);
    b.write(name, 0, 'ascii');
    b.writeBigUInt64LE(BigInt(gpa), 16);
    return b;
  };
  const h = createHash('sha384');
  for (const p of pages) {
    h.update(block('MEM.PAGE.ADD', p.gpa));
    if (!measured) continue;
    for (let off = 0; off < 4096; off += 256) {
      h.update(block('MR.EXTEND', p.gpa + off));
      h.update(p.data.subarray(off, off + 256));
    }
  }
  return h.digest('hex');
}
