/** `assert`: compare model state with expected values. */
import { z } from 'zod';
import { addr, num, pfn } from './fields.js';
import { defineOp } from './op.js';

export const ASSERT_WHAT = ['attributes', 'spte', 'rmp', 'sept', 'td', 'directmap', 'stats', 'memslot', 'gmem', 'sev', 'launch'] as const;
export type AssertWhat = (typeof ASSERT_WHAT)[number];

/** Fields of an assert step that locate the thing inspected; every other field is an expected value. */
export const ASSERT_LOCATORS = ['what', 'gpa', 'gfn', 'pfn', 'slot', 'as_id', 'fd', 'offset', 'vcpu'] as const;

/** YAML integers arrive as bigint; expected state values become numbers when exact */
function plainValue(v: unknown): unknown {
  if (typeof v === 'bigint') return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  if (Array.isArray(v)) return v.map(plainValue);
  if (typeof v === 'object' && v !== null) return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, plainValue(x)]));
  return v;
}
/** a value, or a mapping of expected sub-fields of a grouped field (`host: { rmpupdates: 2 }`) */
const assertValue = z
  .union([z.string(), z.number(), z.bigint(), z.boolean(), z.null(), z.array(z.unknown()), z.record(z.string(), z.unknown())])
  .transform(plainValue)
  .describe('expected value');

/**
 * The fields each kind of state reports (the model's inspection, packages/scenario/src/model/
 * inspect.ts, and the vendor backends' `inspect`): an expected field outside this list is a
 * mistake in the file (a typo), reported where it is written, not a step that fails.
 * model-target.test.ts checks that every field the model reports is listed here.
 */
export const ASSERT_FIELDS: { readonly [K in AssertWhat]: readonly string[] } = {
  attributes: ['attributes', 'private'],
  spte: ['present', 'level', 'leaf_gfn', 'leaf_pfn', 'writable', 'mmu_writable', 'dirty', 'accessed', 'mirror', 'private'],
  // RmpEntryView (packages/snp/src/rmp.ts), its `gpa` as `rmp_gpa` (`gpa` locates the entry);
  // `present: false` when no page backs the gpa
  rmp: ['assigned', 'pagesize', 'immutable', 'asid', 'vmsa', 'validated', 'vmpl', 'level', 'present', 'rmp_gpa'],
  sept: ['level', 'state'],
  // TdxBackend.inspect({ what: 'td' }) (packages/tdx/src/tdx-backend.ts): KVM's TD state
  // (kvm_tdx->state, hkid, attributes, pre_fault_allowed, wait_for_sept_zap), the TDX module's
  // lifecycle, TD epoch, MRTD and PAMT pages, and the vCPUs by id (`vcpus: { 0: { initialized: true } }`)
  td: ['state', 'lifecycle', 'hkid', 'hkidReleased', 'gpaw', 'attributes', 'epoch', 'refcount', 'vcpus', 'mrtd', 'pamtPages', 'preFaultAllowed', 'waitForSeptZap'],
  // SevBackend.inspect({ what: 'sev' }) (packages/snp/src/sev/sev-backend.ts)
  sev: ['active', 'es_active', 'need_init', 'asid', 'vmsa_features', 'ghcb_version', 'handle', 'policy', 'state', 'measured_bytes', 'digest', 'pages_locked', 'regions', 'protected_vcpus', 'error', 'error_name'],
  directmap: ['present', 'level', 'levelName'],
  // SnpBackend.inspect({ what: 'launch' }): the SNP launch context and the firmware's launch
  // digest (hex SHA-384, the attestation report's MEASUREMENT once LAUNCH_FINISH ran)
  launch: ['started', 'finished', 'policy', 'digest', 'measuredPages', 'vmsaPfns'],
  stats: [
    // Vm.mmuStats() and the TDP MMU's own counters
    'remote_tlb_flush', 'pages_4k', 'pages_2m', 'pages_1g', 'mmu_shadow_zapped', 'mmu_pte_write', 'mmu_pde_zapped',
    'mmu_flooded', 'mmu_recycled', 'mmu_cache_miss', 'mmu_unsync', 'nx_lpage_splits', 'max_mmu_rmap_size',
    'max_mmu_page_hash_collisions', 'tlb_flushes', 'external_spt_leaked', 'metadata_bytes', 'vm_dead', 'vcpus',
    // SEV-SNP backend: its counters are grouped (host: SnpHostStats, backend: SnpBackendStats)
    'asid', 'directmap', 'rmpTiming', 'rmp', 'directmapStats', 'host', 'backend',
    // TDX backend: its counters, the TD, and one count per SEAMCALL leaf (trace names)
    'kicks', 'busyRetries', 'bugs', 'septTablesLinked', 'septTablesReclaimed', 'pagesAdded', 'pagesAugmented',
    'pagesRemoved', 'pagesAccepted', 'splits', 'tdState', 'lifecycle', 'hkidAssigned', 'mrtd', 'septTables',
    'leavesByState', 'seamcalls', 'bugReasons',
    'tdh_mem_page_add', 'tdh_mem_sept_add', 'tdh_mem_page_aug', 'tdh_mem_range_block', 'tdh_mng_key_config',
    'tdh_mng_create', 'tdh_vp_create', 'tdh_mem_page_demote', 'tdh_mr_extend', 'tdh_mr_finalize', 'tdh_vp_flush',
    'tdh_mng_vpflushdone', 'tdh_mng_key_freeid', 'tdh_mng_init', 'tdh_vp_init', 'tdh_phymem_page_reclaim',
    'tdh_mem_page_remove', 'tdh_phymem_cache_wb', 'tdh_mem_track', 'tdh_phymem_page_wbinvd', 'tdh_vp_enter',
    'tdg_mem_page_accept',
  ],
  memslot: ['present', 'base_gfn', 'guest_phys_addr', 'npages', 'memory_size', 'userspace_addr', 'flags', 'guest_memfd', 'guest_memfd_offset'],
  gmem: [
    'kind', 'size', 'flags', 'allocated', 'uptodate', 'prepared', 'poisoned', 'allocated_pages', 'poisoned_pages',
    'bindings', 'mappings', 'revoked', 'live',
  ],
};

export const assertArgs = z
  .object({
    what: z.enum(ASSERT_WHAT),
    gpa: num().optional(),
    gfn: num().optional(),
    // a number, or the name of a step's result (a frame `snp_host_access` returned)
    pfn: pfn().optional(),
    slot: num().optional(),
    as_id: num().optional(),
    fd: addr().optional(),
    offset: num().optional(),
    vcpu: addr().optional(),
  })
  .catchall(assertValue)
  .superRefine((a, ctx) => {
    const known = ASSERT_FIELDS[a.what];
    for (const k of Object.keys(a)) {
      if ((ASSERT_LOCATORS as readonly string[]).includes(k) || known.includes(k)) continue;
      ctx.addIssue({
        code: 'custom',
        path: [k],
        message: `assert ${a.what} reports no field "${k}" (it reports ${known.join(', ')}; locators: ${ASSERT_LOCATORS.slice(1).join(', ')})`,
      });
    }
  });

export const ASSERT_OPS = {
  assert: defineOp({ args: assertArgs, does: 'compares the state the target reports with every field that is not a locator (see below)' }),
};
