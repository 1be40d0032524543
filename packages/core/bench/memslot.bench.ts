/**
 * Memslot engine benchmarks: slot churn at the x86 limit (32764 user slots, the
 * memslot_perf_test scale), random gfn -> slot lookups, creates interleaved with lookups at
 * growing slot counts, host munmaps found through the hva tree, and memory per live slot.
 *
 *   pnpm bench -- --filter memslot.
 */
import type { BenchCase } from '../../../bench/types.js';
import { getGc, heapBytes as heapBytesAfterGc, logLogSlope, median, shuffled } from '../../../bench/stats.js';
import { Kvm } from '../src/kvm.js';
import { KVM_USER_MEM_SLOTS, PAGE_SIZE } from '../src/uapi.js';
import { MemslotEngine } from '../src/memslot/set-memory-region.js';
import type { KvmMemslots } from '../src/memslot/memslots.js';
import { memslotHooks as hooks } from '../src/testing/memslot-hooks.js';

const SLOT_BYTES = 2 << 20; // 2 MiB
const SLOT_PAGES = SLOT_BYTES / 4096;
const HVA_BASE = 0x100000000000;


function fill(engine: MemslotEngine, n = KVM_USER_MEM_SLOTS): void {
  for (let id = 0; id < n; id++) {
    engine.setUserMemoryRegion(
      { slot: id, flags: 0, guest_phys_addr: id * SLOT_BYTES, memory_size: SLOT_BYTES, userspace_addr: HVA_BASE + id * SLOT_BYTES },
      { v2: true },
    );
  }
}

function createDeleteOnce(): number {
  const engine = new MemslotEngine(hooks());
  const t0 = performance.now();
  fill(engine);
  for (let id = 0; id < KVM_USER_MEM_SLOTS; id++) {
    engine.setUserMemoryRegion({ slot: id, flags: 0, guest_phys_addr: 0, memory_size: 0, userspace_addr: 0 }, { v2: true });
  }
  const ms = performance.now() - t0;
  if (engine.slots.memslots(0).size !== 0) throw new Error('slots left after delete');
  return ms;
}

const CHURN_SIZES = [1024, 2048, 4096, 8192, 16384, KVM_USER_MEM_SLOTS];

/**
 * One sequence up to 32764 slots, each step creating one more 2 MiB slot
 * (KVM_SET_USER_MEMORY_REGION2) and then looking up a random gfn among all slots created so
 * far (so the last-used-slot cache rarely answers). Returns the process CPU seconds spent
 * to reach each of CHURN_SIZES slots: the exponent is about how the work grows, and CPU time
 * does not count the time a busy machine spends running other jobs. Collections the growing
 * heap needs on the way are part of the cost.
 */
function churnSweep(): number[] {
  const engine = new MemslotEngine(hooks());
  const space = engine.slots.memslots(0);
  let seed = 7;
  let check = 0;
  const out: number[] = [];
  let next = 0;
  const c0 = process.cpuUsage();
  for (let id = 0; id < KVM_USER_MEM_SLOTS; id++) {
    engine.setUserMemoryRegion(
      { slot: id, flags: 0, guest_phys_addr: id * SLOT_BYTES, memory_size: SLOT_BYTES, userspace_addr: HVA_BASE + id * SLOT_BYTES },
      { v2: true },
    );
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    check += space.gfnToMemslot(seed % ((id + 1) * SLOT_PAGES))!.id;
    if (id + 1 === CHURN_SIZES[next]) {
      const c = process.cpuUsage(c0);
      out.push((c.user + c.system) / 1e6);
      next++;
    }
  }
  if (check < 0 || space.size !== KVM_USER_MEM_SLOTS) throw new Error('churn lost slots');
  return out;
}

/**
 * A VM with 32764 slots of 2 MiB carved out of one 64 GiB anonymous mapping. The guest reads
 * one random page in each of 24,000 random slots (mapping it), then the VMM munmaps those
 * pages one munmap(2) of 4 KiB each: the mmu-notifier finds the one slot behind the
 * hva through the hva tree and zaps the page's SPTE. The first three batches of 2,000 are
 * untimed (the JIT, and the collection of the set-up's garbage, which takes the first few
 * thousand munmaps); the median over the nine timed batches of 2,000 is reported in µs per
 * munmap (short batches, so that a pause of another kind lands in few of them).
 */
function unmapAtFullSlots(): number {
  const kvm = new Kvm();
  const vm = kvm.createVm({});
  const mm = kvm.process.mm;
  const n = KVM_USER_MEM_SLOTS;
  const base = mm.mmap({ length: n * SLOT_BYTES, prot: { read: true, write: true }, shared: false });
  for (let id = 0; id < n; id++) {
    vm.setUserMemoryRegion2({ slot: id, flags: 0, guest_phys_addr: id * SLOT_BYTES, memory_size: SLOT_BYTES, userspace_addr: base + id * SLOT_BYTES });
  }
  const vcpu = vm.createVcpu(0);
  const BATCHES = 12;
  const WARM_UP = 3; // batches untimed: the JIT and the collection of the set-up's garbage
  const batch = 2000;
  const slots = shuffled(n, 77);
  const pages = new Float64Array(batch * BATCHES);
  let seed = 99;
  for (let k = 0; k < pages.length; k++) {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    pages[k] = slots[k]! * SLOT_PAGES + (seed % SLOT_PAGES);
    const r = vcpu.guestRead(pages[k]! * PAGE_SIZE, 8);
    if (r.exit || r.errno) throw new Error(`guest read exited: ${r.reason}`);
  }
  const mapped = vm.mmu.stats.pages_4k;
  if (mapped !== pages.length) throw new Error(`expected ${pages.length} 4K SPTEs, got ${mapped}`);
  const perMunmap: number[] = [];
  for (let b = 0; b < BATCHES; b++) {
    const t0 = performance.now();
    for (let k = b * batch; k < (b + 1) * batch; k++) mm.munmap(base + pages[k]! * PAGE_SIZE, PAGE_SIZE);
    const us = ((performance.now() - t0) * 1000) / batch;
    if (b >= WARM_UP) perMunmap.push(us);
  }
  if (vm.mmu.stats.pages_4k !== 0) throw new Error(`munmap left ${vm.mmu.stats.pages_4k} SPTEs mapped`);
  for (const v of vm.vcpus) vm.process.close(v.fd); // each vCPU fd holds the VM
  vm.release();
  return median(perMunmap);
}

/**
 * 32,764 slots of random sizes (1 to 1,024 pages) with random gaps (0 to 1,024 pages) between
 * them, created in random slot order: a layout where the flat index's interpolation guess
 * rarely lands, so most lookups gallop and bisect. 1 Mi random gfns inside the slots; median
 * of five rounds after a warm-up one.
 */
function lookupIrregular(): number {
  const engine = new MemslotEngine(hooks());
  const n = KVM_USER_MEM_SLOTS;
  const base = new Float64Array(n);
  const size = new Float64Array(n);
  let seed = 4242;
  const rnd = (m: number): number => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return (seed >>> 8) % m;
  };
  let gfn = 0;
  for (let i = 0; i < n; i++) {
    gfn += rnd(1025);
    base[i] = gfn;
    size[i] = 1 + rnd(1024);
    gfn += size[i]!;
  }
  const order = shuffled(n, 77);
  for (let k = 0; k < n; k++) {
    const i = order[k]!;
    engine.setUserMemoryRegion(
      { slot: i, flags: 0, guest_phys_addr: base[i]! * PAGE_SIZE, memory_size: size[i]! * PAGE_SIZE, userspace_addr: HVA_BASE + base[i]! * PAGE_SIZE },
      { v2: true },
    );
  }
  const space = engine.slots.memslots(0);
  const q = 1 << 20;
  const gfns = new Float64Array(q);
  const want = new Int32Array(q);
  for (let j = 0; j < q; j++) {
    const i = rnd(n);
    want[j] = i;
    gfns[j] = base[i]! + rnd(size[i]!);
  }
  for (let j = 0; j < q; j++) {
    // warm-up, and every answer checked once
    if (space.gfnToMemslot(gfns[j]!)?.id !== want[j]) throw new Error(`gfn ${gfns[j]} found in the wrong slot`);
  }
  return lookupRate(space, gfns);
}

/** lookups/s of gfn_to_memslot() over `gfns` (every one inside a slot): median of five passes */
function lookupRate(space: KvmMemslots, gfns: Float64Array): number {
  let check = 0;
  const rates: number[] = [];
  for (let r = 0; r < 5; r++) {
    const t0 = performance.now();
    for (let j = 0; j < gfns.length; j++) check += space.gfnToMemslot(gfns[j]!)!.id;
    rates.push(gfns.length / ((performance.now() - t0) / 1000));
  }
  if (check < 0) throw new Error('unreachable');
  return median(rates);
}

/** one measurement in its own frame, so nothing of it outlives the call */
function bytesPerSlotOnce(gc: () => void): number {
  const before = heapBytesAfterGc(gc);
  const engine = new MemslotEngine(hooks());
  fill(engine);
  engine.slots.memslots(0).gfnToMemslot(0);
  const after = heapBytesAfterGc(gc);
  if (engine.slots.memslots(0).size !== KVM_USER_MEM_SLOTS) throw new Error('fill failed');
  return (after - before) / KVM_USER_MEM_SLOTS;
}

export const benches: BenchCase[] = [
  {
    name: 'memslot.create_delete_32764',
    unit: 'ms',
    target: { op: '<=', value: 50 },
    run() {
      createDeleteOnce(); // warm-up (JIT)
      return median([1, 2, 3, 4, 5].map(() => createDeleteOnce()));
    },
  },
  {
    name: 'memslot.lookup',
    unit: 'lookups/s',
    target: { op: '>=', value: 10e6 },
    run() {
      const engine = new MemslotEngine(hooks());
      fill(engine);
      const space = engine.slots.memslots(0);
      const n = 1 << 20;
      const gfns = new Float64Array(n);
      let seed = 12345;
      for (let i = 0; i < n; i++) {
        seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
        gfns[i] = seed % (KVM_USER_MEM_SLOTS * SLOT_PAGES);
      }
      lookupRate(space, gfns); // warm-up
      return lookupRate(space, gfns);
    },
  },
  {
    name: 'memslot.lookup_irregular',
    unit: 'lookups/s',
    target: { op: '>=', value: 0 }, // reported: the layout memslot.lookup does not cover
    run: lookupIrregular,
  },
  {
    name: 'memslot.bytes_per_slot',
    unit: 'bytes',
    target: { op: '<=', value: 512 },
    run() {
      const gc = getGc();
      return median([1, 2, 3].map(() => bytesPerSlotOnce(gc)));
    },
  },
  {
    name: 'memslot.churn_lookup_exponent',
    unit: 'log-log slope',
    target: { op: '<=', value: 1.2 },
    run() {
      churnSweep(); // warm-up (JIT)
      const sweeps = [1, 2, 3].map(() => churnSweep());
      const seconds = CHURN_SIZES.map((_, i) => median(sweeps.map((sw) => sw[i]!)));
      if (process.env.CCMEM_BENCH_CPU) CHURN_SIZES.forEach((n, i) => console.error(`  ${n} slots: ${(seconds[i]! * 1000).toFixed(1)} ms`));
      return logLogSlope(CHURN_SIZES, seconds);
    },
  },
  {
    name: 'memslot.unmap_4k_at_32764_slots',
    unit: 'µs/munmap',
    target: { op: '<=', value: 5 },
    run: unmapAtFullSlots,
  },
];
