/**
 * SEV-SNP benches.
 *  - snp.convert_fault_4k: on the full engine (Kvm + guest_memfd + the SNP backend), convert
 *    1 GiB shared→private with KVM_SET_MEMORY_ATTRIBUTES, then for every 4 KiB page the guest
 *    faults it (private access: kvm_gmem_get_pfn → sev_gmem_prepare → RMPUPDATE, NPT map; the
 *    page is not validated yet, so the access ends in #VC) and PVALIDATEs it. Pages/s over the
 *    conversion and all faults and validations.
 *  - snp.rmp_bytes_per_assigned_page: RMP bytes per assigned frame on a 1 TiB host holding
 *    1 GiB of 4K private pages and 2 GiB of 2M private pages, by the RMP's own count; an
 *    empty RMP must cost 0 bytes.
 *  - snp.rmp_bytes_dense / snp.rmp_bytes_sparse: the same question measured from the heap:
 *    RMPUPDATE (rmpMakePrivate, 4K) of 262,144 consecutive frames, or of one frame per 2 MiB
 *    (32,768 frames over 64 GiB), on a 1 TiB host; heap + ArrayBuffer bytes after full
 *    collections, after minus before the assignments, per assigned frame.
 *
 *   pnpm bench -- --filter snp.
 */
import { KVM_MEM_GUEST_MEMFD, KVM_MEMORY_ATTRIBUTE_PRIVATE, KVM_X86_SNP_VM, Kvm, PG_LEVEL_2M, PG_LEVEL_4K } from '@ccmem/core';
import { guestMemfdFactory } from '@ccmem/gmem';
import type { BenchCase } from '../../../bench/types.js';
import { getGc, heapBytes, median } from '../../../bench/stats.js';
import { SnpHost } from '../src/instructions.js';
import { snpBackendFactory, type SnpBackend } from '../src/snp-backend.js';

const GIB_PAGES = 262144;
const HOST_1TIB = 2 ** 28;
const GPA = 2 ** 32;

function convertFaultPages(npages: number): number {
  const kvm = new Kvm({ guestMemfd: guestMemfdFactory, backends: { [KVM_X86_SNP_VM]: snpBackendFactory } });
  const vm = kvm.createVm({ type: KVM_X86_SNP_VM });
  vm.memoryEncryptOp({ cmd: 'sev_init2' }); // before any vCPU, as a VMM does
  const size = npages * 4096;
  const fd = vm.createGuestMemfd({ size, flags: 0 });
  const hva = kvm.process.mm.mmap({ length: size, prot: { read: true, write: true }, shared: false });
  vm.setUserMemoryRegion2({ slot: 0, flags: KVM_MEM_GUEST_MEMFD, guest_phys_addr: GPA, memory_size: size, userspace_addr: hva, guest_memfd: fd, guest_memfd_offset: 0 });
  const vcpu = vm.createVcpu(0);
  vm.memoryEncryptOp({ cmd: 'snp_launch_start' });
  vm.memoryEncryptOp({ cmd: 'snp_launch_finish' });
  // one request object, refilled per page (no allocation in the loop)
  const pvalidate = { op: 'pvalidate' as const, gpa: 0, level: PG_LEVEL_4K as typeof PG_LEVEL_4K, validate: true };
  const t0 = performance.now();
  vm.setMemoryAttributes({ address: GPA, size, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE });
  for (let i = 0; i < npages; i++) {
    const gpa = GPA + i * 4096;
    const r = vcpu.guestWrite(gpa, 8, 1n, true);
    if (r.exception?.vector !== '#VC') throw new Error(`page ${i}: expected #VC before PVALIDATE, got ${JSON.stringify(r.exit ?? r.errno ?? r.value)}`);
    pvalidate.gpa = gpa;
    if (vcpu.guestOp(pvalidate).ret !== 0) throw new Error(`page ${i}: PVALIDATE failed`);
  }
  const secs = (performance.now() - t0) / 1000;
  const stats = (vm.backend as SnpBackend).inspect!({ what: 'stats' }) as { rmp: { assignedPages: number } };
  // every page, plus one VMSA page per vCPU assigned by SNP_LAUNCH_FINISH
  if (stats.rmp.assignedPages !== npages + vm.nrVcpus) throw new Error('not every page is assigned');
  return npages / secs;
}

/** JIT warm-up on 64 MiB, then the median of three 1 GiB conversions */
function convertFault4k(): number {
  convertFaultPages(16384);
  return median([convertFaultPages(GIB_PAGES), convertFaultPages(GIB_PAGES), convertFaultPages(GIB_PAGES)]);
}

/** heap bytes per frame made private 4K, `stride` frames apart (median of three fresh hosts) */
function rmpHeapBytesPerPage(pages: number, stride: number): number {
  const gc = getGc();
  const once = (): number => {
    const host = new SnpHost({ maxPfn: HOST_1TIB });
    const asid = host.allocAsid();
    const before = heapBytes(gc);
    for (let i = 0; i < pages; i++) host.rmpMakePrivate(2 ** 20 + i * stride, i * 4096, PG_LEVEL_4K, asid, false);
    const after = heapBytes(gc);
    if (host.rmp.bytes === 0) throw new Error('nothing assigned');
    return (after - before) / pages;
  };
  once(); // warm-up
  return median([once(), once(), once()]);
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
  { name: 'snp.rmp_bytes_dense', unit: 'bytes', target: { op: '<=', value: 16 }, run: () => rmpHeapBytesPerPage(GIB_PAGES, 1) },
  { name: 'snp.rmp_bytes_sparse', unit: 'bytes', target: { op: '>=', value: 0 }, run: () => rmpHeapBytesPerPage(32768, 512) },
];
