/**
 * TDX benches on the full engine: Kvm + guest_memfd + the TDX backend, the TDP MMU's mirror
 * root calling the backend's hooks, the TDX-module model underneath.
 *
 *  - tdx.aug_accept_4k: after KVM_TDX_FINALIZE_VM, with 1 GiB of private memory, the guest
 *    runs TDG.MEM.PAGE.ACCEPT on every 4 KiB page. Each page is not mapped yet: the EPT
 *    violation goes through KVM's fault path (kvm_gmem_get_pfn, mirror map, SEPT.ADD for new
 *    tables, PAGE.AUG → PENDING), then ACCEPT makes it PRESENT.
 *  - tdx.remove_4k: the same 1 GiB converted back to shared with KVM_SET_MEMORY_ATTRIBUTES:
 *    the mirror zap does BLOCK → TRACK → kick → REMOVE → WBINVD per page.
 */
import { KVM_MEM_GUEST_MEMFD, KVM_MEMORY_ATTRIBUTE_PRIVATE, KVM_X86_TDX_VM, Kvm, type Vm, type Vcpu } from '@ccmem/core';
import type { TdxEdge } from '../src/edge.js';
import { guestMemfdFactory } from '@ccmem/gmem';
import type { BenchCase } from '../../../bench/types.js';
import { median } from '../../../bench/stats.js';
import { tdxBackendFactory } from '../src/tdx-backend.js';

const GIB = 2 ** 30;
const GPA = 2 ** 32;

interface Td {
  vm: Vm<TdxEdge>;
  vcpu: Vcpu<TdxEdge>;
  npages: number;
}

function buildTd(bytes: number): Td {
  const kvm = new Kvm({ guestMemfd: guestMemfdFactory, backends: { [KVM_X86_TDX_VM]: tdxBackendFactory } });
  const vm = kvm.createVm({ type: KVM_X86_TDX_VM });
  vm.memoryEncryptOp({ cmd: 'tdx_init_vm' });
  const vcpu = vm.createVcpu(0);
  vcpu.memoryEncryptOp({ cmd: 'tdx_init_vcpu' });
  const fd = vm.createGuestMemfd({ size: bytes, flags: 0 });
  const hva = kvm.process.mm.mmap({ length: bytes, prot: { read: true, write: true }, shared: false });
  vm.setUserMemoryRegion2({ slot: 0, flags: KVM_MEM_GUEST_MEMFD, guest_phys_addr: GPA, memory_size: bytes, userspace_addr: hva, guest_memfd: fd, guest_memfd_offset: 0 });
  vm.setMemoryAttributes({ address: GPA, size: bytes, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE });
  vm.memoryEncryptOp({ cmd: 'tdx_finalize_vm' });
  return { vm, vcpu, npages: bytes / 4096 };
}

/** TDG.MEM.PAGE.ACCEPT on every page; returns seconds */
function acceptAll(td: Td): number {
  const req = { op: 'accept' as const, gpa: 0 };
  const t0 = performance.now();
  for (let i = 0; i < td.npages; i++) {
    req.gpa = GPA + i * 4096;
    const r = td.vcpu.guestOp(req);
    if (r.ret !== 'TDX_SUCCESS' && r.ret !== 0) throw new Error(`ACCEPT of page ${i} returned ${String(r.ret)} ${r.exit?.reason ?? ''}`);
  }
  const secs = (performance.now() - t0) / 1000;
  if (td.vm.mmu.stats.pages_4k !== td.npages) throw new Error(`expected ${td.npages} private 4K mappings, found ${td.vm.mmu.stats.pages_4k}`);
  return secs;
}

/** convert everything back to shared; returns seconds */
function removeAll(td: Td): number {
  const t0 = performance.now();
  td.vm.setMemoryAttributes({ address: GPA, size: td.npages * 4096, attributes: 0 });
  const secs = (performance.now() - t0) / 1000;
  if (td.vm.mmu.stats.pages_4k !== 0) throw new Error('private mappings survived the conversion');
  return secs;
}

/** JIT warm-up on 64 MiB, then the median of three 1 GiB runs */
function medianOf(measure: (td: Td) => number): number {
  const warm = buildTd(64 * 2 ** 20);
  measure(warm);
  const rates: number[] = [];
  for (let i = 0; i < 3; i++) {
    const td = buildTd(GIB);
    rates.push(td.npages / measure(td));
  }
  return median(rates);
}

export const benches: BenchCase[] = [
  {
    name: 'tdx.aug_accept_4k',
    unit: 'pages/s',
    target: { op: '>=', value: 1_000_000 },
    run: () => medianOf(acceptAll),
  },
  {
    name: 'tdx.remove_4k',
    unit: 'pages/s',
    target: { op: '>=', value: 1_000_000 },
    run: () =>
      medianOf((td) => {
        acceptAll(td);
        return removeAll(td);
      }),
  },
];
