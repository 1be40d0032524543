/**
 * The GHCB page-state change and the SNP GHCB MSR requests, one rule at a time
 * (arch/x86/kvm/svm/sev.c: snp_begin_psc(), __snp_complete_one_psc(), snp_complete_psc(),
 * snp_begin_psc_msr(), snp_complete_psc_msr(), sev_handle_vmgexit_msr_protocol()): which
 * entries are refused, which are skipped, which merge into one KVM_HC_MAP_GPA_RANGE exit.
 * Found missing by mutation testing (docs/testing.md).
 */
import { describe, expect, it } from 'vitest';
import { KVM_CAP_EXIT_HYPERCALL, KVM_HC_MAP_GPA_RANGE, KVM_SYSTEM_EVENT_SEV_TERM } from '@ccmem/core';
import type { SnpPscEntry } from './edge.js';
import {
  SNP_PAGE_STATE_PRIVATE,
  SNP_PAGE_STATE_SHARED,
  SNP_PAGE_STATE_UNSMASH,
  VMGEXIT_PSC_ERROR_INVALID_ENTRY,
  VMGEXIT_PSC_ERROR_INVALID_HDR,
} from './snp-backend.js';
import { GHCB_MSR_PSC_REQ, GHCB_MSR_REG_GPA_REQ, GHCB_MSR_REG_GPA_RESP } from './sev/uapi.js';
import { GFN0, GPA0, snpVm } from './testing/snp-vm.js';

const ENC = 1 << 4; // KVM_MAP_GPA_RANGE_ENCRYPTED
const SZ_2M = 1; // KVM_MAP_GPA_RANGE_PAGE_SZ_2M
const P = SNP_PAGE_STATE_PRIVATE;
const S = SNP_PAGE_STATE_SHARED;

function withExits() {
  const t = snpVm();
  t.vm.enableCap({ cap: KVM_CAP_EXIT_HYPERCALL, args: [1 << KVM_HC_MAP_GPA_RANGE] });
  return t;
}

/** run a PSC request to its end, completing every exit with 0: the exits' args and the final result */
function runPsc(t: ReturnType<typeof withExits>, req: { entries: SnpPscEntry[]; cur_entry?: number; end_entry?: number }) {
  const exits: number[][] = [];
  let r = t.vcpu.guestOp({ op: 'psc', ...req });
  while (r.exit) {
    if (r.exit.reason === 'KVM_EXIT_HYPERCALL') exits.push(r.exit.hypercall.args);
    r = t.vcpu.completeHypercall(0)!;
  }
  return { exits, r };
}

describe('snp_begin_psc(): the header', () => {
  it('end_entry must be inside the buffer; cur_entry past end_entry is a completed request', () => {
    const t = withExits();
    const two: SnpPscEntry[] = [{ gfn: GFN0, operation: P }, { gfn: GFN0 + 5, operation: P }];
    expect(t.vcpu.guestOp({ op: 'psc', entries: two, end_entry: 2 })).toMatchObject({ ret: VMGEXIT_PSC_ERROR_INVALID_HDR });
    expect(runPsc(t, { entries: two, end_entry: 0 }).exits).toEqual([[GPA0, 1, ENC]]);
    const done = runPsc(t, { entries: two, cur_entry: 2, end_entry: 1 });
    expect(done.exits).toEqual([]);
    expect(done.r).toMatchObject({ ret: 0 });
    // starting at cur_entry: the entries before it are not looked at
    expect(runPsc(t, { entries: two, cur_entry: 1 }).exits).toEqual([[GPA0 + 5 * 4096, 1, ENC]]);
  });
});

describe('snp_begin_psc(): each entry', () => {
  it('cur_page beyond the entry\'s pages is INVALID_ENTRY; equal to them, the entry is done and skipped', () => {
    const t = withExits();
    expect(t.vcpu.guestOp({ op: 'psc', entries: [{ gfn: GFN0, operation: P, cur_page: 2 }] })).toMatchObject({ ret: VMGEXIT_PSC_ERROR_INVALID_ENTRY });
    expect(t.vcpu.guestOp({ op: 'psc', entries: [{ gfn: GFN0, operation: P, pagesize: 1, cur_page: 513 }] })).toMatchObject({ ret: VMGEXIT_PSC_ERROR_INVALID_ENTRY });
    const skipped = runPsc(t, {
      entries: [
        { gfn: GFN0, operation: P, cur_page: 1 },
        { gfn: GFN0 + 512, operation: P, pagesize: 1, cur_page: 512 },
        { gfn: GFN0 + 7, operation: S },
      ],
    });
    expect(skipped.exits).toEqual([[GPA0 + 7 * 4096, 1, 0]]);
    expect(skipped.r).toMatchObject({ ret: 0, detail: { cur_entry: 3, cur_page: [1, 512, 1] } });
  });

  it('a partly done 2M entry goes on from cur_page, at 4K: it merges with nothing after it', () => {
    const t = withExits();
    const { exits, r } = runPsc(t, {
      entries: [
        { gfn: GFN0 + 512, operation: P, pagesize: 1, cur_page: 10 },
        { gfn: GFN0 + 1024, operation: P, pagesize: 1 },
      ],
    });
    // the exit's size bit is the entry's pagesize, as upstream sets it from entry_start.pagesize
    expect(exits).toEqual([
      [GPA0 + (512 + 10) * 4096, 502, ENC | SZ_2M],
      [GPA0 + 1024 * 4096, 512, ENC | SZ_2M],
    ]);
    expect(r).toMatchObject({ ret: 0, detail: { cur_page: [512, 512] } });
  });

  it('adjacent entries merge only with the same operation, the next gfn, no cur_page and the same size', () => {
    const t = withExits();
    const { exits } = runPsc(t, {
      entries: [
        { gfn: GFN0, operation: P },
        { gfn: GFN0 + 1, operation: P }, // merges
        { gfn: GFN0 + 2, operation: S }, // another operation
        { gfn: GFN0 + 4, operation: S }, // a gap
        { gfn: GFN0 + 5, operation: S, cur_page: 1 }, // done: skipped on its own
        { gfn: GFN0 + 6, operation: S },
        { gfn: GFN0 + 512, operation: S, pagesize: 1 }, // another size (and not adjacent)
        { gfn: GFN0 + 1024, operation: S, pagesize: 1 }, // merges with the 2M page before it
        { gfn: GFN0 + 1536, operation: S }, // adjacent, but 4K after 2M
      ],
    });
    expect(exits).toEqual([
      [GPA0, 2, ENC],
      [GPA0 + 2 * 4096, 1, 0],
      [GPA0 + 4 * 4096, 1, 0],
      [GPA0 + 6 * 4096, 1, 0],
      [GPA0 + 512 * 4096, 1024, SZ_2M],
      [GPA0 + 1536 * 4096, 1, 0],
    ]);
  });

  it('PSMASH and UNSMASH requests complete without an exit; an unknown operation too', () => {
    const t = withExits();
    const { exits, r } = runPsc(t, {
      entries: [
        { gfn: GFN0 + 512, operation: SNP_PAGE_STATE_UNSMASH, pagesize: 1 },
        { gfn: GFN0 + 3, operation: 9 },
        { gfn: GFN0 + 4, operation: S },
      ],
    });
    expect(exits).toEqual([[GPA0 + 4 * 4096, 1, 0]]);
    expect(r).toMatchObject({ ret: 0, detail: { cur_entry: 3, cur_page: [512, 1, 1] } });
  });
});

describe('the GHCB MSR protocol of an SNP guest', () => {
  it('GHCB_MSR_PSC_REQ: gfn in bits 12..51, operation in bits 52..55; only PRIVATE and SHARED', () => {
    const t = withExits();
    const gfn = GFN0 + 9;
    const req = (op: number) => op * 2 ** 52 + gfn * 0x1000 + GHCB_MSR_PSC_REQ;
    const r = t.vcpu.guestOp({ op: 'ghcb_msr', value: req(S) });
    expect(r.exit).toEqual({ reason: 'KVM_EXIT_HYPERCALL', hypercall: { nr: KVM_HC_MAP_GPA_RANGE, args: [gfn * 4096, 1, 0], ret: 0, flags: 0 } });
    expect(t.vcpu.completeHypercall(0)).toEqual({ ret: 0 });
    expect(t.vcpu.guestOp({ op: 'ghcb_msr', value: req(P) }).exit).toMatchObject({ hypercall: { args: [gfn * 4096, 1, ENC] } });
    expect(t.vcpu.completeHypercall(0)).toEqual({ ret: 0 });
    expect(t.vcpu.guestOp({ op: 'ghcb_msr', value: req(SNP_PAGE_STATE_UNSMASH) })).toMatchObject({ ret: 'GHCB_MSR_PSC_RESP_ERROR' });
    // an unaligned gpa of the psc_msr op is the page it falls in
    expect(t.vcpu.guestOp({ op: 'psc_msr', gpa: GPA0 + 0x5123, operation: S }).exit).toMatchObject({ hypercall: { args: [GPA0 + 0x5000, 1, 0] } });
  });

  it('GHCB_MSR_REG_GPA_REQ registers the GHCB page: only it may carry a termination request', () => {
    const t = withExits();
    const gfn = GFN0 + 3;
    expect(t.vcpu.guestOp({ op: 'ghcb_msr', value: gfn * 0x1000 + GHCB_MSR_REG_GPA_REQ })).toEqual({ ret: gfn * 0x1000 + GHCB_MSR_REG_GPA_RESP });
    expect(t.vcpu.guestOp({ op: 'ghcb_term_request', ghcb_gpa: (gfn + 1) * 4096 })).toMatchObject({ errno: 'EINVAL' });
    expect(t.vcpu.guestOp({ op: 'ghcb_term_request', ghcb_gpa: gfn * 4096 }).exit).toEqual({
      reason: 'KVM_EXIT_SYSTEM_EVENT',
      system_event: { type: KVM_SYSTEM_EVENT_SEV_TERM, ndata: 1, data: [gfn * 4096] },
    });
  });

  it('REG_GPA keeps every gfn bit (63:12) exactly; PSC takes its gfn from bits 51:12 and its operation from 55:52', () => {
    const t = withExits();
    expect(t.vcpu.guestOp({ op: 'ghcb_msr', value: (GFN0 + 3) * 0x1000 + GHCB_MSR_REG_GPA_REQ })).toEqual({ ret: (GFN0 + 3) * 0x1000 + GHCB_MSR_REG_GPA_RESP });
    // a gfn past 2^41: the request is no longer exact as a number, and it is still REG_GPA
    const high = (0xf_ffff_ffff_ffffn << 12n) | BigInt(GHCB_MSR_REG_GPA_REQ);
    expect(t.vcpu.guestOp({ op: 'ghcb_msr', value: high })).toEqual({ ret: (0xf_ffff_ffff_ffffn << 12n) | BigInt(GHCB_MSR_REG_GPA_RESP) });
    // the registration moved there: the old GHCB gpa may no longer terminate
    expect(t.vcpu.guestOp({ op: 'ghcb_term_request', ghcb_gpa: (GFN0 + 3) * 4096 })).toMatchObject({ errno: 'EINVAL' });
    // bits 63:56 of a PSC request are not part of it
    const psc = (0xabn << 56n) | (BigInt(S) << 52n) | (BigInt(GFN0 + 5) << 12n) | BigInt(GHCB_MSR_PSC_REQ);
    expect(t.vcpu.guestOp({ op: 'ghcb_msr', value: psc }).exit).toMatchObject({ hypercall: { args: [GPA0 + 0x5000, 1, 0] } });
  });

  it('an unknown SNP guest operation is EINVAL', () => {
    const t = withExits();
    expect(t.vcpu.guestOp({ op: 'bogus' } as never)).toMatchObject({ errno: 'EINVAL' });
  });
});
