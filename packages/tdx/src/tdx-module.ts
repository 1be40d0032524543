/**
 * A model of the Intel TDX module, as far as KVM's memory management sees it: one TD with its
 * lifecycle and operation state, HKID, TD epoch and vCPU epochs (TLB tracking), the Secure EPT,
 * MRTD, and the SEAMCALLs KVM issues for memory, each returning the module's status code.
 *
 * Sources: TDX module source (intel/tdx-module, src/vmm_dispatcher/api_calls/tdh_mem_*.c,
 * tdh_mr_*.c, tdh_phymem_*.c, include/auto_gen/sept_state_lookup.c) for the checks and their
 * order; arch/x86/kvm/vmx/tdx.c and arch/x86/virt/vmx/tdx/tdx.h for how KVM calls them.
 *
 * Levels here are TDX S-EPT levels (0 = 4 KiB). Every SEAMCALL returns a small status code from
 * status.ts; extended error information (RCX/RDX in the module) is left in `lastOperandId`,
 * `lastEntryLevel`, `lastEntryState`.
 */
import { createHash, type Hash } from 'node:crypto';
import type { HostPhysMem } from '@ccmem/core';
import {
  OPERAND_ID_R8,
  OPERAND_ID_RCX,
  OPERAND_ID_TD_EPOCH,
  TDX_EPT_ENTRY_NOT_PRESENT,
  TDX_EPT_ENTRY_STATE_INCORRECT,
  TDX_EPT_WALK_FAILED,
  TDX_FLUSHVP_NOT_DONE,
  TDX_GPA_RANGE_ALREADY_BLOCKED,
  TDX_GPA_RANGE_NOT_BLOCKED,
  TDX_LIFECYCLE_STATE_INCORRECT,
  TDX_OPERAND_BUSY,
  TDX_OPERAND_INVALID,
  TDX_OP_STATE_INCORRECT,
  TDX_PAGE_ALREADY_ACCEPTED,
  TDX_PAGE_METADATA_INCORRECT,
  TDX_PAGE_SIZE_MISMATCH,
  TDX_PREVIOUS_TLB_EPOCH_BUSY,
  TDX_SUCCESS,
  TDX_TLB_TRACKING_NOT_DONE,
  TDX_VCPU_STATE_INCORRECT,
  tdxStatusName,
  tdxStatusValue,
} from './status.js';
import {
  SEPT_ALLOWED,
  SEPT_BLOCKED,
  SEPT_FREE,
  SEPT_NL_BLOCKED,
  SEPT_NL_PRESENT,
  SEPT_PENDING,
  SEPT_PENDING_BLOCKED,
  SEPT_PRESENT,
  SEPT_SPAN,
  SecureEpt,
  septIsLeafState,
  type SeptTable,
} from './sept.js';

/** The SEAMCALL/TDCALL leaves the model implements, with the leaf numbers of tdx.h. */
export const SEAMCALL_LEAVES = {
  'TDH.MEM.PAGE.ADD': 2,
  'TDH.MEM.SEPT.ADD': 3,
  'TDH.MEM.PAGE.AUG': 6,
  'TDH.MEM.RANGE.BLOCK': 7,
  'TDH.MNG.KEY.CONFIG': 8,
  'TDH.MNG.CREATE': 9,
  'TDH.VP.CREATE': 10,
  'TDH.MEM.PAGE.DEMOTE': 15,
  'TDH.MR.EXTEND': 16,
  'TDH.MR.FINALIZE': 17,
  'TDH.VP.FLUSH': 18,
  'TDH.MNG.VPFLUSHDONE': 19,
  'TDH.MNG.KEY.FREEID': 20,
  'TDH.MNG.INIT': 21,
  'TDH.VP.INIT': 22,
  'TDH.PHYMEM.PAGE.RECLAIM': 28,
  'TDH.MEM.PAGE.REMOVE': 29,
  'TDH.PHYMEM.CACHE.WB': 40,
  'TDH.MEM.TRACK': 38,
  'TDH.PHYMEM.PAGE.WBINVD': 41,
  'TDH.VP.ENTER': 0,
  'TDG.MEM.PAGE.ACCEPT': 6,
} as const;
export type SeamcallName = keyof typeof SEAMCALL_LEAVES;
const LEAF_NAMES = Object.keys(SEAMCALL_LEAVES) as SeamcallName[];
const LEAF_ID = new Map<string, number>(LEAF_NAMES.map((n, i) => [n, i]));
/** trace event names: the kernel's wrapper names, e.g. tdh_mem_page_aug */
const TRACE_NAMES = LEAF_NAMES.map((n) => n.toLowerCase().replace(/\./g, '_'));
const L_PAGE_ADD = LEAF_ID.get('TDH.MEM.PAGE.ADD')!;
const L_SEPT_ADD = LEAF_ID.get('TDH.MEM.SEPT.ADD')!;
const L_PAGE_AUG = LEAF_ID.get('TDH.MEM.PAGE.AUG')!;
const L_BLOCK = LEAF_ID.get('TDH.MEM.RANGE.BLOCK')!;
const L_TRACK = LEAF_ID.get('TDH.MEM.TRACK')!;
const L_REMOVE = LEAF_ID.get('TDH.MEM.PAGE.REMOVE')!;
const L_WBINVD = LEAF_ID.get('TDH.PHYMEM.PAGE.WBINVD')!;
const L_RECLAIM = LEAF_ID.get('TDH.PHYMEM.PAGE.RECLAIM')!;
const L_MR_EXTEND = LEAF_ID.get('TDH.MR.EXTEND')!;
const L_MR_FINALIZE = LEAF_ID.get('TDH.MR.FINALIZE')!;
const L_DEMOTE = LEAF_ID.get('TDH.MEM.PAGE.DEMOTE')!;
const L_ACCEPT = LEAF_ID.get('TDG.MEM.PAGE.ACCEPT')!;
const L_VP_ENTER = LEAF_ID.get('TDH.VP.ENTER')!;
const L_VP_FLUSH = LEAF_ID.get('TDH.VP.FLUSH')!;
const L_VPFLUSHDONE = LEAF_ID.get('TDH.MNG.VPFLUSHDONE')!;
const L_CACHE_WB = LEAF_ID.get('TDH.PHYMEM.CACHE.WB')!;
const L_MNG_CREATE = LEAF_ID.get('TDH.MNG.CREATE')!;
const L_KEY_CONFIG = LEAF_ID.get('TDH.MNG.KEY.CONFIG')!;
const L_MNG_INIT = LEAF_ID.get('TDH.MNG.INIT')!;
const L_VP_CREATE = LEAF_ID.get('TDH.VP.CREATE')!;
const L_VP_INIT = LEAF_ID.get('TDH.VP.INIT')!;
const L_KEY_FREEID = LEAF_ID.get('TDH.MNG.KEY.FREEID')!;

/** TD operation state as KVM names it (TD_STATE_*); the module's op_state follows the same steps. */
export type TdState = 'UNINITIALIZED' | 'INITIALIZED' | 'RUNNABLE';
/** TD lifecycle state (TDR): HKID assigned → keys configured → blocked (vCPUs flushed) → teardown. */
export type TdLifecycle = 'NONE' | 'HKID_ASSIGNED' | 'KEYS_CONFIGURED' | 'BLOCKED' | 'TEARDOWN';

/** TD attribute bit that turns a pending-page access into a TD exit instead of a #VE. */
export const TDX_TD_ATTR_SEPT_VE_DISABLE = 2 ** 28;

/** Result of TDG.MEM.PAGE.ACCEPT that is not a status: the TD exits with an EPT violation. */
export const TDG_EXIT_EPT_VIOLATION = -1;

/** TDX_EXTENDMR_CHUNKSIZE: TDH.MR.EXTEND measures 256 bytes per call. */
export const TDX_EXTENDMR_CHUNKSIZE = 256;

interface TdVcpu {
  created: boolean;
  initialized: boolean;
  /** inside TD context (between TDH.VP.ENTER and the TD exit) */
  inGuest: boolean;
  /** TD epoch sampled at TD entry (VCPU_EPOCH) */
  epoch: number;
  /**
   * the TDVPS is associated with a logical CPU: from TDH.VP.INIT or TDH.VP.ENTER until
   * TDH.VP.FLUSH (a TD exit keeps it); TDH.MNG.VPFLUSHDONE refuses while any vCPU is still
   * associated
   */
  associated: boolean;
}

export interface TdxTracer {
  readonly enabled?: boolean;
  emit(name: string, fields: Readonly<Record<string, number | string | boolean | bigint | null>>): void;
}

export interface TdxModuleOptions {
  phys: HostPhysMem;
  /** private HKIDs the platform has (TDX KeyIDs); default 63 */
  nrHkids?: number;
  tracer?: TdxTracer | null;
}

/** The platform's TDX module: the private HKID pool, shared by all TDs. */
export class TdxModule {
  readonly phys: HostPhysMem;
  tracer: TdxTracer | null;
  private readonly hkidUsed: Uint8Array;

  constructor(opts: TdxModuleOptions) {
    this.phys = opts.phys;
    this.tracer = opts.tracer ?? null;
    this.hkidUsed = new Uint8Array((opts.nrHkids ?? 63) + 1);
    this.hkidUsed[0] = 1; // KeyID 0 is the host's (TME) key
  }

  /** tdx_guest_keyid_alloc(): a free private HKID, or -1. */
  allocHkid(): number {
    const i = this.hkidUsed.indexOf(0);
    if (i < 0) return -1;
    this.hkidUsed[i] = 1;
    return i;
  }

  /** tdx_guest_keyid_free() */
  freeHkid(hkid: number): void {
    if (hkid > 0) this.hkidUsed[hkid] = 0;
  }

  get freeHkids(): number {
    let n = 0;
    for (let i = 1; i < this.hkidUsed.length; i++) if (!this.hkidUsed[i]) n++;
    return n;
  }

  createTd(): TdxTd {
    return new TdxTd(this);
  }
}

const GPA_PAGE = 4096;
const SPAN_BYTES = SEPT_SPAN.map((n) => n * GPA_PAGE);
/** PAMT page type of an S-EPT page (private pages store their mapping level, ≥ 0) */
export const PT_SEPT = -1;

/** One trust domain: TDR + TDCS + TDVPS state, its Secure EPT and its private pages. */
/**
 * The PAMT of a TD's pages as a sparse table: one Int8Array of 512 entries per 2M of host
 * frames that holds any of the TD's pages (value + 2, 0 = not the TD's), instead of a hash
 * entry per page. Answers like a Map<pfn, level> (has / get / set / delete / size / values).
 */
export class PamtTable {
  private readonly blocks = new Map<number, Int8Array>();
  private lastKey = -1;
  private lastBlock: Int8Array | undefined = undefined;
  private count = 0;

  get size(): number {
    return this.count;
  }

  private block(pfn: number, create: boolean): Int8Array | undefined {
    const key = Math.floor(pfn / 512);
    if (key === this.lastKey) return this.lastBlock;
    let b = this.blocks.get(key);
    if (b === undefined) {
      if (!create) return undefined;
      b = new Int8Array(512);
      this.blocks.set(key, b);
    }
    this.lastKey = key;
    this.lastBlock = b;
    return b;
  }

  has(pfn: number): boolean {
    const b = this.block(pfn, false);
    return b !== undefined && b[pfn & 511] !== 0;
  }

  get(pfn: number): number | undefined {
    const b = this.block(pfn, false);
    const v = b === undefined ? 0 : b[pfn & 511]!;
    return v === 0 ? undefined : v - 2;
  }

  set(pfn: number, value: number): this {
    if (!Number.isInteger(pfn) || pfn < 0 || !(value >= PT_SEPT && value <= 120)) throw new RangeError(`PAMT: bad entry ${pfn} -> ${value}`);
    const b = this.block(pfn, true)!;
    const i = pfn & 511;
    if (b[i] === 0) this.count++;
    b[i] = value + 2;
    return this;
  }

  delete(pfn: number): boolean {
    const b = this.block(pfn, false);
    const i = pfn & 511;
    if (b === undefined || b[i] === 0) return false;
    b[i] = 0;
    this.count--;
    return true;
  }

  /** [pfn, value] pairs, by 2M block in first-use order, then by pfn */
  *entries(): IterableIterator<[number, number]> {
    for (const [key, b] of this.blocks) for (let i = 0; i < 512; i++) if (b[i] !== 0) yield [key * 512 + i, b[i]! - 2];
  }

  *keys(): IterableIterator<number> {
    for (const [pfn] of this.entries()) yield pfn;
  }

  *values(): IterableIterator<number> {
    for (const [, v] of this.entries()) yield v;
  }

  [Symbol.iterator](): IterableIterator<[number, number]> {
    return this.entries();
  }
}

export class TdxTd {
  readonly module: TdxModule;
  state: TdState = 'UNINITIALIZED';
  lifecycle: TdLifecycle = 'NONE';
  hkid = -1;
  attributes = 0;
  /** guest physical address width: 48 (4-level EPT, shared bit 47) or 52 (5-level, bit 51) */
  gpaw = 48;
  /** 2^(GPAW-1): the first shared GPA */
  private privateLimit = 2 ** 47;
  sept: SecureEpt | null = null;
  /** TD_EPOCH and the two REFCOUNTs (vCPUs in TD context per epoch parity) */
  epoch = 1;
  readonly refcount = new Int32Array(2);
  readonly vcpus: TdVcpu[] = [];
  /**
   * PAMT for the TD's pages: pfn → TDX level of a private page mapping, or PT_SEPT for an
   * S-EPT page. A page in here belongs to the TD (the module refuses to add it twice).
   */
  readonly pamt = new PamtTable();
  private mrHash: Hash | null = null;
  mrtd: Buffer | null = null;
  cacheWbDone = false;

  /* extended error information of the last SEAMCALL (RCX/RDX in the module) */
  lastOperandId = 0;
  lastEntryLevel = 0;
  lastEntryState = 0;
  /** status code of the last SEAMCALL */
  lastStatus = TDX_SUCCESS;

  /** SEAMCALLs issued, per leaf (indexed like SEAMCALL_LEAVES) */
  readonly calls = new Float64Array(LEAF_NAMES.length);
  /** SEAMCALLs that failed, per leaf */
  readonly failures = new Float64Array(LEAF_NAMES.length);

  private busyLeft = 0;
  private busyLeaf = -1;
  /** matching SEAMCALLs that still run normally before the injected ones */
  private busySkip = 0;

  constructor(module: TdxModule) {
    this.module = module;
  }

  /* ------------------------------------------------------------------------------------------ */
  /* test hooks and helpers                                                                     */
  /* ------------------------------------------------------------------------------------------ */

  /**
   * Model-only: the next `count` SEAMCALLs (of `leaf` only, when given) fail with
   * TDX_OPERAND_BUSY, as when a vCPU holds the S-EPT lock inside the module; with `after`, that
   * many matching SEAMCALLs run normally first. Replaces an injection still pending.
   */
  injectOperandBusy(count = 1, leaf?: SeamcallName, after = 0): void {
    this.busyLeft = count;
    this.busyLeaf = leaf === undefined ? -1 : LEAF_ID.get(leaf)!;
    this.busySkip = after;
  }

  get pendingBusyInjections(): number {
    return this.busyLeft;
  }

  /** The 64-bit RAX value of the last SEAMCALL. */
  lastStatus64(): bigint {
    return tdxStatusValue(this.lastStatus, this.lastOperandId);
  }

  callCount(leaf: SeamcallName): number {
    return this.calls[LEAF_ID.get(leaf)!]!;
  }

  /** calls per SEAMCALL leaf, zeros included */
  allCallCounts(): Record<string, number> {
    const out: Record<string, number> = {};
    LEAF_NAMES.forEach((n, i) => (out[n] = this.calls[i]!));
    return out;
  }

  callStats(): Record<string, { calls: number; failures: number }> {
    const out: Record<string, { calls: number; failures: number }> = {};
    LEAF_NAMES.forEach((n, i) => {
      if (this.calls[i]) out[n] = { calls: this.calls[i]!, failures: this.failures[i]! };
    });
    return out;
  }

  get hkidAssigned(): boolean {
    return this.lifecycle === 'HKID_ASSIGNED' || this.lifecycle === 'KEYS_CONFIGURED' || this.lifecycle === 'BLOCKED';
  }

  /** Page is tracked: every vCPU that could hold a TLB entry from before BLOCK has exited. */
  isTlbTracked(bepoch: number): boolean {
    // is_tlb_tracked(): blocked in the previous epoch with no vCPU left in it, or earlier
    if (bepoch === this.epoch - 1 && this.refcount[bepoch & 1] === 0) return true;
    return bepoch < this.epoch - 1;
  }

  private begin(leaf: number): boolean {
    this.calls[leaf]!++;
    this.lastOperandId = 0;
    if (this.busyLeft > 0 && (this.busyLeaf < 0 || this.busyLeaf === leaf)) {
      if (this.busySkip > 0) {
        this.busySkip--;
        return true;
      }
      this.busyLeft--;
      return false;
    }
    return true;
  }

  private end(leaf: number, status: number, gpa: number, level: number): number {
    this.lastStatus = status;
    if (status !== TDX_SUCCESS) this.failures[leaf]!++;
    const tr = this.module.tracer;
    if (tr && tr.enabled !== false) {
      tr.emit(TRACE_NAMES[leaf]!, {
        gpa,
        level,
        status: tdxStatusName(status),
      });
    }
    return status;
  }

  /** A management call's failure, counted like end()'s (the management calls are not traced). */
  private counted(leaf: number, status: number): number {
    this.failures[leaf]!++;
    return status;
  }

  private busy(leaf: number, gpa: number, level: number, operand = OPERAND_ID_RCX): number {
    this.lastOperandId = operand;
    return this.end(leaf, TDX_OPERAND_BUSY, gpa, level);
  }

  private fail(leaf: number, status: number, gpa: number, level: number, operand = OPERAND_ID_RCX): number {
    this.lastOperandId = operand;
    return this.end(leaf, status, gpa, level);
  }

  /**
   * The TDCS checks every memory SEAMCALL starts with (check_state_map_tdcs_and_lock()): keys
   * configured, then an op state the function allows; the current module reports every op-state
   * failure as TDX_OP_STATE_INCORRECT (TDX_TD_NOT_INITIALIZED / TDX_TD_FINALIZED are from older
   * module headers and are not returned).
   */
  private checkTd(allowBuild: boolean, allowRunnable: boolean): number {
    if (this.lifecycle !== 'KEYS_CONFIGURED') return TDX_LIFECYCLE_STATE_INCORRECT;
    if (this.state === 'UNINITIALIZED') return TDX_OP_STATE_INCORRECT;
    if (this.state === 'INITIALIZED' && !allowBuild) return TDX_OP_STATE_INCORRECT;
    if (this.state === 'RUNNABLE' && !allowRunnable) return TDX_OP_STATE_INCORRECT;
    return TDX_SUCCESS;
  }

  /**
   * The start every TD-scope SEAMCALL shares: the busy check (TDX_OPERAND_BUSY with
   * `busyOperand`), then checkTd(). false when the call already ended, its status in lastStatus.
   */
  private beginTd(leaf: number, gpa: number, level: number, allowBuild: boolean, allowRunnable: boolean, busyOperand = OPERAND_ID_RCX): boolean {
    if (!this.begin(leaf)) {
      this.busy(leaf, gpa, level, busyOperand);
      return false;
    }
    const st = this.checkTd(allowBuild, allowRunnable);
    if (st) this.fail(leaf, st, gpa, level, 0);
    return st === TDX_SUCCESS;
  }

  /** A private GPA of this TD, aligned to the level: no shared bit, below 2^(GPAW-1). */
  private gpaOk(gpa: number, level: number): boolean {
    const q = gpa / SPAN_BYTES[level]!;
    return gpa >= 0 && gpa < this.privateLimit && q === Math.floor(q);
  }

  /**
   * The S-EPT walk to the level-`level` entry of `gfn`: its table (the entry at
   * SecureEpt.index(level, gfn)), or undefined when the walk stopped above. The level and state
   * of the entry reached go to lastEntryLevel / lastEntryState (the module's extended error info).
   */
  private walkEntry(level: number, gfn: number): SeptTable | undefined {
    const sept = this.sept!;
    const t = sept.walk(level, gfn);
    if (t) {
      this.lastEntryLevel = level;
      this.lastEntryState = t.state[SecureEpt.index(level, gfn)]!;
    } else {
      this.lastEntryLevel = sept.walkLevel;
      this.lastEntryState = sept.walkState;
    }
    return t;
  }

  /* ------------------------------------------------------------------------------------------ */
  /* TD and vCPU management                                                                     */
  /* ------------------------------------------------------------------------------------------ */

  /** TDH.MNG.CREATE: a TDR with this HKID. */
  mngCreate(hkid: number): number {
    this.calls[L_MNG_CREATE]!++;
    if (this.lifecycle !== 'NONE') return this.counted(L_MNG_CREATE, TDX_LIFECYCLE_STATE_INCORRECT);
    this.hkid = hkid;
    this.lifecycle = 'HKID_ASSIGNED';
    return TDX_SUCCESS;
  }

  /** TDH.MNG.KEY.CONFIG (on every package; one step here). */
  mngKeyConfig(): number {
    this.calls[L_KEY_CONFIG]!++;
    if (this.lifecycle !== 'HKID_ASSIGNED') return this.counted(L_KEY_CONFIG, TDX_LIFECYCLE_STATE_INCORRECT);
    this.lifecycle = 'KEYS_CONFIGURED';
    return TDX_SUCCESS;
  }

  /** TDH.MNG.INIT: TD_PARAMS applied, S-EPT root allocated, MRTD hash started. */
  mngInit(params: { gpaw: 48 | 52; attributes: number }): number {
    this.calls[L_MNG_INIT]!++;
    if (this.lifecycle !== 'KEYS_CONFIGURED') return this.counted(L_MNG_INIT, TDX_LIFECYCLE_STATE_INCORRECT);
    if (this.state !== 'UNINITIALIZED') return this.counted(L_MNG_INIT, TDX_OP_STATE_INCORRECT);
    this.gpaw = params.gpaw;
    this.privateLimit = 2 ** (params.gpaw - 1);
    this.attributes = params.attributes;
    const root = this.module.phys.allocPage();
    this.sept = new SecureEpt(params.gpaw === 52 ? 5 : 4, root);
    this.pamt.set(root, PT_SEPT);
    this.mrHash = createHash('sha384');
    this.state = 'INITIALIZED';
    return TDX_SUCCESS;
  }

  private vcpu(id: number): TdVcpu {
    let v = this.vcpus[id];
    if (!v) {
      v = { created: false, initialized: false, inGuest: false, epoch: 0, associated: false };
      this.vcpus[id] = v;
    }
    return v;
  }

  /** TDH.VP.CREATE + TDH.VP.INIT (KVM_TDX_INIT_VCPU); a failure is TDH.VP.CREATE's. */
  vpInit(vcpuId: number): number {
    this.calls[L_VP_CREATE]!++;
    if (this.lifecycle !== 'KEYS_CONFIGURED') return this.counted(L_VP_CREATE, TDX_LIFECYCLE_STATE_INCORRECT);
    if (this.state !== 'INITIALIZED') return this.counted(L_VP_CREATE, TDX_OP_STATE_INCORRECT);
    const v = this.vcpu(vcpuId);
    if (v.initialized) return this.counted(L_VP_CREATE, TDX_VCPU_STATE_INCORRECT);
    this.calls[L_VP_INIT]!++;
    v.created = true;
    v.initialized = true;
    // tdh_vp_init(): associate_vcpu_initial(): the new vCPU is associated with this logical CPU
    // from now on, entered or not, until TDH.VP.FLUSH
    v.associated = true;
    return TDX_SUCCESS;
  }

  vcpuInitialized(vcpuId: number): boolean {
    return this.vcpus[vcpuId]?.initialized === true;
  }

  vcpuInGuest(vcpuId: number): boolean {
    return this.vcpus[vcpuId]?.inGuest === true;
  }

  /** TDH.VP.ENTER: the vCPU runs in TD context and samples the TD epoch. */
  vpEnter(vcpuId: number): number {
    this.calls[L_VP_ENTER]!++;
    if (this.lifecycle !== 'KEYS_CONFIGURED') return TDX_LIFECYCLE_STATE_INCORRECT;
    if (this.state !== 'RUNNABLE') return TDX_OP_STATE_INCORRECT;
    const v = this.vcpus[vcpuId];
    if (!v || !v.initialized) return TDX_VCPU_STATE_INCORRECT;
    v.associated = true;
    if (v.inGuest) return TDX_SUCCESS;
    v.inGuest = true;
    v.epoch = this.epoch;
    this.refcount[v.epoch & 1]!++;
    return TDX_SUCCESS;
  }

  /** A TD exit (any reason, e.g. the IPI of KVM_REQ_OUTSIDE_GUEST_MODE). */
  vpExit(vcpuId: number): void {
    const v = this.vcpus[vcpuId];
    if (!v || !v.inGuest) return;
    v.inGuest = false;
    this.refcount[v.epoch & 1]!--;
  }

  /** Every vCPU leaves TD context; returns how many were inside. */
  vpExitAll(): number {
    let n = 0;
    for (let i = 0; i < this.vcpus.length; i++) {
      if (this.vcpus[i]?.inGuest) {
        this.vpExit(i);
        n++;
      }
    }
    return n;
  }

  /** TDH.VP.FLUSH(vcpu): the vCPU's TD context is flushed and it is no longer associated. */
  vpFlush(vcpuId: number): number {
    const leaf = L_VP_FLUSH;
    if (!this.begin(leaf)) return this.busy(leaf, 0, 0);
    const v = this.vcpus[vcpuId];
    if (!v?.initialized) return this.fail(leaf, TDX_VCPU_STATE_INCORRECT, 0, 0);
    if (v.inGuest) this.vpExit(vcpuId);
    v.associated = false;
    return this.end(leaf, TDX_SUCCESS, 0, 0);
  }

  /**
   * TDH.MNG.VPFLUSHDONE (after TDH.VP.FLUSH on every vCPU): the TD's lifecycle becomes BLOCKED;
   * TDX_FLUSHVP_NOT_DONE while a vCPU that entered the TD was never flushed.
   */
  mngVpFlushDone(): number {
    const leaf = L_VPFLUSHDONE;
    if (!this.begin(leaf)) return this.busy(leaf, 0, 0);
    if (this.lifecycle !== 'KEYS_CONFIGURED') return this.fail(leaf, TDX_LIFECYCLE_STATE_INCORRECT, 0, 0);
    for (let i = 0; i < this.vcpus.length; i++) if (this.vcpus[i]?.associated) return this.fail(leaf, TDX_FLUSHVP_NOT_DONE, 0, 0);
    this.lifecycle = 'BLOCKED';
    return this.end(leaf, TDX_SUCCESS, 0, 0);
  }

  /** TDH.PHYMEM.CACHE.WB (one CPU per package; one step here). */
  phymemCacheWb(): number {
    const leaf = L_CACHE_WB;
    if (!this.begin(leaf)) return this.busy(leaf, 0, 0);
    if (this.lifecycle !== 'BLOCKED') return this.fail(leaf, TDX_LIFECYCLE_STATE_INCORRECT, 0, 0);
    this.cacheWbDone = true;
    return this.end(leaf, TDX_SUCCESS, 0, 0);
  }

  /** TDH.MNG.KEY.FREEID: the HKID goes back to the pool, the TD enters TEARDOWN. */
  mngKeyFreeid(): number {
    const leaf = L_KEY_FREEID;
    if (!this.begin(leaf)) return this.busy(leaf, 0, 0);
    if (this.lifecycle !== 'BLOCKED' || !this.cacheWbDone) return this.fail(leaf, TDX_LIFECYCLE_STATE_INCORRECT, 0, 0);
    this.module.freeHkid(this.hkid);
    this.hkid = -1;
    this.lifecycle = 'TEARDOWN';
    return this.end(leaf, TDX_SUCCESS, 0, 0);
  }

  /* ------------------------------------------------------------------------------------------ */
  /* Secure EPT SEAMCALLs                                                                       */
  /* ------------------------------------------------------------------------------------------ */

  /** TDH.MEM.SEPT.ADD(gpa, level, page): `page` becomes the S-EPT table under the level-`level` entry. */
  memSeptAdd(gpa: number, level: number, sptPfn: number): number {
    const leaf = L_SEPT_ADD;
    if (!this.beginTd(leaf, gpa, level, true, true)) return this.lastStatus;
    const sept = this.sept!;
    if (level < 1 || level > sept.rootLevel || !this.gpaOk(gpa, level)) return this.fail(leaf, TDX_OPERAND_INVALID, gpa, level);
    if (this.pamt.has(sptPfn)) return this.fail(leaf, TDX_PAGE_METADATA_INCORRECT, gpa, level, OPERAND_ID_R8);
    const gfn = gpa / GPA_PAGE;
    const t = this.walkEntry(level, gfn);
    const i = SecureEpt.index(level, gfn);
    if (!t) return this.fail(leaf, TDX_EPT_WALK_FAILED, gpa, level);
    if (!SEPT_ALLOWED['TDH.MEM.SEPT.ADD'][t.state[i]!]) return this.fail(leaf, TDX_EPT_ENTRY_STATE_INCORRECT, gpa, level);
    sept.linkTable(t, level, gfn, sptPfn);
    this.pamt.set(sptPfn, PT_SEPT);
    return this.end(leaf, TDX_SUCCESS, gpa, level);
  }

  /**
   * TDH.MEM.PAGE.ADD(gpa, level 0, page, source): build time only; copies `source` into the page
   * (encrypting it with the TD key), maps it PRESENT and extends MRTD with "MEM.PAGE.ADD" + gpa.
   */
  memPageAdd(gpa: number, level: number, pfn: number, source: Uint8Array): number {
    const leaf = L_PAGE_ADD;
    if (!this.beginTd(leaf, gpa, level, true, false)) return this.lastStatus;
    if (level !== 0 || !this.gpaOk(gpa, 0)) return this.fail(leaf, TDX_OPERAND_INVALID, gpa, level);
    const gfn = gpa / GPA_PAGE;
    const t = this.walkEntry(0, gfn);
    const i = SecureEpt.index(0, gfn);
    if (!t) return this.fail(leaf, TDX_EPT_WALK_FAILED, gpa, level);
    // tdh_mem_page_add.c: sept_state_is_seamcall_leaf_allowed() fails with EPT_ENTRY_STATE_INCORRECT
    if (!SEPT_ALLOWED['TDH.MEM.PAGE.ADD'][t.state[i]!]) return this.fail(leaf, TDX_EPT_ENTRY_STATE_INCORRECT, gpa, level);
    if (this.pamt.has(pfn)) return this.fail(leaf, TDX_PAGE_METADATA_INCORRECT, gpa, level, OPERAND_ID_R8);
    this.module.phys.writeBytes(pfn, 0, source.subarray(0, GPA_PAGE));
    t.state[i] = SEPT_PRESENT;
    t.pfn[i] = pfn;
    t.used++;
    this.pamt.set(pfn, 0);
    this.mrHash!.update(mrBlock('MEM.PAGE.ADD', gpa));
    return this.end(leaf, TDX_SUCCESS, gpa, level);
  }

  /**
   * TDH.MEM.PAGE.AUG(gpa, level 0|1, page): runtime add; the entry is PENDING until the guest
   * accepts. The module allows it in the INITIALIZED op state too (KVM only AUGs once RUNNABLE).
   */
  memPageAug(gpa: number, level: number, pfn: number): number {
    const leaf = L_PAGE_AUG;
    if (!this.beginTd(leaf, gpa, level, true, true)) return this.lastStatus;
    if (level > 1 || level < 0 || !this.gpaOk(gpa, level)) return this.fail(leaf, TDX_OPERAND_INVALID, gpa, level);
    const gfn = gpa / GPA_PAGE;
    const t = this.walkEntry(level, gfn);
    const i = SecureEpt.index(level, gfn);
    if (!t) return this.fail(leaf, TDX_EPT_WALK_FAILED, gpa, level);
    if (!SEPT_ALLOWED['TDH.MEM.PAGE.AUG'][t.state[i]!]) return this.fail(leaf, TDX_EPT_ENTRY_STATE_INCORRECT, gpa, level);
    if (this.pamt.has(pfn)) return this.fail(leaf, TDX_PAGE_METADATA_INCORRECT, gpa, level, OPERAND_ID_R8);
    t.state[i] = SEPT_PENDING;
    t.pfn[i] = pfn;
    t.bepoch[i] = 0;
    t.used++;
    this.pamt.set(pfn, level);
    return this.end(leaf, TDX_SUCCESS, gpa, level);
  }

  /** TDH.MEM.RANGE.BLOCK(gpa, level): no new TLB fills; records the TD epoch (BEPOCH). */
  memRangeBlock(gpa: number, level: number): number {
    const leaf = L_BLOCK;
    if (!this.beginTd(leaf, gpa, level, true, true)) return this.lastStatus;
    const sept = this.sept!;
    if (level < 0 || level > sept.rootLevel || !this.gpaOk(gpa, level)) return this.fail(leaf, TDX_OPERAND_INVALID, gpa, level);
    const gfn = gpa / GPA_PAGE;
    const t = this.walkEntry(level, gfn);
    const i = SecureEpt.index(level, gfn);
    if (!t) return this.fail(leaf, TDX_EPT_WALK_FAILED, gpa, level);
    const s = t.state[i]!;
    if (!SEPT_ALLOWED['TDH.MEM.RANGE.BLOCK'][s]) {
      const blocked = s === SEPT_BLOCKED || s === SEPT_PENDING_BLOCKED || s === SEPT_NL_BLOCKED;
      return this.fail(leaf, blocked ? TDX_GPA_RANGE_ALREADY_BLOCKED : TDX_EPT_ENTRY_STATE_INCORRECT, gpa, level);
    }
    t.state[i] = s === SEPT_PRESENT ? SEPT_BLOCKED : s === SEPT_PENDING ? SEPT_PENDING_BLOCKED : SEPT_NL_BLOCKED;
    t.bepoch[i] = this.epoch;
    return this.end(leaf, TDX_SUCCESS, gpa, level);
  }

  /** TDH.MEM.TRACK: TD epoch N → N+1; refused while a vCPU still runs in epoch N-1. */
  memTrack(): number {
    const leaf = L_TRACK;
    if (!this.beginTd(leaf, 0, 0, true, true, OPERAND_ID_TD_EPOCH)) return this.lastStatus;
    if (this.refcount[1 - (this.epoch & 1)] !== 0) return this.fail(leaf, TDX_PREVIOUS_TLB_EPOCH_BUSY, 0, 0, 0);
    this.epoch++;
    return this.end(leaf, TDX_SUCCESS, 0, 0);
  }

  /**
   * A leaf that may be removed or demoted: while the TD runs, it must be blocked and TLB-tracked
   * (module: sept_state_is_tlb_tracking_required && op_state_is_tlb_tracking_required).
   */
  private checkBlockedAndTracked(t: SeptTable, i: number): number {
    if (this.state !== 'RUNNABLE') return TDX_SUCCESS;
    const s = t.state[i]!;
    if (s !== SEPT_BLOCKED && s !== SEPT_PENDING_BLOCKED) return TDX_GPA_RANGE_NOT_BLOCKED;
    if (!this.isTlbTracked(t.bepoch[i]!)) return TDX_TLB_TRACKING_NOT_DONE;
    return TDX_SUCCESS;
  }

  /** TDH.MEM.PAGE.REMOVE(gpa, level): the entry becomes FREE and the page leaves the TD. */
  memPageRemove(gpa: number, level: number): number {
    const leaf = L_REMOVE;
    if (!this.beginTd(leaf, gpa, level, true, true)) return this.lastStatus;
    if (level < 0 || level > 2 || !this.gpaOk(gpa, level)) return this.fail(leaf, TDX_OPERAND_INVALID, gpa, level);
    const gfn = gpa / GPA_PAGE;
    const t = this.walkEntry(level, gfn);
    const i = SecureEpt.index(level, gfn);
    if (!t) return this.fail(leaf, TDX_EPT_WALK_FAILED, gpa, level);
    if (!SEPT_ALLOWED['TDH.MEM.PAGE.REMOVE'][t.state[i]!]) return this.fail(leaf, TDX_EPT_ENTRY_STATE_INCORRECT, gpa, level);
    const tr = this.checkBlockedAndTracked(t, i);
    if (tr) return this.fail(leaf, tr, gpa, level);
    this.pamt.delete(t.pfn[i]!);
    t.state[i] = SEPT_FREE;
    t.pfn[i] = 0;
    t.used--;
    return this.end(leaf, TDX_SUCCESS, gpa, level);
  }

  /** The pfn of the leaf REMOVE would return in RCX: the page at (gpa, level) if mapped. */
  leafPfn(gpa: number, level: number): number {
    const gfn = gpa / GPA_PAGE;
    const t = this.sept?.table(level, gfn);
    if (!t) return -1;
    const i = SecureEpt.index(level, gfn);
    return septIsLeafState(t.state[i]!) ? t.pfn[i]! : -1;
  }

  /** TDH.PHYMEM.PAGE.WBINVD(pa with HKID): write back and invalidate the page's TD-key cache lines. */
  phymemPageWbinvd(pfn: number): number {
    const leaf = L_WBINVD;
    if (!this.begin(leaf)) return this.busy(leaf, pfn * GPA_PAGE, 0);
    if (!this.hkidAssigned) return this.fail(leaf, TDX_OPERAND_INVALID, pfn * GPA_PAGE, 0);
    return this.end(leaf, TDX_SUCCESS, pfn * GPA_PAGE, 0);
  }

  /**
   * TDH.PHYMEM.PAGE.RECLAIM(pa): take back a TD page (S-EPT page or private page). Only once the
   * TD is in TEARDOWN, i.e. its HKID was freed.
   */
  phymemPageReclaim(pfn: number): number {
    const leaf = L_RECLAIM;
    const pa = pfn * GPA_PAGE;
    if (!this.begin(leaf)) return this.busy(leaf, pa, 0);
    if (this.lifecycle !== 'TEARDOWN') return this.fail(leaf, TDX_LIFECYCLE_STATE_INCORRECT, pa, 0, 0);
    const sept = this.sept;
    const t = sept?.tableByHpa(pfn);
    if (t) {
      sept!.dropTable(t);
      this.pamt.delete(pfn);
      return this.end(leaf, TDX_SUCCESS, pa, 0);
    }
    if (this.pamt.delete(pfn)) return this.end(leaf, TDX_SUCCESS, pa, 0);
    return this.fail(leaf, TDX_PAGE_METADATA_INCORRECT, pa, 0);
  }

  /**
   * TDH.MEM.PAGE.DEMOTE(gpa, level, page): split a huge leaf into a table of `page` holding 512
   * leaves of the next level, in the unblocked state (PRESENT or PENDING). While the TD runs the
   * leaf must be blocked and tracked first, as for REMOVE.
   */
  memPageDemote(gpa: number, level: number, sptPfn: number): number {
    const leaf = L_DEMOTE;
    if (!this.beginTd(leaf, gpa, level, true, true)) return this.lastStatus;
    if (level < 1 || level > 2 || !this.gpaOk(gpa, level)) return this.fail(leaf, TDX_OPERAND_INVALID, gpa, level);
    const sept = this.sept!;
    const gfn = gpa / GPA_PAGE;
    const t = this.walkEntry(level, gfn);
    const i = SecureEpt.index(level, gfn);
    if (!t) return this.fail(leaf, TDX_EPT_WALK_FAILED, gpa, level);
    const s = t.state[i]!;
    if (!SEPT_ALLOWED['TDH.MEM.PAGE.DEMOTE'][s]) return this.fail(leaf, TDX_EPT_ENTRY_STATE_INCORRECT, gpa, level);
    const tr = this.checkBlockedAndTracked(t, i);
    if (tr) return this.fail(leaf, tr, gpa, level);
    if (this.pamt.has(sptPfn)) return this.fail(leaf, TDX_PAGE_METADATA_INCORRECT, gpa, level, OPERAND_ID_R8);
    const basePfn = t.pfn[i]!;
    const childState = s === SEPT_PENDING || s === SEPT_PENDING_BLOCKED ? SEPT_PENDING : SEPT_PRESENT;
    t.used--; // linkTable counts the entry again
    t.state[i] = SEPT_FREE;
    const child = sept.linkTable(t, level, gfn, sptPfn);
    this.pamt.set(sptPfn, PT_SEPT);
    const step = SEPT_SPAN[level - 1]!;
    this.pamt.delete(basePfn);
    for (let k = 0; k < 512; k++) {
      child.state[k] = childState;
      child.pfn[k] = basePfn + k * step;
      this.pamt.set(basePfn + k * step, level - 1);
    }
    child.used = 512;
    return this.end(leaf, TDX_SUCCESS, gpa, level);
  }

  /* ------------------------------------------------------------------------------------------ */
  /* Measurement                                                                                */
  /* ------------------------------------------------------------------------------------------ */

  /**
   * TDH.MR.EXTEND(gpa): extend MRTD with 256 bytes of a PRESENT page at a 256-byte aligned gpa:
   * one 128-byte block "MR.EXTEND" + gpa, then the two 128-byte data blocks.
   */
  mrExtend(gpa: number): number {
    const leaf = L_MR_EXTEND;
    if (!this.beginTd(leaf, gpa, 0, true, false)) return this.lastStatus;
    if (gpa % TDX_EXTENDMR_CHUNKSIZE !== 0 || !this.gpaOk(gpa - (gpa % GPA_PAGE), 0)) {
      return this.fail(leaf, TDX_OPERAND_INVALID, gpa, 0);
    }
    const gfn = Math.floor(gpa / GPA_PAGE);
    const e = this.sept!.lookup(gfn);
    this.lastEntryLevel = e.level;
    this.lastEntryState = e.state;
    if (!SEPT_ALLOWED['TDH.MR.EXTEND'][e.state]) return this.fail(leaf, TDX_EPT_ENTRY_NOT_PRESENT, gpa, 0);
    const pagePfn = e.pfn + (gfn % SEPT_SPAN[e.level]!);
    const data = this.module.phys.readBytes(pagePfn, gpa % GPA_PAGE, TDX_EXTENDMR_CHUNKSIZE);
    this.mrHash!.update(mrBlock('MR.EXTEND', gpa));
    this.mrHash!.update(data);
    return this.end(leaf, TDX_SUCCESS, gpa, 0);
  }

  /** TDH.MR.FINALIZE: MRTD = the SHA-384 digest so far; the TD becomes RUNNABLE. */
  mrFinalize(): number {
    const leaf = L_MR_FINALIZE;
    if (!this.beginTd(leaf, 0, 0, true, false, 0x80)) return this.lastStatus;
    this.mrtd = this.mrHash!.digest();
    this.mrHash = null;
    this.state = 'RUNNABLE';
    return this.end(leaf, TDX_SUCCESS, 0, 0);
  }

  /* ------------------------------------------------------------------------------------------ */
  /* Guest side (TDCALL)                                                                        */
  /* ------------------------------------------------------------------------------------------ */

  /**
   * TDG.MEM.PAGE.ACCEPT(gpa, level) from vCPU `vcpuId`: PENDING → PRESENT, the page is zeroed with
   * the TD key. The failure cases are the module's check_tdaccept_failure()
   * (tdg_mem_page_accept.c):
   *  - the walk stopped above the requested level (1.1) at a guest-accessible (PRESENT) leaf:
   *    TDX_PAGE_ALREADY_ACCEPTED, e.g. a 4K ACCEPT inside an accepted 2M page;
   *  - the walk stopped above at any other entry (1.2: a PENDING or blocked bigger leaf; 2: a
   *    missing table): the TD exits with an EPT violation carrying the accept level
   *    (TDG_EXIT_EPT_VIOLATION), so the host maps (or splits) at that level;
   *  - the walk reached the level at a non-free non-leaf entry (3): TDX_PAGE_SIZE_MISMATCH;
   *  - a PRESENT leaf there: TDX_PAGE_ALREADY_ACCEPTED; a FREE or blocked one: EPT violation.
   * The status carries the level where the walk ended as its operand id.
   */
  tdgMemPageAccept(vcpuId: number, gpa: number, level: number): number {
    const leaf = L_ACCEPT;
    this.calls[leaf]!++;
    const sept = this.sept;
    if (!sept || this.state !== 'RUNNABLE' || !this.vcpus[vcpuId]?.initialized) return this.end(leaf, TDX_OP_STATE_INCORRECT, gpa, level);
    if (level < 0 || level > 2 || !this.gpaOk(gpa, level)) return this.fail(leaf, TDX_OPERAND_INVALID, gpa, level);
    this.vpEnter(vcpuId);
    const gfn = gpa / GPA_PAGE;
    const t = this.walkEntry(level, gfn);
    const i = SecureEpt.index(level, gfn);
    if (!t) {
      // check_tdaccept_failure() case 1.1: an accepted (guest-accessible) bigger leaf;
      // case 1.2 / 2: a non-accessible bigger leaf or a missing table → EPT violation
      return sept.walkState === SEPT_PRESENT
        ? this.fail(leaf, TDX_PAGE_ALREADY_ACCEPTED, gpa, level, sept.walkLevel)
        : this.end(leaf, TDG_EXIT_EPT_VIOLATION, gpa, level);
    }
    const s = t.state[i]!;
    if (SEPT_ALLOWED['TDG.MEM.PAGE.ACCEPT'][s]) {
      t.state[i] = SEPT_PRESENT;
      const pfn = t.pfn[i]!;
      const n = SEPT_SPAN[level]!;
      for (let k = 0; k < n; k++) this.module.phys.zeroPage(pfn + k);
      return this.end(leaf, TDX_SUCCESS, gpa, level);
    }
    // case 3: a non-free non-leaf entry at the requested level (e.g. a 2M ACCEPT of 4K pages)
    if (s === SEPT_NL_PRESENT || s === SEPT_NL_BLOCKED) return this.fail(leaf, TDX_PAGE_SIZE_MISMATCH, gpa, level, level);
    if (s === SEPT_PRESENT) return this.fail(leaf, TDX_PAGE_ALREADY_ACCEPTED, gpa, level, level);
    return this.end(leaf, TDG_EXIT_EPT_VIOLATION, gpa, level);
  }

  /** State of the private leaf mapping `gfn` (any size), or SEPT_FREE. */
  leafStateAt(gfn: number): { state: number; pfn: number; level: number } {
    if (!this.sept) return { state: SEPT_FREE, pfn: 0, level: 0 };
    const e = this.sept.lookup(gfn);
    if (!septIsLeafState(e.state)) return { state: SEPT_FREE, pfn: 0, level: e.level };
    return { state: e.state, pfn: e.pfn + (gfn % SEPT_SPAN[e.level]!), level: e.level };
  }
}

const ASCII = new TextEncoder();

/** A 128-byte SHA-384 block of the module's MRTD updates: API name (16 bytes, zero padded), gpa (LE u64), zeros. */
export function mrBlock(apiName: string, gpa: number): Uint8Array {
  const b = new Uint8Array(128);
  b.set(ASCII.encode(apiName).subarray(0, 16), 0);
  new DataView(b.buffer).setBigUint64(16, BigInt(gpa), true);
  return b;
}

