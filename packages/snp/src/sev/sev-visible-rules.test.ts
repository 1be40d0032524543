/**
 * What users of the SEV / SEV-ES backend see: the `detail.check` text of a refused
 * KVM_MEMORY_ENCRYPT_OP (the kernel function and the rule it applies, shown by `ccmem run`),
 * the `detail.reason` of a guest's GHCB request, the trace events (`ccmem run --trace`,
 * `ccmem explain`), and the invariant checker's reports. Also the rules behind them that only
 * show at a boundary: sev_pin_memory()'s wrap check, LAUNCH_UPDATE_DATA over physically
 * scattered pages (arch/x86/kvm/svm/sev.c sev_launch_update_data(): one firmware command per
 * contiguous run).
 */
import { describe, expect, it } from 'vitest';
import { KVM_X86_SEV_ES_VM, KVM_X86_SEV_VM, KVM_X86_SNP_VM, Kvm, PAGE_SIZE, UPSTREAM_PROFILE, recordTrace } from '@ccmem/core';
import { guestMemfdFactory } from '@ccmem/gmem';
import { snpBackendFactory, snpHostFor } from '../snp-backend.js';
import { SevPlatform } from './platform.js';
import { createSevBackend, sevBackendFactory, sevEsBackendFactory, sevGuestInit2, sevHandleVmgexit, sevMemEncryptOpFallback, type SevBackend, type SevInfo } from './sev-backend.js';
import { GHCB_MSR_PSC_REQ, GHCB_MSR_REG_GPA_REQ, SEV_POLICY_ES, SVM_SEV_FEAT_DEBUG_SWAP, ghcbMsrTermReq } from './uapi.js';

const MiB = 2 ** 20;
const BACKENDS = { [KVM_X86_SEV_VM]: sevBackendFactory, [KVM_X86_SEV_ES_VM]: sevEsBackendFactory, [KVM_X86_SNP_VM]: snpBackendFactory };
/** a KvmError with this errno and exactly this `check` text */
const refused = (code: string, check: string) => expect.objectContaining({ code, check });
const fresh = (): SevInfo => ({ active: false, esActive: false, needInit: true, vmsaFeatures: 0, ghcbVersion: 0, asid: 0 });
const es = (): SevInfo => ({ active: true, esActive: true, needInit: false, vmsaFeatures: 0, ghcbVersion: 2, asid: 1 });

function sevVm(type: typeof KVM_X86_SEV_VM | typeof KVM_X86_SEV_ES_VM, options: { memlockLimit?: number } = {}) {
  const kvm = new Kvm({ guestMemfd: guestMemfdFactory, backends: BACKENDS });
  const vm = kvm.createVm({ type, options });
  const hva = kvm.process.mm.mmap({ length: 2 * MiB, prot: { read: true, write: true }, shared: false });
  vm.setUserMemoryRegion({ slot: 0, flags: 0, guest_phys_addr: 0, memory_size: 2 * MiB, userspace_addr: hva });
  const trace = recordTrace(kvm.tracer);
  return { kvm, vm, hva, b: vm.backend as SevBackend, events: trace.events, fw: snpHostFor(kvm.process.phys).sev.firmware };
}

describe('KVM_SEV_INIT2 refusals (sev_guest_init2(), __sev_guest_init())', () => {
  const p = () => new SevPlatform({ minSevAsid: 3, maxSevAsid: 4 });

  it('name the check that failed', () => {
    expect(() => sevGuestInit2({ ...fresh(), needInit: false }, KVM_X86_SEV_VM, 0, {}, p())).toThrow(
      refused('EINVAL', 'sev_guest_init2: the VM does not need init (KVM_SEV_INIT2 already done, or not an SEV VM type)'),
    );
    expect(() => sevGuestInit2(fresh(), 0, 0, {}, p())).toThrow(refused('EINVAL', 'sev_guest_init2: the VM type is not SEV, SEV-ES or SNP'));
    expect(() => sevGuestInit2(fresh(), KVM_X86_SEV_VM, 1, {}, p())).toThrow(refused('EINVAL', '__sev_guest_init: vCPUs were already created'));
    expect(() => sevGuestInit2(fresh(), KVM_X86_SEV_VM, 0, { flags: 3 }, p())).toThrow(refused('EINVAL', '__sev_guest_init: flags 0x3 (must be 0)'));
    expect(() => sevGuestInit2(fresh(), KVM_X86_SEV_ES_VM, 0, { vmsa_features: 0x40 }, p())).toThrow(
      refused('EINVAL', '__sev_guest_init: vmsa_features 0x40 not in the supported 0x20'),
    );
    expect(() => sevGuestInit2(fresh(), KVM_X86_SEV_VM, 0, { vmsa_features: SVM_SEV_FEAT_DEBUG_SWAP }, p())).toThrow(
      refused('EINVAL', '__sev_guest_init: vmsa_features 0x20 not in the supported 0x0 (SEV has no VMSA features)'),
    );
    expect(() => sevGuestInit2(fresh(), KVM_X86_SEV_ES_VM, 0, { ghcb_version: 3 }, p())).toThrow(
      refused('EINVAL', '__sev_guest_init: ghcb_version 3 (max 2; SEV guests have no GHCB)'),
    );
  });

  it('sev_asid_new() failing names the ASID range that is empty or full', () => {
    const noEs = new SevPlatform({ minSevAsid: 1, maxSevAsid: 4 });
    expect(() => sevGuestInit2(fresh(), KVM_X86_SEV_ES_VM, 0, {}, noEs)).toThrow(refused('ENOTTY', 'sev_asid_new: no free SEV-ES/SNP ASID'));
    const one = new SevPlatform({ minSevAsid: 3, maxSevAsid: 3 });
    sevGuestInit2(fresh(), KVM_X86_SEV_VM, 0, {}, one);
    expect(() => sevGuestInit2(fresh(), KVM_X86_SEV_VM, 0, {}, one)).toThrow(refused('EBUSY', 'sev_asid_new: no free SEV ASID'));
  });
});

describe('GHCB requests of an SEV-ES guest (sev_handle_vmgexit()): the reasons in the outcome', () => {
  it('a GHCB termination request', () => {
    expect(sevHandleVmgexit(es(), { op: 'ghcb_term_request', ghcb_gpa: 0x5008 }, null, null, () => true)).toEqual({
      errno: 'EINVAL',
      detail: { reason: 'the GHCB gpa is not page aligned: that is the GHCB MSR protocol (guest_ghcb_msr)' },
    });
    expect(sevHandleVmgexit(es(), { op: 'ghcb_term_request', ghcb_gpa: 0 }, null, null, () => true)).toEqual({
      detail: { reason: 'vmgexit: GHCB gpa is not set: KVM resumes the guest without an exit' },
    });
    // kvm_vcpu_map() fails before the SNP registration check: the guest resumes
    expect(sevHandleVmgexit(es(), { op: 'ghcb_term_request', ghcb_gpa: 0x5000 }, null, () => false, () => false)).toEqual({
      detail: { reason: 'vmgexit: error mapping GHCB [0x5000] (no memslot): KVM resumes the guest without an exit' },
    });
    expect(sevHandleVmgexit(es(), { op: 'ghcb_term_request', ghcb_gpa: 0x5000 }, null, () => false, () => true)).toEqual({
      errno: 'EINVAL',
      detail: { reason: 'vmgexit: GHCB GPA 0x5000 is not registered (SNP)' },
    });
    expect(sevHandleVmgexit(es(), { op: 'ghcb_term_request', ghcb_gpa: 0x5000 }, null, null, () => true).detail).toEqual({ reason: 'SVM_VMGEXIT_TERM_REQUEST: reason 0:0' });
    expect(sevHandleVmgexit(es(), { op: 'ghcb_term_request', ghcb_gpa: 0x5000, reason_set: 1, reason_code: 3 }, null, null, () => true).detail).toEqual({
      reason: 'SVM_VMGEXIT_TERM_REQUEST: reason 1:3',
    });
  });

  it('the GHCB MSR protocol', () => {
    expect(sevHandleVmgexit(es(), { op: 'ghcb_msr', value: -1 }, null, null, () => true)).toEqual({ errno: 'EINVAL', detail: { reason: 'the GHCB MSR value is not a u64' } });
    // 0 is a u64: an unknown request, kept as it is
    expect(sevHandleVmgexit(es(), { op: 'ghcb_msr', value: 0 }, null, null, () => true)).toEqual({ ret: 0 });
    expect(sevHandleVmgexit(es(), { op: 'ghcb_msr', value: 0x7000 + GHCB_MSR_PSC_REQ }, null, null, () => true).detail).toEqual({
      reason: 'GHCB MSR request 0x14 is SNP-only: the SEV-ES guest is terminated',
    });
    expect(sevHandleVmgexit(es(), { op: 'ghcb_msr', value: GHCB_MSR_REG_GPA_REQ }, null, null, () => true).detail).toEqual({
      reason: 'GHCB MSR request 0x12 is SNP-only: the SEV-ES guest is terminated',
    });
    // GHCB_MSR_TERM_REQ: reason set in bits 12..15, reason code in bits 16..23
    const term = sevHandleVmgexit(es(), { op: 'ghcb_msr', value: ghcbMsrTermReq(3, 0x45) + 2 ** 40 }, null, null, () => true);
    expect(term.detail).toEqual({ reason: 'GHCB_MSR_TERM_REQ: guest requested termination 3:69' });
    expect(term.exit).toMatchObject({ system_event: { data: [ghcbMsrTermReq(3, 0x45) + 2 ** 40] } });
  });

  it('a guest op of a VM that is not an SEV-ES guest, and the sev_vmgexit event of one that is', () => {
    const sev = sevVm(KVM_X86_SEV_VM);
    expect(sev.b.guestOp!(0, { op: 'ghcb_msr', value: 0 })).toEqual({ errno: 'EINVAL', detail: { reason: 'the VM is not an SEV guest yet (KVM_SEV_INIT2)' } });
    sev.vm.memoryEncryptOp({ cmd: 'sev_init2' });
    expect(sev.b.guestOp!(0, { op: 'ghcb_msr', value: 0 })).toEqual({
      errno: 'EINVAL',
      detail: { reason: 'an SEV guest has no GHCB: VMGEXIT exists for SEV-ES and SNP guests only' },
    });
    const { vm, b, events } = sevVm(KVM_X86_SEV_ES_VM);
    vm.memoryEncryptOp({ cmd: 'sev_init2' });
    events.length = 0;
    b.guestOp!(0, { op: 'ghcb_msr', value: 0x2000 }); // an unknown request: no exit, no event
    expect(events).toEqual([]);
    b.guestOp!(0, { op: 'ghcb_msr', value: ghcbMsrTermReq(0, 0) });
    b.guestOp!(0, { op: 'ghcb_term_request', ghcb_gpa: 0x3000 });
    expect(events).toEqual([
      { name: 'sev_vmgexit', fields: { op: 'ghcb_msr', exit: 'KVM_EXIT_SYSTEM_EVENT' } },
      { name: 'sev_vmgexit', fields: { op: 'ghcb_term_request', exit: 'KVM_EXIT_SYSTEM_EVENT' } },
    ]);
  });
});

describe('KVM_MEMORY_ENCRYPT_OP on an SEV VM: refusals name the check', () => {
  it('before KVM_SEV_INIT2: the launch commands and the regions', () => {
    const { vm, hva } = sevVm(KVM_X86_SEV_ES_VM);
    const op = (req: object) => () => vm.memoryEncryptOp(req as never);
    expect(op({ cmd: 'sev_launch_start' })).toThrow(refused('ENOTTY', 'sev_launch_start: not an SEV guest (KVM_SEV_INIT2 first)'));
    expect(op({ cmd: 'sev_launch_update_data', uaddr: hva, len: 16 })).toThrow(refused('ENOTTY', 'sev_launch_update_data: not an SEV guest'));
    expect(op({ cmd: 'sev_launch_update_vmsa' })).toThrow(refused('ENOTTY', 'sev_launch_update_vmsa: not an SEV-ES guest'));
    expect(op({ cmd: 'sev_launch_measure' })).toThrow(refused('ENOTTY', 'sev_launch_measure: not an SEV guest'));
    expect(op({ cmd: 'sev_launch_finish' })).toThrow(refused('ENOTTY', 'sev_launch_finish: not an SEV guest'));
    expect(op({ cmd: 'sev_guest_status' })).toThrow(refused('ENOTTY', 'sev_guest_status: not an SEV guest'));
    expect(op({ cmd: 'snp_launch_start' })).toThrow(refused('ENOTTY', 'snp_launch_start: not an SNP guest'));
    expect(op({ cmd: 'snp_launch_finish' })).toThrow(refused('ENOTTY', 'snp_launch_finish: not an SNP guest'));
    expect(op({ cmd: 'snp_launch_update' })).toThrow(refused('EINVAL', 'sev_mem_enc_ioctl: unknown command snp_launch_update'));
    expect(() => vm.memoryEncryptRegRegion({ addr: hva, size: PAGE_SIZE })).toThrow(refused('ENOTTY', 'sev_mem_enc_register_region: not an SEV guest'));
    expect(() => vm.memoryEncryptUnregRegion({ addr: hva, size: PAGE_SIZE })).toThrow(refused('ENOTTY', 'sev_mem_enc_unregister_region: not an SEV guest'));
  });

  it('the deprecated KVM_SEV_INIT and KVM_SEV_ES_INIT on an SEV VM type', () => {
    const { vm } = sevVm(KVM_X86_SEV_VM);
    expect(() => vm.memoryEncryptOp({ cmd: 'sev_init' })).toThrow(refused('EINVAL', 'sev_guest_init: KVM_SEV_INIT on a VM of type 2 (use KVM_SEV_INIT2)'));
    expect(() => vm.memoryEncryptOp({ cmd: 'sev_es_init' })).toThrow(refused('EINVAL', 'sev_guest_init: KVM_SEV_ES_INIT on a VM of type 2 (use KVM_SEV_INIT2)'));
    const e = sevVm(KVM_X86_SEV_ES_VM);
    expect(() => e.vm.memoryEncryptOp({ cmd: 'sev_init' })).toThrow(refused('EINVAL', 'sev_guest_init: KVM_SEV_INIT on a VM of type 3 (use KVM_SEV_INIT2)'));
  });

  it('firmware errors carry the SEV_RET_* name and kvm_sev_cmd.error', () => {
    const { vm, hva, fw } = sevVm(KVM_X86_SEV_VM);
    vm.memoryEncryptOp({ cmd: 'sev_init2' });
    expect(() => vm.memoryEncryptOp({ cmd: 'sev_guest_status' })).toThrow(refused('EIO', 'SEV_CMD_GUEST_STATUS: firmware error SEV_RET_INVALID_GUEST (kvm_sev_cmd.error 16)'));
    expect(() => vm.memoryEncryptOp({ cmd: 'sev_launch_start', policy: 1.5 })).toThrow(refused('EINVAL', 'sev_launch_start: policy is a u32'));
    // an SEV-ES policy on an SEV ASID: ACTIVATE refuses it
    expect(() => vm.memoryEncryptOp({ cmd: 'sev_launch_start', policy: SEV_POLICY_ES })).toThrow(
      refused('EIO', 'SEV_CMD_ACTIVATE: firmware error SEV_RET_INVALID_ASID (kvm_sev_cmd.error 13)'),
    );
    expect(fw.guestCount).toBe(0);
    vm.memoryEncryptOp({ cmd: 'sev_launch_start', policy: 0 });
    expect(() => vm.memoryEncryptOp({ cmd: 'sev_launch_update_data', uaddr: hva + 8, len: 16 })).toThrow(
      refused('EIO', 'SEV_CMD_LAUNCH_UPDATE_DATA: firmware error SEV_RET_INVALID_ADDRESS (kvm_sev_cmd.error 9)'),
    );
    expect(() => vm.memoryEncryptOp({ cmd: 'sev_launch_update_data', uaddr: hva, len: 0 })).toThrow(
      refused('EINVAL', 'sev_launch_update_data: sev_pin_memory: length 0 or the range wraps'),
    );
    // the length query fails (EIO) with params.len copied back
    expect(vm.memoryEncryptOp({ cmd: 'sev_launch_measure' })).toEqual({ ret: -5, out: { len: 48 } });
    expect(() => vm.memoryEncryptOp({ cmd: 'sev_launch_measure', uaddr: hva, len: 0x4001 })).toThrow(refused('EINVAL', 'sev_launch_measure: len 16385 > SEV_FW_BLOB_MAX_SIZE'));
    expect(() => vm.memoryEncryptOp({ cmd: 'sev_launch_measure', uaddr: hva, len: 16 })).toThrow(
      refused('EIO', 'SEV_CMD_LAUNCH_MEASURE: firmware error SEV_RET_INVALID_LEN (kvm_sev_cmd.error 4)'),
    );
    // copy_to_user() of the blob fails: EFAULT with params.len copied back, as for the length query
    expect(vm.memoryEncryptOp({ cmd: 'sev_launch_measure', uaddr: 0x1000, len: 48 })).toEqual({ ret: -14, out: { len: 48 } });
    vm.memoryEncryptOp({ cmd: 'sev_launch_finish' });
    expect(() => vm.memoryEncryptOp({ cmd: 'sev_launch_finish' })).toThrow(
      refused('EIO', 'SEV_CMD_LAUNCH_FINISH: firmware error SEV_RET_INVALID_GUEST_STATE (kvm_sev_cmd.error 2)'),
    );
    expect(() => vm.memoryEncryptOp({ cmd: 'bogus' } as never)).toThrow(refused('EINVAL', 'sev_mem_enc_ioctl: unknown command bogus'));
  });

  it('LAUNCH_UPDATE_VMSA after the launch is measured: the firmware refuses the guest state', () => {
    const { vm, hva } = sevVm(KVM_X86_SEV_ES_VM);
    vm.memoryEncryptOp({ cmd: 'sev_init2' });
    vm.createVcpu(0);
    vm.memoryEncryptOp({ cmd: 'sev_launch_start', policy: SEV_POLICY_ES });
    vm.memoryEncryptOp({ cmd: 'sev_launch_measure', uaddr: hva, len: 48 });
    expect(() => vm.memoryEncryptOp({ cmd: 'sev_launch_update_vmsa' })).toThrow(
      refused('EIO', 'SEV_CMD_LAUNCH_UPDATE_VMSA: firmware error SEV_RET_INVALID_GUEST_STATE (kvm_sev_cmd.error 2)'),
    );
  });

  it('sev_pin_memory(): the lock limit, the INT_MAX page count, a region nobody registered', () => {
    const { vm, hva } = sevVm(KVM_X86_SEV_VM, { memlockLimit: 2 * PAGE_SIZE });
    vm.memoryEncryptOp({ cmd: 'sev_init2' });
    expect(() => vm.memoryEncryptRegRegion({ addr: hva, size: 3 * PAGE_SIZE })).toThrow(
      refused('ENOMEM', 'sev_mem_enc_register_region: sev_pin_memory: 3 locked pages exceed the lock limit of 2'),
    );
    for (const r of [{ addr: -1, size: PAGE_SIZE }, { addr: hva, size: -1 }, { addr: 2 ** 64, size: PAGE_SIZE }, { addr: hva, size: 2 ** 64 }]) {
      expect(() => vm.memoryEncryptRegRegion(r)).toThrow(refused('EINVAL', 'sev_mem_enc_register_region: addr or size > ULONG_MAX'));
    }
    expect(() => vm.memoryEncryptRegRegion({ addr: hva, size: 0 })).toThrow(refused('EINVAL', 'sev_mem_enc_register_region: sev_pin_memory: length 0 or the range wraps'));
    expect(() => vm.memoryEncryptUnregRegion({ addr: hva, size: PAGE_SIZE })).toThrow(
      refused('EINVAL', `sev_mem_enc_unregister_region: no region registered at 0x${hva.toString(16)} with size 0x1000 (find_enc_region)`),
    );
    const big = sevVm(KVM_X86_SEV_VM);
    big.vm.memoryEncryptOp({ cmd: 'sev_init2' });
    expect(() => big.vm.memoryEncryptRegRegion({ addr: 0, size: 2 ** 31 * PAGE_SIZE })).toThrow(refused('EINVAL', 'sev_mem_enc_register_region: sev_pin_memory: npages > INT_MAX'));
    // exactly INT_MAX pages pass the count check (and fail to pin: nothing is mapped at 0)
    expect(() => big.vm.memoryEncryptRegRegion({ addr: 0, size: (2 ** 31 - 1) * PAGE_SIZE })).toThrow(
      refused('ENOMEM', 'sev_mem_enc_register_region: sev_pin_memory: failure locking 2147483647 pages (pin_user_pages_fast)'),
    );
    // unmapped memory: pin_user_pages_fast() pins fewer pages than asked
    expect(() => big.vm.memoryEncryptRegRegion({ addr: 0x1000, size: 2 * PAGE_SIZE })).toThrow(
      refused('ENOMEM', 'sev_mem_enc_register_region: sev_pin_memory: failure locking 2 pages (pin_user_pages_fast)'),
    );
  });

  it('sev_pin_memory(): a range that ends exactly at 2^64 wraps (uaddr + ulen < uaddr in unsigned long)', () => {
    const { vm, b } = sevVm(KVM_X86_SEV_VM);
    vm.memoryEncryptOp({ cmd: 'sev_init2' });
    expect(() => vm.memoryEncryptRegRegion({ addr: 2 ** 64 - 2 * PAGE_SIZE, size: 2 * PAGE_SIZE })).toThrow(
      refused('EINVAL', 'sev_mem_enc_register_region: sev_pin_memory: length 0 or the range wraps'),
    );
    expect(b.pagesLocked).toBe(0);
  });
});

describe('LAUNCH_UPDATE_DATA over physically scattered pages (sev_launch_update_data())', () => {
  const bytes = new Uint8Array(3 * PAGE_SIZE).map((_, i) => (i * 13 + 5) & 0xff);
  const offset = 32;
  const len = 2 * PAGE_SIZE + 64;

  /**
   * The measurement of `bytes[offset, offset + len)`, with the user pages faulted in `order`
   * (the allocator hands out frames in that order), and the firmware commands it took:
   * [paddr offset in the first page, length] of each LAUNCH_UPDATE_DATA.
   */
  function measure(order: number[]) {
    const { kvm, vm, hva, b, fw } = sevVm(KVM_X86_SEV_VM);
    for (const i of order) kvm.process.mm.writeBytes(hva + i * PAGE_SIZE, bytes.subarray(i * PAGE_SIZE, (i + 1) * PAGE_SIZE));
    vm.memoryEncryptOp({ cmd: 'sev_init2' });
    vm.memoryEncryptOp({ cmd: 'sev_launch_start', policy: 0 });
    const cmds: number[][] = [];
    const real = fw.launchUpdateData.bind(fw);
    fw.launchUpdateData = (handle, paddrOffset, data) => {
      cmds.push([paddrOffset, data.length]);
      return real(handle, paddrOffset, data);
    };
    vm.memoryEncryptOp({ cmd: 'sev_launch_update_data', uaddr: hva + offset, len });
    fw.launchUpdateData = real;
    expect(b.pagesLocked).toBe(0);
    expect(b.inspect!({ what: 'sev' })).toMatchObject({ measured_bytes: len });
    return { m: vm.memoryEncryptOp({ cmd: 'sev_launch_measure', uaddr: hva + MiB, len: 48 }).out!.measurement, cmds };
  }

  it('one firmware command per physically contiguous run; the same bytes measured whatever frames back the pages', () => {
    const inOrder = measure([0, 1, 2]);
    expect(inOrder.cmds).toEqual([[offset, len]]);
    // pages 0 and 1 on adjacent frames, page 2 below them
    const a = measure([2, 0, 1]);
    expect(a.cmds).toEqual([[offset, 2 * PAGE_SIZE - offset], [0, len - (2 * PAGE_SIZE - offset)]]);
    expect(a.m).toBe(inOrder.m);
    // page 0 alone, pages 1 and 2 adjacent
    const b = measure([1, 2, 0]);
    expect(b.cmds).toEqual([[offset, PAGE_SIZE - offset], [0, len - (PAGE_SIZE - offset)]]);
    expect(b.m).toBe(inOrder.m);
    // every page on its own
    const c = measure([2, 1, 0]);
    expect(c.cmds).toEqual([[offset, PAGE_SIZE - offset], [0, PAGE_SIZE], [0, len - (2 * PAGE_SIZE - offset)]]);
    expect(c.m).toBe(inOrder.m);
  });
});

describe('LAUNCH_UPDATE_VMSA: the save area the firmware measures (struct sev_es_save_area)', () => {
  it('sev_features is the little-endian u64 at 0x3b0; the model puts the vCPU id at 0xff0 and zeroes the rest', () => {
    const { kvm, vm, b, fw } = sevVm(KVM_X86_SEV_ES_VM);
    const platform = snpHostFor(kvm.process.phys).sev;
    expect(platform.supportedVmsaFeatures).toBe(SVM_SEV_FEAT_DEBUG_SWAP);
    vm.memoryEncryptOp({ cmd: 'sev_init2', vmsa_features: SVM_SEV_FEAT_DEBUG_SWAP });
    // a feature bit above 31 (no CPU has one the model supports): written into the high half
    (b.info as SevInfo).vmsaFeatures = 2 ** 33 + SVM_SEV_FEAT_DEBUG_SWAP;
    vm.createVcpu(0);
    vm.createVcpu(1);
    vm.memoryEncryptOp({ cmd: 'sev_launch_start', policy: SEV_POLICY_ES });
    const pages: Uint8Array[] = [];
    const real = fw.launchUpdateVmsa.bind(fw);
    fw.launchUpdateVmsa = (handle, vmsa) => {
      pages.push(vmsa.slice());
      return real(handle, vmsa);
    };
    vm.memoryEncryptOp({ cmd: 'sev_launch_update_vmsa' });
    fw.launchUpdateVmsa = real;
    expect(pages).toHaveLength(2);
    for (const [id, page] of pages.entries()) {
      const expected = new Uint8Array(PAGE_SIZE);
      expected[0x3b0] = SVM_SEV_FEAT_DEBUG_SWAP;
      expected[0x3b4] = 2; // bit 33
      expected[0xff0] = id;
      expect([...page]).toEqual([...expected]);
    }
  });
});

describe('trace events of the SEV launch', () => {
  it('KVM_SEV_INIT2, LAUNCH_START, LAUNCH_UPDATE_DATA, LAUNCH_UPDATE_VMSA, LAUNCH_FINISH, REG_REGION', () => {
    const { vm, hva, b, events } = sevVm(KVM_X86_SEV_ES_VM);
    vm.memoryEncryptOp({ cmd: 'sev_init2', vmsa_features: SVM_SEV_FEAT_DEBUG_SWAP, ghcb_version: 1 });
    vm.createVcpu(0);
    const { handle } = vm.memoryEncryptOp({ cmd: 'sev_launch_start', policy: SEV_POLICY_ES }).out!;
    vm.memoryEncryptOp({ cmd: 'sev_launch_update_data', uaddr: hva, len: 32 });
    vm.memoryEncryptOp({ cmd: 'sev_launch_update_vmsa' });
    vm.memoryEncryptOp({ cmd: 'sev_launch_finish' });
    vm.memoryEncryptRegRegion({ addr: hva + PAGE_SIZE, size: 2 * PAGE_SIZE });
    const asid = b.info.asid;
    expect(events.filter((e) => e.name.startsWith('sev_'))).toEqual([
      { name: 'sev_guest_init', fields: { vm_type: KVM_X86_SEV_ES_VM, asid, vmsa_features: SVM_SEV_FEAT_DEBUG_SWAP, ghcb_version: 1 } },
      { name: 'sev_launch_start', fields: { handle, policy: SEV_POLICY_ES, asid } },
      { name: 'sev_launch_update_data', fields: { uaddr: hva, len: 32, pages: 1 } },
      { name: 'sev_launch_update_vmsa', fields: { vcpus: 1 } },
      { name: 'sev_launch_finish', fields: { handle } },
      { name: 'sev_register_region', fields: { addr: hva + PAGE_SIZE, size: 2 * PAGE_SIZE, npages: 2 } },
    ]);
  });
});

describe('the SEV backend object', () => {
  it('svm_vm_init(): pre-faulting is allowed, KVM sees no private faults, no mirrored TDP, guest_memfd may start shared', () => {
    const phys = new Kvm({ guestMemfd: guestMemfdFactory, backends: BACKENDS }).process.phys;
    const b = sevBackendFactory({}, { phys, profile: UPSTREAM_PROFILE });
    expect(b.preFaultAllowed!()).toBe(true);
    expect(b.faultIsPrivate!(0, true)).toBe(false);
    expect(b.hasMirroredTdp).toBe(false);
    expect(b.supportsGmemInitShared).toBe(true);
    expect(b.inspect!({ what: 'sev' })).toMatchObject({ active: false, es_active: false, need_init: true });
    expect(b.inspect!({ what: 'other' } as never)).toBeUndefined();
  });

  it('without a kernel profile: two memslot address spaces for SEV (SMM), one for SEV-ES', () => {
    const phys = new Kvm({ guestMemfd: guestMemfdFactory, backends: BACKENDS }).process.phys;
    const platform = snpHostFor(phys).sev;
    expect(createSevBackend({ vmType: KVM_X86_SEV_VM, phys, platform }).nrMemslotAsIds).toBe(2);
    expect(createSevBackend({ vmType: KVM_X86_SEV_ES_VM, phys, platform }).nrMemslotAsIds).toBe(1);
  });

  it('a backend used before attach() says so', () => {
    const phys = new Kvm({ guestMemfd: guestMemfdFactory, backends: BACKENDS }).process.phys;
    const b = createSevBackend({ vmType: KVM_X86_SEV_VM, phys, platform: snpHostFor(phys).sev });
    expect(() => b.vmIoctl!({ cmd: 'sev_init2' })).toThrow('sev backend used before attach()');
  });

  it('VM options: unknown ones name the VM type, memlockLimit must be a byte count', () => {
    const kvm = new Kvm({ guestMemfd: guestMemfdFactory, backends: BACKENDS });
    expect(() => kvm.createVm({ type: KVM_X86_SEV_VM, options: { bogus: 1 } as never })).toThrow(
      refused('EINVAL', "KVM_CREATE_VM: unknown sev VM option 'bogus' (known options: memlockLimit, minSevAsid, maxSevAsid)"),
    );
    expect(() => kvm.createVm({ type: KVM_X86_SEV_ES_VM, options: { bogus: 1 } as never })).toThrow(
      refused('EINVAL', "KVM_CREATE_VM: unknown sev-es VM option 'bogus' (known options: memlockLimit, minSevAsid, maxSevAsid)"),
    );
    expect(() => kvm.createVm({ type: KVM_X86_SEV_VM, options: { memlockLimit: -1 } })).toThrow(refused('EINVAL', 'sev: memlockLimit must be a byte count'));
  });

  it('destroy() runs once: a second call does not hand the ASID, now another VM\'s, to the reclaim list', () => {
    const kvm = new Kvm({ guestMemfd: guestMemfdFactory, backends: BACKENDS });
    const asids = snpHostFor(kvm.process.phys).sev.asids;
    const [min, max] = asids.range(false);
    const a = kvm.createVm({ type: KVM_X86_SEV_VM });
    a.memoryEncryptOp({ cmd: 'sev_init2' });
    const ab = a.backend as SevBackend;
    const asid = ab.info.asid;
    ab.destroy!();
    for (let i = min; i <= max; i++) if (!asids.isInUse(i)) asids.asidNew(false, i);
    // the range is full: the next VM gets `asid` back through a recycle
    const b = kvm.createVm({ type: KVM_X86_SEV_VM });
    b.memoryEncryptOp({ cmd: 'sev_init2' });
    expect((b.backend as SevBackend).info.asid).toBe(asid);
    ab.destroy!();
    // `asid` belongs to b: nothing is reclaimable, a third VM finds no ASID
    expect(asids.asidNew(false)).toBeLessThan(0);
  });

  it('the invariant checker reports pinned pages that no region accounts for and an ASID outside its range', () => {
    const { vm, hva, b } = sevVm(KVM_X86_SEV_VM);
    vm.memoryEncryptOp({ cmd: 'sev_init2' });
    vm.memoryEncryptRegRegion({ addr: hva, size: PAGE_SIZE });
    expect(b.checkInvariants!()).toEqual([]);
    (b as { pagesLocked: number }).pagesLocked = 3;
    expect(b.checkInvariants!()).toEqual(['sev pages_locked 3 != pages of the registered regions 1']);
    (b as { pagesLocked: number }).pagesLocked = 1;
    const info = b.info as SevInfo;
    const [min, max] = b.platform.asids.range(false);
    const asid = info.asid;
    info.asid = max + 1;
    expect(b.checkInvariants!()).toEqual([`ASID ${max + 1} is outside the SEV range [${min}, ${max}]`]);
    info.asid = min - 1;
    expect(b.checkInvariants!()).toEqual([`ASID ${min - 1} is outside the SEV range [${min}, ${max}]`]);
    info.asid = max;
    expect(b.checkInvariants!()).toEqual([]);
    info.asid = asid;
    const e = sevVm(KVM_X86_SEV_ES_VM);
    e.vm.memoryEncryptOp({ cmd: 'sev_init2' });
    (e.b.info as SevInfo).asid = 0;
    const [emin, emax] = e.b.platform.asids.range(true);
    expect(e.b.checkInvariants!()).toEqual([`ASID 0 is outside the SEV-ES range [${emin}, ${emax}]`]);
  });
});

describe('sev_mem_enc_ioctl() on a VM without SEV state: the checks named', () => {
  it('KVM_SEV_INIT2, the deprecated inits, the launch commands, anything else', () => {
    const call = (cmd: string) => () => sevMemEncryptOpFallback(null as never, { cmd } as never);
    expect(call('sev_init2')).toThrow(refused('EINVAL', 'sev_guest_init2: the VM does not need init (not a SEV, SEV-ES or SNP VM type)'));
    const unmodelled = 'model: KVM_SEV_INIT / KVM_SEV_ES_INIT of a default VM are not modelled (KVM_SEV_INIT2 on a SEV VM type is)';
    expect(call('sev_init')).toThrow(refused('ENOTTY', unmodelled));
    expect(call('sev_es_init')).toThrow(refused('ENOTTY', unmodelled));
    expect(call('sev_launch_finish')).toThrow(refused('ENOTTY', 'sev_launch_finish: not an SEV guest'));
    expect(call('snp_launch_update')).toThrow(refused('EINVAL', 'sev_mem_enc_ioctl: snp_launch_update on a VM that is not an SEV guest'));
  });
});
