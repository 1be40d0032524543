/**
 * SEV-SNP benches on the hardware-model layers (RMP, instructions, direct map).
 *  - snp.convert_fault_4k: convert 1 GiB shared→private and have the guest validate every
 *    4K page: per page rmp_make_private() (with the upstream direct-map split) and PVALIDATE.
 *  - snp.rmp_bytes_per_assigned_page: RMP bytes per assigned frame on a 1 TiB host holding
 *    1 GiB of 4K private pages and 2 GiB of 2M private pages; an empty RMP must cost 0 bytes.
 */
import { PG_LEVEL_2M, PG_LEVEL_4K } from '@ccmem/core';
import type { BenchCase } from '../../../bench/types.js';
import { SnpHost, pvalidateInsn, PVALIDATE_SUCCESS } from '../src/instructions.js';

const GIB_PAGES = 262144;
const HOST_1TIB = 2 ** 28;

function convertPages(npages: number): number {
  const host = new SnpHost({ maxPfn: HOST_1TIB });
  const asid = host.allocAsid();
  const base = 2 ** 20; // 4 GiB into host memory
  const op = { pfn: 0, gpa: 0, asid, level: PG_LEVEL_4K };
  const t0 = performance.now();
  for (let i = 0; i < npages; i++) {
    if (host.rmpMakePrivate(base + i, i * 4096, PG_LEVEL_4K, asid, false, 'split') !== 0) throw new Error('rmp_make_private failed');
    op.pfn = base + i;
    op.gpa = i * 4096;
    const r = pvalidateInsn(host.rmp, op, true);
    if (!('ret' in r) || r.ret !== PVALIDATE_SUCCESS) throw new Error('PVALIDATE failed');
  }
  const secs = (performance.now() - t0) / 1000;
  if (host.rmp.assignedPages !== npages) throw new Error('not every page is assigned');
  return npages / secs;
}

/** JIT warm-up on 64 MiB, then the best of two 1 GiB conversions (the host may be busy) */
function convertFault4k(): number {
  convertPages(16384);
  return Math.max(convertPages(GIB_PAGES), convertPages(GIB_PAGES));
}

function rmpBytesPerAssignedPage(): number {
  const host = new SnpHost({ maxPfn: HOST_1TIB });
  if (host.rmp.bytes !== 0) return Number.POSITIVE_INFINITY; // unassigned memory must cost nothing
  const asid = host.allocAsid();
  for (let i = 0; i < GIB_PAGES; i++) host.rmpMakePrivate(2 ** 20 + i, i * 4096, PG_LEVEL_4K, asid, false);
  for (let r = 0; r < 1024; r++) host.rmpMakePrivate(2 ** 24 + r * 512, 2 ** 30 + r * 512 * 4096, PG_LEVEL_2M, asid, false);
  return host.rmp.bytesPerAssignedPage;
}

export const benches: BenchCase[] = [
  { name: 'snp.convert_fault_4k', unit: 'pages/s', target: { op: '>=', value: 1_000_000 }, run: convertFault4k },
  { name: 'snp.rmp_bytes_per_assigned_page', unit: 'bytes', target: { op: '<=', value: 16 }, run: rmpBytesPerAssignedPage },
];
