/**
 * The host side of SEV shared by every SEV, SEV-ES and SEV-SNP VM on a host: the ASID bitmaps
 * of arch/x86/kvm/svm/sev.c (sev_asid_new(), sev_asid_free(), __sev_recycle_asids()) and the
 * PSP firmware's guest contexts for the SEV and SEV-ES launch commands (SEV API), modelled at
 * the level the SNP backend models SNP_LAUNCH_*: states, handles, the ASID binding and the
 * launch digest, with the firmware's status codes.
 */
import { createHash, type Hash } from 'node:crypto';
import { ERRNO } from '@ccmem/core';
import {
  SEV_GUEST_STATE_LAUNCH_SECRET,
  SEV_GUEST_STATE_LAUNCH_UPDATE,
  SEV_GUEST_STATE_RUNNING,
  SEV_LAUNCH_MEASURE_LEN,
  SEV_POLICY_ES,
  SEV_RET_ASID_OWNED,
  SEV_RET_INVALID_ADDRESS,
  SEV_RET_INVALID_ASID,
  SEV_RET_INVALID_GUEST,
  SEV_RET_INVALID_GUEST_STATE,
  SEV_RET_INVALID_LEN,
  SEV_RET_SUCCESS,
  SVM_SEV_FEAT_DEBUG_SWAP,
} from './uapi.js';

export interface SevAsidsOptions {
  /** CPUID 0x8000001F EDX: SEV guests use [min_sev_asid, max_sev_asid], SEV-ES and SNP guests [1, min_sev_asid - 1] */
  minSevAsid: number;
  /** CPUID 0x8000001F ECX */
  maxSevAsid: number;
}

/**
 * sev_asid_bitmap and sev_reclaim_asid_bitmap. A freed ASID is not free again at once: it goes
 * to the reclaim bitmap and comes back only when an allocation finds its range full and
 * __sev_recycle_asids() flushes (DF_FLUSH), which frees every reclaimable ASID of both ranges.
 */
export class SevAsids {
  readonly minSevAsid: number;
  readonly maxSevAsid: number;
  private readonly inUse: Uint8Array;
  private readonly reclaim: Uint8Array;
  /** DF_FLUSHes done by __sev_recycle_asids() */
  flushes = 0;

  constructor(opts: SevAsidsOptions) {
    if (!Number.isInteger(opts.minSevAsid) || !Number.isInteger(opts.maxSevAsid) || opts.minSevAsid < 1 || opts.maxSevAsid < 0)
      throw new RangeError('SevAsids: min_sev_asid must be >= 1 and max_sev_asid >= 0');
    this.minSevAsid = opts.minSevAsid;
    this.maxSevAsid = opts.maxSevAsid;
    // ASID 0 is allocated in the bitmap but never used (sev_hardware_setup)
    this.inUse = new Uint8Array(Math.max(opts.maxSevAsid, opts.minSevAsid - 1) + 1);
    this.reclaim = new Uint8Array(this.inUse.length);
  }

  /** the range sev_asid_new() allocates from: SEV-ES/SNP [1, min_sev_asid - 1], SEV [min_sev_asid, max_sev_asid] */
  range(esActive: boolean): readonly [number, number] {
    return esActive ? [1, this.minSevAsid - 1] : [this.minSevAsid, this.maxSevAsid];
  }

  /** sev_asid_new(): an ASID, or -ENOTTY (the range is empty) / -EBUSY (every ASID in use) */
  asidNew(esActive: boolean, requested?: number): number {
    const [min, max] = this.range(esActive);
    if (min > max) return -ERRNO.ENOTTY;
    if (requested !== undefined) {
      // model option: a chosen ASID (the SNP backend's `asid`); a reclaimable one is flushed first
      if (!Number.isInteger(requested) || requested < min || requested > max) return -ERRNO.EBUSY;
      if (this.inUse[requested] && (!this.reclaim[requested] || !this.recycle(min, max))) return -ERRNO.EBUSY;
      this.inUse[requested] = 1;
      return requested;
    }
    let retry = true;
    for (;;) {
      for (let a = min; a <= max; a++) {
        if (!this.inUse[a]) {
          this.inUse[a] = 1;
          return a;
        }
      }
      if (retry && this.recycle(min, max)) {
        retry = false;
        continue;
      }
      return -ERRNO.EBUSY;
    }
  }

  /** sev_asid_free(): the ASID waits in the reclaim bitmap */
  asidFree(asid: number): void {
    if (asid > 0 && asid < this.reclaim.length) this.reclaim[asid] = 1;
  }

  /** __sev_recycle_asids(): sev_flush_asids() fails (-EBUSY) when nothing in [min, max] is reclaimable */
  private recycle(min: number, max: number): boolean {
    let any = false;
    for (let a = min; a <= max && !any; a++) any = this.reclaim[a] === 1;
    if (!any) return false;
    this.flushes++;
    // the flush covers every reclaimable SEV and SEV-ES ASID
    for (let a = 0; a < this.reclaim.length; a++) {
      if (this.reclaim[a]) {
        this.inUse[a] = 0;
        this.reclaim[a] = 0;
      }
    }
    return true;
  }

  /** ASIDs bound to a VM or waiting for reclaim */
  inUseCount(esActive: boolean): number {
    const [min, max] = this.range(esActive);
    let n = 0;
    for (let a = min; a <= max; a++) n += this.inUse[a]!;
    return n;
  }

  isInUse(asid: number): boolean {
    return this.inUse[asid] === 1;
  }

  /** in use and not waiting for reclaim: sev_asid_free() has not run for it */
  isBound(asid: number): boolean {
    return this.inUse[asid] === 1 && this.reclaim[asid] === 0;
  }
}

/** One guest context of the PSP (SEV API "GCTX") */
interface SevGuestContext {
  readonly handle: number;
  readonly policy: number;
  state: number;
  asid: number;
  /** the launch digest (LD): SHA-256 over every measured page and VMSA */
  readonly ld: Hash;
  measuredBytes: number;
}

/** what a firmware command answers: SEV_RET_* and its outputs */
export interface SevFwResult {
  readonly fwError: number;
  readonly handle?: number;
  readonly len?: number;
  readonly measurement?: Uint8Array;
}

/**
 * The PSP firmware's SEV/SEV-ES guest commands. Each returns SEV_RET_SUCCESS or the status the
 * firmware reports; KVM turns any status other than success into -EIO (sev_do_cmd()) with
 * `argp->error` set. Rules the model follows (SEV API):
 *  - LAUNCH_START creates a guest context in the LAUNCH_UPDATE state; ACTIVATE binds it to an
 *    ASID that must be valid (INVALID_ASID), free of another guest (ASID_OWNED), and of the
 *    guest's kind: an ES policy needs an SEV-ES ASID, a plain policy an SEV ASID (INVALID_ASID);
 *  - LAUNCH_UPDATE_DATA and LAUNCH_UPDATE_VMSA need LAUNCH_UPDATE; the data's length and
 *    address must be 16-byte aligned (INVALID_LEN / INVALID_ADDRESS);
 *  - LAUNCH_MEASURE needs LAUNCH_UPDATE and moves to LAUNCH_SECRET; a buffer shorter than the
 *    48-byte blob is INVALID_LEN with the length it needs;
 *  - LAUNCH_FINISH needs LAUNCH_UPDATE or LAUNCH_SECRET and moves to RUNNING;
 *  - an unknown handle (0 before LAUNCH_START) is INVALID_GUEST.
 */
export class SevFirmware {
  private readonly guests = new Map<number, SevGuestContext>();
  private readonly asidOwner = new Map<number, number>();
  private nextHandle = 1;

  constructor(private readonly asids: SevAsids) {}

  /** LAUNCH_START (handle 0: a new guest context) */
  launchStart(policy: number): SevFwResult {
    const handle = this.nextHandle++;
    this.guests.set(handle, { handle, policy, state: SEV_GUEST_STATE_LAUNCH_UPDATE, asid: 0, ld: createHash('sha256'), measuredBytes: 0 });
    return { fwError: SEV_RET_SUCCESS, handle };
  }

  /** ACTIVATE */
  activate(handle: number, asid: number): SevFwResult {
    const g = this.guests.get(handle);
    if (!g) return { fwError: SEV_RET_INVALID_GUEST };
    if (asid < 1 || asid > Math.max(this.asids.maxSevAsid, this.asids.minSevAsid - 1)) return { fwError: SEV_RET_INVALID_ASID };
    const esAsid = asid < this.asids.minSevAsid;
    if (((g.policy & SEV_POLICY_ES) !== 0) !== esAsid) return { fwError: SEV_RET_INVALID_ASID };
    const owner = this.asidOwner.get(asid);
    if (owner !== undefined && owner !== handle) return { fwError: SEV_RET_ASID_OWNED };
    g.asid = asid;
    this.asidOwner.set(asid, handle);
    return { fwError: SEV_RET_SUCCESS };
  }

  /** DEACTIVATE + DECOMMISSION (sev_unbind_asid(), sev_decommission()) */
  decommission(handle: number): void {
    const g = this.guests.get(handle);
    if (!g) return;
    if (g.asid && this.asidOwner.get(g.asid) === handle) this.asidOwner.delete(g.asid);
    this.guests.delete(handle);
  }

  /** LAUNCH_UPDATE_DATA of `data` at system physical address offset `paddrOffset` */
  launchUpdateData(handle: number, paddrOffset: number, data: Uint8Array): SevFwResult {
    const g = this.guests.get(handle);
    if (!g) return { fwError: SEV_RET_INVALID_GUEST };
    if (g.state !== SEV_GUEST_STATE_LAUNCH_UPDATE) return { fwError: SEV_RET_INVALID_GUEST_STATE };
    if (data.length % 16 !== 0) return { fwError: SEV_RET_INVALID_LEN };
    if (paddrOffset % 16 !== 0) return { fwError: SEV_RET_INVALID_ADDRESS };
    g.ld.update(data);
    g.measuredBytes += data.length;
    return { fwError: SEV_RET_SUCCESS };
  }

  /** LAUNCH_UPDATE_VMSA of one vCPU's save area */
  launchUpdateVmsa(handle: number, vmsa: Uint8Array): SevFwResult {
    const g = this.guests.get(handle);
    if (!g) return { fwError: SEV_RET_INVALID_GUEST };
    if (g.state !== SEV_GUEST_STATE_LAUNCH_UPDATE) return { fwError: SEV_RET_INVALID_GUEST_STATE };
    g.ld.update(vmsa);
    g.measuredBytes += vmsa.length;
    return { fwError: SEV_RET_SUCCESS };
  }

  /** LAUNCH_MEASURE with a `len`-byte buffer (0: query the length) */
  launchMeasure(handle: number, len: number): SevFwResult {
    const g = this.guests.get(handle);
    if (!g) return { fwError: SEV_RET_INVALID_GUEST };
    if (g.state !== SEV_GUEST_STATE_LAUNCH_UPDATE) return { fwError: SEV_RET_INVALID_GUEST_STATE };
    if (len < SEV_LAUNCH_MEASURE_LEN) return { fwError: SEV_RET_INVALID_LEN, len: SEV_LAUNCH_MEASURE_LEN };
    // model: MEASURE = SHA-256(0x04 || POLICY || LD || MNONCE) in place of the HMAC with the TIK
    const ld = g.ld.copy().digest();
    const nonce = createHash('sha256').update(`mnonce:${handle}`).digest().subarray(0, 16);
    const policy = new Uint8Array(4);
    new DataView(policy.buffer).setUint32(0, g.policy >>> 0, true);
    const m = createHash('sha256').update(Uint8Array.of(4)).update(policy).update(ld).update(nonce).digest();
    const blob = new Uint8Array(SEV_LAUNCH_MEASURE_LEN);
    blob.set(m, 0);
    blob.set(nonce, 32);
    g.state = SEV_GUEST_STATE_LAUNCH_SECRET;
    return { fwError: SEV_RET_SUCCESS, len: SEV_LAUNCH_MEASURE_LEN, measurement: blob };
  }

  /** LAUNCH_FINISH */
  launchFinish(handle: number): SevFwResult {
    const g = this.guests.get(handle);
    if (!g) return { fwError: SEV_RET_INVALID_GUEST };
    if (g.state !== SEV_GUEST_STATE_LAUNCH_UPDATE && g.state !== SEV_GUEST_STATE_LAUNCH_SECRET) return { fwError: SEV_RET_INVALID_GUEST_STATE };
    g.state = SEV_GUEST_STATE_RUNNING;
    return { fwError: SEV_RET_SUCCESS };
  }

  /** GUEST_STATUS */
  guestStatus(handle: number): SevFwResult & { policy?: number; state?: number; asid?: number; measuredBytes?: number } {
    const g = this.guests.get(handle);
    if (!g) return { fwError: SEV_RET_INVALID_GUEST };
    return { fwError: SEV_RET_SUCCESS, handle, policy: g.policy, state: g.state, asid: g.asid, measuredBytes: g.measuredBytes };
  }

  /**
   * The launch digest (LD) so far, as lower-case hex: SHA-256 over the data of every
   * LAUNCH_UPDATE_DATA and LAUNCH_UPDATE_VMSA in order (SEV API); null for an unknown handle.
   */
  launchDigest(handle: number): string | null {
    const g = this.guests.get(handle);
    return g ? g.ld.copy().digest('hex') : null;
  }

  /** guest contexts alive (not decommissioned) */
  get guestCount(): number {
    return this.guests.size;
  }
}

export interface SevPlatformOptions extends SevAsidsOptions {
  /** KVM_X86_SEV_VMSA_FEATURES (sev_supported_vmsa_features): DebugSwap when the CPU has it */
  supportedVmsaFeatures?: number;
}

/** The host's SEV platform: ASIDs, firmware, and what KVM_SEV_INIT2 may ask for. */
export class SevPlatform {
  readonly asids: SevAsids;
  readonly firmware: SevFirmware;
  readonly supportedVmsaFeatures: number;

  constructor(opts: SevPlatformOptions) {
    this.asids = new SevAsids(opts);
    this.firmware = new SevFirmware(this.asids);
    this.supportedVmsaFeatures = opts.supportedVmsaFeatures ?? SVM_SEV_FEAT_DEBUG_SWAP;
  }
}
