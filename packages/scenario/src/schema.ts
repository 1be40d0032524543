/**
 * The scenario file schema (zod). Field names are the kernel's uAPI field names; op names are
 * the lower-case ioctl names without `KVM_`. Every object is strict: an unknown op or field
 * is an error. The ops and their arguments come from the registry (ops/); this module adds the
 * expectations, the `vm` block, `applies_to` and `concurrent`. docs/scenarios.md documents
 * every op and field; both are a stable contract.
 */
import { requiresSchema, type Requires } from './requires.js';
import { z } from 'zod';
import { EXIT_REASONS, isErrnoName, type ErrnoName } from '@ccmem/core';
import { isAddrRef, isNumberLiteral, isValidName, parseBigInt, parseNumber, type AddrRef } from './numbers.js';
import { assertArgs } from './ops/assert.js';
import { addr, bool, field, flags, num, numList, u64 } from './ops/fields.js';
import { isOpName, OP_NAMES, OPS, type OpArgs, type OpName } from './ops/index.js';
import type { VmTypeName } from './ops/op.js';

/* ------------------------------------------------------------------------------------------ */
/* Operations: one registry (ops/), one schema per op                                         */
/* ------------------------------------------------------------------------------------------ */

export { ASSERT_LOCATORS, type AssertWhat } from './ops/assert.js';
export { OP_NAMES, isOpName, type OpArgs, type OpName } from './ops/index.js';

/** every op's argument schema, by op name */
export const OP_SCHEMAS = Object.fromEntries(OP_NAMES.map((op) => [op, OPS[op].args])) as { [K in OpName]: (typeof OPS)[K]['args'] };

/* ------------------------------------------------------------------------------------------ */
/* Expectations                                                                               */
/* ------------------------------------------------------------------------------------------ */

export const EXIT_NAMES = Object.keys(EXIT_REASONS);
export type ExitName = (typeof EXIT_NAMES)[number];
export const SIGNALS = ['SIGBUS', 'SIGSEGV'] as const;
export type SignalName = (typeof SIGNALS)[number];

const errnoField = field('an errno name', (v): ErrnoName => {
  if (typeof v !== 'string' || !isErrnoName(v)) throw new Error(`unknown errno "${String(v)}" (e.g. EINVAL, EEXIST, ENOENT)`);
  return v;
});
const exitField = field('an exit reason', (v): string => {
  if (typeof v !== 'string' || !(v in EXIT_REASONS)) {
    throw new Error(`unknown exit reason "${String(v)}" (known: ${EXIT_NAMES.join(', ')})`);
  }
  return v;
});

/**
 * a return code: a vendor name (`TDX_SUCCESS`), or a number in any literal form — a YAML scalar
 * such as `0x1_0000_0001` arrives as a string and is a number, not a name (docs/scenarios.md,
 * "Numbers"). Kept exact: a bigint when it does not fit a safe integer.
 */
const retCode = () =>
  field('a return code (number or name)', (v): string | number | bigint => {
    if (typeof v === 'string' && !isNumberLiteral(v)) return v;
    const n = parseBigInt(v);
    return n >= BigInt(Number.MIN_SAFE_INTEGER) && n <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(n) : n;
  });

const expectObject = z.strictObject({
  errno: errnoField.optional(),
  value: u64().optional(),
  exit: exitField.optional(),
  mmio: z
    .strictObject({ phys_addr: num().optional(), len: num().optional(), is_write: bool().optional(), data: u64().optional() })
    .optional(),
  memory_fault: z
    .strictObject({ flags: flags('memory_fault').optional(), gpa: num().optional(), size: num().optional() })
    .optional(),
  hypercall: z
    .strictObject({
      nr: num().optional(),
      args: numList().optional(),
      ret: num().optional(),
      flags: flags('hypercall').optional(),
    })
    .optional(),
  /** `ndata` and `gpa` (data[3]) of a KVM_INTERNAL_ERROR_DELIVERY_EV exit (kvm_prepare_event_vectoring_exit) */
  internal: z.strictObject({ suberror: num(), ndata: num().optional(), gpa: num().optional() }).optional(),
  system_event: z.strictObject({ type: num(), ndata: num().optional(), data: numList().optional() }).optional(),
  signal: z.enum(SIGNALS).optional(),
  /** the guest took an exception itself and the access did not complete (#VC, #VE) */
  exception: z.string().regex(/^(#[A-Z]{2}|EPT_VIOLATION)$/, 'an exception vector such as #VC, #VE or #PF, or EPT_VIOLATION (reflected to L1)').optional(),
  dirty_pages: numList().optional(),
  /** move_pages(2): each page's node or negative errno (-2 ENOENT, -14 EFAULT) */
  status: z
    .array(
      field('a node number or a negative errno', (v) => {
        const n = typeof v === 'bigint' ? Number(v) : typeof v === 'number' ? v : NaN;
        if (!Number.isInteger(n)) throw new Error(`expected an integer, got ${String(v)}`);
        return n;
      }),
    )
    .optional(),
  /** fstat(2): the fields named (`distinct_inode` with the op's `distinct_from`) */
  stat: z.strictObject({ st_size: num().optional(), st_blksize: num().optional(), distinct_inode: bool().optional() }).optional(),
  /** harvest_dirty_ring: the entries, in ring order */
  dirty_gfns: z.array(z.strictObject({ slot: num(), offset: num() })).optional(),
  /** MMU statistics after the step, by their KVM_GET_STATS_FD names (`pages_4k: 1`, `mmu_pte_write: 2`) */
  stats: z.record(z.string(), num()).optional(),
  gpa: num().optional(),
  size: num().optional(),
  /** tdx_init_mem_region: the region copied back (with `gpa`) */
  nr_pages: num().optional(),
  /** a TDVMCALL's R11 output (MapGPA: the gpa to resume from) */
  r11: num().optional(),
  /** the argument struct the ioctl copied back: the fields named (an address may name an earlier step's result) */
  params: z.record(z.string(), addr()).optional(),
  /** return code of a vendor instruction / TDCALL (number or the vendor's name) */
  ret: retCode().optional(),
});

export type ExpectFields = z.output<typeof expectObject>;

/** Expected outcome of a step; `{}` (or an omitted expect / `expect: ok`) means success. */
export type Expectation = ExpectFields;

/** the exit reason each exit-field expectation implies (`mmio` → KVM_EXIT_MMIO) */
export const EXIT_FIELD_REASON: Readonly<Record<string, string>> = {
  mmio: 'KVM_EXIT_MMIO',
  memory_fault: 'KVM_EXIT_MEMORY_FAULT',
  hypercall: 'KVM_EXIT_HYPERCALL',
  internal: 'KVM_EXIT_INTERNAL_ERROR',
  system_event: 'KVM_EXIT_SYSTEM_EVENT',
};

const expectSchema = z
  .preprocess((v) => (v === 'ok' ? {} : v), expectObject)
  .superRefine((e, ctx) => {
    const implied = Object.keys(EXIT_FIELD_REASON).filter((k) => (e as Record<string, unknown>)[k] !== undefined);
    for (const k of implied) {
      const reason = EXIT_FIELD_REASON[k]!;
      if (e.exit !== undefined && e.exit !== reason) {
        ctx.addIssue({ code: 'custom', path: [k], message: `${k} fields belong to exit ${reason}, not ${e.exit}` });
      }
    }
    if (implied.length > 1) {
      ctx.addIssue({ code: 'custom', path: [implied[1]!], message: `an exit has one kind: ${implied.join(' and ')} given` });
    }
    if (e.errno !== undefined && e.signal !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['signal'], message: 'a step either fails with an errno or raises a signal' });
    }
  })
  .transform((e): Expectation => {
    const out: Expectation = { ...e };
    for (const k of Object.keys(EXIT_FIELD_REASON)) {
      if ((e as Record<string, unknown>)[k] !== undefined && out.exit === undefined) out.exit = EXIT_FIELD_REASON[k];
    }
    return out;
  });

/* ------------------------------------------------------------------------------------------ */
/* Steps                                                                                      */
/* ------------------------------------------------------------------------------------------ */

/** One parsed step. `op` is the name as written (punch_hole stays punch_hole). */
export type Step = {
  [K in OpName]: {
    readonly op: K;
    readonly args: OpArgs[K];
    readonly as?: string;
    readonly expect: Expectation;
    /** 1-based line of the step in its file, when parsed from YAML */
    line?: number;
  };
}[OpName];

const stepShape: Record<string, z.ZodType> = {};
for (const op of OP_NAMES) stepShape[op] = OP_SCHEMAS[op].optional();
stepShape.as = z.string().optional();
stepShape.expect = expectSchema.optional();

const stepSchema = z
  .strictObject(stepShape)
  .superRefine((s, ctx) => {
    const ops = Object.keys(s).filter((k) => isOpName(k) && s[k] !== undefined);
    if (ops.length === 0) {
      ctx.addIssue({ code: 'custom', message: `a step needs one operation (one of: ${OP_NAMES.join(', ')})` });
    } else if (ops.length > 1) {
      ctx.addIssue({ code: 'custom', path: [ops[1]!], message: `a step has one operation, found ${ops.join(' and ')}` });
    }
    if (typeof s.as === 'string' && !isValidName(s.as)) {
      ctx.addIssue({ code: 'custom', path: ['as'], message: `"${s.as}" is not a valid name (letters, digits, _)` });
    }
  })
  .transform((s): Step => {
    const op = Object.keys(s).find((k) => isOpName(k) && s[k] !== undefined) as OpName;
    const step = { op, args: s[op], expect: (s.expect as Expectation | undefined) ?? {} } as Step & { as?: string };
    if (s.as !== undefined) step.as = s.as as string;
    return step;
  });

/* ------------------------------------------------------------------------------------------ */
/* Scenario                                                                                   */
/* ------------------------------------------------------------------------------------------ */

export const VM_TYPES = ['default', 'sw-protected', 'sev', 'sev-es', 'snp', 'tdx'] as const;
export type VmType = (typeof VM_TYPES)[number];
/** each VM type's kernel name (its number: VM_TYPE_NUMBERS in ops/needs.ts) */
export const VM_TYPE_NAMES: Readonly<Record<VmType, VmTypeName>> = {
  default: 'KVM_X86_DEFAULT_VM',
  'sw-protected': 'KVM_X86_SW_PROTECTED_VM',
  sev: 'KVM_X86_SEV_VM',
  'sev-es': 'KVM_X86_SEV_ES_VM',
  snp: 'KVM_X86_SNP_VM',
  tdx: 'KVM_X86_TDX_VM',
};
export const PROVIDERS = ['guest_memfd', 'device_fd'] as const;
export type Provider = (typeof PROVIDERS)[number];
/** `host`, and the model's named kernel profiles (@ccmem/core PROFILES; a test keeps them equal) */
export const PROFILES = ['host', 'upstream', 'upstream-shadow', 'linux-6.18', 'linux-6.18-pvm', 'linux-6.18-pvm-no-gmem'] as const;
export type Profile = (typeof PROFILES)[number];
export const TARGET_NAMES = ['model', 'kvm'] as const;
export type TargetName = (typeof TARGET_NAMES)[number];

const vmSchema = z.strictObject({
  type: z.enum(VM_TYPES),
  provider: z.enum(PROVIDERS).optional(),
  /** kernel profile the expectations follow: a named profile (model only) or `host` (real KVM too) */
  profile: z.enum(PROFILES).optional(),
  /* SEV-SNP backend options */
  directmap: z.enum(['split', 'unmap']).optional(),
  rmp_timing: z.enum(['prepare', 'set-attributes']).optional(),
  /* SEV and SEV-ES backend options: RLIMIT_MEMLOCK of the VMM in bytes (sev_pin_memory) */
  memlock_limit: num().optional(),
  /** the host's ASID ranges (CPUID 0x8000001F: min_sev_asid = EDX, max_sev_asid = ECX), given together */
  min_sev_asid: num().optional(),
  max_sev_asid: num().optional(),
  /* TDX backend options */
  huge_pages: bool().optional(),
  /** guest physical address width: 48 or 52 bits */
  gpaw: field('48 or 52', (v) => {
    const n = parseNumber(v);
    if (n !== 48 && n !== 52) throw new Error(`gpaw is 48 or 52, got ${n}`);
    return n as 48 | 52;
  }).optional(),
  /** offer the unmerged KVM_MEM_PCI_HOLE RFC (model only: no kernel has it) */
  pci_hole: bool().optional(),
  /** online NUMA memory nodes the host needs (the model has them; real KVM skips a host with fewer) */
  numa_nodes: field('a node count 1..30', (v) => {
    const n = parseNumber(v);
    if (!Number.isInteger(n) || n < 1 || n > 30) throw new Error(`numa_nodes is 1..30, got ${n}`);
    return n;
  }).optional(),
});
export type VmConfig = z.output<typeof vmSchema>;

const appliesToSchema = z.strictObject({
  vm_types: z.array(z.enum(VM_TYPES)).min(1).optional(),
  providers: z.array(z.enum(PROVIDERS)).min(1).optional(),
  targets: z.array(z.enum(TARGET_NAMES)).min(1).optional(),
});
export type AppliesTo = z.output<typeof appliesToSchema>;

/** invariants a model run checks after every step (each runs the full invariant checker) */
export const RUN_INVARIANT_NAMES: readonly string[] = ['no-stale-spte', 'vm-invariants', 'backend-invariants', 'attributes-consistent'];
/** invariants only `ccmem explore` can judge: they speak about every interleaving or its end */
export const EXPLORE_ONLY_INVARIANT_NAMES: readonly string[] = [
  'no-mapping-in-deleted-slot',
  'no-stale-data',
  'pre-fault-documented-errno',
  'vm-not-bugged',
  'guest-completes',
];
const INVARIANT_NAMES = new Set([...RUN_INVARIANT_NAMES, ...EXPLORE_ONLY_INVARIANT_NAMES]);
const invariantName = z.string().refine((n) => INVARIANT_NAMES.has(n), {
  message: `unknown invariant (known: ${[...INVARIANT_NAMES].join(', ')})`,
});
/**
 * `outcome`: what an actor's steps may end in, whatever the interleaving. Each step of `actor`
 * (`steps`: indexes in its list; all of them when omitted) must match one of `one_of` (the
 * `expect` forms). With `after`, only the steps that began after that actor step finished are
 * held to it (the selftests' "once the VMM is done, the guest sees ..."); with `before`, only
 * those that finished before it began.
 */
const stepRef = z.strictObject({ actor: z.string(), step: num() });
const outcomeInvariantSchema = z.strictObject({
  actor: z.string(),
  steps: z.array(num()).min(1).optional(),
  one_of: z.array(expectSchema).min(1),
  after: stepRef.optional(),
  before: stepRef.optional(),
});
export type OutcomeInvariant = z.output<typeof outcomeInvariantSchema>;
const invariantSchema = z.union([invariantName, z.strictObject({ assert: assertArgs }), z.strictObject({ outcome: outcomeInvariantSchema })]);
export type Invariant = z.output<typeof invariantSchema>;

const concurrentSchema = z.strictObject({
  actors: z.record(z.string(), z.array(stepSchema).min(1)),
  invariants: z.array(invariantSchema).optional(),
});
export type ConcurrentBlock = { actors: Record<string, Step[]>; invariants?: Invariant[] };

const SNP_OPTIONS = ['directmap', 'rmp_timing'] as const;
const TDX_OPTIONS = ['huge_pages', 'gpaw'] as const;
const SEV_OPTIONS = ['memlock_limit', 'min_sev_asid', 'max_sev_asid'] as const;

/**
 * What the model's VMM exit is expected to leave behind (docs/scenarios.md, "The VMM's exit"):
 * the exact sentences, for a scenario where the kernel gives up on purpose (a KVM_BUG_ON, a
 * firmware refusal it only warns about). Default: nothing.
 */
const exitSchema = z.strictObject({
  left_behind: z.array(z.string().min(1)).min(1),
});
export type ExitExpectation = z.infer<typeof exitSchema>;

export const scenarioSchema = z
  .strictObject({
    name: z.string().min(1),
    description: z.string().optional(),
    vm: vmSchema,
    applies_to: appliesToSchema.optional(),
    /** facts of a kernel build the expectations need (requires.ts) */
    requires: requiresSchema.optional(),
    steps: z.array(stepSchema),
    concurrent: concurrentSchema.optional(),
    exit: exitSchema.optional(),
  })
  .superRefine((sc, ctx) => {
    // backend options only for a VM type the scenario runs as
    const types = new Set<VmType>([sc.vm.type, ...(sc.applies_to?.vm_types ?? [])]);
    for (const [vendor, opts] of [
      ['snp', SNP_OPTIONS],
      ['tdx', TDX_OPTIONS],
      ['sev', SEV_OPTIONS],
    ] as const) {
      for (const o of opts) {
        if (sc.vm[o] !== undefined && !types.has(vendor) && !(vendor === 'sev' && types.has('sev-es'))) {
          ctx.addIssue({ code: 'custom', path: ['vm', o], message: `${o} is an option of ${vendor} VMs` });
        }
      }
    }
    if ((sc.vm.min_sev_asid === undefined) !== (sc.vm.max_sev_asid === undefined)) {
      ctx.addIssue({ code: 'custom', path: ['vm', sc.vm.min_sev_asid === undefined ? 'max_sev_asid' : 'min_sev_asid'], message: 'min_sev_asid and max_sev_asid come together (CPUID 0x8000001F EDX and ECX)' });
    }
    // a real host's ASID ranges are its CPU's: a scenario that chooses them runs on the model only
    if (sc.vm.min_sev_asid !== undefined && (sc.applies_to?.targets ?? ['kvm']).includes('kvm')) {
      ctx.addIssue({ code: 'custom', path: ['vm', 'min_sev_asid'], message: 'min_sev_asid and max_sev_asid are the CPU\'s on real KVM: the scenario needs applies_to: { targets: [model] }' });
    }
    if (sc.vm.provider !== undefined && sc.applies_to?.providers && !sc.applies_to.providers.includes(sc.vm.provider)) {
      ctx.addIssue({ code: 'custom', path: ['vm', 'provider'], message: 'vm.provider is not in applies_to.providers' });
    }
    if (sc.steps.length === 0 && !sc.concurrent) {
      ctx.addIssue({ code: 'custom', path: ['steps'], message: 'a scenario needs at least one step' });
    }
    // every name+offset refers to a name an earlier step defined
    const names = new Set<string>();
    const checkSteps = (steps: Step[], base: (string | number)[], scope: Set<string>) => {
      steps.forEach((step, i) => {
        for (const { path, ref } of findRefs(step.args)) {
          if (!scope.has(ref.ref)) {
            ctx.addIssue({
              code: 'custom',
              path: [...base, i, step.op, ...path],
              message: `"${ref.ref}" is not the name of an earlier step's result (as: ${ref.ref})`,
            });
          }
        }
        if (step.as !== undefined) {
          if (scope.has(step.as)) {
            ctx.addIssue({ code: 'custom', path: [...base, i, 'as'], message: `the name "${step.as}" is already used` });
          }
          scope.add(step.as);
        }
      });
    };
    checkSteps(sc.steps, ['steps'], names);
    if (sc.concurrent) {
      for (const [actor, steps] of Object.entries(sc.concurrent.actors)) {
        checkSteps(steps, ['concurrent', 'actors', actor], new Set(names));
      }
      const actors = sc.concurrent.actors;
      sc.concurrent.invariants?.forEach((inv, i) => {
        if (typeof inv === 'string' || !('outcome' in inv)) return;
        const o = inv.outcome;
        const path = ['concurrent', 'invariants', i, 'outcome'];
        const known = (ref: { actor: string; step?: number }, at: (string | number)[]) => {
          const steps = actors[ref.actor];
          if (!steps) ctx.addIssue({ code: 'custom', path: [...path, ...at, 'actor'], message: `no actor "${ref.actor}" (actors: ${Object.keys(actors).join(', ')})` });
          else if (ref.step !== undefined && ref.step >= steps.length) {
            ctx.addIssue({ code: 'custom', path: [...path, ...at, 'step'], message: `actor ${ref.actor} has ${steps.length} steps (0..${steps.length - 1})` });
          }
        };
        known({ actor: o.actor }, []);
        for (const [j, st] of (o.steps ?? []).entries()) known({ actor: o.actor, step: st }, ['steps', j]);
        if (o.after) known(o.after, ['after']);
        if (o.before) known(o.before, ['before']);
      });
    }
  });

export interface Scenario {
  name: string;
  description?: string;
  vm: VmConfig;
  applies_to?: AppliesTo;
  requires?: Requires;
  steps: Step[];
  concurrent?: ConcurrentBlock;
  exit?: ExitExpectation;
}

function findRefs(v: unknown, path: (string | number)[] = []): { path: (string | number)[]; ref: AddrRef }[] {
  if (isAddrRef(v)) return [{ path, ref: v }];
  if (Array.isArray(v)) return v.flatMap((x, i) => findRefs(x, [...path, i]));
  if (typeof v === 'object' && v !== null) {
    return Object.entries(v).flatMap(([k, x]) => findRefs(x, [...path, k]));
  }
  return [];
}
