/**
 * Dirty logging with bitmaps: guest writes marking pages dirty (mark_page_dirty_in_slot() on
 * the write-fault path), then KVM_GET_DIRTY_LOG taking the bits; and the cost of a 2^31-page
 * logged slot with KVM_DIRTY_LOG_INITIALLY_SET cleared whole.
 *
 *   pnpm bench -- --filter dirty
 */
import type { BenchCase } from '../../../bench/types.js';
import { median } from '../../../bench/stats.js';
import { Kvm } from '../src/kvm.js';
import { DirtyBitmap } from '../src/memslot/dirty-bitmap.js';
import { markPageDirtyInSlot } from '../src/memslot/dirty-log.js';
import {
  KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2,
  KVM_DIRTY_LOG_INITIALLY_SET,
  KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE,
  KVM_MEM_LOG_DIRTY_PAGES,
  KVM_MEM_MAX_NR_PAGES,
  PAGE_SIZE,
} from '../src/uapi.js';

const PAGES = 1 << 18; // a 1 GiB slot

function loggedVm(npages: number, initiallySet: boolean) {
  const kvm = new Kvm();
  const vm = kvm.createVm();
  if (initiallySet) {
    vm.enableCap({ cap: KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, flags: 0, args: [KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE | KVM_DIRTY_LOG_INITIALLY_SET] });
  }
  const size = npages * PAGE_SIZE;
  const hva = kvm.process.mm.mmap({ length: size, prot: { read: true, write: true }, shared: false });
  vm.setUserMemoryRegion({ slot: 0, flags: KVM_MEM_LOG_DIRTY_PAGES, guest_phys_addr: 0, memory_size: size, userspace_addr: hva });
  return vm;
}

/** pages marked dirty per second, every page of a 1 GiB slot, then one get taking them all */
function markAndGet(): number {
  const vm = loggedVm(PAGES, false);
  const slot = vm.memslots.idToMemslot(0, 0)!;
  const t0 = performance.now();
  for (let p = 0; p < PAGES; p++) markPageDirtyInSlot(slot, p);
  const got = vm.getDirtyLogBitmap({ slot: 0 });
  const s = (performance.now() - t0) / 1000;
  if (got.count() !== PAGES) throw new Error('pages lost');
  return PAGES / s;
}

/** ms for INITIALLY_SET on 2^31 - 1 pages: create the slot, clear it whole, get it */
function hugeInitiallySet(): number {
  const t0 = performance.now();
  const vm = loggedVm(KVM_MEM_MAX_NR_PAGES, true);
  vm.clearDirtyLog({ slot: 0, first_page: 0, num_pages: KVM_MEM_MAX_NR_PAGES, dirty_bitmap: new DirtyBitmap(KVM_MEM_MAX_NR_PAGES, true) });
  if (vm.getDirtyLogBitmap({ slot: 0 }).count() !== 0) throw new Error('bits left');
  return performance.now() - t0;
}

export const benches: BenchCase[] = [
  {
    name: 'dirty.mark_get_1g',
    unit: 'pages/s',
    target: { op: '>=', value: 10e6 },
    run() {
      markAndGet(); // warm-up (JIT)
      return median([1, 2, 3, 4, 5].map(() => markAndGet()));
    },
  },
  {
    name: 'dirty.initially_set_clear_2^31',
    unit: 'ms',
    target: { op: '<=', value: 200 },
    run() {
      hugeInitiallySet();
      return median([1, 2, 3].map(() => hugeInitiallySet()));
    },
  },
];
