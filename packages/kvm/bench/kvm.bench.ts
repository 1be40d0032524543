/**
 * Real-kernel measurements for the performance rows of the memslot and fault paths:
 *  - kvm.memslot_create_delete_32764: ms to create 32764 slots of 2 MiB over one big anonymous
 *    mapping and delete them again, with real KVM_SET_USER_MEMORY_REGION ioctls;
 *  - kvm.guest_touch_4k: pages/s for the tiny guest storing one byte to every 4 KiB page of
 *    a fresh 256 MiB slot (each first touch is a real EPT/shadow fault in the kernel).
 * Both need /dev/kvm; without it they throw, naming the device.
 *
 * Side by side with the model (@ccmem/core), same workload, one run:
 *  - kvm_vs_model.memslot_create_delete_32764: real ioctl time / model time (target >= 10);
 *  - kvm_vs_model.guest_touch_4k: model pages/s / kernel pages/s for one store to every 4 KiB
 *    page of 256 MiB (target >= 1).
 */
import { performance } from 'node:perf_hooks';
import type { BenchCase } from '../../../bench/types.js';
import { median } from '../../../bench/stats.js';
import { KVM_CAP_NR_MEMSLOTS, Kvm } from '@ccmem/core';
import { RealKvm } from '../src/real-kvm.js';
import { installGuest } from '../src/guest.js';
import { mmap, munmap } from '../src/host-memory.js';

const MiB = 0x10_0000;
const SLOT_SIZE = 2 * MiB;

/** ms for `nslots` KVM_SET_USER_MEMORY_REGION creations of 2 MiB slots over [hva, ...), then as many deletions */
function timeCreateDelete(vm: { setUserMemoryRegion(region: { slot: number; flags: number; guest_phys_addr: number; memory_size: number; userspace_addr: number }): void }, nslots: number, hva: number): number {
  const region = { slot: 0, flags: 0, guest_phys_addr: 0, memory_size: SLOT_SIZE, userspace_addr: 0 };
  const t0 = performance.now();
  for (const memorySize of [SLOT_SIZE, 0]) {
    region.memory_size = memorySize;
    for (let i = 0; i < nslots; i++) {
      region.slot = i;
      region.guest_phys_addr = i * SLOT_SIZE;
      region.userspace_addr = hva + i * SLOT_SIZE;
      vm.setUserMemoryRegion(region);
    }
  }
  return performance.now() - t0;
}

/** ms for KVM_CAP_NR_MEMSLOTS (32764 on x86) slot creations plus as many deletions */
export function measureRealMemslotCreateDelete(): number {
  const kvm = RealKvm.open();
  const vm = kvm.createVm(0);
  const nslots = vm.checkExtension(KVM_CAP_NR_MEMSLOTS);
  const length = nslots * SLOT_SIZE;
  const hva = mmap({ length, noreserve: true });
  try {
    return timeCreateDelete(vm, nslots, hva);
  } finally {
    vm.close();
    kvm.close();
    munmap(hva, length);
  }
}

/** pages/s for the real guest's first store to every 4 KiB page of `bytes` of fresh memory */
export function measureRealGuestTouch(bytes = 256 * MiB): number {
  const kvm = RealKvm.open();
  const vm = kvm.createVm(0);
  const hva = mmap({ length: bytes });
  try {
    const gpa = 0x1_0000_0000;
    vm.setUserMemoryRegion({ slot: 0, flags: 0, guest_phys_addr: gpa, memory_size: bytes, userspace_addr: hva });
    const vcpu = vm.createVcpu(0);
    const guest = installGuest(vm, vcpu);
    const t0 = performance.now();
    const r = guest.touchRange(gpa, bytes, 1n);
    const seconds = (performance.now() - t0) / 1000;
    if (r.value === undefined) throw new Error(`guest touch stopped early: ${JSON.stringify(r, (_k, v) => (typeof v === 'bigint' ? v.toString() : v))}`);
    return bytes / 4096 / seconds;
  } finally {
    vm.close();
    kvm.close();
    munmap(hva, bytes);
  }
}

/** ms for the model doing the same: `nslots` KVM_SET_USER_MEMORY_REGION creations then deletions */
export function measureModelMemslotCreateDelete(nslots = 32764): number {
  const kvm = new Kvm({ profile: 'linux-6.18' });
  const vm = kvm.createVm();
  const length = nslots * SLOT_SIZE;
  const hva = kvm.process.mm.mmap({ length, prot: { read: true, write: true }, shared: false });
  return timeCreateDelete(vm, nslots, hva);
}

/** pages/s for the model's vCPU storing one byte to every 4 KiB page of `bytes` of fresh memory */
export function measureModelGuestTouch(bytes = 256 * MiB): number {
  const kvm = new Kvm({ profile: 'linux-6.18' });
  const vm = kvm.createVm();
  const hva = kvm.process.mm.mmap({ length: bytes, prot: { read: true, write: true }, shared: false });
  const gpa = 0x1_0000_0000;
  vm.setUserMemoryRegion({ slot: 0, flags: 0, guest_phys_addr: gpa, memory_size: bytes, userspace_addr: hva });
  const vcpu = vm.createVcpu(0);
  const t0 = performance.now();
  for (let p = gpa; p < gpa + bytes; p += 4096) {
    const r = vcpu.guestWrite(p, 1, 1n);
    if (r.exit || r.errno) throw new Error(`model guest touch stopped at 0x${p.toString(16)}: ${r.exit?.reason ?? r.errno}`);
  }
  const seconds = (performance.now() - t0) / 1000;
  return bytes / 4096 / seconds;
}

/** the median of `n` runs (docs/benchmarks.md: every row reports the median of its rounds) */
function medianOf(n: number, run: () => number): number {
  return median(Array.from({ length: n }, run));
}

export const benches: BenchCase[] = [
  {
    name: 'kvm.memslot_create_delete_32764',
    unit: 'ms',
    target: { op: '>=', value: 0 },
    run: () => medianOf(3, () => measureRealMemslotCreateDelete()),
  },
  {
    name: 'kvm.guest_touch_4k',
    unit: 'pages/s',
    target: { op: '>=', value: 0 },
    run: () => medianOf(3, () => measureRealGuestTouch(256 * MiB)),
  },
  {
    name: 'kvm_vs_model.memslot_create_delete_32764',
    unit: 'x',
    target: { op: '>=', value: 10 },
    run: () => {
      const real = medianOf(3, () => measureRealMemslotCreateDelete());
      const model = medianOf(3, () => measureModelMemslotCreateDelete());
      return real / model;
    },
  },
  {
    name: 'kvm_vs_model.guest_touch_4k',
    unit: 'x',
    target: { op: '>=', value: 1 },
    run: () => {
      const real = medianOf(3, () => measureRealGuestTouch(256 * MiB));
      const model = medianOf(3, () => measureModelGuestTouch(256 * MiB));
      return model / real;
    },
  },
];
