/**
 * The scenario file schema (zod). Field names are the kernel's uAPI field names; op names are
 * the lower-case ioctl names without `KVM_`. Every object is strict: an unknown op or field
 * is an error. docs/scenarios.md documents every op and field; both are a stable contract.
 */
import { z } from 'zod';
import { EXIT_REASONS, isErrnoName, type ErrnoName } from '@ccmem/core';
import {
  isAddrRef,
  isValidName,
  parseAddrExpr,
  parseFlags,
  parseNumber,
  parseU64,
  parseU64Exact,
  type AddrExpr,
  type AddrRef,
  type FlagKind,
} from './numbers.js';

/* ------------------------------------------------------------------------------------------ */
/* Field types                                                                                */
/* ------------------------------------------------------------------------------------------ */

type Ctx = { issues: { push(issue: { code: 'custom'; message: string; input: unknown }): void } };

function field<T>(what: string, parse: (v: unknown) => T) {
  return z.unknown().transform((v, ctx): T => {
    if (v === undefined || v === null) {
      (ctx as unknown as Ctx).issues.push({ code: 'custom', message: `required: ${what}`, input: v });
      return z.NEVER;
    }
    try {
      return parse(v);
    } catch (e) {
      (ctx as unknown as Ctx).issues.push({ code: 'custom', message: (e as Error).message, input: v });
      return z.NEVER;
    }
  });
}

/** u64 uAPI field as a JS number: `4096`, `0x1000`, `2MiB`. */
const num = () => field('a number', (v) => parseNumber(v));
/** guest data value, all 64 bits */
const u64 = () => field('a 64-bit value', (v) => parseU64(v));
/** an exact u64 uAPI field: a number below 2^53, a bigint above */
const u64Exact = () => field('a u64', (v) => parseU64Exact(v));
/** address or handle: a number or `name±offset` naming an earlier step's result */
const addr = () => field('an address or name', (v): AddrExpr => parseAddrExpr(v, { signed: true }));
/** flags: a list of kernel names or a number */
const flags = (kind: FlagKind) => field(`${kind} flags`, (v) => parseFlags(v, kind));
/** one kernel constant (a name or a number) */
const constant = (kind: FlagKind) =>
  field(`a ${kind} name or number`, (v) => {
    if (Array.isArray(v)) throw new Error(`expected one ${kind} name or a number, not a list`);
    return parseFlags(v, kind);
  });
/** access size of a load/store */
const accessSize = () =>
  field('an access size', (v) => {
    const n = parseNumber(v);
    if (n !== 1 && n !== 2 && n !== 4 && n !== 8) throw new Error(`access size must be 1, 2, 4 or 8, got ${n}`);
    return n as 1 | 2 | 4 | 8;
  });
/** page size of a vendor guest operation: 4KiB or 2MiB */
const pageSize = () =>
  field('a page size', (v) => {
    const n = parseNumber(v);
    if (n !== 4096 && n !== 2 * 1024 * 1024) throw new Error(`page_size must be 4KiB or 2MiB, got ${n}`);
    return n;
  });
const numList = () => z.array(num());
const bool = () => z.boolean();

/* ------------------------------------------------------------------------------------------ */
/* Operations                                                                                 */
/* ------------------------------------------------------------------------------------------ */

const memslotFields = {
  /** kvm_userspace_memory_region.slot: bits 0-15 slot id, bits 16-31 address space */
  slot: num(),
  /** convenience: OR-ed into slot bits 16-31 */
  as_id: num().optional(),
  flags: flags('memslot').optional(),
  guest_phys_addr: u64Exact(),
  memory_size: u64Exact(),
  /** default 0 (allowed for guest_memfd slots, which need no hva) */
  userspace_addr: addr().default(0),
};

const ASSERT_WHAT = ['attributes', 'spte', 'rmp', 'sept', 'directmap', 'stats', 'memslot', 'gmem'] as const;
export type AssertWhat = (typeof ASSERT_WHAT)[number];

/** Fields of an assert step that locate the thing inspected; every other field is an expected value. */
export const ASSERT_LOCATORS = ['what', 'gpa', 'gfn', 'pfn', 'slot', 'as_id', 'fd', 'offset', 'vcpu'] as const;

/** YAML integers arrive as bigint; expected state values become numbers when exact */
function plainValue(v: unknown): unknown {
  if (typeof v === 'bigint') return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  if (Array.isArray(v)) return v.map(plainValue);
  return v;
}
const assertValue = z
  .union([z.string(), z.number(), z.bigint(), z.boolean(), z.null(), z.array(z.unknown())])
  .transform(plainValue);

const assertArgs = z
  .object({
    what: z.enum(ASSERT_WHAT),
    gpa: num().optional(),
    gfn: num().optional(),
    pfn: num().optional(),
    slot: num().optional(),
    as_id: num().optional(),
    fd: addr().optional(),
    offset: num().optional(),
    vcpu: addr().optional(),
  })
  .catchall(assertValue);

export const OP_SCHEMAS = {
  /* -- the VMM process -- */
  mmap: z.strictObject({
    size: num(),
    prot: flags('prot').optional(),
    flags: flags('map').optional(),
    fd: addr().optional(),
    offset: num().optional(),
    /** MAP_HUGETLB with 2 MiB pages (anonymous memory only) */
    hugepage: field('a huge page size', (v) => {
      const n = parseNumber(v);
      if (n !== 2 * 1024 * 1024) throw new Error(`hugepage must be 2MiB, got ${n}`);
      return n;
    }).optional(),
  }),
  munmap: z.strictObject({ addr: addr(), size: num() }),
  read: z.strictObject({ addr: addr(), size: accessSize() }),
  write: z.strictObject({ addr: addr(), size: accessSize(), value: u64() }),
  close: z.strictObject({ fd: addr() }),

  /* -- guest_memfd and memory providers -- */
  create_guest_memfd: z.strictObject({ size: num(), flags: flags('guest_memfd').optional() }),
  fallocate: z.strictObject({ fd: addr(), mode: flags('fallocate'), offset: num(), len: num() }),
  punch_hole: z.strictObject({ fd: addr(), offset: num(), len: num() }),
  gmem_poison: z.strictObject({ fd: addr(), offset: num() }),
  device_revoke: z.strictObject({ fd: addr() }),

  /* -- VM ioctls -- */
  set_user_memory_region: z.strictObject(memslotFields),
  set_user_memory_region2: z.strictObject({
    ...memslotFields,
    guest_memfd_offset: u64Exact().optional(),
    guest_memfd: addr().optional(),
  }),
  set_memory_attributes: z.strictObject({
    address: u64Exact(),
    size: u64Exact(),
    attributes: flags('attributes'),
    flags: num().optional(),
  }),
  get_dirty_log: z.strictObject({ slot: num(), as_id: num().optional() }),
  clear_dirty_log: z.strictObject({
    slot: num(),
    as_id: num().optional(),
    first_page: num(),
    num_pages: num(),
    /** bit numbers set in the user bitmap (bit 0 = first_page); default: every bit */
    dirty_bitmap: numList().optional(),
  }),
  check_extension: z.strictObject({ cap: constant('cap'), on: z.enum(['vm', 'system']).optional() }),
  enable_cap: z.strictObject({
    cap: constant('cap'),
    flags: num().optional(),
    args: z.array(flags('enable_cap_args')).max(4).optional(),
  }),
  create_vcpu: z.strictObject({ id: num() }),

  /* -- vCPU: guest accesses and exits -- */
  guest_read: z.strictObject({ vcpu: addr(), gpa: num(), size: accessSize(), private: bool().optional() }),
  guest_write: z.strictObject({
    vcpu: addr(),
    gpa: num(),
    size: accessSize(),
    value: u64(),
    private: bool().optional(),
  }),
  guest_fetch: z.strictObject({ vcpu: addr(), gpa: num(), private: bool().optional() }),
  complete_mmio: z.strictObject({ vcpu: addr(), data: u64().optional() }),
  complete_hypercall: z.strictObject({ vcpu: addr(), ret: num() }),
  pre_fault_memory: z.strictObject({ vcpu: addr(), gpa: u64Exact(), size: u64Exact(), flags: num().optional() }),

  /* -- SEV-SNP -- */
  snp_launch_start: z.strictObject({ policy: num().optional(), flags: num().optional() }),
  snp_launch_update: z.strictObject({
    gfn_start: num(),
    len: num(),
    type: constant('snp_page_type'),
    uaddr: addr().optional(),
    flags: num().optional(),
  }),
  snp_launch_finish: z.strictObject({ flags: num().optional(), host_data: z.string().optional() }),
  guest_pvalidate: z.strictObject({ vcpu: addr(), gpa: num(), page_size: pageSize().optional(), validate: bool() }),
  /** RMPADJUST (VMPL0 guest): set VMPL `vmpl`'s permission mask (and the VMSA bit) of a page */
  guest_rmpadjust: z.strictObject({
    vcpu: addr(),
    gpa: num(),
    page_size: pageSize().optional(),
    vmpl: num(),
    perms: num(),
    vmsa: bool().optional(),
  }),
  /** a 4K page-state change through the GHCB MSR protocol (GHCB_MSR_PSC_REQ) */
  guest_psc_msr: z.strictObject({ vcpu: addr(), gpa: num(), operation: z.enum(['private', 'shared']) }),
  guest_psc: z.strictObject({
    vcpu: addr(),
    entries: z
      .array(
        z.strictObject({
          gpa: num(),
          operation: z.enum(['private', 'shared']),
          page_size: pageSize().optional(),
        }),
      )
      .min(1),
  }),

  /* -- TDX -- */
  tdx_init_vm: z.strictObject({ attributes: num().optional(), xfam: num().optional() }),
  tdx_init_vcpu: z.strictObject({ vcpu: addr() }),
  tdx_init_mem_region: z.strictObject({
    vcpu: addr(),
    source_addr: addr(),
    gpa: num(),
    nr_pages: num(),
    flags: flags('tdx_init_mem_region').optional(),
  }),
  tdx_finalize_vm: z.strictObject({}),
  guest_accept: z.strictObject({ vcpu: addr(), gpa: num(), page_size: pageSize().optional() }),

  /* -- both vendors: KVM_HC_MAP_GPA_RANGE / TDG.VP.VMCALL<MapGPA> -- */
  guest_map_gpa_range: z.strictObject({
    vcpu: addr(),
    gpa: num(),
    npages: num(),
    attributes: flags('map_gpa_range').optional(),
  }),

  /* -- model state -- */
  assert: assertArgs,
} as const;

export type OpName = keyof typeof OP_SCHEMAS;
export const OP_NAMES = Object.keys(OP_SCHEMAS) as OpName[];
export type OpArgs = { [K in OpName]: z.output<(typeof OP_SCHEMAS)[K]> };

export function isOpName(name: string): name is OpName {
  return Object.prototype.hasOwnProperty.call(OP_SCHEMAS, name);
}

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
  internal: z.strictObject({ suberror: num() }).optional(),
  system_event: z.strictObject({ type: num() }).optional(),
  signal: z.enum(SIGNALS).optional(),
  /** the guest took an exception itself and the access did not complete (#VC, #VE) */
  exception: z.string().regex(/^#[A-Z]{2}$/, 'an exception vector such as #VC or #VE').optional(),
  dirty_pages: numList().optional(),
  gpa: num().optional(),
  size: num().optional(),
  /** return code of a vendor instruction / TDCALL (number or the vendor's name) */
  ret: z.union([z.string(), num()]).optional(),
});

export type ExpectFields = z.output<typeof expectObject>;

/** Expected outcome of a step; `{}` (or an omitted expect / `expect: ok`) means success. */
export type Expectation = ExpectFields;

const EXIT_FIELD_REASON: Record<string, string> = {
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

export const VM_TYPES = ['default', 'sw-protected', 'snp', 'tdx'] as const;
export type VmType = (typeof VM_TYPES)[number];
export const PROVIDERS = ['guest_memfd', 'device_fd'] as const;
export type Provider = (typeof PROVIDERS)[number];
export const PROFILES = ['upstream', 'host'] as const;
export type Profile = (typeof PROFILES)[number];
export const TARGET_NAMES = ['model', 'kvm'] as const;
export type TargetName = (typeof TARGET_NAMES)[number];

const vmSchema = z.strictObject({
  type: z.enum(VM_TYPES),
  provider: z.enum(PROVIDERS).optional(),
  /** kernel profile the expectations follow: `upstream` (model only) or `host` (real KVM too) */
  profile: z.enum(PROFILES).optional(),
  /** offer the unmerged KVM_MEM_PCI_HOLE RFC (model only: no kernel has it) */
  pci_hole: bool().optional(),
  /* SEV-SNP backend options */
  directmap: z.enum(['split', 'unmap']).optional(),
  rmp_timing: z.enum(['prepare', 'set-attributes']).optional(),
  /* TDX backend options */
  huge_pages: bool().optional(),
  /** guest physical address width: 48 or 52 bits */
  gpaw: field('48 or 52', (v) => {
    const n = parseNumber(v);
    if (n !== 48 && n !== 52) throw new Error(`gpaw is 48 or 52, got ${n}`);
    return n as 48 | 52;
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
const invariantSchema = z.union([invariantName, z.strictObject({ assert: assertArgs })]);
export type Invariant = z.output<typeof invariantSchema>;

const concurrentSchema = z.strictObject({
  actors: z.record(z.string(), z.array(stepSchema).min(1)),
  invariants: z.array(invariantSchema).optional(),
});
export type ConcurrentBlock = { actors: Record<string, Step[]>; invariants?: Invariant[] };

const SNP_OPTIONS = ['directmap', 'rmp_timing'] as const;
const TDX_OPTIONS = ['huge_pages', 'gpaw'] as const;

export const scenarioSchema = z
  .strictObject({
    name: z.string().min(1),
    description: z.string().optional(),
    vm: vmSchema,
    applies_to: appliesToSchema.optional(),
    steps: z.array(stepSchema),
    concurrent: concurrentSchema.optional(),
  })
  .superRefine((sc, ctx) => {
    // backend options only for a VM type the scenario runs as
    const types = new Set<VmType>([sc.vm.type, ...(sc.applies_to?.vm_types ?? [])]);
    for (const [vendor, opts] of [
      ['snp', SNP_OPTIONS],
      ['tdx', TDX_OPTIONS],
    ] as const) {
      for (const o of opts) {
        if (sc.vm[o] !== undefined && !types.has(vendor)) {
          ctx.addIssue({ code: 'custom', path: ['vm', o], message: `${o} is an option of ${vendor} VMs` });
        }
      }
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
    }
  });

export interface Scenario {
  name: string;
  description?: string;
  vm: VmConfig;
  applies_to?: AppliesTo;
  steps: Step[];
  concurrent?: ConcurrentBlock;
}

function findRefs(v: unknown, path: (string | number)[] = []): { path: (string | number)[]; ref: AddrRef }[] {
  if (isAddrRef(v)) return [{ path, ref: v }];
  if (Array.isArray(v)) return v.flatMap((x, i) => findRefs(x, [...path, i]));
  if (typeof v === 'object' && v !== null) {
    return Object.entries(v).flatMap(([k, x]) => findRefs(x, [...path, k]));
  }
  return [];
}
