/**
 * Fault-path and TDP MMU benchmarks, measured through the public engine (Kvm → Vm → Vcpu):
 * guest accesses that take EPT violations and run kvm_mmu_page_fault(), KVM_PRE_FAULT_MEMORY,
 * and eager page splitting when dirty logging is turned on.
 *
 * Each bench builds a fresh VM per run (a populate is only a populate once), runs one
 * untimed round first so the JIT has compiled the fault path, and reports the median of its
 * timed rounds. The vm.bytes_* rows measure the whole VM's memory from the heap.
 *
 *   pnpm bench -- --filter fault.
 *   pnpm bench -- --filter mmu.
 *   pnpm bench -- --filter vm.bytes
 */
import type { BenchCase } from '../../../bench/types.js';
import { getGc, heapBytes, median, medianRate, shuffled, timed, type Timed } from '../../../bench/stats.js';
import { Kvm } from '../src/kvm.js';
import { Process } from '../src/host/process.js';
import type { Vm } from '../src/vm.js';
import type { Vcpu } from '../src/vcpu.js';
import { KVM_MEM_LOG_DIRTY_PAGES, KVM_X86_SW_PROTECTED_VM, PAGE_SIZE } from '../src/uapi.js';

const GiB = 2 ** 30;
const MiB2 = 2 * 2 ** 20;
const GPA_BASE = 4 * GiB; // above the 32-bit hole, 1G aligned

interface Guest {
  kvm: Kvm;
  vm: Vm;
  vcpu: Vcpu;
  hva: number;
}

/**
 * One VMM process for all rounds: like a long-running host, frames (and the model's content
 * storage behind them) freed by one round's munmap are recycled by the next; the warm-up
 * round pays for fresh memory.
 */
let sharedProcess: Process | null = null;

/** a SW_PROTECTED VM with one slot of `bytes` at GPA_BASE backed by anonymous (or hugetlb 2M) memory */
function makeGuest(bytes: number, hugepage: boolean): Guest {
  sharedProcess ??= new Process();
  const kvm = new Kvm({ process: sharedProcess });
  const vm = kvm.createVm({ type: KVM_X86_SW_PROTECTED_VM });
  const hva = kvm.process.mm.mmap({
    length: bytes,
    prot: { read: true, write: true },
    shared: false,
    ...(hugepage ? { hugepage: '2M' as const } : {}),
  });
  vm.setUserMemoryRegion2({ slot: 0, flags: 0, guest_phys_addr: GPA_BASE, memory_size: bytes, userspace_addr: hva });
  const vcpu = vm.createVcpu(0);
  return { kvm, vm, vcpu, hva };
}

/** tear down: munmap the guest memory (frames go back to the host), close the VM */
function destroy(g: Guest, bytes: number): void {
  g.kvm.process.mm.munmap(g.hva, bytes);
  for (const v of g.vm.vcpus) g.vm.process.close(v.fd); // each vCPU fd holds the VM
  g.vm.release();
}

let shuffledPages: Float64Array | null = null;

/**
 * guest reads (or writes) of every 4 KiB page of a 1 GiB slot: 262,144 EPT violations, in
 * ascending gfn order or in one fixed random order (the same permutation every round)
 */
function populate4k(write: boolean, order: 'ascending' | 'shuffled' = 'ascending'): Timed {
  const g = makeGuest(GiB, false);
  const pages = GiB / PAGE_SIZE;
  const { vcpu, vm } = g;
  const perm = order === 'shuffled' ? (shuffledPages ??= shuffled(pages, 4242)) : null;
  const t = timed(() => {
    for (let i = 0; i < pages; i++) {
      const gpa = GPA_BASE + (perm === null ? i : perm[i]!) * PAGE_SIZE;
      const r = write ? vcpu.guestWrite(gpa, 8, BigInt(i + 1)) : vcpu.guestRead(gpa, 8);
      if (r.exit || r.errno) throw new Error(`access at 0x${gpa.toString(16)} exited: ${r.reason}`);
    }
  });
  if (vm.mmu.stats.pages_4k !== pages) throw new Error(`expected ${pages} 4K SPTEs, got ${vm.mmu.stats.pages_4k}`);
  // the data really went to the VMM's memory
  if (write && perm === null && g.kvm.process.mm.read(g.hva + 12345 * PAGE_SIZE, 8) !== 12346n) throw new Error('write not visible at the hva');
  if (write && perm !== null && g.kvm.process.mm.read(g.hva + perm[12345]! * PAGE_SIZE, 8) !== 12346n) throw new Error('write not visible at the hva');
  destroy(g, GiB);
  return { work: pages, ...t };
}

/** one guest touch per 2 MiB page of 64 GiB of hugetlb memory: 32,768 faults, each mapping 2M */
function populate2m(): Timed {
  const bytes = 64 * GiB;
  const g = makeGuest(bytes, true);
  const { vcpu, vm } = g;
  const n = bytes / MiB2;
  const t = timed(() => {
    for (let i = 0; i < n; i++) {
      const r = vcpu.guestWrite(GPA_BASE + i * MiB2, 8, 1n);
      if (r.exit || r.errno) throw new Error(`touch ${i} exited: ${r.reason}`);
    }
  });
  if (vm.mmu.stats.pages_2m !== n || vm.mmu.stats.pages_4k !== 0) throw new Error(`expected ${n} 2M SPTEs, got ${JSON.stringify(vm.mmu.stats)}`);
  destroy(g, bytes);
  return { work: bytes / GiB, ...t };
}

/** pre-fault 64 GiB of hugetlb memory at 2M, then time KVM_SET_USER_MEMORY_REGION2(LOG_DIRTY_PAGES) */
function eagerSplit(): Timed {
  const bytes = 64 * GiB;
  const g = makeGuest(bytes, true);
  const { vm, vcpu, hva } = g;
  const range = { gpa: GPA_BASE, size: bytes };
  vcpu.preFaultMemory(range);
  const huge = bytes / MiB2;
  if (vm.mmu.stats.pages_2m !== huge) throw new Error(`pre-fault mapped ${vm.mmu.stats.pages_2m} 2M pages, not ${huge}`);
  const t = timed(() =>
    vm.setUserMemoryRegion2({ slot: 0, flags: KVM_MEM_LOG_DIRTY_PAGES, guest_phys_addr: GPA_BASE, memory_size: bytes, userspace_addr: hva }),
  );
  const small = bytes / PAGE_SIZE;
  if (vm.mmu.stats.pages_4k !== small || vm.mmu.stats.pages_2m !== 0) throw new Error(`split left ${JSON.stringify(vm.mmu.stats)}`);
  destroy(g, bytes);
  return { work: small, ...t };
}

/** KVM_PRE_FAULT_MEMORY of 4 GiB at 4K, then MMU metadata bytes per 4K SPTE */
function bytesPer4kMapping(): number {
  const bytes = 4 * GiB;
  const g = makeGuest(bytes, false);
  const { vm, vcpu } = g;
  const range = { gpa: GPA_BASE, size: bytes };
  vcpu.preFaultMemory(range);
  const pages = bytes / PAGE_SIZE;
  if (range.size !== 0 || vm.mmu.stats.pages_4k !== pages) throw new Error(`pre-fault left ${range.size} bytes, ${vm.mmu.stats.pages_4k} SPTEs`);
  const perMapping = vm.mmu.metadataBytes() / pages;
  destroy(g, bytes);
  return perMapping;
}

/**
 * Bytes of the whole VM per page the guest touched, from the heap: V8 heap in use plus
 * ArrayBuffer memory (typed arrays), after full collections, measured before the Kvm is
 * created and after the guest read `pages` pages of a `bytes` slot, `stride` bytes apart.
 * Each read is an EPT violation that maps the host's shared zero page: the host PTE, the
 * SPTE and every table and index above them are counted, guest data is not (none was
 * written). Median of three runs, each on a fresh process.
 */
function bytesPerTouched(bytes: number, stride: number): number {
  const gc = getGc();
  const once = (): number => {
    const before = heapBytes(gc);
    const kvm = new Kvm();
    const vm = kvm.createVm({ type: KVM_X86_SW_PROTECTED_VM });
    const hva = kvm.process.mm.mmap({ length: bytes, prot: { read: true, write: true }, shared: false });
    vm.setUserMemoryRegion2({ slot: 0, flags: 0, guest_phys_addr: GPA_BASE, memory_size: bytes, userspace_addr: hva });
    const vcpu = vm.createVcpu(0);
    let pages = 0;
    for (let off = 0; off < bytes; off += stride) {
      const r = vcpu.guestRead(GPA_BASE + off, 8);
      if (r.exit || r.errno) throw new Error(`read at +0x${off.toString(16)} exited: ${r.reason}`);
      pages++;
    }
    if (vm.mmu.stats.pages_4k !== pages) throw new Error(`expected ${pages} 4K SPTEs, got ${vm.mmu.stats.pages_4k}`);
    const after = heapBytes(gc);
    for (const v of vm.vcpus) vm.process.close(v.fd); // each vCPU fd holds the VM
    vm.release();
    return (after - before) / pages;
  };
  once(); // warm-up: module-level caches fill here, not in a measured run
  return median([once(), once(), once()]);
}

export const benches: BenchCase[] = [
  {
    name: 'fault.read_populate_4k',
    unit: 'faults/s',
    target: { op: '>=', value: 3e6 },
    run: () => medianRate(7, () => populate4k(false)),
  },
  {
    name: 'fault.read_shuffled_4k',
    unit: 'faults/s',
    target: { op: '>=', value: 2e6 },
    run: () => medianRate(7, () => populate4k(false, 'shuffled')),
  },
  {
    name: 'fault.write_populate_4k',
    unit: 'faults/s',
    target: { op: '>=', value: 1e6 },
    run: () => medianRate(7, () => populate4k(true)),
  },
  {
    name: 'fault.write_shuffled_4k',
    unit: 'faults/s',
    target: { op: '>=', value: 0.7e6 },
    run: () => medianRate(7, () => populate4k(true, 'shuffled')),
  },
  {
    name: 'fault.populate_2m',
    unit: 'GiB/s',
    target: { op: '>=', value: 500 },
    run: () => medianRate(5, populate2m),
  },
  {
    name: 'mmu.bytes_per_4k_mapping',
    unit: 'bytes',
    target: { op: '<=', value: 12 },
    run: bytesPer4kMapping,
  },
  {
    name: 'mmu.eager_split',
    unit: 'SPTEs/s',
    target: { op: '>=', value: 16e6 },
    run: () => medianRate(3, eagerSplit),
  },
  {
    name: 'vm.bytes_per_touched_4k_dense',
    unit: 'bytes',
    target: { op: '<=', value: 24 },
    run: () => bytesPerTouched(GiB, PAGE_SIZE),
  },
  {
    name: 'vm.bytes_per_touched_4k_sparse',
    unit: 'bytes',
    target: { op: '>=', value: 0 },
    run: () => bytesPerTouched(64 * GiB, MiB2),
  },
];
