/**
 * KVM_SET_MEMORY_ATTRIBUTES rules pinned one by one (virt/kvm/kvm_main.c:
 * kvm_vm_ioctl_set_mem_attributes(), kvm_vm_set_mem_attributes(), kvm_handle_gfn_range(),
 * kvm_pre_set_memory_attributes(); arch/x86/kvm/mmu/mmu.c:
 * kvm_arch_pre_set_memory_attributes()), on a VM stand-in that records what the op asks of
 * it: each case fails if the model drops or bends one rule, its errno, its place in the check
 * order, or the state a call leaves.
 */
import { describe, expect, it } from 'vitest';
import { ERRNO, KvmError } from './errno.js';
import { KVM_FILTER_PRIVATE, KVM_FILTER_SHARED, type AttributeChange, type VendorBackend } from './backend.js';
import { SetMemoryAttributesOp, kvmSupportedMemAttributes, type KvmMemoryAttributes } from './attributes.js';
import type { AttributesVm } from './attributes-vm.js';
import { MmuInvalidate } from './invalidate.js';
import type { KvmMemorySlot } from './memslot/memslot.js';
import { RangeMap } from './range-map.js';
import { runOp } from './steps.js';
import { errnoOf } from './testing/errno-of.js';
import { Tracer, recordTrace } from './trace.js';
import { KVM_MEMORY_ATTRIBUTE_PRIVATE as PRIVATE } from './uapi.js';

interface Recorder {
  vm: AttributesVm;
  /** every kvm_mmu_invalidate_range_add() as [start, end) */
  adds: [number, number][];
  /** every zap as [start, end, filter] */
  zaps: [number, number, number][];
  flushes: number;
}

/**
 * An AttributesVm with the real attribute map and invalidation counters, memslots at the
 * given [baseGfn, npages), `backend` as the vendor hooks, and zaps answering `zapFlush`.
 */
function fakeVm(opts: { slots?: [number, number][]; hasPrivateMem?: boolean; backend?: Partial<VendorBackend>; zapFlush?: boolean } = {}): Recorder {
  const mmuInvalidate = new MmuInvalidate();
  const rec: Recorder = { vm: null!, adds: [], zaps: [], flushes: 0 };
  const rangeAdd = mmuInvalidate.rangeAdd.bind(mmuInvalidate);
  mmuInvalidate.rangeAdd = (s, e) => {
    rec.adds.push([s, e]);
    rangeAdd(s, e);
  };
  const slots = (opts.slots ?? [[0, 4096]]).map(([baseGfn, npages], id) => ({ id, baseGfn, npages }) as KvmMemorySlot);
  rec.vm = {
    hasPrivateMem: opts.hasPrivateMem ?? true,
    attributes: new RangeMap(),
    mmuInvalidate,
    backend: (opts.backend ?? null) as VendorBackend | null,
    tracer: new Tracer(),
    forEachMemslotInGfnRange(start, end, cb) {
      for (const s of slots) if (s.baseGfn < end && s.baseGfn + s.npages > start) cb(s);
    },
    zapGfnRange(start, end, filter) {
      rec.zaps.push([start, end, filter]);
      return opts.zapFlush ?? false;
    },
    flushRemoteTlbs() {
      rec.flushes++;
    },
  };
  return rec;
}

const G = 4096;

/** the check a rejected KvmMemoryAttributes fails, after checking that nothing changed */
function rejected(rec: Recorder, attrs: KvmMemoryAttributes): string {
  const runs = rec.vm.attributes.runCount;
  let err: unknown = null;
  try {
    new SetMemoryAttributesOp(rec.vm, attrs);
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(KvmError);
  expect((err as KvmError).code).toBe('EINVAL');
  expect(rec.vm.attributes.runCount).toBe(runs);
  expect(rec.vm.mmuInvalidate.seq).toBe(0);
  return (err as KvmError).check;
}

/** `attrs` with every field as a bigint */
function big(attrs: KvmMemoryAttributes): KvmMemoryAttributes {
  return {
    address: BigInt(attrs.address),
    size: BigInt(attrs.size),
    attributes: BigInt(attrs.attributes),
    flags: BigInt(attrs.flags ?? 0),
  };
}

describe('kvm_vm_ioctl_set_mem_attributes(): each check, in order, as numbers and as bigints', () => {
  const cases: [string, KvmMemoryAttributes, RegExp][] = [
    ['flags set, the rest valid', { address: G, size: G, attributes: PRIVATE, flags: 1 }, /flags must be 0/],
    ['flags before attributes', { address: G, size: G, attributes: 1, flags: 2 }, /flags must be 0/],
    ['an unsupported attribute', { address: G, size: G, attributes: 1 }, /unsupported attributes/],
    ['an attribute above bit 31', { address: G, size: G, attributes: 2 ** 32 + PRIVATE }, /unsupported attributes/],
    ['attributes before the size', { address: G, size: 0, attributes: 1 }, /unsupported attributes/],
    ['size 0', { address: G, size: 0, attributes: PRIVATE }, /size is 0 or address \+ size wraps/],
    ['size 0 before the alignment', { address: 1, size: 0, attributes: PRIVATE }, /size is 0/],
    ['address + size wraps', { address: 2 ** 64 - G, size: 2 * G, attributes: PRIVATE }, /wraps/],
    ['address + size reaching 2^64 wraps', { address: 2 ** 64 - G, size: G, attributes: PRIVATE }, /wraps/],
    ['the wrap before the alignment', { address: 2 ** 64 - G, size: 2 * G + 1, attributes: PRIVATE }, /wraps/],
    ['address unaligned', { address: G + 1, size: G, attributes: PRIVATE }, /not page aligned/],
    ['size unaligned', { address: G, size: G + 0x800, attributes: PRIVATE }, /not page aligned/],
  ];
  for (const [name, attrs, check] of cases) {
    it(name, () => {
      expect(rejected(fakeVm(), attrs)).toMatch(check);
      expect(rejected(fakeVm(), big(attrs))).toMatch(check);
    });
  }

  it('a field that is no u64 is EINVAL naming it', () => {
    const vm = fakeVm();
    expect(rejected(vm, { address: G, size: G, attributes: -1 })).toMatch(/^KVM_SET_MEMORY_ATTRIBUTES: attributes is not a u64/);
    expect(rejected(vm, { address: G, size: G, attributes: PRIVATE, flags: 0.5 })).toMatch(/^KVM_SET_MEMORY_ATTRIBUTES: flags is not a u64/);
    expect(rejected(vm, { address: -G, size: G, attributes: PRIVATE })).toMatch(/^KVM_SET_MEMORY_ATTRIBUTES: address is not a u64/);
    expect(rejected(vm, { address: G, size: 2 ** 64, attributes: PRIVATE })).toMatch(/^KVM_SET_MEMORY_ATTRIBUTES: size is not a u64/);
  });

  it('kvm_supported_mem_attributes(): PRIVATE only with private memory', () => {
    expect(kvmSupportedMemAttributes(true)).toBe(PRIVATE);
    expect(kvmSupportedMemAttributes(false)).toBe(0);
    expect(rejected(fakeVm({ hasPrivateMem: false }), { address: G, size: G, attributes: PRIVATE })).toMatch(/unsupported/);
    const rec = fakeVm({ hasPrivateMem: false });
    runOp(new SetMemoryAttributesOp(rec.vm, { address: G, size: G, attributes: 0 }));
    expect(rec.vm.mmuInvalidate.seq).toBe(0);
  });
});

describe('kvm_vm_set_mem_attributes(): what one call does', () => {
  it('invalidates each memslot part of the range once, zaps the old type there, flushes once', () => {
    // slots [0, 1024) and [2048, 3072); the range [512, 2560) straddles both and the hole
    const rec = fakeVm({ slots: [[0, 1024], [2048, 1024]], zapFlush: true });
    const op = new SetMemoryAttributesOp(rec.vm, { address: 512 * G, size: 2048 * G, attributes: PRIVATE });
    expect(op.name).toBe('kvm_vm_set_mem_attributes');
    runOp(op);
    expect(rec.zaps).toEqual([
      [512, 1024, KVM_FILTER_SHARED],
      [2048, 2560, KVM_FILTER_SHARED],
    ]);
    expect(rec.flushes).toBe(1);
    // the two ranges and the unmixed 2M pages at their edges, all inside the slots
    // each slot's part, and the 2M pages at its edges (here the same ranges): nothing of the hole
    expect(new Set(rec.adds.map((a) => a.join()))).toEqual(new Set(['512,1024', '2048,2560']));
    expect(rec.vm.mmuInvalidate).toMatchObject({ seq: 1, inProgress: 0, rangeStart: 512, rangeEnd: 2560 });
    expect([511, 512, 1500, 2559, 2560].map((g) => rec.vm.attributes.get(g))).toEqual([0, PRIVATE, PRIVATE, PRIVATE, 0]);
    // back to shared: the private mappings are zapped
    runOp(new SetMemoryAttributesOp(rec.vm, { address: 512 * G, size: 512 * G, attributes: 0 }));
    expect(rec.zaps.at(-1)).toEqual([512, 1024, KVM_FILTER_PRIVATE]);
    expect(rec.flushes).toBe(2);
  });

  it('no TLB flush when no zap asked for one', () => {
    const rec = fakeVm({ zapFlush: false });
    runOp(new SetMemoryAttributesOp(rec.vm, { address: 0, size: 16 * G, attributes: PRIVATE }));
    expect(rec.zaps).toHaveLength(1);
    expect(rec.flushes).toBe(0);
    expect(rec.vm.mmuInvalidate.seq).toBe(1);
  });

  it('a range already holding the attributes is a no-op: no hook, no invalidation', () => {
    const calls: string[] = [];
    const rec = fakeVm({ backend: { preSetMemoryAttributes: () => (calls.push('pre'), 0) } });
    const { events } = recordTrace(rec.vm.tracer);
    const op = new SetMemoryAttributesOp(rec.vm, { address: 0, size: 4 * G, attributes: 0 });
    expect(op.phase).toBe('done');
    runOp(op);
    expect(calls).toEqual([]);
    expect(rec.adds).toEqual([]);
    expect(events.map((e) => [e.name, e.fields])).toEqual([['kvm_vm_set_mem_attributes', { start: 0, end: 4, attributes: 0, noop: true }]]);
  });

  it('traces the call, the invalidation and the store', () => {
    const rec = fakeVm();
    const { events } = recordTrace(rec.vm.tracer);
    runOp(new SetMemoryAttributesOp(rec.vm, { address: 0x10 * G, size: 4 * G, attributes: PRIVATE }));
    expect(events.map((e) => [e.name, e.fields])).toEqual([
      ['kvm_vm_set_mem_attributes', { start: 0x10, end: 0x14, attributes: PRIVATE, noop: false }],
      ['kvm_mmu_invalidate_begin', { start: 0x10, end: 0x14 }],
      ['kvm_mem_attr_store', { start: 0x10, end: 0x14, attributes: PRIVATE }],
      ['kvm_arch_post_set_memory_attributes', { start: 0x10, end: 0x14 }],
      ['kvm_mmu_invalidate_end', { seq: 1 }],
    ]);
  });

  it('a reused op that touches no memslot runs no invalidation end of its own', () => {
    const rec = fakeVm({ slots: [[0, 512]] });
    const op = new SetMemoryAttributesOp(rec.vm, { address: 0, size: 4 * G, attributes: PRIVATE });
    runOp(op);
    expect(rec.vm.mmuInvalidate.seq).toBe(1);
    op.reset({ address: 1024 * G, size: 4 * G, attributes: PRIVATE });
    runOp(op);
    expect(rec.vm.mmuInvalidate).toMatchObject({ seq: 1, inProgress: 0, warnings: 0 });
    expect(rec.vm.attributes.get(1024)).toBe(PRIVATE);
  });
});

describe('kvm_arch_pre_set_memory_attributes(): the huge pages at the edges', () => {
  /** the ranges added by a call on a 4096-page slot at gfn 0, the map holding `private` first */
  function addsFor(priv: [number, number][], start: number, end: number, attributes: number): string[] {
    const rec = fakeVm({ slots: [[0, 4096]] });
    for (const [s, e] of priv) rec.vm.attributes.set(s, e, PRIVATE);
    runOp(new SetMemoryAttributesOp(rec.vm, { address: start * G, size: (end - start) * G, attributes }));
    return [...new Set(rec.adds.map((a) => a.join()))].sort();
  }

  it('a 2M page that starts the slot, or ends it, is added when unmixed', () => {
    expect(addsFor([], 0, 1, PRIVATE)).toEqual(['0,1', '0,512']);
    expect(addsFor([], 4095, 4096, PRIVATE)).toEqual(['3584,4096', '4095,4096']);
  });

  it('a run that starts or ends exactly on the 2M page still covers it', () => {
    // [0, 512) private: a change of [0, 256) sees one run ending at the page end
    expect(addsFor([[0, 512]], 0, 256, 0)).toEqual(['0,256', '0,512']);
    // [512, 1024) private: a change of [600, 700) sees one run starting at the page start
    expect(addsFor([[512, 1024]], 600, 700, 0)).toEqual(['512,1024', '600,700']);
  });

  it('the last gfn is looked up in its own run when the first run ends right before it', () => {
    // [0, 512) private, the rest shared: the change [256, 513) ends in the shared run at
    // 512, whose 2M page [512, 1024) is unmixed; the head page [0, 512) is unmixed too
    expect(addsFor([[0, 512]], 256, 513, 0)).toEqual(['0,512', '256,513', '512,1024']);
  });

  it('mixed pages are not added', () => {
    expect(addsFor([[100, 101]], 200, 201, PRIVATE)).toEqual(['200,201']);
  });
});

describe('the vendor hooks', () => {
  it('a failing pre hook ends the call before any invalidation, with its errno', () => {
    const rec = fakeVm({ backend: { name: 'probe', preSetMemoryAttributes: () => -ERRNO.ENOMEM } });
    const op = new SetMemoryAttributesOp(rec.vm, { address: 0, size: G, attributes: PRIVATE });
    expect(op.step()).toBe(true);
    expect(errnoOf(() => op.result())).toBe('ENOMEM');
    expect(rec.adds).toEqual([]);
    expect(rec.vm.attributes.get(0)).toBe(0);
    // a reset clears the error
    op.reset({ address: 0, size: G, attributes: 0 });
    runOp(op);
  });

  it('a failing post hook fails the call after the store; an errno without a name is EIO', () => {
    let ret = -ERRNO.EFAULT;
    const rec = fakeVm({ backend: { name: 'probe', postSetMemoryAttributes: () => ret } });
    expect(errnoOf(() => runOp(new SetMemoryAttributesOp(rec.vm, { address: 0, size: G, attributes: PRIVATE })))).toBe('EFAULT');
    expect(rec.vm.attributes.get(0)).toBe(PRIVATE);
    expect(rec.vm.mmuInvalidate).toMatchObject({ seq: 1, inProgress: 0 });
    ret = -4095;
    expect(errnoOf(() => runOp(new SetMemoryAttributesOp(rec.vm, { address: G, size: G, attributes: PRIVATE })))).toBe('EIO');
    ret = 1; // not an error
    runOp(new SetMemoryAttributesOp(rec.vm, { address: 2 * G, size: G, attributes: PRIVATE }));
  });

  it('each hook gets the change, the locked one while the invalidation is in progress', () => {
    const seen: [string, AttributeChange, number][] = [];
    const rec = fakeVm({
      backend: {
        preSetMemoryAttributes: (c) => (seen.push(['pre', c, rec.vm.mmuInvalidate.inProgress]), 0),
        setMemoryAttributesLocked: (c) => void seen.push(['locked', c, rec.vm.mmuInvalidate.inProgress]),
        postSetMemoryAttributes: (c) => (seen.push(['post', c, rec.vm.mmuInvalidate.inProgress]), 0),
      },
    });
    runOp(new SetMemoryAttributesOp(rec.vm, { address: 8 * G, size: 2 * G, attributes: PRIVATE }));
    const change = { start: 8, end: 10, attributes: PRIVATE };
    expect(seen).toEqual([
      ['pre', change, 0],
      ['locked', change, 1],
      ['post', change, 0],
    ]);
    expect(seen[0]![1]).toBe(seen[2]![1]);
  });
});
