/**
 * Model handlers for the vendor layer below KVM: the host's RMP instructions (SEV-SNP) and
 * SEAMCALLs to the TDX module. They let a scenario check the instructions' own rules (their
 * checks, the order of the checks, the return codes, the table states they write) where KVM's
 * ioctls never reach a failing case. The real-KVM target cannot run them.
 */
import { fail, gpaToGfn, PG_LEVEL_2M, PG_LEVEL_4K } from '@ccmem/core';
import {
  PSMASH_FAIL_BADADDR,
  PSMASH_FAIL_INPUT,
  PSMASH_FAIL_INUSE,
  PSMASH_FAIL_PERMISSION,
  PSMASH_SUCCESS,
  RMPUPDATE_FAIL_INPUT,
  RMPUPDATE_FAIL_INUSE,
  RMPUPDATE_FAIL_OVERLAP,
  RMPUPDATE_FAIL_PERMISSION,
  RMPUPDATE_SUCCESS,
} from '@ccmem/snp';
import { tdxStatusName } from '@ccmem/tdx';
import type { Outcome } from '../target.js';
import type { ModelHandlers, ModelRun } from './run.js';

const SZ_2M = 2 * 1024 * 1024;

const RMPUPDATE_NAMES: Readonly<Record<number, string>> = {
  [RMPUPDATE_SUCCESS]: 'SUCCESS',
  [RMPUPDATE_FAIL_INPUT]: 'FAIL_INPUT',
  [RMPUPDATE_FAIL_PERMISSION]: 'FAIL_PERMISSION',
  [RMPUPDATE_FAIL_INUSE]: 'FAIL_INUSE',
  [RMPUPDATE_FAIL_OVERLAP]: 'FAIL_OVERLAP',
};
const PSMASH_NAMES: Readonly<Record<number, string>> = {
  [PSMASH_SUCCESS]: 'SUCCESS',
  [PSMASH_FAIL_INPUT]: 'FAIL_INPUT',
  [PSMASH_FAIL_PERMISSION]: 'FAIL_PERMISSION',
  [PSMASH_FAIL_INUSE]: 'FAIL_INUSE',
  [PSMASH_FAIL_BADADDR]: 'FAIL_BADADDR',
};

/** the frame a host-side op names: `pfn`, or the guest_memfd page behind the guest's `gpa` */
function framePfn(op: string, a: { pfn?: number; gpa?: number }, m: ModelRun): number {
  if (a.pfn !== undefined) return a.pfn;
  if (a.gpa === undefined) fail('EINVAL', `${op}: needs pfn or gpa`);
  const pfn = m.vm.gmemPeekPfn(gpaToGfn(a.gpa));
  if (pfn < 0) fail('ENOENT', `${op}: no guest_memfd page backs gpa 0x${a.gpa.toString(16)}`);
  return pfn;
}

function insnOutcome(ret: number, names: Readonly<Record<number, string>>, detail: Record<string, unknown>): Outcome {
  const alias = names[ret];
  return { ret, detail: { ...detail, ...(alias !== undefined && { ret_alias: alias }) } };
}

export const HOST_INSN_HANDLERS = {
  snp_rmp_insn(a, m) {
    const backend = m.snpBackend('snp_rmp_insn');
    const host = backend.host;
    const pfn = framePfn('snp_rmp_insn', a, m);
    if (a.insn === 'psmash') {
      // psmash(): -EINVAL for a pfn beyond the RMP, else the instruction's code
      const ret = host.psmash(pfn);
      if (ret < 0) fail('EINVAL', `psmash: pfn 0x${pfn.toString(16)} is beyond the RMP`);
      return insnOutcome(ret, PSMASH_NAMES, { pfn });
    }
    const level = a.page_size === SZ_2M ? PG_LEVEL_2M : PG_LEVEL_4K;
    const assigned = a.assigned ?? true;
    // rmpupdate(): adjust_direct_map() before the instruction under the upstream policy
    if (backend.directmapPolicy === 'split' && host.directmap.adjustDirectMap(pfn, level) !== 0) {
      fail('EFAULT', `rmpupdate: adjust_direct_map failed for pfn 0x${pfn.toString(16)}`);
    }
    const ret = host.rmpupdateInsn(pfn, {
      gpa: a.rmp_gpa ?? (a.gpa !== undefined ? a.gpa - (a.gpa % (level === PG_LEVEL_2M ? SZ_2M : 4096)) : 0),
      assigned,
      pagesize: level === PG_LEVEL_2M ? 1 : 0,
      immutable: a.immutable ?? false,
      asid: assigned ? (a.asid ?? backend.asid) : 0,
    });
    return insnOutcome(ret, RMPUPDATE_NAMES, { pfn });
  },

  snp_host_access(a, m) {
    const backend = m.snpBackend('snp_host_access');
    const pfn = framePfn('snp_host_access', a, m);
    const fault = backend.checkHostAccess(pfn, a.write ?? false);
    return fault === null ? { result: pfn } : { result: pfn, exception: '#PF', detail: { reason: fault } };
  },

  tdx_seamcall(a, m) {
    const td = m.tdxBackend('tdx_seamcall').td;
    const gpa = a.gpa ?? 0;
    const level = a.level ?? 0;
    const given = a.page ?? (a.page_of !== undefined ? td.leafPfn(a.page_of, 0) : undefined);
    if (given !== undefined && given < 0) fail('ENOENT', `tdx_seamcall: no private page at gpa 0x${a.page_of!.toString(16)}`);
    const fresh = given === undefined && a.leaf !== 'TDH.MEM.RANGE.BLOCK' && a.leaf !== 'TDH.MEM.TRACK' && a.leaf !== 'TDH.MEM.PAGE.REMOVE' && a.leaf !== 'TDH.MR.EXTEND';
    const page = given ?? (fresh ? m.vm.phys.allocPage() : 0);
    let st: number;
    switch (a.leaf) {
      case 'TDH.MEM.PAGE.ADD':
        st = td.memPageAdd(gpa, level, page, new Uint8Array(4096));
        break;
      case 'TDH.MEM.PAGE.AUG':
        st = td.memPageAug(gpa, level, page);
        break;
      case 'TDH.MEM.SEPT.ADD':
        st = td.memSeptAdd(gpa, level, page);
        break;
      case 'TDH.MEM.RANGE.BLOCK':
        st = td.memRangeBlock(gpa, level);
        break;
      case 'TDH.MEM.TRACK':
        st = td.memTrack();
        break;
      case 'TDH.MEM.PAGE.REMOVE':
        st = td.memPageRemove(gpa, level);
        break;
      case 'TDH.MEM.PAGE.DEMOTE':
        st = td.memPageDemote(gpa, level, page);
        break;
      case 'TDH.MR.EXTEND':
        st = td.mrExtend(gpa);
        break;
    }
    if (fresh && st !== 0) m.vm.phys.freePage(page);
    return { ret: tdxStatusName(st), detail: { leaf: a.leaf, gpa, level, ...(fresh && st === 0 && { page }) } };
  },
} satisfies ModelHandlers;
