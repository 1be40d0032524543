/**
 * Random scenario steps for differential and model campaigns: memslot create / move / flag
 * changes / delete (anonymous and guest_memfd-bound), guest reads, writes and fetches (some of
 * them unaligned across a page boundary), MMIO completion, host reads and writes, dirty-log
 * reads, dirty ring harvests and resets (on VMs that enable a ring before the vCPU), guest_memfd
 * hole punches and close. Steps the host cannot run are not generated
 * (FuzzFeatures), so a campaign compares only what both sides can do.
 */
import fc from 'fast-check';
import { stringify } from 'yaml';
import type { Scenario, Step } from '../schema.js';

export interface FuzzFeatures {
  /** KVM_CREATE_GUEST_MEMFD exists: guest_memfd slots, punches and close are generated */
  guestMemfd: boolean;
  /** guest_memfd flag sets to create files with (subsets of KVM_CAP_GUEST_MEMFD_FLAGS) */
  gmemFlags: readonly number[];
  /** accesses may cross a 4 KiB page (emulator_read_write() splits them) */
  crossPage: boolean;
  /** the kernel profile the sequences run under (`vm.profile`); omitted: every kernel's behaviour */
  profile?: Scenario['vm']['profile'];
  /** KVM_CAP_DIRTY_LOG_RING: some sequences run with a dirty ring (harvests and resets generated) */
  dirtyRing?: boolean;
}

/**
 * What a diff campaign may generate on a host with these KVM_CHECK_EXTENSION answers:
 * guest_memfd steps only where it exists, with the flag sets KVM_CAP_GUEST_MEMFD_FLAGS offers.
 */
export function hostFuzzFeatures(caps: Readonly<Record<string, number>>): FuzzFeatures {
  const flags = caps.KVM_CAP_GUEST_MEMFD_FLAGS ?? 0;
  return {
    guestMemfd: (caps.KVM_CAP_GUEST_MEMFD ?? 0) !== 0,
    gmemFlags: [...new Set([0, flags & 1, flags])],
    crossPage: true,
    dirtyRing: (caps.KVM_CAP_DIRTY_LOG_RING ?? 0) !== 0,
  };
}

export const PAGE = 0x1000;
export const RAM_PAGES = 16;
export const GMEM_PAGES = 8;
/** gpa windows the random slots live in: close enough that slots may or may not overlap */
export const GPA_BASES = [0x10_0000, 0x10_4000, 0x11_0000, 0x1_0000_0000] as const;

export type FuzzOp =
  | { k: 'slot'; slot: number; base: number; pages: number; off: number; log: boolean; ro: boolean }
  | { k: 'gslot'; slot: number; base: number; pages: number; off: number }
  | { k: 'delete'; slot: number }
  | { k: 'flags'; slot: number; base: number; pages: number; off: number; log: boolean }
  | { k: 'gread'; base: number; page: number; size: 1 | 2 | 4 | 8; at: number }
  | { k: 'gwrite'; base: number; page: number; size: 1 | 2 | 4 | 8; at: number; value: bigint }
  | { k: 'gfetch'; base: number; page: number }
  | { k: 'mmio'; data: bigint }
  | { k: 'hwrite'; page: number; value: bigint }
  | { k: 'hread'; page: number }
  | { k: 'dirty'; slot: number }
  | { k: 'harvest'; max: number }
  | { k: 'reset' }
  | { k: 'punch'; page: number; pages: number }
  | { k: 'close' };

/** one random step */
export function fuzzOpArb(f: FuzzFeatures): fc.Arbitrary<FuzzOp> {
  const slotId = fc.integer({ min: 0, max: 3 });
  const base = fc.constantFrom(...GPA_BASES);
  const size = fc.constantFrom(1 as const, 2 as const, 4 as const, 8 as const);
  // an offset in the page; with crossPage the last bytes of a page are likelier, so accesses
  // that straddle two pages (RAM → MMIO, MMIO → RAM, two slots) come up often
  const at = f.crossPage ? fc.oneof(fc.integer({ min: 0, max: 0xfff }), fc.integer({ min: 0xff9, max: 0xfff })) : fc.integer({ min: 0, max: 0xff8 });
  const u64 = fc.bigInt({ min: 0n, max: (1n << 64n) - 1n });
  const arbs: fc.Arbitrary<FuzzOp>[] = [
    fc.record({ k: fc.constant('slot' as const), slot: slotId, base, pages: fc.integer({ min: 1, max: 8 }), off: fc.integer({ min: 0, max: 8 }), log: fc.boolean(), ro: fc.boolean() }),
    fc.record({ k: fc.constant('delete' as const), slot: slotId }),
    fc.record({ k: fc.constant('flags' as const), slot: slotId, base, pages: fc.integer({ min: 1, max: 8 }), off: fc.integer({ min: 0, max: 8 }), log: fc.boolean() }),
    fc.record({ k: fc.constant('gread' as const), base, page: fc.integer({ min: 0, max: 9 }), size, at }),
    fc.record({ k: fc.constant('gwrite' as const), base, page: fc.integer({ min: 0, max: 9 }), size, at, value: u64 }),
    fc.record({ k: fc.constant('gfetch' as const), base, page: fc.integer({ min: 0, max: 9 }) }),
    fc.record({ k: fc.constant('mmio' as const), data: u64 }),
    fc.record({ k: fc.constant('hwrite' as const), page: fc.integer({ min: 0, max: RAM_PAGES - 1 }), value: u64 }),
    fc.record({ k: fc.constant('hread' as const), page: fc.integer({ min: 0, max: RAM_PAGES - 1 }) }),
    fc.record({ k: fc.constant('dirty' as const), slot: slotId }),
  ];
  if (f.dirtyRing) {
    arbs.push(fc.record({ k: fc.constant('harvest' as const), max: fc.integer({ min: 1, max: 4 }) }), fc.record({ k: fc.constant('reset' as const) }));
  }
  if (f.guestMemfd) {
    arbs.push(
      fc.record({ k: fc.constant('gslot' as const), slot: slotId, base, pages: fc.integer({ min: 1, max: 4 }), off: fc.integer({ min: 0, max: 4 }) }),
      fc.record({ k: fc.constant('punch' as const), page: fc.integer({ min: 0, max: GMEM_PAGES - 1 }), pages: fc.integer({ min: 1, max: 4 }) }),
      fc.record({ k: fc.constant('close' as const) }),
    );
  }
  return fc.oneof(...arbs);
}

/** a random sequence of steps and the guest_memfd flags it creates its file with */
export function fuzzCaseArb(f: FuzzFeatures, maxLength: number): fc.Arbitrary<{ ops: FuzzOp[]; gmemFlags: number }> {
  return fc.record({
    ops: fc.array(fuzzOpArb(f), { minLength: 1, maxLength }),
    gmemFlags: f.guestMemfd && f.gmemFlags.length ? fc.constantFrom(...f.gmemFlags) : fc.constant(0),
  });
}

/** a sequence with harvests or resets runs on a VM with a dirty ring (64 KiB: never soft-full here) */
export const FUZZ_DIRTY_RING_BYTES = 0x1_0000;
const usesRing = (ops: readonly FuzzOp[]) => ops.some((o) => o.k === 'harvest' || o.k === 'reset');

const ram = (off: number) => ({ ref: 'ram', offset: off * PAGE });
const cpu = { ref: 'cpu', offset: 0 };

/** a random sequence as a scenario: one anonymous region, one guest_memfd (if any), one vCPU */
export function fuzzScenario(ops: readonly FuzzOp[], gmemFlags: number, f: FuzzFeatures): Scenario {
  const s = (op: string, args: Record<string, unknown>, as?: string): Step => ({ op, args, expect: {}, ...(as && { as }) }) as unknown as Step;
  const steps: Step[] = [s('mmap', { size: RAM_PAGES * PAGE }, 'ram')];
  if (f.guestMemfd) steps.push(s('create_guest_memfd', { size: GMEM_PAGES * PAGE, flags: gmemFlags }, 'gmem'));
  if (f.dirtyRing && usesRing(ops)) steps.push(s('enable_cap', { cap: 192, args: [FUZZ_DIRTY_RING_BYTES] }));
  steps.push(s('create_vcpu', { id: 0 }, 'cpu'));
  const gpa = (o: { base: number; page: number; at: number; size: number }) =>
    o.base + o.page * PAGE + (f.crossPage ? o.at : o.at - (o.at % o.size));
  for (const o of ops) {
    switch (o.k) {
      case 'slot':
        steps.push(s('set_user_memory_region2', { slot: o.slot, flags: (o.log ? 1 : 0) | (o.ro ? 2 : 0), guest_phys_addr: o.base, memory_size: o.pages * PAGE, userspace_addr: ram(o.off) }));
        break;
      case 'gslot':
        steps.push(
          s('set_user_memory_region2', { slot: o.slot, flags: 4, guest_phys_addr: o.base, memory_size: o.pages * PAGE, userspace_addr: ram(o.off), guest_memfd: { ref: 'gmem', offset: 0 }, guest_memfd_offset: o.off * PAGE }),
        );
        break;
      case 'delete':
        steps.push(s('set_user_memory_region2', { slot: o.slot, guest_phys_addr: 0, memory_size: 0, userspace_addr: 0 }));
        break;
      case 'flags':
        steps.push(s('set_user_memory_region2', { slot: o.slot, flags: o.log ? 1 : 0, guest_phys_addr: o.base, memory_size: o.pages * PAGE, userspace_addr: ram(o.off) }));
        break;
      case 'gread':
        steps.push(s('guest_read', { vcpu: cpu, gpa: gpa(o), size: o.size }));
        break;
      case 'gwrite':
        steps.push(s('guest_write', { vcpu: cpu, gpa: gpa(o), size: o.size, value: o.value }));
        break;
      case 'gfetch':
        steps.push(s('guest_fetch', { vcpu: cpu, gpa: o.base + o.page * PAGE }));
        break;
      case 'mmio':
        steps.push(s('complete_mmio', { vcpu: cpu, data: o.data }));
        break;
      case 'hwrite':
        steps.push(s('write', { addr: ram(o.page), size: 8, value: o.value }));
        break;
      case 'hread':
        steps.push(s('read', { addr: ram(o.page), size: 8 }));
        break;
      case 'dirty':
        steps.push(s('get_dirty_log', { slot: o.slot }));
        break;
      case 'harvest':
        steps.push(s('harvest_dirty_ring', { vcpu: cpu, max: o.max }));
        break;
      case 'reset':
        steps.push(s('reset_dirty_rings', {}));
        break;
      case 'punch':
        steps.push(s('punch_hole', { fd: { ref: 'gmem', offset: 0 }, offset: o.page * PAGE, len: o.pages * PAGE }));
        break;
      case 'close':
        steps.push(s('close', { fd: { ref: 'gmem', offset: 0 } }));
        break;
    }
  }
  return { name: 'random memslot / guest_memfd / dirty-log / dirty-ring / guest-access sequence', vm: { type: 'default', ...(f.profile !== undefined && { profile: f.profile }) }, steps };
}

/** the scenario as a YAML file (names as `name+offset`, values in hex), ready for `ccmem diff` */
export function scenarioToYaml(sc: Scenario, comment?: string): string {
  const plain = (v: unknown): unknown => {
    if (typeof v === 'bigint') return `0x${v.toString(16)}`;
    if (Array.isArray(v)) return v.map(plain);
    if (v && typeof v === 'object') {
      const o = v as Record<string, unknown>;
      if (typeof o.ref === 'string' && typeof o.offset === 'number' && Object.keys(o).length === 2) return o.offset ? `${o.ref}+0x${o.offset.toString(16)}` : o.ref;
      return Object.fromEntries(Object.entries(o).map(([k, x]) => [k, plain(x)]));
    }
    return v;
  };
  const steps = sc.steps.map((st) => ({ [st.op]: plain(st.args), ...(st.as && { as: st.as }) }));
  const body = stringify({ name: sc.name, ...(sc.description && { description: sc.description }), vm: sc.vm, steps });
  return comment ? `${comment.split('\n').map((l) => `# ${l}`).join('\n')}\n${body}` : body;
}
