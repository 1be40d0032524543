/**
 * guest_memfd benchmarks on the full engine: a KVM_X86_SW_PROTECTED_VM whose private memory
 * lives in guest_memfd. `pnpm bench -- --filter gmem.`
 */
import { FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, KVM_MEM_GUEST_MEMFD, KVM_MEMORY_ATTRIBUTE_PRIVATE, KVM_X86_SW_PROTECTED_VM, Kvm, PAGE_SIZE } from '@ccmem/core';
import type { BenchCase } from '../../../bench/types.js';
import { median } from '../../../bench/stats.js';
import { guestMemfdFactory, type GuestMemfd } from '../src/index.js';

const PAGES_2M = 512;
const CHUNKS = 16;
const GPA = 2 ** 32;

/**
 * gmem.punch_refault_2m: 32 MiB of private memory is populated by the guest; each round punches
 * a 2 MiB hole (fallocate PUNCH_HOLE|KEEP_SIZE: invalidate begin, zap of the private SPTEs,
 * pages freed, invalidate end) and the guest re-faults all 512 pages at 4 KiB (each gets a fresh
 * zeroed frame). Reports pages re-faulted per second, punch time included.
 */
function punchRefault2m(): number {
  const kvm = new Kvm({ guestMemfd: guestMemfdFactory });
  const vm = kvm.createVm({ type: KVM_X86_SW_PROTECTED_VM });
  const size = CHUNKS * PAGES_2M * PAGE_SIZE;
  const fd = vm.createGuestMemfd({ size, flags: 0 });
  const file = kvm.process.getFile(fd) as GuestMemfd;
  const hva = kvm.process.mm.mmap({ length: size, prot: { read: true, write: true }, shared: false });
  vm.setUserMemoryRegion2({ slot: 0, flags: KVM_MEM_GUEST_MEMFD, guest_phys_addr: GPA, memory_size: size, userspace_addr: hva, guest_memfd: fd, guest_memfd_offset: 0 });
  vm.setMemoryAttributes({ address: GPA, size, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE });
  const vcpu = vm.createVcpu(0);
  for (let i = 0; i < CHUNKS * PAGES_2M; i++) vcpu.guestWrite(GPA + i * PAGE_SIZE, 8, 0x5an);

  const round = (k: number) => {
    const pgoff = (k % CHUNKS) * PAGES_2M;
    file.fallocate(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, pgoff * PAGE_SIZE, PAGES_2M * PAGE_SIZE);
    const gpa0 = GPA + pgoff * PAGE_SIZE;
    for (let i = 0; i < PAGES_2M; i++) {
      const r = vcpu.guestRead(gpa0 + i * PAGE_SIZE, 8);
      if (r.value !== 0n) throw new Error(`page ${i} after the punch: expected a zeroed page, got ${String(r.value ?? r.exit?.reason ?? r.errno)}`);
    }
  };
  for (let k = 0; k < 100; k++) round(k); // warm-up
  // five timed rounds of at least 100 ms each; the median rate is reported
  const rates: number[] = [];
  let k = 0;
  for (let r = 0; r < 5; r++) {
    let done = 0;
    const t0 = performance.now();
    let elapsed = 0;
    while (elapsed < 100) {
      for (let j = 0; j < 20; j++) round(k++);
      done += 20;
      elapsed = performance.now() - t0;
    }
    rates.push((done * PAGES_2M) / (elapsed / 1000));
  }
  if (file.stats.allocatedPages !== CHUNKS * PAGES_2M) throw new Error('page accounting drifted');
  return median(rates);
}

export const benches: BenchCase[] = [
  {
    name: 'gmem.punch_refault_2m',
    unit: 'pages/s',
    target: { op: '>=', value: 2e6 },
    run: punchRefault2m,
  },
];
