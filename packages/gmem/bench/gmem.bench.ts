/**
 * guest_memfd benchmarks (file level: the provider against a stand-in VM that only counts
 * MMU invalidations). `pnpm bench -- --filter gmem.`
 */
import { FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, KVM_X86_SNP_VM, PAGE_SIZE } from '@ccmem/core';
import type { GmemPfn } from '@ccmem/core';
import type { BenchCase } from '../../../bench/types.js';
import { guestMemfdFactory } from '../src/guest-memfd.js';
import { FakeVm, bindSlot } from '../src/testing/fake-vm.js';

const PAGES_2M = 512;

/**
 * Punch a 2 MiB hole in populated private memory, then re-fault all 512 pages at 4 KiB
 * through kvm_gmem_get_pfn (each gets a fresh zeroed frame and a gmem_prepare call).
 * Reports pages re-faulted per second, punch time included.
 */
function punchRefault2m(): number {
  const vm = new FakeVm({ vmType: KVM_X86_SNP_VM, hasPrivateMem: true, withBackend: true, record: false });
  const file = guestMemfdFactory.create(vm, { size: 16 * PAGES_2M * PAGE_SIZE, flags: 0 });
  const slot = bindSlot({ id: 1, baseGfn: 0x100000, npages: 16 * PAGES_2M, file });
  const out: GmemPfn = { pfn: 0, maxOrder: 0 };
  for (let i = 0; i < 16 * PAGES_2M; i++) if (file.getPfn(slot, slot.baseGfn + i, out) !== 0) throw new Error('populate failed');

  const round = (k: number) => {
    const pgoff = (k % 16) * PAGES_2M;
    file.fallocate(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, pgoff * PAGE_SIZE, PAGES_2M * PAGE_SIZE);
    const gfn0 = slot.baseGfn + pgoff;
    for (let i = 0; i < PAGES_2M; i++) if (file.getPfn(slot, gfn0 + i, out) !== 0) throw new Error('refault failed');
  };
  for (let k = 0; k < 200; k++) round(k); // warm-up
  let rounds = 0;
  const t0 = performance.now();
  let elapsed = 0;
  while (elapsed < 500) {
    for (let j = 0; j < 50; j++) round(rounds++);
    elapsed = performance.now() - t0;
  }
  if (file.stats.allocatedPages !== 16 * PAGES_2M) throw new Error('page accounting drifted');
  return (rounds * PAGES_2M) / (elapsed / 1000);
}

export const benches: BenchCase[] = [
  {
    name: 'gmem.punch_refault_2m',
    unit: 'pages/s',
    target: { op: '>=', value: 2e6 },
    run: punchRefault2m,
  },
];
