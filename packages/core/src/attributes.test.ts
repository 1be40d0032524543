import { describe, expect, it } from 'vitest';
import { Kvm } from './kvm.js';
import { errnoOf } from './testing/errno-of.js';
import { assertVmInvariants } from './invariants.js';
import { recordTrace } from './trace.js';
import { runOp } from './steps.js';
import { KVM_MEMORY_ATTRIBUTE_PRIVATE as PRIVATE, KVM_X86_SW_PROTECTED_VM, PAGE_SIZE } from './uapi.js';
import type { AttributeChange } from './backend.js';
import { probeVm } from './testing/probe-vm.js';

const MiB = 1 << 20;

function swVm() {
  const kvm = new Kvm();
  const vm = kvm.createVm({ type: KVM_X86_SW_PROTECTED_VM });
  const hva = kvm.process.mm.mmap({ length: 4 * MiB, prot: { read: true, write: true }, shared: false });
  vm.setUserMemoryRegion2({ slot: 0, flags: 0, guest_phys_addr: 0, memory_size: 4 * MiB, userspace_addr: hva });
  return { kvm, vm, vcpu: vm.createVcpu(0) };
}

describe('KVM_SET_MEMORY_ATTRIBUTES checks, in order', () => {
  it('flags, unsupported attributes, size 0 / wrap, alignment', () => {
    const { vm } = swVm();
    expect(errnoOf(() => vm.setMemoryAttributes({ address: 1, size: 0, attributes: 1, flags: 1 }))).toBe('EINVAL');
    expect(errnoOf(() => vm.setMemoryAttributes({ address: 0, size: 4096, attributes: 1 }))).toBe('EINVAL');
    expect(errnoOf(() => vm.setMemoryAttributes({ address: 0, size: 0, attributes: PRIVATE }))).toBe('EINVAL');
    expect(errnoOf(() => vm.setMemoryAttributes({ address: 2 ** 64 - 4096, size: 8192, attributes: PRIVATE }))).toBe('EINVAL');
    expect(errnoOf(() => vm.setMemoryAttributes({ address: 0x800, size: 4096, attributes: PRIVATE }))).toBe('EINVAL');
    expect(errnoOf(() => vm.setMemoryAttributes({ address: 0, size: 0x800, attributes: PRIVATE }))).toBe('EINVAL');
    expect(vm.attributes.runCount).toBe(1);
    expect(vm.mmuInvalidate.seq).toBe(0);
  });

  it('a default VM supports no attribute at all', () => {
    const vm = new Kvm().createVm();
    expect(errnoOf(() => vm.setMemoryAttributes({ address: 0, size: 4096, attributes: PRIVATE }))).toBe('EINVAL');
    vm.setMemoryAttributes({ address: 0, size: 4096, attributes: 0 }); // nothing to change: 0
  });
});

describe('KVM_SET_MEMORY_ATTRIBUTES effects', () => {
  it('converts with one invalidation, zaps the old mappings, and is a no-op when nothing changes', () => {
    const { vm, vcpu } = swVm();
    vcpu.guestRead(0x1000, 4);
    expect(vm.mmu.stats.pages_4k).toBe(1);
    vm.setMemoryAttributes({ address: 0, size: 2 * MiB, attributes: PRIVATE });
    expect(vm.mmuInvalidate.seq).toBe(1);
    expect(vm.mmuInvalidate.inProgress).toBe(0);
    expect(vm.mmu.stats.pages_4k).toBe(0);
    expect(vm.memIsPrivate(0x1ff)).toBe(true);
    expect(vm.memIsPrivate(0x200)).toBe(false);
    vm.setMemoryAttributes({ address: 0x1000, size: 0x1000, attributes: PRIVATE });
    expect(vm.mmuInvalidate.seq).toBe(1); // already private: no invalidation
    assertVmInvariants(vm);
  });

  it('attributes outside every memslot are stored without any invalidation', () => {
    const { vm } = swVm();
    vm.setMemoryAttributes({ address: 0x100000000, size: 4096, attributes: PRIVATE });
    expect(vm.memIsPrivate(0x100000)).toBe(true);
    expect(vm.mmuInvalidate.seq).toBe(0);
  });

  it('converting all of a 4 TiB range costs O(ranges)', () => {
    const { vm } = swVm();
    vm.setMemoryAttributes({ address: 0, size: 4 * 2 ** 40, attributes: PRIVATE });
    vm.setMemoryAttributes({ address: 0x200000, size: 4096, attributes: 0 });
    expect(vm.attributes.runCount).toBeLessThanOrEqual(4);
    expect(vm.memIsPrivate(2 ** 30 - 1)).toBe(true);
    expect(vm.memIsPrivate(2 ** 30)).toBe(false);
    expect(vm.memIsPrivate(0x200)).toBe(false);
  });

  it('phases run in the order seed 002 describes, with the three vendor hooks', () => {
    const calls: string[] = [];
    const seen: AttributeChange[] = [];
    const { kvm, vm: vmRef } = probeVm(
      {
        preSetMemoryAttributes: (c) => {
          calls.push(`pre:in_progress=${vmRef.mmuInvalidate.inProgress}:private=${vmRef.memIsPrivate(c.start)}`);
          seen.push(c);
          return 0;
        },
        setMemoryAttributesLocked: (c) => {
          calls.push(`locked:in_progress=${vmRef.mmuInvalidate.inProgress}:private=${vmRef.memIsPrivate(c.start)}`);
        },
        postSetMemoryAttributes: () => {
          calls.push(`post:in_progress=${vmRef.mmuInvalidate.inProgress}:seq=${vmRef.mmuInvalidate.seq}`);
          return 0;
        },
      },
      { nrMemslotAsIds: 2 },
    );
    const trace = recordTrace(kvm.tracer);
    const op = vmRef.beginSetMemoryAttributes({ address: 0x10000, size: 0x4000, attributes: PRIVATE });
    const phases: string[] = [];
    while (true) {
      phases.push(op.phase);
      if (op.step()) break;
    }
    expect(phases).toEqual(['prepare', 'invalidate', 'store', 'post', 'finish']);
    expect(calls).toEqual(['pre:in_progress=0:private=false', 'locked:in_progress=1:private=true', 'post:in_progress=0:seq=1']);
    expect(seen[0]).toEqual({ start: 0x10, end: 0x14, attributes: PRIVATE });
    expect(trace.events.map((e) => e.name)).toEqual(
      expect.arrayContaining(['kvm_vm_set_mem_attributes', 'kvm_mmu_invalidate_begin', 'kvm_mem_attr_store', 'kvm_mmu_invalidate_end']),
    );
    runOp(vmRef.beginSetMemoryAttributes({ address: 0x10000, size: 0x4000, attributes: 0 }));
  });

  it('a fault racing the conversion between store and end retries instead of mapping stale memory', () => {
    const { vm, vcpu } = swVm();
    const op = vm.beginSetMemoryAttributes({ address: 0x1000, size: 4096, attributes: PRIVATE });
    op.step(); // prepare
    op.step(); // invalidate (begin + zap)
    // a shared fault that snapshotted the sequence before the store
    const f = vcpu.fault;
    f.reset(0x1000, 1);
    const r1 = vcpu.pageFault(0x1000, 1, false, false, false, false);
    expect(r1).toBe(1); // RET_PF_RETRY: invalidation in progress over gfn 1
    op.step(); // store
    op.step(); // post (end)
    op.step(); // finish
    expect(vm.mmu.stats.pages_4k).toBe(0);
    expect(vm.memIsPrivate(1)).toBe(true);
    assertVmInvariants(vm);
  });

  it('the head/tail huge pages straddling the range are added to the invalidation', () => {
    const { vm } = swVm();
    const op = vm.beginSetMemoryAttributes({ address: 0x201000, size: 4096, attributes: PRIVATE });
    op.step();
    op.step();
    // the 2M page around it (not mixed yet, fully inside the slot); the 1G page is not
    // inside the 4 MiB slot, so it is not added
    expect([vm.mmuInvalidate.rangeStart, vm.mmuInvalidate.rangeEnd]).toEqual([0x200, 0x400]);
    while (!op.step());
    const op2 = vm.beginSetMemoryAttributes({ address: 0x202000, size: 4096, attributes: PRIVATE });
    op2.step();
    op2.step();
    // the 2M and 1G pages around it are mixed now: only the range itself is invalidated
    expect([vm.mmuInvalidate.rangeStart, vm.mmuInvalidate.rangeEnd]).toEqual([0x202, 0x203]);
    while (!op2.step());
    expect(PAGE_SIZE).toBe(4096);
  });

  it('the huge pages added are those the kernel rule picks, edge by edge, on a fragmented map', () => {
    // a 2 GiB slot at 1 GiB + 4 MiB: 1G pages stick out of it at both ends, 2M pages do not
    const kvm = new Kvm();
    const vm = kvm.createVm({ type: KVM_X86_SW_PROTECTED_VM });
    const base = 0x40000 + 0x400;
    const npages = 0x80000;
    const hva = kvm.process.mm.mmap({ length: npages * PAGE_SIZE, prot: { read: true, write: true }, shared: false });
    vm.setUserMemoryRegion2({ slot: 0, flags: 0, guest_phys_addr: base * PAGE_SIZE, memory_size: npages * PAGE_SIZE, userspace_addr: hva });
    let seed = 7;
    const rnd = (n: number) => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return (seed >>> 8) % n;
    };
    let checked = 0;
    let mixed = 0;
    for (let k = 0; k < 400; k++) {
      // ranges from one page to a few 2M pages, some reaching past the slot's ends
      const size = 1 + (rnd(4) === 0 ? rnd(3 * 512) : rnd(4));
      const start = base - 600 + rnd(npages + 1200);
      const attributes = rnd(2) === 0 ? PRIVATE : 0;
      const op = vm.beginSetMemoryAttributes({ address: start * PAGE_SIZE, size: size * PAGE_SIZE, attributes });
      if (op.phase === 'done') continue;
      op.step();
      // kvm_arch_pre_set_memory_attributes(): range_add of each head/tail huge page inside
      // the slot that is not mixed, with the map as it is before the store
      const s = Math.max(start, base);
      const e = Math.min(start + size, base + npages);
      let lo = s;
      let hi = e;
      for (const n of [512, 512 * 512]) {
        for (const g of [s, e - 1]) {
          const hs = g - (g % n);
          if (hs < base || hs + n > base + npages) continue;
          if (vm.attributes.hasBoundaryIn(hs, hs + n)) mixed++;
          else {
            lo = Math.min(lo, hs);
            hi = Math.max(hi, hs + n);
          }
        }
      }
      op.step();
      expect([vm.mmuInvalidate.rangeStart, vm.mmuInvalidate.rangeEnd]).toEqual([lo, hi]);
      while (!op.step());
      checked++;
    }
    // about half the calls are no-ops (shared over shared); the rest cover both outcomes
    expect(checked).toBeGreaterThan(150);
    expect(mixed).toBeGreaterThan(20);
    expect(vm.attributes.runCount).toBeGreaterThan(100);
  });
});

describe('KVM_SET_MEMORY_ATTRIBUTES through the ioctl path', () => {
  it('a rejected call changes nothing and the next call runs; each call hands the hooks its own change', () => {
    const seen: AttributeChange[] = [];
    const { vm } = probeVm({
      postSetMemoryAttributes: (c) => {
        seen.push(c);
        return 0;
      },
    });
    vm.setMemoryAttributes({ address: 0x1000, size: 0x1000, attributes: PRIVATE });
    expect(errnoOf(() => vm.setMemoryAttributes({ address: 0x2001, size: 0x1000, attributes: PRIVATE }))).toBe('EINVAL');
    expect(vm.mmuInvalidate.inProgress).toBe(0);
    expect(vm.memIsPrivate(2)).toBe(false);
    vm.setMemoryAttributes({ address: 0x3000, size: 0x2000, attributes: PRIVATE });
    // a no-op call (the range has the attributes already) reaches no hook
    vm.setMemoryAttributes({ address: 0x3000, size: 0x1000, attributes: PRIVATE });
    vm.setMemoryAttributes({ address: 0x1000, size: 0x1000, attributes: 0 });
    expect(seen).toEqual([
      { start: 1, end: 2, attributes: PRIVATE },
      { start: 3, end: 5, attributes: PRIVATE },
      { start: 1, end: 2, attributes: 0 },
    ]);
    expect(new Set(seen).size).toBe(3);
    expect([1, 2, 3, 4, 5].map((g) => vm.memIsPrivate(g))).toEqual([false, false, true, true, false]);
    expect(vm.mmuInvalidate.seq).toBe(3);
  });

  it('a call from inside a vendor hook of a running call completes both', () => {
    let nested = false;
    const { vm: vmRef } = probeVm({
      postSetMemoryAttributes: (c) => {
        if (!nested && c.start === 8) {
          nested = true;
          vmRef.setMemoryAttributes({ address: 0x20000, size: 0x1000, attributes: PRIVATE });
        }
        return 0;
      },
    });
    vmRef.setMemoryAttributes({ address: 0x8000, size: 0x1000, attributes: PRIVATE });
    expect(nested).toBe(true);
    expect([vmRef.memIsPrivate(8), vmRef.memIsPrivate(0x20), vmRef.memIsPrivate(9)]).toEqual([true, true, false]);
    expect(vmRef.mmuInvalidate.seq).toBe(2);
    vmRef.setMemoryAttributes({ address: 0x8000, size: 0x1000, attributes: 0 });
    expect(vmRef.memIsPrivate(8)).toBe(false);
  });
});

describe('KVM_SET_MEMORY_ATTRIBUTES u64 ranges', () => {
  it('are exact: ranges above 2^53 are stored, a range ending at 2^64 wraps, an unaligned bigint is EINVAL', () => {
    const vm = new Kvm().createVm({ type: KVM_X86_SW_PROTECTED_VM });
    vm.setMemoryAttributes({ address: 2n ** 54n, size: 0x1000n, attributes: PRIVATE });
    expect(vm.memIsPrivate(2 ** 42)).toBe(true);
    expect(errnoOf(() => vm.setMemoryAttributes({ address: 2n ** 54n + 1n, size: 0x1000n, attributes: PRIVATE }))).toBe('EINVAL');
    expect(errnoOf(() => vm.setMemoryAttributes({ address: 0xfffffffffffff000n, size: 0x1000n, attributes: PRIVATE }))).toBe('EINVAL');
    vm.setMemoryAttributes({ address: 0xffffffffffffe000n, size: 0x1000n, attributes: PRIVATE });
    expect(vm.memIsPrivate(2 ** 52 - 2)).toBe(true);
    expect(vm.memIsPrivate(2 ** 52 - 1)).toBe(false);
    assertVmInvariants(vm);
  });

  it('numbers and bigints give the same result and errno for every check', () => {
    const cases: [number, number, number, number][] = [
      // address, size, attributes, flags
      [0x1000, 0x1000, PRIVATE, 0],
      [0x1000, 0x1000, 0, 0],
      [0x1000, 0x1000, PRIVATE, 1],
      [0x1000, 0x1000, 2 ** 32 + PRIVATE, 0],
      [0x1000, 0x1000, 2 ** 31 + PRIVATE, 0],
      [0x1000, 0x1000, 1, 0],
      [0x1000, 0, PRIVATE, 0],
      [0x1001, 0x1000, PRIVATE, 0],
      [0x1000, 0x1800, PRIVATE, 0],
      [2 ** 53 - 0x2000, 0x1000, PRIVATE, 0],
      [2 ** 53 - 0x1000, 0x1000, PRIVATE, 0],
      [2 ** 52, 2 ** 52, PRIVATE, 0],
      [2 ** 53 - 0x1000, 2 ** 53 - 0x1000, PRIVATE, 0],
    ];
    for (const [address, size, attributes, flags] of cases) {
      const asNumbers = new Kvm().createVm({ type: KVM_X86_SW_PROTECTED_VM });
      const asBigints = new Kvm().createVm({ type: KVM_X86_SW_PROTECTED_VM });
      const e1 = errnoOf(() => asNumbers.setMemoryAttributes({ address, size, attributes, flags }));
      const e2 = errnoOf(() =>
        asBigints.setMemoryAttributes({ address: BigInt(address), size: BigInt(size), attributes: BigInt(attributes), flags: BigInt(flags) }),
      );
      expect([address, size, attributes, flags, e1]).toEqual([address, size, attributes, flags, e2]);
      const gfns = [address / 4096, (address + size) / 4096 - 1].map(Math.floor);
      expect(gfns.map((g) => asNumbers.getMemoryAttributes(g))).toEqual(gfns.map((g) => asBigints.getMemoryAttributes(g)));
    }
    // the valid calls changed what they should
    const vm = new Kvm().createVm({ type: KVM_X86_SW_PROTECTED_VM });
    vm.setMemoryAttributes({ address: 2 ** 53 - 0x2000, size: 0x1000, attributes: PRIVATE });
    expect(vm.memIsPrivate(2 ** 41 - 2)).toBe(true);
    expect(errnoOf(() => vm.setMemoryAttributes({ address: 0x1000, size: 0x1000, attributes: 2 ** 32 + PRIVATE }))).toBe('EINVAL');
    expect(errnoOf(() => vm.setMemoryAttributes({ address: -4096, size: 0x1000, attributes: PRIVATE }))).toBe('EINVAL');
  });
});
