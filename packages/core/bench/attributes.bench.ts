/**
 * KVM_SET_MEMORY_ATTRIBUTES at scale, through the public engine (Kvm → Vm): every conversion
 * runs all phases (prepare, invalidate + zap per slot, store, post, finish).
 *
 *  - attributes.convert_4tib: four 1 TiB memslots (plain anonymous memory, so a slot costs
 *    only what is mapped), a few pages mapped through the guest, and a 4 TiB range converted
 *    private and back: the attribute map stays a handful of runs.
 *  - attributes.fragmented_random / attributes.fragmented_exponent: one call per 4 KiB page
 *    in random order, so the map holds up to one run per page (see sweep()).
 *
 *   pnpm bench -- --filter attributes.
 */
import type { BenchCase } from '../../../bench/types.js';
import { logLogSlope, median, shuffled } from '../../../bench/stats.js';
import { Kvm } from '../src/kvm.js';
import { KVM_MEMORY_ATTRIBUTE_PRIVATE, KVM_X86_SW_PROTECTED_VM, PAGE_SIZE } from '../src/uapi.js';

const TiB = 2 ** 40;
const SLOTS = 4;

function convert4tib(): number {
  const kvm = new Kvm();
  const vm = kvm.createVm({ type: KVM_X86_SW_PROTECTED_VM });
  const mm = kvm.process.mm;
  for (let i = 0; i < SLOTS; i++) {
    const hva = mm.mmap({ length: TiB, prot: { read: true, write: true }, shared: false });
    vm.setUserMemoryRegion2({ slot: i, flags: 0, guest_phys_addr: i * TiB, memory_size: TiB, userspace_addr: hva });
  }
  const vcpu = vm.createVcpu(0);
  const whole = { address: 0, size: SLOTS * TiB };
  /** map a few shared pages in each slot, so every conversion has something to zap */
  const touch = () => {
    for (let i = 0; i < SLOTS; i++) {
      const r = vcpu.guestWrite(i * TiB + 0x1000, 8, 1n);
      if (r.exit || r.errno) throw new Error(`touch exited: ${r.reason}`);
    }
  };
  const round = (n: number) => {
    for (let k = 0; k < n; k++) {
      vm.setMemoryAttributes({ ...whole, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE });
      vm.setMemoryAttributes({ ...whole, attributes: 0 });
    }
  };
  touch();
  round(2000); // warm-up (JIT: the tiers reach optimized code within a few thousand calls)
  if (vm.mmu.stats.pages_4k !== 0) throw new Error('conversion did not zap the shared mappings');
  const rates: number[] = [];
  for (let r = 0; r < 9; r++) {
    touch();
    const t0 = performance.now();
    round(2500); // 5000 conversions: 2500 to private, 2500 back
    const ms = performance.now() - t0;
    rates.push(5000 / (ms / 1000));
  }
  if (process.env.CCMEM_BENCH_CPU) console.error(`  rates: ${rates.map((r) => Math.round(r)).join(" ")}`);
  if (vm.attributes.runCount !== 1 || vm.memIsPrivate(5)) throw new Error('attributes did not end shared');
  // memory stays proportional to what is mapped: no per-page state for 4 TiB
  if (vm.attributes.byteLength() > 4096 || vm.mmu.metadataBytes() > 16 << 20) throw new Error('per-page state for a sparse guest');
  for (const v of vm.vcpus) vm.process.close(v.fd); // each vCPU fd holds the VM
  vm.release();
  return median(rates);
}

const GPA = 2 ** 32;

/**
 * One fragmented round of `n` conversions on a fresh VM with one slot of n pages (nothing
 * mapped): the n/2 even pages are converted to private one call each, in random order, which
 * leaves the map alternating private/shared page by page (n runs); then the same pages go
 * back to shared one call each, in another random order. Every call changes exactly one
 * page. Returns the wall-clock and process CPU seconds of the n calls.
 */
function fragmentedRound(n: number, seed: number): { secs: number; cpuSecs: number } {
  const kvm = new Kvm();
  const vm = kvm.createVm({ type: KVM_X86_SW_PROTECTED_VM });
  const bytes = n * PAGE_SIZE;
  const hva = kvm.process.mm.mmap({ length: bytes, prot: { read: true, write: true }, shared: false });
  vm.setUserMemoryRegion2({ slot: 0, flags: 0, guest_phys_addr: GPA, memory_size: bytes, userspace_addr: hva });
  const half = n / 2;
  const toPrivate = shuffled(half, seed);
  const toShared = shuffled(half, seed * 7 + 1);
  const attrs = { address: 0, size: PAGE_SIZE, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE };
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  for (let i = 0; i < half; i++) {
    attrs.address = GPA + 2 * toPrivate[i]! * PAGE_SIZE;
    vm.setMemoryAttributes(attrs);
  }
  const peakRuns = vm.attributes.runCount;
  attrs.attributes = 0;
  for (let i = 0; i < half; i++) {
    attrs.address = GPA + 2 * toShared[i]! * PAGE_SIZE;
    vm.setMemoryAttributes(attrs);
  }
  const secs = (performance.now() - t0) / 1000;
  const c = process.cpuUsage(c0);
  const cpuSecs = (c.user + c.system) / 1e6;
  if (process.env.CCMEM_BENCH_CPU) console.error(`  ${n} conversions: ${(secs * 1000).toFixed(0)} ms wall, ${(cpuSecs * 1000).toFixed(0)} ms cpu`);
  // [0, GPA) shared, then n pages alternating private / shared, then shared to the end
  if (peakRuns !== n + 1) throw new Error(`expected ${n + 1} runs after the private half, found ${peakRuns}`);
  if (vm.attributes.runCount !== 1) throw new Error('the map did not coalesce back to one run');
  for (const v of vm.vcpus) vm.process.close(v.fd); // each vCPU fd holds the VM
  vm.release();
  return { secs, cpuSecs };
}

/** sizes of the sweep: 64 Ki to 1 Mi conversions */
const SWEEP = [2 ** 16, 2 ** 17, 2 ** 18, 2 ** 19, 2 ** 20];
const ROUNDS = 3;
let sweepResult: { sizes: number[]; seconds: number[]; cpuSeconds: number[] } | null = null;

/**
 * Median wall and CPU seconds per size over ROUNDS rounds each (after one warm-up round),
 * cached for both rows. The rate is wall-clock; the exponent uses CPU time, which does not
 * count the time a busy machine spends running other jobs.
 */
function sweep(): { sizes: number[]; seconds: number[]; cpuSeconds: number[] } {
  if (sweepResult) return sweepResult;
  fragmentedRound(2 ** 18, 1); // warm-up (JIT: long enough for the optimizing tier)
  const rounds = SWEEP.map((n) => Array.from({ length: ROUNDS }, (_, r) => fragmentedRound(n, 1000 + r)));
  sweepResult = {
    sizes: SWEEP,
    seconds: rounds.map((rs) => median(rs.map((x) => x.secs))),
    cpuSeconds: rounds.map((rs) => median(rs.map((x) => x.cpuSecs))),
  };
  return sweepResult;
}

export const benches: BenchCase[] = [
  {
    name: 'attributes.convert_4tib',
    unit: 'conversions/s',
    target: { op: '>=', value: 1e5 },
    run: convert4tib,
  },
  {
    name: 'attributes.fragmented_random',
    unit: 'conversions/s',
    target: { op: '>=', value: 1e6 },
    run() {
      const { sizes, seconds } = sweep();
      return sizes.at(-1)! / seconds.at(-1)!;
    },
  },
  {
    name: 'attributes.fragmented_exponent',
    unit: 'log-log slope',
    target: { op: '<=', value: 1.15 },
    run() {
      const { sizes, cpuSeconds } = sweep();
      return logLogSlope(sizes, cpuSeconds);
    },
  },
];
