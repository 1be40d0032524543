/**
 * Differential tests: the model (under the host profile) against the machine's real KVM.
 * Every built-in scenario the host can run, plus random memslot / guest_memfd / dirty-log /
 * guest-access sequences from fast-check, compared step by step; a failing random sequence
 * shrinks and is printed as a scenario file.
 */
import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { stringify } from 'yaml';
import { builtinScenarios } from './builtin/index.js';
import { diffScenario, hostProfileMismatch, type ScenarioDiff } from './differential.js';
import { createKvmTarget, guestPlacements } from './kvm-target.js';
import { createModelTarget } from './model-target.js';
import { describeOutcome } from './runner.js';
import type { Scenario, Step } from './schema.js';

const hasKvm = existsSync('/dev/kvm');

if (!hasKvm) console.warn('kvm-diff.test.ts: /dev/kvm is missing on this host: the differential tests against real KVM are SKIPPED');

it('the real-KVM differential tests run where CCMEM_REQUIRE_KVM=1 says they must (needs /dev/kvm)', () => {
  // without /dev/kvm the suites below are reported as skipped; a CI setup that promises KVM
  // sets CCMEM_REQUIRE_KVM=1 and then a missing device is an error
  if (process.env.CCMEM_REQUIRE_KVM === '1') {
    expect(hasKvm, 'CCMEM_REQUIRE_KVM=1 but /dev/kvm is missing: the differential tests against real KVM cannot run').toBe(true);
  }
  expect(typeof hasKvm).toBe('boolean');
});

function report(d: ScenarioDiff): string {
  return d.differences
    .map((x) => `  step ${x.index} ${x.op}: ${x.fields.join('; ')}\n    model: ${describeOutcome(x.model)}\n    kvm:   ${describeOutcome(x.kvm)}`)
    .join('\n');
}

describe('guest placement', () => {
  it('avoids the slot ids and gpa ranges a scenario uses', () => {
    const scenario: Scenario = {
      name: 'uses 32763 and the top of the guest range',
      vm: { type: 'default' },
      steps: [
        { op: 'set_user_memory_region2', args: { slot: 32763, guest_phys_addr: 0x7f_ffc0_0000, memory_size: 0x1000, userspace_addr: 0 }, expect: {} } as Step,
        { op: 'create_vcpu', args: { id: 0 }, expect: {} } as Step,
      ],
    };
    const [p0, p1] = guestPlacements(scenario, 2);
    expect(p0).toEqual({ slot: 32762, base: 0x7f_ff80_0000 });
    expect(p1).toEqual({ slot: 32761, base: 0x7f_ff40_0000 });
  });
});

describe.skipIf(!hasKvm)('model vs real KVM (needs /dev/kvm)', () => {
  const model = createModelTarget();
  const kvm = createKvmTarget();

  it("the model's host profile is this host's detected profile", () => {
    expect(hostProfileMismatch(kvm.profile)).toEqual([]);
  });

  it('every built-in scenario the host can run agrees step by step', () => {
    let compared = 0;
    const failures: string[] = [];
    for (const { file, scenario } of builtinScenarios()) {
      const d = diffScenario(scenario, model, kvm, { file });
      compared += d.compared;
      if (!d.agree) failures.push(`${file}: ${scenario.name}\n${report(d)}`);
    }
    expect(failures, failures.join('\n')).toEqual([]);
    // the suite really ran on the kernel: dozens of steps were compared
    expect(compared).toBeGreaterThan(100);
  });

  it('the real-KVM target reports real outcomes (errno, dirty pages, exits)', () => {
    const scenario: Scenario = {
      name: 'kvm target outcomes',
      vm: { type: 'default' },
      steps: [
        { op: 'mmap', args: { size: 0x4000 }, as: 'ram', expect: {} },
        { op: 'set_user_memory_region', args: { slot: 0, flags: 1, guest_phys_addr: 0x10_0000, memory_size: 0x4000, userspace_addr: { ref: 'ram', offset: 0 } }, expect: {} },
        { op: 'set_user_memory_region', args: { slot: 1, flags: 0, guest_phys_addr: 0x10_0000, memory_size: 0x1000, userspace_addr: { ref: 'ram', offset: 0 } }, expect: {} },
        { op: 'create_vcpu', args: { id: 0 }, expect: {} },
        { op: 'guest_write', args: { vcpu: 0, gpa: 0x10_2000, size: 4, value: 7n }, expect: {} },
        { op: 'get_dirty_log', args: { slot: 0 }, expect: {} },
        { op: 'guest_read', args: { vcpu: 0, gpa: 0x20_0000, size: 4 }, expect: {} },
        { op: 'set_memory_attributes', args: { address: 0x10_0000, size: 0x1000, attributes: 8 }, expect: {} },
      ] as unknown as Step[],
    };
    const d = diffScenario(scenario, model, kvm);
    const steps = d.kvm.steps;
    expect(steps[2]!.outcome).toMatchObject({ errno: 'EEXIST', detail: { check: 'KVM_SET_USER_MEMORY_REGION' } });
    expect(steps[5]!.outcome.dirty_pages).toEqual([2]);
    expect(steps[6]!.outcome.exit).toMatchObject({ reason: 'KVM_EXIT_MMIO', mmio: { phys_addr: 0x20_0000, len: 4, is_write: false } });
    expect(d.skipped).toEqual(['step 7 (set_memory_attributes): missing KVM_CAP_MEMORY_ATTRIBUTES']);
    expect(d.differences).toEqual([]);
  });

  /* ---------------------------------------------------------------------------------------- */
  /* Random sequences                                                                         */
  /* ---------------------------------------------------------------------------------------- */

  const PAGE = 0x1000;
  const RAM_PAGES = 16;
  const GMEM_PAGES = 8;
  /** gpa windows the random slots live in: 64 KiB apart so slots may or may not overlap */
  const GPA_BASES = [0x10_0000, 0x10_4000, 0x11_0000, 0x1_0000_0000];

  type Op =
    | { k: 'slot'; slot: number; base: number; pages: number; off: number; log: boolean; ro: boolean }
    | { k: 'gslot'; slot: number; base: number; pages: number; off: number }
    | { k: 'delete'; slot: number }
    | { k: 'flags'; slot: number; base: number; pages: number; off: number; log: boolean }
    | { k: 'gread'; base: number; page: number; size: 1 | 2 | 4 | 8; at: number }
    | { k: 'gwrite'; base: number; page: number; size: 1 | 2 | 4 | 8; at: number; value: bigint }
    | { k: 'gfetch'; base: number; page: number }
    | { k: 'hwrite'; page: number; value: bigint }
    | { k: 'hread'; page: number }
    | { k: 'dirty'; slot: number }
    | { k: 'punch'; page: number; pages: number }
    | { k: 'close' };

  const slotId = fc.integer({ min: 0, max: 3 });
  const base = fc.constantFrom(...GPA_BASES);
  const size = fc.constantFrom(1 as const, 2 as const, 4 as const, 8 as const);
  const opArb: fc.Arbitrary<Op> = fc.oneof(
    fc.record({ k: fc.constant('slot' as const), slot: slotId, base, pages: fc.integer({ min: 1, max: 8 }), off: fc.integer({ min: 0, max: 8 }), log: fc.boolean(), ro: fc.boolean() }),
    fc.record({ k: fc.constant('gslot' as const), slot: slotId, base, pages: fc.integer({ min: 1, max: 4 }), off: fc.integer({ min: 0, max: 4 }) }),
    fc.record({ k: fc.constant('delete' as const), slot: slotId }),
    fc.record({ k: fc.constant('flags' as const), slot: slotId, base, pages: fc.integer({ min: 1, max: 8 }), off: fc.integer({ min: 0, max: 8 }), log: fc.boolean() }),
    fc.record({ k: fc.constant('gread' as const), base, page: fc.integer({ min: 0, max: 9 }), size, at: fc.integer({ min: 0, max: 0xff8 }) }),
    fc.record({ k: fc.constant('gwrite' as const), base, page: fc.integer({ min: 0, max: 9 }), size, at: fc.integer({ min: 0, max: 0xff8 }), value: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }) }),
    fc.record({ k: fc.constant('gfetch' as const), base, page: fc.integer({ min: 0, max: 9 }) }),
    fc.record({ k: fc.constant('hwrite' as const), page: fc.integer({ min: 0, max: RAM_PAGES - 1 }), value: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }) }),
    fc.record({ k: fc.constant('hread' as const), page: fc.integer({ min: 0, max: RAM_PAGES - 1 }) }),
    fc.record({ k: fc.constant('dirty' as const), slot: slotId }),
    fc.record({ k: fc.constant('punch' as const), page: fc.integer({ min: 0, max: GMEM_PAGES - 1 }), pages: fc.integer({ min: 1, max: 4 }) }),
    fc.record({ k: fc.constant('close' as const) }),
  );

  const ram = (off: number) => ({ ref: 'ram', offset: off * PAGE });

  /** a random sequence as a scenario: one anonymous region, one guest_memfd, one vCPU */
  function toScenario(ops: Op[], gmemFlags: number): Scenario {
    const s = (op: string, args: Record<string, unknown>, as?: string): Step => ({ op, args, expect: {}, ...(as && { as }) }) as unknown as Step;
    const steps: Step[] = [
      s('mmap', { size: RAM_PAGES * PAGE }, 'ram'),
      s('create_guest_memfd', { size: GMEM_PAGES * PAGE, flags: gmemFlags }, 'gmem'),
      s('create_vcpu', { id: 0 }, 'cpu'),
    ];
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
          steps.push(s('guest_read', { vcpu: { ref: 'cpu', offset: 0 }, gpa: o.base + o.page * PAGE + (o.at - (o.at % o.size)), size: o.size }));
          break;
        case 'gwrite':
          steps.push(s('guest_write', { vcpu: { ref: 'cpu', offset: 0 }, gpa: o.base + o.page * PAGE + (o.at - (o.at % o.size)), size: o.size, value: o.value }));
          break;
        case 'gfetch':
          steps.push(s('guest_fetch', { vcpu: { ref: 'cpu', offset: 0 }, gpa: o.base + o.page * PAGE }));
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
        case 'punch':
          steps.push(s('punch_hole', { fd: { ref: 'gmem', offset: 0 }, offset: o.page * PAGE, len: o.pages * PAGE }));
          break;
        case 'close':
          steps.push(s('close', { fd: { ref: 'gmem', offset: 0 } }));
          break;
      }
    }
    return { name: 'random memslot / guest_memfd / dirty-log / guest-access sequence', vm: { type: 'default' }, steps };
  }

  /** the scenario as a YAML file (names as `name+offset`, values in hex) */
  function toYaml(sc: Scenario): string {
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
    return stringify({ name: sc.name, vm: sc.vm, steps });
  }

  it('random sequences agree step by step (failures shrink to a scenario file)', () => {
    fc.assert(
      fc.property(fc.array(opArb, { minLength: 1, maxLength: 14 }), fc.constantFrom(0, 1, 3), (ops, gmemFlags) => {
        const sc = toScenario(ops, gmemFlags);
        const d = diffScenario(sc, model, kvm);
        if (!d.agree) {
          throw new Error(`model and real KVM disagree:\n${report(d)}\n--- scenario (ccmem diff it) ---\n${toYaml(sc)}`);
        }
      }),
      { numRuns: 60, seed: Number(process.env.CCMEM_DIFF_SEED ?? 0x5eed) },
    );
  });
});
