/**
 * What users of the SEV-SNP backend see: the `detail.check` text of a refused
 * KVM_MEMORY_ENCRYPT_OP (shown by `ccmem run`), the #NPF reasons of the `kvm_page_fault` event,
 * the `kvm_rmp_fault` results of sev_handle_rmp_fault(), the launch's trace events
 * (`ccmem run --trace`, `ccmem explain`), the `detail` of guest requests, and the stats and
 * invariant reports of `inspect`. Also the rules that only show through them
 * (arch/x86/kvm/svm/sev.c, arch/x86/include/asm/sev-common.h).
 */
import { describe, expect, it } from 'vitest';
import { ERRNO, KVM_CAP_EXIT_HYPERCALL, KVM_HC_MAP_GPA_RANGE, KVM_MEM_GUEST_MEMFD, KVM_MEMORY_ATTRIBUTE_PRIVATE, KVM_MEMORY_EXIT_FLAG_PRIVATE, KVM_X86_SNP_VM, PAGE_SIZE, PG_LEVEL_2M, PG_LEVEL_4K, recordTrace, type TraceEvent } from '@ccmem/core';
import { SNP_PAGE_TYPE_NORMAL, SNP_PAGE_TYPE_ZERO } from './launch-digest.js';
import { PFERR_GUEST_ENC_MASK, PFERR_GUEST_RMP_MASK, PFERR_GUEST_SIZEM_MASK, PSMASH_FAIL_PERMISSION, RMPUPDATE_FAIL_INPUT, rmpupdateInsn } from './instructions.js';
import {
  SNP_PAGE_STATE_PRIVATE,
  SNP_PAGE_STATE_SHARED,
  SNP_POLICY_MASK_RSVD_MBO,
  VMGEXIT_PSC_ERROR_GENERIC,
  VMGEXIT_PSC_ERROR_INVALID_ENTRY,
  VMGEXIT_PSC_ERROR_INVALID_HDR,
  createSnpBackend,
  snpHostFor,
  type SnpBackend,
} from './snp-backend.js';
import { GFN0, GPA0, snpKvm, snpVm } from './testing/snp-vm.js';

type T = ReturnType<typeof snpVm>;
const refused = (code: string, check: string) => expect.objectContaining({ code, check });
const ENC = PFERR_GUEST_RMP_MASK + PFERR_GUEST_ENC_MASK;
const hex = (n: number) => `0x${n.toString(16)}`;

function traced(setup: Parameters<typeof snpVm>[0] = {}) {
  const t = snpVm(setup);
  const { events } = recordTrace(t.kvm.tracer);
  return { ...t, events };
}

function setPrivate(t: T, gfn: number, n: number, priv = true) {
  t.vm.setMemoryAttributes({ address: GPA0 + gfn * PAGE_SIZE, size: n * PAGE_SIZE, attributes: priv ? KVM_MEMORY_ATTRIBUTE_PRIVATE : 0, flags: 0 });
}
const named = (events: TraceEvent[], name: string) => events.filter((e) => e.name === name);
const backendStats = (t: T) => (t.b.inspect!({ what: 'stats' }) as { backend: Record<string, number> }).backend;

describe('uAPI values', () => {
  it('the PSC error codes of SW_EXITINFO2 (sev-common.h VMGEXIT_PSC_ERROR_*)', () => {
    expect(VMGEXIT_PSC_ERROR_GENERIC).toBe(0x100_0000_0000);
    expect(VMGEXIT_PSC_ERROR_INVALID_HDR).toBe(0x1_0000_0001);
    expect(VMGEXIT_PSC_ERROR_INVALID_ENTRY).toBe(0x1_0000_0002);
  });
});

describe('KVM_MEMORY_ENCRYPT_OP on an SNP VM: refusals name the check', () => {
  it('before KVM_SEV_INIT2', () => {
    const { vm } = snpVm({ noInit2: true });
    const op = (req: object) => () => vm.memoryEncryptOp(req as never);
    expect(op({ cmd: 'sev_init' })).toThrow(refused('EINVAL', 'sev_guest_init: the deprecated init is for KVM_X86_DEFAULT_VM only'));
    expect(op({ cmd: 'sev_es_init' })).toThrow(refused('EINVAL', 'sev_guest_init: the deprecated init is for KVM_X86_DEFAULT_VM only'));
    expect(op({ cmd: 'sev_launch_start' })).toThrow(refused('ENOTTY', 'sev_launch_start: not an SEV guest'));
    expect(op({ cmd: 'sev_guest_status' })).toThrow(refused('ENOTTY', 'sev_guest_status: not an SEV guest'));
    expect(op({ cmd: 'snp_launch_start' })).toThrow(refused('ENOTTY', 'snp_launch_start: not an SNP guest (KVM_SEV_INIT2 first)'));
    expect(op({ cmd: 'snp_launch_update', gfn_start: GFN0, uaddr: 0, len: PAGE_SIZE, type: SNP_PAGE_TYPE_ZERO })).toThrow(
      refused('EINVAL', 'snp_launch_update: not an SNP guest (KVM_SEV_INIT2 first)'),
    );
    expect(op({ cmd: 'snp_launch_finish' })).toThrow(refused('ENOTTY', 'snp_launch_finish: not an SNP guest (KVM_SEV_INIT2 first)'));
    expect(op({ cmd: 'bogus' })).toThrow(refused('EINVAL', 'sev_mem_enc_ioctl: unknown command bogus'));
  });

  it('after KVM_SEV_INIT2: SEV commands, the launch checks', () => {
    const t = snpVm();
    const op = (req: object) => () => t.vm.memoryEncryptOp(req as never);
    expect(op({ cmd: 'sev_init2' })).toThrow(refused('EPERM', 'sev_mem_enc_ioctl: sev_init2 on an SNP guest (only KVM_SEV_SNP_* commands)'));
    expect(op({ cmd: 'snp_launch_update', gfn_start: GFN0, uaddr: t.hva, len: PAGE_SIZE, type: SNP_PAGE_TYPE_NORMAL })).toThrow(
      refused('EINVAL', 'snp_launch_update: no SNP context (KVM_SEV_SNP_LAUNCH_START first)'),
    );
    expect(op({ cmd: 'snp_launch_finish' })).toThrow(refused('EINVAL', 'snp_launch_finish: no SNP context'));
    expect(op({ cmd: 'snp_launch_start', flags: 1 })).toThrow(refused('EINVAL', 'snp_launch_start: flags must be 0'));
    expect(op({ cmd: 'snp_launch_start', policy: SNP_POLICY_MASK_RSVD_MBO | (1 << 18) })).toThrow(refused('EINVAL', 'snp_launch_start: policy has bits KVM does not support'));
    // policy 0 is in range: it fails the must-be-one bit
    expect(op({ cmd: 'snp_launch_start', policy: 0 })).toThrow(refused('EINVAL', 'snp_launch_start: policy bit 17 (must be one) is clear'));
    t.vm.memoryEncryptOp({ cmd: 'snp_launch_start' });
    expect(op({ cmd: 'snp_launch_start' })).toThrow(refused('EINVAL', 'snp_launch_start: SNP context already exists'));
    const up = (req: object) => op({ cmd: 'snp_launch_update', gfn_start: GFN0, uaddr: t.hva, len: PAGE_SIZE, type: SNP_PAGE_TYPE_NORMAL, ...req });
    expect(up({ len: 100 })).toThrow(refused('EINVAL', 'snp_launch_update: len not page aligned, flags set, or bad page type'));
    expect(up({ len: 0 })).toThrow(refused('EINVAL', 'snp_launch_update: len is 0 (npages <= 0)'));
    expect(up({ uaddr: t.hva + 8 })).toThrow(refused('EINVAL', 'snp_launch_update: uaddr is 0 or not page aligned'));
    expect(up({ gfn_start: 0 })).toThrow(refused('EINVAL', 'snp_launch_update: gfn_start is not in a private memslot'));
    expect(op({ cmd: 'snp_launch_finish', flags: 1 })).toThrow(refused('EINVAL', 'snp_launch_finish: flags must be 0'));
    t.vm.memoryEncryptOp({ cmd: 'snp_launch_finish' });
    expect(op({ cmd: 'snp_launch_finish' })).toThrow(refused('EIO', 'snp_launch_finish: the launch is already finished'));
    expect(up({})).toThrow(refused('EIO', 'snp_launch_update: SNP_LAUNCH_UPDATE after SNP_LAUNCH_FINISH'));
  });

  it('SNP_LAUNCH_UPDATE of a shared gfn: kvm_gmem_populate() fails and says why', () => {
    const t = snpVm();
    t.vm.memoryEncryptOp({ cmd: 'snp_launch_start' });
    const up = () => t.vm.memoryEncryptOp({ cmd: 'snp_launch_update', gfn_start: GFN0, uaddr: t.hva, len: PAGE_SIZE, type: SNP_PAGE_TYPE_NORMAL });
    expect(up).toThrow(refused('EIO', 'snp_launch_update: kvm_gmem_populate failed (EINVAL)'));
  });

  it('SNP_LAUNCH_UPDATE of a page the RMP already assigned: EEXIST, with the gfn; a later failure has no stale reason', () => {
    const t = snpVm();
    t.vm.memoryEncryptOp({ cmd: 'snp_launch_start' });
    setPrivate(t, 0, 2);
    // the guest touched gfn 1 first: sev_gmem_prepare() assigned its page
    t.vcpu.guestWrite(GPA0 + PAGE_SIZE, 8, 1n, true);
    const up = (gfn: number) => () => t.vm.memoryEncryptOp({ cmd: 'snp_launch_update', gfn_start: GFN0 + gfn, uaddr: t.hva, len: PAGE_SIZE, type: SNP_PAGE_TYPE_NORMAL });
    expect(up(1)).toThrow(refused('EIO', `snp_launch_update: kvm_gmem_populate failed (EEXIST): gfn ${hex(GFN0 + 1)}: RMP entry is not in the initial shared state`));
    setPrivate(t, 2, 1, false);
    expect(up(2)).toThrow(refused('EIO', 'snp_launch_update: kvm_gmem_populate failed (EINVAL)'));
  });
});

describe('the launch as the trace shows it', () => {
  it('KVM_SEV_INIT2, SNP_LAUNCH_START, SNP_LAUNCH_UPDATE per page, SNP_LAUNCH_FINISH with the digest', () => {
    const kvm = snpKvm();
    const init = recordTrace(kvm.tracer);
    const vm = kvm.createVm({ type: KVM_X86_SNP_VM, options: { asid: 1 } });
    vm.memoryEncryptOp({ cmd: 'sev_init2', vmsa_features: 0x20 });
    expect(named(init.events, 'sev_guest_init')).toEqual([{ name: 'sev_guest_init', fields: { vm_type: KVM_X86_SNP_VM, asid: 1, vmsa_features: 0x21, ghcb_version: 2 } }]);
    const t = traced();
    const asid = t.b.asid;
    t.vm.memoryEncryptOp({ cmd: 'snp_launch_start' });
    setPrivate(t, 0, 2);
    const out = t.vm.memoryEncryptOp({ cmd: 'snp_launch_update', gfn_start: GFN0, uaddr: t.hva, len: 2 * PAGE_SIZE, type: SNP_PAGE_TYPE_NORMAL }).out!;
    expect(out).toEqual({ gfn_start: GFN0 + 2, uaddr: t.hva + 2 * PAGE_SIZE, len: 0, type: SNP_PAGE_TYPE_NORMAL, flags: 0 });
    const pfn0 = t.vm.gmemPeekPfn(GFN0);
    const pfn1 = t.vm.gmemPeekPfn(GFN0 + 1);
    // the firmware's LAUNCH_UPDATE leaves a normal page Guest-Valid, not a VMSA
    expect(t.host.rmp.inspect(pfn0)).toMatchObject({ assigned: true, validated: true, vmsa: false, immutable: false });
    const fin = t.vm.memoryEncryptOp({ cmd: 'snp_launch_finish' }).out!;
    const digest = fin.launch_digest;
    const snpEvents = t.events.filter((e) => e.name.startsWith('snp_'));
    expect(snpEvents).toEqual([
      { name: 'snp_launch_start', fields: { policy: SNP_POLICY_MASK_RSVD_MBO | (1 << 16), asid } },
      { name: 'snp_launch_update', fields: { gfn: GFN0, pfn: pfn0, type: SNP_PAGE_TYPE_NORMAL } },
      { name: 'snp_launch_update', fields: { gfn: GFN0 + 1, pfn: pfn1, type: SNP_PAGE_TYPE_NORMAL } },
      { name: 'snp_launch_finish', fields: { vcpus: 1, digest } },
    ]);
    // the host's RMPUPDATEs are traced too (the VM's tracer is the host's while it works)
    expect(named(t.events, 'rmpupdate').length).toBeGreaterThanOrEqual(3);
    expect(t.b.checkInvariants!()).toEqual([]);
    expect(t.b.inspect!({ what: 'launch' })).toMatchObject({ started: true, finished: true, measuredPages: 3, vmsaPfns: fin.vmsa_pfns });
  });
});

describe('guest accesses: the #NPF reasons of kvm_page_fault and the #VC', () => {
  it('a private access to an unvalidated page is a #VC that says why', () => {
    const t = snpVm();
    setPrivate(t, 0, 1);
    const r = t.vcpu.guestWrite(GPA0, 8, 1n, true);
    expect(r.exception).toEqual({ vector: '#VC', reason: 'PAGE_NOT_VALIDATED: the page is private and assigned to this guest, but the guest has not PVALIDATEd it' });
  });

  it('the RMP checks of a private access, in order: assigned, ASID, gpa, page size', () => {
    const t = snpVm();
    const b = t.b;
    setPrivate(t, 0, 2);
    t.vcpu.guestWrite(GPA0, 8, 1n, true);
    const pfn = t.vm.gmemPeekPfn(GFN0);
    const access = (over: object) => b.checkGuestAccess!({ vcpuId: 0, gpa: GPA0 + 0x10, gfn: GFN0, pfn, level: PG_LEVEL_4K, isPrivate: true, write: true, fetch: false, ...over });
    expect(access({ isPrivate: false })).toEqual({ kind: 'npf', errorCode: PFERR_GUEST_RMP_MASK, reason: `shared access to gpa ${hex(GPA0 + 0x10)} hits assigned pfn ${hex(pfn)}` });
    const free = t.kvm.process.phys.allocPage();
    expect(access({ pfn: free })).toEqual({ kind: 'npf', errorCode: ENC, reason: `private access to gpa ${hex(GPA0 + 0x10)}: pfn ${hex(free)} is not assigned in the RMP` });
    expect(access({ gfn: GFN0 + 1 })).toEqual({ kind: 'npf', errorCode: ENC, reason: `RMP gpa ${hex(GPA0)} != accessed gpa page ${hex(GPA0 + PAGE_SIZE)}` });
    expect(access({ level: PG_LEVEL_2M })).toEqual({ kind: 'npf', errorCode: ENC + PFERR_GUEST_SIZEM_MASK, reason: 'NPT leaf level 2 != RMP level 1' });
    // a page of the guest with ASID 5, at the same gpa
    const theirs = t.kvm.process.phys.allocPage();
    expect(t.host.rmpMakePrivate(theirs, GPA0, PG_LEVEL_4K, 5, false, 'split')).toBe(0);
    expect(access({ pfn: theirs })).toEqual({ kind: 'npf', errorCode: ENC, reason: `RMP asid 5 is not this guest's (${b.asid})` });
  });

  it('a shared access to an assigned page: kvm_page_fault with the reason, then kvm_rmp_fault "shared gfn: guest retries"', () => {
    const t = traced();
    setPrivate(t, 0, 1);
    t.vcpu.guestWrite(GPA0, 8, 1n, true);
    const pfn = t.vm.gmemPeekPfn(GFN0);
    setPrivate(t, 0, 1, false);
    t.events.length = 0;
    t.b.handleNpfExtra!(0, GPA0 + 8, PFERR_GUEST_RMP_MASK);
    expect(t.events).toEqual([{ name: 'kvm_rmp_fault', fields: { gpa: GPA0 + 8, error_code: PFERR_GUEST_RMP_MASK, result: 'shared gfn: guest retries' } }]);
    expect(t.host.rmp.isAssigned(pfn)).toBe(true);
  });
});

describe('sev_handle_rmp_fault(): the kvm_rmp_fault results', () => {
  it('no assigned entry: nothing done; a 4K entry: spurious; a 2M entry: PSMASH and zap', () => {
    // set-attributes timing: guest_memfd's prepare assigns nothing, so a private gfn whose page
    // went back to shared stays unassigned (the window of the seed's race)
    const t = traced({ options: { rmpTiming: 'set-attributes' } });
    setPrivate(t, 4, 1);
    const pfn4 = t.vm.gmemPeekPfn(GFN0 + 4);
    expect(t.host.rmpMakeShared(pfn4, PG_LEVEL_4K, 'split')).toBe(0);
    t.events.length = 0;
    t.b.handleNpfExtra!(0, GPA0 + 4 * PAGE_SIZE, ENC);
    expect(named(t.events, 'kvm_rmp_fault')).toEqual([
      { name: 'kvm_rmp_fault', fields: { gpa: GPA0 + 4 * PAGE_SIZE, pfn: pfn4, error_code: ENC, result: 'no assigned RMP entry: nothing done, guest retries' } },
    ]);
    expect(backendStats(t)).toMatchObject({ rmpFaultUnassigned: 1, rmpFaultSpurious: 0 });
  });

  it('the prepare timing: a spurious fault on a 4K entry, PSMASH and zap of a 2M one', () => {
    const t = traced({ huge: true });
    setPrivate(t, 0, 512);
    t.vcpu.guestWrite(GPA0, 8, 1n, true);
    const pfn = t.vm.gmemPeekPfn(GFN0);
    expect(t.host.rmp.lookup(pfn)).toEqual({ assigned: true, level: PG_LEVEL_2M });
    t.events.length = 0;
    t.b.handleNpfExtra!(0, GPA0 + 3 * PAGE_SIZE, ENC + PFERR_GUEST_SIZEM_MASK);
    expect(named(t.events, 'kvm_rmp_fault')).toEqual([
      { name: 'kvm_rmp_fault', fields: { gpa: GPA0 + 3 * PAGE_SIZE, pfn: pfn + 3, error_code: ENC + PFERR_GUEST_SIZEM_MASK, rmp_level: PG_LEVEL_2M, result: 'psmash + zap', ret: 0 } },
    ]);
    expect(named(t.events, 'sev_warn')).toEqual([]);
    t.events.length = 0;
    t.b.handleNpfExtra!(0, GPA0 + 3 * PAGE_SIZE, ENC);
    expect(named(t.events, 'kvm_rmp_fault')).toEqual([
      { name: 'kvm_rmp_fault', fields: { gpa: GPA0 + 3 * PAGE_SIZE, pfn: pfn + 3, error_code: ENC, rmp_level: PG_LEVEL_4K, result: 'spurious' } },
    ]);
    expect(backendStats(t)).toMatchObject({ rmpFaults: 2, rmpFaultSpurious: 1, rmpFaultPsmash: 1 });
  });
});

describe('PVALIDATE and RMPADJUST through the guest', () => {
  it('an instruction that keeps taking RMP #NPFs gives up after 4 tries, each a kvm_page_fault event', () => {
    const t = traced();
    setPrivate(t, 0, 1);
    t.vcpu.guestWrite(GPA0, 8, 1n, true);
    const pfn = t.vm.gmemPeekPfn(GFN0);
    // the page's RMP entry names another gpa: sev_handle_rmp_fault() finds a 4K entry and
    // does nothing (spurious), so every retry faults again
    expect(t.host.rmpMakeShared(pfn, PG_LEVEL_4K, 'split')).toBe(0);
    expect(t.host.rmpMakePrivate(pfn, GPA0 + 0x5000, PG_LEVEL_4K, t.b.asid, false, 'split')).toBe(0);
    t.events.length = 0;
    const r = t.vcpu.guestOp({ op: 'pvalidate', gpa: GPA0, level: PG_LEVEL_4K, validate: true });
    const faults = named(t.events, 'kvm_page_fault');
    expect(r.ret).toBe('npf');
    expect(r.detail).toMatchObject({ retries: 4 });
    expect(faults).toHaveLength(4);
    expect(faults[0]!.fields).toMatchObject({ vcpu_id: 0, gpa: GPA0 });
    expect(faults[0]!.fields.reason).toBe(`RMP gpa ${hex(GPA0 + 0x5000)} != ${hex(GPA0)}`);
    expect(r.detail).toEqual({ errorCode: faults[0]!.fields.error_code, reason: faults[0]!.fields.reason, retries: 4 });
    expect(named(t.events, 'kvm_rmp_fault').map((e) => e.fields.result)).toEqual(['spurious', 'spurious', 'spurious', 'spurious']);
    expect(t.host.rmp.level(pfn)).toBe(PG_LEVEL_4K);
  });

  it('RMPADJUST of a VMSA page and of a plain page differ (the vmsa operand reaches the instruction)', () => {
    const t = snpVm();
    setPrivate(t, 0, 2);
    for (const gfn of [0, 1]) {
      expect(t.vcpu.guestOp({ op: 'pvalidate', gpa: GPA0 + gfn * PAGE_SIZE, level: PG_LEVEL_4K, validate: true })).toMatchObject({ ret: 0 });
    }
    const plain = t.vcpu.guestOp({ op: 'rmpadjust', gpa: GPA0, level: PG_LEVEL_4K, vmpl: 1, perms: 0xf });
    const vmsa = t.vcpu.guestOp({ op: 'rmpadjust', gpa: GPA0 + PAGE_SIZE, level: PG_LEVEL_4K, vmpl: 1, perms: 0xf, vmsa: true });
    expect(plain.ret).toBe(0);
    expect(vmsa.ret).toBe(0);
    expect(t.host.rmp.inspect(t.vm.gmemPeekPfn(GFN0)).vmsa).toBe(false);
    expect(t.host.rmp.inspect(t.vm.gmemPeekPfn(GFN0 + 1)).vmsa).toBe(true);
  });

  it('an unknown guest operation names itself', () => {
    expect(snpVm().b.guestOp!(0, { op: 'bogus' } as never)).toEqual({ errno: 'EINVAL', detail: { reason: 'unknown SNP guest operation bogus' } });
  });
});

describe('page-state changes: what the guest and the VMM see', () => {
  function withExits() {
    const t = snpVm();
    t.vm.enableCap({ cap: KVM_CAP_EXIT_HYPERCALL, args: [1 << KVM_HC_MAP_GPA_RANGE] });
    return t;
  }

  it('the MSR protocol refusals say why', () => {
    const t = snpVm();
    expect(t.vcpu.guestOp({ op: 'psc_msr', gpa: GPA0, operation: SNP_PAGE_STATE_PRIVATE })).toEqual({
      ret: 'GHCB_MSR_PSC_RESP_ERROR',
      detail: { reason: 'KVM_CAP_EXIT_HYPERCALL lacks KVM_HC_MAP_GPA_RANGE' },
    });
    expect(withExits().vcpu.guestOp({ op: 'psc_msr', gpa: GPA0, operation: 3 })).toEqual({ ret: 'GHCB_MSR_PSC_RESP_ERROR', detail: { reason: 'bad operation' } });
  });

  it('a GHCB PSC without KVM_HC_MAP_GPA_RANGE exits completes with VMGEXIT_PSC_ERROR_GENERIC at once', () => {
    const t = snpVm();
    const r = t.vcpu.guestOp({ op: 'psc', entries: [{ gfn: GFN0, operation: SNP_PAGE_STATE_PRIVATE }] });
    expect(r).toEqual({ ret: VMGEXIT_PSC_ERROR_GENERIC, detail: { cur_entry: 0, cur_page: [0] } });
    expect(backendStats(t).pscExits).toBe(0);
  });

  it('the exit says which entry is in flight; done entries are skipped; the stats count exits', () => {
    const t = withExits();
    const r = t.vcpu.guestOp({
      op: 'psc',
      entries: [
        { gfn: GFN0, operation: SNP_PAGE_STATE_PRIVATE, cur_page: 1 },
        { gfn: GFN0 + 1, operation: SNP_PAGE_STATE_SHARED },
      ],
    });
    expect(r.exit?.reason).toBe('KVM_EXIT_HYPERCALL');
    expect(r.detail).toEqual({ cur_entry: 1 });
    expect(backendStats(t).pscExits).toBe(1);
    t.vcpu.completeHypercall(0);
    t.vcpu.guestOp({ op: 'psc_msr', gpa: GPA0, operation: SNP_PAGE_STATE_PRIVATE });
    expect(backendStats(t).pscExits).toBe(2);
  });

  it('a 2M entry finished at 4K merges with a following 4K entry, compared with the entry\'s own gfn as upstream does', () => {
    // snp_begin_psc(): "Subsequent entries should be handled with 4K handling as well", and the
    // next entry must start at entry_start.gfn + npages (entry_start.gfn is not moved by cur_page)
    const t = withExits();
    const r = t.vcpu.guestOp({
      op: 'psc',
      entries: [
        { gfn: GFN0, operation: SNP_PAGE_STATE_PRIVATE, pagesize: 1, cur_page: 511 },
        { gfn: GFN0 + 1, operation: SNP_PAGE_STATE_PRIVATE },
      ],
    });
    expect(r.exit).toMatchObject({ hypercall: { args: [(GFN0 + 511) * PAGE_SIZE, 2, (1 << 4) | 1] } });
  });

  it('a hypercall.ret KVM does not accept fails KVM_RUN and says so', () => {
    const t = withExits();
    t.vcpu.guestOp({ op: 'psc', entries: [{ gfn: GFN0, operation: SNP_PAGE_STATE_PRIVATE }] });
    expect(t.vcpu.completeHypercall(5)).toEqual({ errno: 'EINVAL', detail: { reason: 'hypercall.ret 5 is not 0, EINVAL or EAGAIN (kvm_is_valid_map_gpa_range_ret)' } });
  });
});

describe('the attribute hooks at their range ends', () => {
  it('unmap policy: only the pages of the range leave the direct map', () => {
    // set-attributes timing: private→shared gives the pages back to the RMP and the direct map
    const t = snpVm({ options: { directmap: 'unmap', rmpTiming: 'set-attributes' } });
    setPrivate(t, 0, 2);
    setPrivate(t, 0, 2, false);
    const p1 = t.vm.gmemPeekPfn(GFN0 + 1);
    expect(p1).toBeGreaterThanOrEqual(0);
    expect(t.host.directmap.isPresent(p1)).toBe(true);
    setPrivate(t, 0, 1);
    expect(t.host.directmap.isPresent(t.vm.gmemPeekPfn(GFN0))).toBe(false);
    expect(t.host.directmap.isPresent(p1)).toBe(true);
  });

  it('set-attributes timing: private→shared of one gfn leaves its private neighbour assigned', () => {
    const t = snpVm({ options: { rmpTiming: 'set-attributes' } });
    setPrivate(t, 0, 2);
    t.vcpu.guestWrite(GPA0, 8, 1n, true);
    t.vcpu.guestWrite(GPA0 + PAGE_SIZE, 8, 1n, true);
    const p1 = t.vm.gmemPeekPfn(GFN0 + 1);
    expect(t.host.rmp.isAssigned(p1)).toBe(true);
    setPrivate(t, 0, 1, false);
    expect(t.host.rmp.isAssigned(t.vm.gmemPeekPfn(GFN0))).toBe(false);
    expect(t.host.rmp.isAssigned(p1)).toBe(true);
  });

  it('set-attributes timing: private gfns outside any memslot change no RMP entry and fail nothing', () => {
    const t = traced({ options: { rmpTiming: 'set-attributes' } });
    const before = t.host.stats.rmpupdates;
    t.vm.setMemoryAttributes({ address: 0, size: 2 * PAGE_SIZE, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE, flags: 0 });
    expect(t.host.stats.rmpupdates).toBe(before);
    expect(backendStats(t)).toMatchObject({ attrRmpUpdates: 0, attrRmpFailures: 0 });
    expect(named(t.events, 'sev_warn')).toEqual([]);
  });
});

describe('sev_gmem_invalidate(): only assigned frames are made shared', () => {
  it('punching a hole over assigned and never-assigned pages RMPUPDATEs the assigned ones only', () => {
    const t = traced();
    setPrivate(t, 0, 4);
    t.vcpu.guestWrite(GPA0, 8, 1n, true);
    t.vcpu.guestWrite(GPA0 + 2 * PAGE_SIZE, 8, 1n, true);
    const p0 = t.vm.gmemPeekPfn(GFN0);
    const p2 = t.vm.gmemPeekPfn(GFN0 + 2);
    t.events.length = 0;
    t.punchHole(0, 4 * PAGE_SIZE);
    const updates = named(t.events, 'rmpupdate').map((e) => e.fields.pfn);
    expect(updates.sort()).toEqual([p0, p2].sort());
    expect(t.host.rmp.isAssigned(p0)).toBe(false);
  });
});

describe('the SNP backend object', () => {
  it('names itself, starts without SEV state, and says when it is used before attach()', () => {
    const kvm = snpKvm();
    const b = createSnpBackend({ directmap: 'split', rmpTiming: 'prepare', phys: kvm.process.phys });
    expect(b.name).toBe('snp');
    expect(b.inspect!({ what: 'sev' })).toEqual({ active: false, es_active: false, need_init: true, asid: 0, vmsa_features: 0, ghcb_version: 0 });
    expect(b.inspect!({ what: 'other' } as never)).toBeUndefined();
    expect(() => b.vmIoctl!({ cmd: 'sev_init2' })).toThrow('snp backend used before attach()');
  });

  it('the user-write check refuses an assigned page and allows a shared one', () => {
    const t = snpVm();
    setPrivate(t, 0, 1);
    t.vcpu.guestWrite(GPA0, 8, 1n, true);
    const pfn = t.vm.gmemPeekPfn(GFN0);
    expect(t.b.checkUserWrite!(pfn, PG_LEVEL_4K)).toMatch(/user/);
    expect(t.b.checkUserWrite!(t.kvm.process.phys.allocPage(), PG_LEVEL_4K)).toBeNull();
  });

  it('snpHostFor() passes the RMP size to a new host', () => {
    const phys = snpKvm().process.phys;
    const h = snpHostFor(phys, { maxPfn: 4096 });
    expect(h.rmp.isValidPfn(4095)).toBe(true);
    expect(h.rmp.isValidPfn(4096)).toBe(false);
  });

  it('inspect stats copies the direct-map and host counters', () => {
    const t = snpVm();
    setPrivate(t, 0, 1);
    t.vcpu.guestWrite(GPA0, 8, 1n, true);
    const s = t.b.inspect!({ what: 'stats' }) as { directmapStats: Record<string, number>; host: Record<string, number> };
    expect(s.directmapStats).toMatchObject({ unmappedPages: 0, split2MRegions: expect.any(Number) });
    expect(s.host).toMatchObject({ rmpupdates: t.host.stats.rmpupdates });
    expect(s.host.rmpupdates).toBeGreaterThan(0);
  });

  it('VM options are checked with a message', () => {
    const kvm = snpKvm();
    expect(() => kvm.createVm({ type: KVM_X86_SNP_VM, options: { directmap: 'x' } as never })).toThrow(refused('EINVAL', "snp: directmap must be 'split' or 'unmap'"));
    expect(() => kvm.createVm({ type: KVM_X86_SNP_VM, options: { rmpTiming: 'x' } as never })).toThrow(refused('EINVAL', "snp: rmpTiming must be 'prepare' or 'set-attributes'"));
    expect(() => kvm.createVm({ type: KVM_X86_SNP_VM, options: { asid: 1.5 } })).toThrow(refused('EINVAL', 'snp: asid must be an integer'));
  });

  it('destroy() runs once: a second call does not free the ASID another VM now holds', () => {
    const kvm = snpKvm();
    const asids = snpHostFor(kvm.process.phys).sev.asids;
    const a = kvm.createVm({ type: KVM_X86_SNP_VM, options: { asid: 1 } });
    a.memoryEncryptOp({ cmd: 'sev_init2' });
    const ab = a.backend as SnpBackend;
    ab.destroy!();
    const b = kvm.createVm({ type: KVM_X86_SNP_VM, options: { asid: 1 } });
    b.memoryEncryptOp({ cmd: 'sev_init2' });
    ab.destroy!();
    expect(asids.asidNew(true, 1)).toBeLessThan(0);
  });

  it('a page leaked on the host is reported only when guest_memfd hands that page out', () => {
    const t = snpVm();
    const spare = t.kvm.process.phys.allocPage();
    t.host.snpLeakPages(spare, 1);
    setPrivate(t, 0, 1);
    t.vcpu.guestWrite(GPA0, 8, 1n, true);
    expect(t.b.checkInvariants!().filter((s) => s.includes('handed out again'))).toEqual([]);
  });
});

describe('failures the host injects (a racing CPU or the firmware)', () => {
  it('sev_handle_rmp_fault(): a PSMASH that fails and leaves a 2M entry is warned about, and the range zapped anyway', () => {
    const t = traced({ huge: true });
    setPrivate(t, 0, 512);
    t.vcpu.guestWrite(GPA0, 8, 1n, true);
    const pfn = t.vm.gmemPeekPfn(GFN0);
    t.host.injectResult('psmash', PSMASH_FAIL_PERMISSION);
    t.events.length = 0;
    t.b.handleNpfExtra!(0, GPA0 + PAGE_SIZE, ENC + PFERR_GUEST_SIZEM_MASK);
    expect(t.events.filter((e) => e.name === 'sev_warn' || e.name === 'kvm_rmp_fault')).toEqual([
      { name: 'sev_warn', fields: { what: 'Unable to split RMP entry', gpa: GPA0 + PAGE_SIZE, pfn: pfn + 1, ret: PSMASH_FAIL_PERMISSION } },
      {
        name: 'kvm_rmp_fault',
        fields: { gpa: GPA0 + PAGE_SIZE, pfn: pfn + 1, error_code: ENC + PFERR_GUEST_SIZEM_MASK, rmp_level: PG_LEVEL_2M, result: 'psmash + zap', ret: PSMASH_FAIL_PERMISSION },
      },
    ]);
    expect(t.host.rmp.level(pfn)).toBe(PG_LEVEL_2M);
    expect(backendStats(t).rmpFaultPsmash).toBe(1);
  });

  it('SNP_LAUNCH_UPDATE: a refused RMPUPDATE of the page is EFAULT, reported as EIO with the reason', () => {
    const t = snpVm();
    t.vm.memoryEncryptOp({ cmd: 'snp_launch_start' });
    setPrivate(t, 0, 1);
    t.host.injectResult('rmpupdate', RMPUPDATE_FAIL_INPUT);
    expect(() => t.vm.memoryEncryptOp({ cmd: 'snp_launch_update', gfn_start: GFN0, uaddr: t.hva, len: PAGE_SIZE, type: SNP_PAGE_TYPE_NORMAL })).toThrow(
      refused('EIO', 'snp_launch_update: kvm_gmem_populate failed (EFAULT): rmp_make_private failed'),
    );
    expect(t.b.inspect!({ what: 'launch' })).toMatchObject({ measuredPages: 0 });
  });

  it('SNP_LAUNCH_FINISH: a refused RMPUPDATE of a VMSA page returns at once; the VMSA pages made so far stay private and measured', () => {
    // snp_launch_update_vmsa() (arch/x86/kvm/svm/sev.c) returns rmp_make_private()'s error
    // without undoing the vCPUs before: their state is protected already
    const t = snpVm({ vcpus: 2 });
    t.vm.memoryEncryptOp({ cmd: 'snp_launch_start' });
    const phys = t.kvm.process.phys;
    const before = phys.allocatedPages;
    const updates = t.host.stats.rmpupdates;
    // the first vCPU's VMSA page goes through, the second one's RMPUPDATE fails
    t.host.injectResult('rmpupdate', RMPUPDATE_FAIL_INPUT, 1, 1);
    expect(() => t.vm.memoryEncryptOp({ cmd: 'snp_launch_finish' })).toThrow(refused('EFAULT', 'snp_launch_update_vmsa: rmp_make_private failed'));
    expect(phys.allocatedPages).toBe(before + 1);
    expect(t.host.leakedPages.size).toBe(0);
    expect(t.host.stats.rmpupdates).toBe(updates + 1);
    const { vmsaPfns } = t.b.inspect!({ what: 'launch' }) as { vmsaPfns: number[] };
    expect(vmsaPfns).toHaveLength(1);
    expect(t.host.rmp.inspect(vmsaPfns[0]!)).toMatchObject({ assigned: true, vmsa: true });
  });
});

describe('more range ends', () => {
  it('set-attributes timing: punching a hole over a page made shared again RMPUPDATEs nothing for it', () => {
    const t = traced({ options: { rmpTiming: 'set-attributes' } });
    setPrivate(t, 0, 2);
    setPrivate(t, 0, 1, false);
    const p0 = t.vm.gmemPeekPfn(GFN0);
    const p1 = t.vm.gmemPeekPfn(GFN0 + 1);
    expect(t.host.rmp.isAssigned(p0)).toBe(false);
    t.events.length = 0;
    t.punchHole(0, 2 * PAGE_SIZE);
    expect(named(t.events, 'rmpupdate').map((e) => e.fields.pfn)).toEqual([p1]);
  });
});

describe('the NPT fault of PVALIDATE / RMPADJUST ends KVM_RUN like any private access (kvm_mmu_faultin_pfn)', () => {
  /** KVM_EXIT_MEMORY_FAULT for a private access to the page of `gpa` */
  const privateFault = (gpa: number) => ({
    reason: 'KVM_EXIT_MEMORY_FAULT',
    memory_fault: { flags: KVM_MEMORY_EXIT_FLAG_PRIVATE, gpa: Math.floor(gpa / PAGE_SIZE) * PAGE_SIZE, size: PAGE_SIZE },
  });

  it('a private gfn in no memslot: kvm_handle_noslot_fault() → -EFAULT with a private memory-fault exit, and the RMP is never reached', () => {
    const t = traced();
    const gpa = 0x5123;
    t.vm.setMemoryAttributes({ address: 0x5000, size: PAGE_SIZE, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE, flags: 0 });
    t.events.length = 0;
    const before = backendStats(t);
    const assigned = t.host.rmp.assignedPages;
    const pv = t.vcpu.guestOp({ op: 'pvalidate', gpa, level: PG_LEVEL_4K, validate: true });
    expect(pv).toEqual({ errno: 'EFAULT', exit: privateFault(gpa), detail: { reason: 'private access with no memslot' } });
    const adj = t.vcpu.guestOp({ op: 'rmpadjust', gpa, level: PG_LEVEL_4K, vmpl: 1, perms: 0xf });
    expect(adj).toEqual(pv);
    // the same answer as a private guest read of that gpa (the core fault path)
    const rd = t.vcpu.guestRead(gpa, 8, true);
    expect([rd.errno, rd.exit]).toEqual([pv.errno, pv.exit]);
    // no #NPF retried, no RMP fault handled, no RMP entry touched
    expect(named(t.events, 'kvm_rmp_fault')).toEqual([]);
    expect(backendStats(t)).toEqual(before);
    expect(t.host.rmp.assignedPages).toBe(assigned);
  });

  it('a private gfn of a memslot without guest_memfd: -EFAULT with a private memory-fault exit', () => {
    const t = snpVm();
    const hva = t.kvm.process.mm.mmap({ length: 2 * PAGE_SIZE, prot: { read: true, write: true }, shared: false });
    t.vm.setUserMemoryRegion2({ slot: 2, flags: 0, guest_phys_addr: 0x10_0000, memory_size: 2 * PAGE_SIZE, userspace_addr: hva, guest_memfd: 0, guest_memfd_offset: 0 });
    t.vm.setMemoryAttributes({ address: 0x10_0000, size: PAGE_SIZE, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE, flags: 0 });
    const pv = t.vcpu.guestOp({ op: 'pvalidate', gpa: 0x10_0000, level: PG_LEVEL_4K, validate: true });
    expect(pv).toEqual({ errno: 'EFAULT', exit: privateFault(0x10_0000), detail: { reason: 'private access to a memslot without guest_memfd' } });
    const rd = t.vcpu.guestRead(0x10_0000, 8, true);
    expect([rd.errno, rd.exit]).toEqual([pv.errno, pv.exit]);
  });

  it('a shared gfn: the mismatch is an implicit conversion, -EFAULT with a private memory-fault exit', () => {
    const t = snpVm();
    const gpa = GPA0 + 0x2008;
    expect(t.vcpu.guestOp({ op: 'pvalidate', gpa, level: PG_LEVEL_4K, validate: true })).toEqual({
      errno: 'EFAULT',
      exit: privateFault(gpa),
      detail: { reason: 'private access to a shared gfn' },
    });
  });

  it('the gfn leaves its memslot: the same PVALIDATE that succeeded now fails with the memory-fault exit', () => {
    const t = snpVm();
    setPrivate(t, 3, 1);
    const gpa = GPA0 + 3 * PAGE_SIZE;
    expect(t.vcpu.guestOp({ op: 'pvalidate', gpa, level: PG_LEVEL_4K, validate: true })).toMatchObject({ ret: 0 });
    t.vm.setUserMemoryRegion2({ slot: 1, flags: KVM_MEM_GUEST_MEMFD, guest_phys_addr: GPA0, memory_size: 0, userspace_addr: t.hva, guest_memfd: t.fd, guest_memfd_offset: 0 });
    expect(t.vm.memIsPrivate(GFN0 + 3)).toBe(true);
    expect(t.vcpu.guestOp({ op: 'pvalidate', gpa, level: PG_LEVEL_4K, validate: false })).toEqual({
      errno: 'EFAULT',
      exit: privateFault(gpa),
      detail: { reason: 'private access with no memslot' },
    });
  });
});

describe('sev_gmem_prepare() and sev_gmem_invalidate() when an RMPUPDATE or PSMASH fails', () => {
  it('prepare: a refused rmp_make_private() is -EINVAL, which the guest\'s fault-in passes on', () => {
    const t = snpVm();
    setPrivate(t, 0, 1);
    t.host.injectResult('rmpupdate', RMPUPDATE_FAIL_INPUT);
    // kvm_mmu_faultin_pfn_gmem(): the memory-fault exit is prepared for any kvm_gmem_get_pfn() error
    expect(t.vcpu.guestOp({ op: 'pvalidate', gpa: GPA0, level: PG_LEVEL_4K, validate: true })).toEqual({
      errno: 'EINVAL',
      exit: { reason: 'KVM_EXIT_MEMORY_FAULT', memory_fault: { flags: KVM_MEMORY_EXIT_FLAG_PRIVATE, gpa: GPA0, size: PAGE_SIZE } },
      detail: { reason: `kvm_gmem_get_pfn failed (${-ERRNO.EINVAL})` },
    });
  });

  it('invalidate: a failed rmp_make_shared() is warned about with the pfn and the error', () => {
    const t = traced();
    setPrivate(t, 0, 1);
    t.vcpu.guestWrite(GPA0, 8, 1n, true);
    const pfn = t.vm.gmemPeekPfn(GFN0);
    t.host.injectResult('rmpupdate', RMPUPDATE_FAIL_INPUT);
    t.events.length = 0;
    t.punchHole(0, PAGE_SIZE);
    expect(named(t.events, 'sev_warn')).toEqual([{ name: 'sev_warn', fields: { what: 'rmp_make_shared failed in sev_gmem_invalidate', pfn, rc: -ERRNO.EFAULT } }]);
    expect(t.host.rmp.isAssigned(pfn)).toBe(true);
  });

  it('invalidate of a 4K piece of a 2M entry: PSMASH first; a failed PSMASH is warned about, and the 4K update then fails too', () => {
    const t = traced({ huge: true });
    setPrivate(t, 0, 512);
    t.vcpu.guestWrite(GPA0, 8, 1n, true);
    const head = t.vm.gmemPeekPfn(GFN0);
    expect(t.host.rmp.lookup(head)).toEqual({ assigned: true, level: PG_LEVEL_2M });
    t.host.injectResult('psmash', PSMASH_FAIL_PERMISSION);
    t.events.length = 0;
    t.b.gmemInvalidate!(head + 1, head + 2);
    expect(named(t.events, 'sev_warn')).toEqual([
      { name: 'sev_warn', fields: { what: 'PSMASH failed in sev_gmem_invalidate', pfn: head + 1, rc: PSMASH_FAIL_PERMISSION } },
      { name: 'sev_warn', fields: { what: 'rmp_make_shared failed in sev_gmem_invalidate', pfn: head + 1, rc: -ERRNO.EFAULT } },
    ]);
    // without the injected failure: PSMASH, then the 4K entry is made shared, no warning
    t.events.length = 0;
    t.b.gmemInvalidate!(head + 1, head + 2);
    expect(named(t.events, 'sev_warn')).toEqual([]);
    expect(t.host.rmp.isAssigned(head + 1)).toBe(false);
    expect(t.host.rmp.lookup(head)).toEqual({ assigned: true, level: PG_LEVEL_4K });
  });
});

describe('the invariant checker (inspect of a broken state)', () => {
  it('judges only the VM\'s own pages: another VM\'s assigned pages under another direct-map policy are not its business', () => {
    const t = snpVm();
    setPrivate(t, 0, 1);
    t.vcpu.guestWrite(GPA0, 8, 1n, true);
    // a second SNP VM on the same host, with the unmap policy
    const vm2 = t.kvm.createVm({ type: KVM_X86_SNP_VM, options: { directmap: 'unmap', asid: 2 } });
    vm2.memoryEncryptOp({ cmd: 'sev_init2' });
    const fd = vm2.createGuestMemfd({ size: 2 * 2 ** 20, flags: 0 });
    const hva = t.kvm.process.mm.mmap({ length: 2 * 2 ** 20, prot: { read: true, write: true }, shared: false });
    vm2.setUserMemoryRegion2({ slot: 1, flags: KVM_MEM_GUEST_MEMFD, guest_phys_addr: GPA0, memory_size: 2 * 2 ** 20, userspace_addr: hva, guest_memfd: fd, guest_memfd_offset: 0 });
    expect((vm2.backend as SnpBackend).checkInvariants!()).toEqual([]);
    expect(t.b.checkInvariants!()).toEqual([]);
  });

  it('reports an assigned 4K page under a huge direct-map page (split policy) and a private mapping whose RMP gpa differs', () => {
    const t = snpVm();
    setPrivate(t, 0, 1);
    t.vcpu.guestWrite(GPA0, 8, 1n, true);
    const pfn = t.vm.gmemPeekPfn(GFN0);
    // RMPUPDATE behind KVM's back: the entry now says gpa + 0x3000 (the NPT still maps gfn 0 to it)
    expect(rmpupdateInsn(t.host.rmp, pfn, { gpa: 0, assigned: false, pagesize: 0, immutable: false, asid: 0 })).toBe(0);
    expect(rmpupdateInsn(t.host.rmp, pfn, { gpa: GPA0 + 0x3000, assigned: true, pagesize: 0, immutable: false, asid: t.b.asid })).toBe(0);
    expect(t.b.checkInvariants!()).toContain(`private NPT mapping gfn ${hex(GFN0)} → pfn ${hex(pfn)} (level 1): RMP gpa ${hex(GPA0 + 0x3000)} does not match`);
    // a frame the direct map still holds in a huge page, assigned without KVM splitting it
    const far = 0x4_0000;
    expect(t.host.directmap.mappingLevel(far)).toBeGreaterThan(PG_LEVEL_4K);
    expect(rmpupdateInsn(t.host.rmp, far, { gpa: GPA0 + 0x100000, assigned: true, pagesize: 0, immutable: false, asid: t.b.asid })).toBe(0);
    const level = t.host.directmap.mappingLevel(far) === 3 ? '1G' : '2M';
    expect(t.b.checkInvariants!()).toContain(`assigned 4K pfn ${hex(far)} sits under a ${level} direct-map page: a host write to a shared neighbour takes an RMP #PF`);
  });
});

describe('the attribute hooks: policy and timing', () => {
  it('split policy: a page guest_memfd holds stays in the direct map when its gfn becomes private again', () => {
    const t = snpVm();
    setPrivate(t, 0, 1);
    t.vcpu.guestWrite(GPA0, 8, 1n, true);
    setPrivate(t, 0, 1, false);
    const pfn = t.vm.gmemPeekPfn(GFN0);
    setPrivate(t, 0, 1);
    expect(t.host.directmap.isPresent(pfn)).toBe(true);
  });

  it('set-attributes timing: a refused RMPUPDATE of a page going private is warned about with the gfn', () => {
    const t = traced({ options: { rmpTiming: 'set-attributes' } });
    t.host.injectResult('rmpupdate', RMPUPDATE_FAIL_INPUT);
    t.events.length = 0;
    setPrivate(t, 3, 1);
    expect(named(t.events, 'sev_warn')).toEqual([{ name: 'sev_warn', fields: { what: 'update_mem_attr: RMPUPDATE failed', gfn: GFN0 + 3 } }]);
    expect(backendStats(t)).toMatchObject({ attrRmpFailures: 1, attrRmpUpdates: 0 });
  });

  it('the invariant report names a 2M direct-map page as 2M', () => {
    const t = snpVm();
    const far = 0x4_0000;
    // a 4K RMPUPDATE two 2M blocks away splits the 1G direct-map page around `far` into 2M pages
    t.host.directmap.adjustDirectMap(far + 2 * 512, PG_LEVEL_4K);
    expect(t.host.directmap.mappingLevel(far)).toBe(PG_LEVEL_2M);
    expect(rmpupdateInsn(t.host.rmp, far, { gpa: GPA0 + 0x100000, assigned: true, pagesize: 0, immutable: false, asid: t.b.asid })).toBe(0);
    expect(t.b.checkInvariants!()).toContain(`assigned 4K pfn ${hex(far)} sits under a 2M direct-map page: a host write to a shared neighbour takes an RMP #PF`);
  });
});
