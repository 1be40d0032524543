/**
 * The SEV / SEV-ES backend's checks one at a time, at their boundaries (arch/x86/kvm/svm/sev.c:
 * __sev_guest_init(), sev_handle_vmgexit() and sev_handle_vmgexit_msr_protocol(),
 * sev_launch_start(), sev_pin_memory(), sev_launch_update_data(), sev_launch_update_vmsa(),
 * sev_launch_measure(), sev_mem_enc_register_region(), sev_vm_destroy()). Found missing by
 * mutation testing (docs/testing.md).
 */
import { describe, expect, it } from 'vitest';
import { KVM_SYSTEM_EVENT_SEV_TERM, KVM_X86_SEV_ES_VM, KVM_X86_SEV_VM, KVM_X86_SNP_VM, Kvm, PAGE_SIZE, UPSTREAM_PROFILE } from '@ccmem/core';
import { guestMemfdFactory } from '@ccmem/gmem';
import { snpBackendFactory, snpHostFor } from '../snp-backend.js';
import { SevPlatform } from './platform.js';
import { sevBackendFactory, sevEsBackendFactory, sevGuestInit2, sevHandleVmgexit, sevMemEncryptOpFallback, type SevBackend, type SevInfo } from './sev-backend.js';
import {
  GHCB_MSR_PSC_REQ,
  GHCB_MSR_REG_GPA_REQ,
  GHCB_MSR_SEV_INFO_REQ,
  SEV_POLICY_ES,
  SVM_SEV_FEAT_DEBUG_SWAP,
  SVM_SEV_FEAT_SNP_ACTIVE,
  ghcbMsrSevInfo,
} from './uapi.js';

const MiB = 2 ** 20;
const BACKENDS = { [KVM_X86_SEV_VM]: sevBackendFactory, [KVM_X86_SEV_ES_VM]: sevEsBackendFactory, [KVM_X86_SNP_VM]: snpBackendFactory };
const errno = (code: string) => expect.objectContaining({ code });
const fresh = (): SevInfo => ({ active: false, esActive: false, needInit: true, vmsaFeatures: 0, ghcbVersion: 0, asid: 0 });
const platform = (minSevAsid = 3, maxSevAsid = 4) => new SevPlatform({ minSevAsid, maxSevAsid });

function host(profile?: string) {
  return new Kvm({ guestMemfd: guestMemfdFactory, backends: BACKENDS, ...(profile && { profile }) });
}

function sevVm(kvm: Kvm<typeof BACKENDS>, type: typeof KVM_X86_SEV_VM | typeof KVM_X86_SEV_ES_VM, options: { memlockLimit?: number } = {}) {
  const vm = kvm.createVm({ type, options });
  const hva = kvm.process.mm.mmap({ length: 2 * MiB, prot: { read: true, write: true }, shared: false });
  vm.setUserMemoryRegion({ slot: 0, flags: 0, guest_phys_addr: 0, memory_size: 2 * MiB, userspace_addr: hva });
  return { kvm, vm, hva, b: vm.backend as SevBackend };
}

describe('__sev_guest_init() (sevGuestInit2)', () => {
  it('refuses a VM that does not need init and a VM type that is not SEV, SEV-ES or SNP', () => {
    const done = { ...fresh(), needInit: false };
    expect(() => sevGuestInit2(done, KVM_X86_SEV_VM, 0, {}, platform())).toThrow(errno('EINVAL'));
    expect(() => sevGuestInit2(fresh(), 0, 0, {}, platform())).toThrow(errno('EINVAL'));
    for (const t of [KVM_X86_SEV_VM, KVM_X86_SEV_ES_VM, KVM_X86_SNP_VM]) expect(sevGuestInit2(fresh(), t, 0, {}, platform())).toBeGreaterThan(0);
  });

  it('vmsa_features must be a u64 inside the supported set (none for SEV)', () => {
    const p = platform();
    for (const v of [-1, 0.5, 2 ** 64, SVM_SEV_FEAT_DEBUG_SWAP * 2, 2 ** 40]) expect(() => sevGuestInit2(fresh(), KVM_X86_SEV_ES_VM, 0, { vmsa_features: v }, p)).toThrow(errno('EINVAL'));
    expect(() => sevGuestInit2(fresh(), KVM_X86_SEV_VM, 0, { vmsa_features: SVM_SEV_FEAT_DEBUG_SWAP }, p)).toThrow(errno('EINVAL'));
    const es = fresh();
    sevGuestInit2(es, KVM_X86_SEV_ES_VM, 0, { vmsa_features: SVM_SEV_FEAT_DEBUG_SWAP }, p);
    expect(es.vmsaFeatures).toBe(SVM_SEV_FEAT_DEBUG_SWAP);
    // a feature above bit 31 is refused even when the host supports the low ones
    const wide = new SevPlatform({ minSevAsid: 3, maxSevAsid: 4, supportedVmsaFeatures: 2 ** 33 - 1 });
    expect(() => sevGuestInit2(fresh(), KVM_X86_SEV_ES_VM, 0, { vmsa_features: 2 ** 33 }, wide)).toThrow(errno('EINVAL'));
    const hi = fresh();
    sevGuestInit2(hi, KVM_X86_SEV_ES_VM, 0, { vmsa_features: 2 ** 32 + 1 }, wide);
    expect(hi.vmsaFeatures).toBe(2 ** 32 + 1);
  });

  it('ghcb_version: up to GHCB_VERSION_MAX (2) for SEV-ES, kept as asked; 0 means 2; SEV has none', () => {
    const p = platform(3, 10);
    for (const v of [1, 2]) {
      const es = fresh();
      sevGuestInit2(es, KVM_X86_SEV_ES_VM, 0, { ghcb_version: v }, p);
      expect(es.ghcbVersion).toBe(v);
    }
    const es = fresh();
    sevGuestInit2(es, KVM_X86_SEV_ES_VM, 0, {}, new SevPlatform({ minSevAsid: 3, maxSevAsid: 4 }));
    expect(es.ghcbVersion).toBe(2);
    const sev = fresh();
    sevGuestInit2(sev, KVM_X86_SEV_VM, 0, { ghcb_version: 0 }, p);
    expect(sev).toEqual({ active: true, esActive: false, needInit: false, vmsaFeatures: 0, ghcbVersion: 0, asid: 3 });
  });

  it('an SNP guest gets SVM_SEV_FEAT_SNP_ACTIVE on top of the features it asked for', () => {
    const snp = fresh();
    sevGuestInit2(snp, KVM_X86_SNP_VM, 0, { vmsa_features: SVM_SEV_FEAT_DEBUG_SWAP }, platform());
    expect(snp.vmsaFeatures).toBe(SVM_SEV_FEAT_DEBUG_SWAP + SVM_SEV_FEAT_SNP_ACTIVE);
    expect(snp.esActive).toBe(true);
    const es = fresh();
    sevGuestInit2(es, KVM_X86_SEV_ES_VM, 0, {}, platform());
    expect(es.vmsaFeatures).toBe(0);
  });

  it('sev_asid_new() failing: an empty range is ENOTTY, a full one EBUSY; the VM stays uninitialized', () => {
    // e_no_asid undoes active, es_active and vmsa_features; ghcb_version, set before
    // sev_asid_new(), keeps its value (the SEV-ES default 2 here)
    const noEs = new SevPlatform({ minSevAsid: 1, maxSevAsid: 4 });
    const a = fresh();
    expect(() => sevGuestInit2(a, KVM_X86_SEV_ES_VM, 0, { vmsa_features: SVM_SEV_FEAT_DEBUG_SWAP }, noEs)).toThrow(errno('ENOTTY'));
    expect(a).toEqual({ ...fresh(), ghcbVersion: 2 });
    const p = platform(2, 2);
    sevGuestInit2(fresh(), KVM_X86_SEV_ES_VM, 0, {}, p);
    const b = fresh();
    expect(() => sevGuestInit2(b, KVM_X86_SEV_ES_VM, 0, { ghcb_version: 1 }, p)).toThrow(errno('EBUSY'));
    expect(b).toEqual({ ...fresh(), ghcbVersion: 1 });
    const snp = fresh();
    expect(() => sevGuestInit2(snp, KVM_X86_SNP_VM, 0, {}, p)).toThrow(errno('EBUSY'));
    expect(snp).toEqual({ ...fresh(), ghcbVersion: 2 });
    const sev = fresh();
    expect(() => sevGuestInit2(sev, KVM_X86_SEV_VM, 0, {}, noEs)).not.toThrow();
    const full = new SevPlatform({ minSevAsid: 2, maxSevAsid: 1 });
    const none = fresh();
    expect(() => sevGuestInit2(none, KVM_X86_SEV_VM, 0, {}, full)).toThrow(errno('ENOTTY'));
    expect(none).toEqual(fresh());
  });
});

describe('sev_handle_vmgexit() (sevHandleVmgexit)', () => {
  const mapped = () => true;
  const es = (): SevInfo => ({ active: true, esActive: true, needInit: false, vmsaFeatures: 0, ghcbVersion: 1, asid: 1 });

  it('the GHCB MSR value must be a u64', () => {
    for (const value of [-1, 1.5, 2 ** 64]) expect(sevHandleVmgexit(es(), { op: 'ghcb_msr', value }, null, null, mapped)).toMatchObject({ errno: 'EINVAL' });
    expect(sevHandleVmgexit(es(), { op: 'ghcb_msr', value: 2 ** 63 + 0x800 }, null, null, mapped)).toEqual({ ret: 2 ** 63 + 0x800 });
  });

  it('GHCB_MSR_SEV_INFO_REQ answers the VM\'s GHCB version, GHCB_VERSION_MIN and the C-bit', () => {
    expect(sevHandleVmgexit(es(), { op: 'ghcb_msr', value: GHCB_MSR_SEV_INFO_REQ }, null, null, mapped)).toEqual({ ret: ghcbMsrSevInfo(1, 1, 51) });
  });

  it('GHCB_MSR_CPUID_REQ: the vCPU has no CPUID entries, the value (bits 32-63) is 0, bits 12-31 stay', () => {
    for (const snp of [null, () => ({ ret: 7 })]) {
      expect(sevHandleVmgexit(es(), { op: 'ghcb_msr', value: 0x8000_001f_4000_0004n }, snp, null, mapped)).toEqual({ ret: 0x4000_0005 });
      expect(sevHandleVmgexit(es(), { op: 'ghcb_msr', value: 0x1_c123_4004 }, snp, null, mapped)).toEqual({ ret: 0xc123_4005 });
    }
  });

  it('GHCB_MSR_HV_FT_REQ answers GHCB_HV_FT_SUPPORTED (SNP, SNP_AP_CREATION) in bits 12-63, for SEV-ES and SNP', () => {
    for (const snp of [null, () => ({ ret: 7 })]) {
      expect(sevHandleVmgexit(es(), { op: 'ghcb_msr', value: 0x080 }, snp, null, mapped)).toEqual({ ret: 0x3081 });
      // the request's bits 12-63 are all replaced
      expect(sevHandleVmgexit(es(), { op: 'ghcb_msr', value: 0xffff_ffff_ffff_f080n }, snp, null, mapped)).toEqual({ ret: 0x3081 });
    }
  });

  it('GHCB_MSR_PREF_GPA_REQ: GHCB_MSR_PREF_GPA_NONE for SNP, termination for SEV-ES', () => {
    expect(sevHandleVmgexit(es(), { op: 'ghcb_msr', value: 0x1010 }, () => ({ ret: 7 }), null, mapped)).toEqual({ ret: 0xffff_ffff_ffff_f011n });
    const r = sevHandleVmgexit(es(), { op: 'ghcb_msr', value: 0x1010 }, null, null, mapped);
    expect(r.exit).toEqual({ reason: 'KVM_EXIT_SYSTEM_EVENT', system_event: { type: KVM_SYSTEM_EVENT_SEV_TERM, ndata: 1, data: [0x1010] } });
  });

  it('an unknown request keeps the MSR value as it is ("Error, keep GHCB MSR value as-is")', () => {
    expect(sevHandleVmgexit(es(), { op: 'ghcb_msr', value: 0x5000 + 0x7ff }, null, null, mapped)).toEqual({ ret: 0x5000 + 0x7ff });
  });

  it('the MSR keeps all 64 bits: a value above 2^53 is decoded and handed back unrounded', () => {
    // every bit set: request 0xfff is unknown, the value comes back as it is (not 2^64)
    expect(sevHandleVmgexit(es(), { op: 'ghcb_msr', value: 0xffff_ffff_ffff_ffffn }, null, null, mapped)).toEqual({ ret: 0xffff_ffff_ffff_ffffn });
    // bit 63 with request 0xfff: still the unknown request, not a GHCB gpa
    expect(sevHandleVmgexit(es(), { op: 'ghcb_msr', value: 0x8000_0000_0000_0fffn }, null, null, mapped)).toEqual({ ret: 0x8000_0000_0000_0fffn });
    // SEV_INFO_REQ with high bits: the request is the low 12 bits
    expect(sevHandleVmgexit(es(), { op: 'ghcb_msr', value: 0xffff_0000_0000_0002n }, null, null, mapped)).toEqual({ ret: ghcbMsrSevInfo(1, 1, 51) });
    // TERM_REQ: reason set 3 and code 0x42 from bits 12-15 and 16-23, the whole value in data[0]
    const term = (1n << 63n) | (0x42n << 16n) | (0x3n << 12n) | 0x100n;
    const r = sevHandleVmgexit(es(), { op: 'ghcb_msr', value: term }, null, null, mapped);
    expect(r.exit).toEqual({ reason: 'KVM_EXIT_SYSTEM_EVENT', system_event: { type: KVM_SYSTEM_EVENT_SEV_TERM, ndata: 1, data: [term] } });
    expect(r.detail).toEqual({ reason: 'GHCB_MSR_TERM_REQ: guest requested termination 3:66' });
    // a bigint below 2^53 is the same request as the number
    expect(sevHandleVmgexit(es(), { op: 'ghcb_msr', value: 0x57ffn }, null, null, mapped)).toEqual({ ret: 0x57ff });
    expect(sevHandleVmgexit(es(), { op: 'ghcb_msr', value: 1n << 64n }, null, null, mapped)).toMatchObject({ errno: 'EINVAL' });
  });

  it('REG_GPA and PSC go to the SNP handler; without one the guest is terminated with the MSR value', () => {
    const seen: (number | bigint)[] = [];
    const snp = (v: number | bigint) => {
      seen.push(v);
      return { ret: 7 };
    };
    expect(sevHandleVmgexit(es(), { op: 'ghcb_msr', value: 0x3000 + GHCB_MSR_REG_GPA_REQ }, snp, null, mapped)).toEqual({ ret: 7 });
    expect(sevHandleVmgexit(es(), { op: 'ghcb_msr', value: 0x4000 + GHCB_MSR_PSC_REQ }, snp, null, mapped)).toEqual({ ret: 7 });
    // a request above 2^53 reaches the SNP handler whole
    const high = (1n << 63n) | 0x3000n | BigInt(GHCB_MSR_REG_GPA_REQ);
    expect(sevHandleVmgexit(es(), { op: 'ghcb_msr', value: high }, snp, null, mapped)).toEqual({ ret: 7 });
    expect(seen).toEqual([0x3000 + GHCB_MSR_REG_GPA_REQ, 0x4000 + GHCB_MSR_PSC_REQ, high]);
    const r = sevHandleVmgexit(es(), { op: 'ghcb_msr', value: 0x3000 + GHCB_MSR_REG_GPA_REQ }, null, null, mapped);
    expect(r.exit).toEqual({ reason: 'KVM_EXIT_SYSTEM_EVENT', system_event: { type: KVM_SYSTEM_EVENT_SEV_TERM, ndata: 1, data: [0x3000 + GHCB_MSR_REG_GPA_REQ] } });
  });

  it('a GHCB termination request: the GHCB gpa must be page aligned and, for SNP, registered', () => {
    expect(sevHandleVmgexit(es(), { op: 'ghcb_term_request', ghcb_gpa: 0x5001 }, null, null, mapped)).toMatchObject({ errno: 'EINVAL' });
    expect(sevHandleVmgexit(es(), { op: 'ghcb_term_request', ghcb_gpa: 0x5800 }, null, null, mapped)).toMatchObject({ errno: 'EINVAL' });
    const registered = (gpa: number) => gpa === 0x6000;
    expect(sevHandleVmgexit(es(), { op: 'ghcb_term_request', ghcb_gpa: 0x5000 }, null, registered, mapped)).toMatchObject({ errno: 'EINVAL' });
    expect(sevHandleVmgexit(es(), { op: 'ghcb_term_request', ghcb_gpa: 0x6000 }, null, registered, mapped).exit).toEqual({
      reason: 'KVM_EXIT_SYSTEM_EVENT',
      system_event: { type: KVM_SYSTEM_EVENT_SEV_TERM, ndata: 1, data: [0x6000] },
    });
    // no GHCB at all: back to the guest, no exit and no error
    const none = sevHandleVmgexit(es(), { op: 'ghcb_term_request', ghcb_gpa: 0 }, null, registered, mapped);
    expect(none.exit).toBeUndefined();
    expect(none.errno).toBeUndefined();
  });
});

describe('SEV launch commands (sev_launch_*)', () => {
  it('LAUNCH_START: the policy is a u32; a refused ACTIVATE decommissions the new context', () => {
    const { kvm, vm, b } = sevVm(host(), KVM_X86_SEV_VM);
    vm.memoryEncryptOp({ cmd: 'sev_init2' });
    const fw = snpHostFor(kvm.process.phys).sev.firmware;
    for (const policy of [-1, 2 ** 32, 0.5]) expect(() => vm.memoryEncryptOp({ cmd: 'sev_launch_start', policy })).toThrow(errno('EINVAL'));
    expect(fw.guestCount).toBe(0);
    // 2^32 - 1 is a u32: the firmware refuses its ES bit on an SEV ASID
    expect(() => vm.memoryEncryptOp({ cmd: 'sev_launch_start', policy: 2 ** 32 - 1 })).toThrow(errno('EIO'));
    expect(fw.guestCount).toBe(0);
    expect(b.inspect!({ what: 'sev' })).toMatchObject({ handle: 0, policy: 2 ** 32 - 1 });
    const out = vm.memoryEncryptOp({ cmd: 'sev_launch_start' }).out!;
    expect(fw.guestCount).toBe(1);
    expect(b.inspect!({ what: 'sev' })).toMatchObject({ handle: out.handle, policy: 0, state: 1 });
  });

  it('every launch command needs KVM_SEV_INIT2 first (ENOTTY); SNP commands are ENOTTY or EINVAL as in snp_launch_*()', () => {
    const { vm, hva } = sevVm(host(), KVM_X86_SEV_ES_VM);
    expect(() => vm.memoryEncryptOp({ cmd: 'sev_launch_update_data', uaddr: hva, len: PAGE_SIZE })).toThrow(errno('ENOTTY'));
    expect(() => vm.memoryEncryptOp({ cmd: 'sev_launch_update_vmsa' })).toThrow(errno('ENOTTY'));
    expect(() => vm.memoryEncryptOp({ cmd: 'sev_launch_measure', uaddr: hva, len: 48 })).toThrow(errno('ENOTTY'));
    expect(() => vm.memoryEncryptOp({ cmd: 'sev_launch_finish' })).toThrow(errno('ENOTTY'));
    expect(() => vm.memoryEncryptOp({ cmd: 'sev_guest_status' })).toThrow(errno('ENOTTY'));
    expect(() => vm.memoryEncryptOp({ cmd: 'sev_es_init' })).toThrow(errno('EINVAL'));
    expect(() => vm.memoryEncryptOp({ cmd: 'snp_launch_start' } as never)).toThrow(errno('ENOTTY'));
    expect(() => vm.memoryEncryptOp({ cmd: 'snp_launch_finish' } as never)).toThrow(errno('ENOTTY'));
    expect(() => vm.memoryEncryptOp({ cmd: 'snp_launch_update' } as never)).toThrow(errno('EINVAL'));
    expect(() => vm.memoryEncryptOp({ cmd: 'bogus' } as never)).toThrow(errno('EINVAL'));
  });

  it('LAUNCH_UPDATE_DATA measures the bytes of the range, wherever it starts in its first page', () => {
    const bytes = new Uint8Array(2 * PAGE_SIZE + 32).map((_, i) => (i * 31 + 7) & 0xff);
    const measure = (offset: number) => {
      const { kvm, vm, hva, b } = sevVm(host(), KVM_X86_SEV_VM);
      kvm.process.mm.writeBytes(hva + offset, bytes);
      vm.memoryEncryptOp({ cmd: 'sev_init2' });
      vm.memoryEncryptOp({ cmd: 'sev_launch_start', policy: 0 });
      vm.memoryEncryptOp({ cmd: 'sev_launch_update_data', uaddr: hva + offset, len: bytes.length });
      expect(b.pagesLocked).toBe(0);
      expect(b.inspect!({ what: 'sev' })).toMatchObject({ measured_bytes: bytes.length });
      return vm.memoryEncryptOp({ cmd: 'sev_launch_measure', uaddr: hva + MiB, len: 48 }).out!.measurement;
    };
    expect(measure(16)).toBe(measure(0));
    expect(measure(PAGE_SIZE - 16)).toBe(measure(0));
  });

  it('LAUNCH_UPDATE_DATA: an address the firmware refuses (not 16-byte aligned) is EIO, and the pages are unpinned', () => {
    const { vm, hva, b } = sevVm(host(), KVM_X86_SEV_VM);
    vm.memoryEncryptOp({ cmd: 'sev_init2' });
    vm.memoryEncryptOp({ cmd: 'sev_launch_start', policy: 0 });
    expect(() => vm.memoryEncryptOp({ cmd: 'sev_launch_update_data', uaddr: hva + 8, len: 16 })).toThrow(errno('EIO'));
    expect(b.pagesLocked).toBe(0);
    // a range past the end of the address space (sev_pin_memory(): the range wraps)
    expect(() => vm.memoryEncryptOp({ cmd: 'sev_launch_update_data', uaddr: 2 ** 64 - PAGE_SIZE, len: 2 * PAGE_SIZE })).toThrow(errno('EINVAL'));
  });

  it('LAUNCH_UPDATE_VMSA: SEV-ES only; measures each vCPU\'s save area with its sev_features; a second call reuses the pages', () => {
    const run = (vmsaFeatures: number) => {
      const { kvm, vm, hva, b } = sevVm(host(), KVM_X86_SEV_ES_VM);
      vm.memoryEncryptOp({ cmd: 'sev_init2', vmsa_features: vmsaFeatures });
      vm.createVcpu(0);
      vm.memoryEncryptOp({ cmd: 'sev_launch_start', policy: SEV_POLICY_ES });
      vm.memoryEncryptOp({ cmd: 'sev_launch_update_vmsa' });
      const pages = kvm.process.phys.allocatedPages;
      expect(vm.memoryEncryptOp({ cmd: 'sev_launch_update_vmsa' })).toEqual({ ret: 0 });
      expect(kvm.process.phys.allocatedPages).toBe(pages);
      expect(b.inspect!({ what: 'sev' })).toMatchObject({ protected_vcpus: 1, measured_bytes: 2 * PAGE_SIZE });
      const m = vm.memoryEncryptOp({ cmd: 'sev_launch_measure', uaddr: hva, len: 48 }).out!.measurement;
      // sev_vm_destroy() frees the VMSA page
      const before = kvm.process.phys.allocatedPages;
      b.destroy!();
      expect(kvm.process.phys.allocatedPages).toBe(before - 1);
      return m;
    };
    expect(run(0)).not.toBe(run(SVM_SEV_FEAT_DEBUG_SWAP));
    const sev = sevVm(host(), KVM_X86_SEV_VM);
    sev.vm.memoryEncryptOp({ cmd: 'sev_init2' });
    expect(() => sev.vm.memoryEncryptOp({ cmd: 'sev_launch_update_vmsa' })).toThrow(errno('ENOTTY'));
  });

  it('LAUNCH_MEASURE: a NULL buffer is a length query, the blob is at most SEV_FW_BLOB_MAX_SIZE and is copied to the user', () => {
    const { kvm, vm, hva } = sevVm(host(), KVM_X86_SEV_VM);
    vm.memoryEncryptOp({ cmd: 'sev_init2' });
    vm.memoryEncryptOp({ cmd: 'sev_launch_start', policy: 0 });
    // len without a buffer: the firmware sees length 0 and answers INVALID_LEN (EIO); no size check
    expect(() => vm.memoryEncryptOp({ cmd: 'sev_launch_measure', len: 0x5000 })).toThrow(errno('EIO'));
    kvm.process.mm.writeBytes(hva, new Uint8Array(0x4010).fill(0xcc));
    const out = vm.memoryEncryptOp({ cmd: 'sev_launch_measure', uaddr: hva, len: 0x4000 }).out!;
    expect(out.len).toBe(48);
    const copied = kvm.process.mm.readBytes(hva, 64);
    expect(Buffer.from(copied.subarray(0, 48)).toString('hex')).toBe(out.measurement);
    // copy_to_user() of params.len bytes of the kzalloc'ed buffer: zeroes after the blob, up to len
    expect([...copied.subarray(48)]).toEqual(new Array(16).fill(0));
    expect(kvm.process.mm.readBytes(hva + 48, 0x4000 - 48).every((b) => b === 0)).toBe(true);
    expect(kvm.process.mm.readBytes(hva + 0x4000, 16)).toEqual(new Uint8Array(16).fill(0xcc));
    // a buffer KVM cannot write: EFAULT after the firmware measured, params.len copied back
    const other = sevVm(host(), KVM_X86_SEV_VM);
    other.vm.memoryEncryptOp({ cmd: 'sev_init2' });
    other.vm.memoryEncryptOp({ cmd: 'sev_launch_start', policy: 0 });
    expect(other.vm.memoryEncryptOp({ cmd: 'sev_launch_measure', uaddr: 0x1000, len: 48 })).toEqual({ ret: -14, out: { len: 48 } });
    // the whole len must be writable, not only the 48 bytes of the blob
    const third = sevVm(host(), KVM_X86_SEV_VM);
    third.vm.memoryEncryptOp({ cmd: 'sev_init2' });
    third.vm.memoryEncryptOp({ cmd: 'sev_launch_start', policy: 0 });
    expect(third.vm.memoryEncryptOp({ cmd: 'sev_launch_measure', uaddr: third.hva + 2 * MiB - 48, len: 64 })).toEqual({ ret: -14, out: { len: 48 } });
  });

  it('kvm_sev_cmd.error: the firmware status of the last command, 0 after a success or a check before the firmware', () => {
    const { vm, hva, b } = sevVm(host(), KVM_X86_SEV_VM);
    const error = () => (b.inspect!({ what: 'sev' }) as { error: number }).error;
    vm.memoryEncryptOp({ cmd: 'sev_init2' });
    expect(() => vm.memoryEncryptOp({ cmd: 'sev_guest_status' })).toThrow(errno('EIO'));
    expect(error()).toBe(0x10); // SEV_RET_INVALID_GUEST: handle 0
    expect(() => vm.memoryEncryptOp({ cmd: 'sev_launch_start', policy: SEV_POLICY_ES })).toThrow(errno('EIO'));
    expect(error()).toBe(0x0d); // SEV_RET_INVALID_ASID
    vm.memoryEncryptOp({ cmd: 'sev_launch_start', policy: 0 });
    expect(error()).toBe(0);
    expect(() => vm.memoryEncryptOp({ cmd: 'sev_launch_start', policy: 0 })).toThrow(errno('EIO'));
    expect(error()).toBe(0x0c); // SEV_RET_ASID_OWNED
    expect(() => vm.memoryEncryptOp({ cmd: 'sev_launch_update_data', uaddr: hva, len: 0 })).toThrow(errno('EINVAL'));
    expect(error()).toBe(0);
    expect(() => vm.memoryEncryptOp({ cmd: 'sev_launch_update_data', uaddr: hva, len: 8 })).toThrow(errno('EIO'));
    expect(error()).toBe(0x04); // SEV_RET_INVALID_LEN
    expect(() => vm.memoryEncryptOp({ cmd: 'sev_launch_update_data', uaddr: hva + 8, len: 16 })).toThrow(errno('EIO'));
    expect(error()).toBe(0x09); // SEV_RET_INVALID_ADDRESS
    // the length query: EIO with params.len written back
    expect(vm.memoryEncryptOp({ cmd: 'sev_launch_measure', len: 0 })).toEqual({ ret: -5, out: { len: 48 } });
    expect(error()).toBe(0x04); // INVALID_LEN
    vm.memoryEncryptOp({ cmd: 'sev_launch_measure', uaddr: hva, len: 48 });
    expect(error()).toBe(0);
    expect(() => vm.memoryEncryptOp({ cmd: 'sev_launch_update_data', uaddr: hva, len: 16 })).toThrow(errno('EIO'));
    expect(error()).toBe(0x02); // SEV_RET_INVALID_GUEST_STATE
    expect(b.inspect!({ what: 'sev' })).toMatchObject({ error: 2, error_name: 'SEV_RET_INVALID_GUEST_STATE' });
    vm.memoryEncryptOp({ cmd: 'sev_guest_status' });
    expect(b.inspect!({ what: 'sev' })).toMatchObject({ error: 0, error_name: 'SEV_RET_SUCCESS' });
  });
});

describe('encrypted regions and memlock (sev_pin_memory)', () => {
  it('the lock limit counts whole pages: exactly the limit pins, one page more is ENOMEM', () => {
    const { vm, hva, b } = sevVm(host(), KVM_X86_SEV_VM, { memlockLimit: 3 * PAGE_SIZE + 100 });
    vm.memoryEncryptOp({ cmd: 'sev_init2' });
    vm.memoryEncryptRegRegion({ addr: hva, size: 3 * PAGE_SIZE });
    expect(b.pagesLocked).toBe(3);
    expect(() => vm.memoryEncryptRegRegion({ addr: hva, size: 1 })).toThrow(errno('ENOMEM'));
    expect(b.inspect!({ what: 'regions' })).toEqual([{ addr: hva, size: 3 * PAGE_SIZE, npages: 3 }]);
  });

  it('addr and size must be unsigned longs; more than INT_MAX pages is EINVAL before anything is pinned', () => {
    const { vm, hva, b } = sevVm(host(), KVM_X86_SEV_VM);
    expect(() => vm.memoryEncryptUnregRegion({ addr: hva, size: PAGE_SIZE })).toThrow(errno('ENOTTY'));
    vm.memoryEncryptOp({ cmd: 'sev_init2' });
    for (const r of [{ addr: -PAGE_SIZE, size: PAGE_SIZE }, { addr: hva, size: -1 }, { addr: 2 ** 64, size: PAGE_SIZE }, { addr: hva, size: 2 ** 64 }]) {
      expect(() => vm.memoryEncryptRegRegion(r)).toThrow(errno('EINVAL'));
    }
    expect(() => vm.memoryEncryptRegRegion({ addr: 0, size: 2 ** 31 * PAGE_SIZE })).toThrow(errno('EINVAL'));
    expect(b.pagesLocked).toBe(0);
  });

  it('sev_vm_destroy() unpins the regions and frees the ASID; a VM never initialized frees nothing', () => {
    const kvm = host();
    const asids = snpHostFor(kvm.process.phys).sev.asids;
    const a = sevVm(kvm, KVM_X86_SEV_VM);
    a.vm.memoryEncryptOp({ cmd: 'sev_init2' });
    a.vm.memoryEncryptRegRegion({ addr: a.hva, size: 2 * PAGE_SIZE });
    const asid = a.b.info.asid;
    const pinned = kvm.process.phys.allocatedPages;
    kvm.process.close(a.vm.fd);
    expect(a.b.pagesLocked).toBe(0);
    expect(a.b.inspect!({ what: 'regions' })).toEqual([]);
    expect(asids.isInUse(asid)).toBe(true); // waits for reclaim
    expect(kvm.process.phys.allocatedPages).toBeLessThanOrEqual(pinned);
    const flushes = asids.flushes;
    const [min, max] = asids.range(false);
    for (let i = min; i <= max; i++) if (!asids.isInUse(i)) asids.asidNew(false, i);
    // the range is full now: the next SEV ASID comes from reclaiming `asid`
    expect(asids.asidNew(false)).toBe(asid);
    expect(asids.flushes).toBe(flushes + 1);
    const never = sevVm(kvm, KVM_X86_SEV_VM);
    kvm.process.close(never.vm.fd);
    expect(never.b.checkInvariants!()).toEqual([]);
  });
});

describe('the SEV VM itself', () => {
  it('a guest op before KVM_SEV_INIT2 is EINVAL; KVM_RUN too (need_init)', () => {
    const { vm, b } = sevVm(host(), KVM_X86_SEV_ES_VM);
    expect(b.vcpuPreRun!(0)).toBeLessThan(0);
    expect(b.guestOp!(0, { op: 'ghcb_msr', value: GHCB_MSR_SEV_INFO_REQ })).toMatchObject({ errno: 'EINVAL' });
    vm.memoryEncryptOp({ cmd: 'sev_init2' });
    expect(b.vcpuPreRun!(0)).toBe(1);
    expect(vm.createVcpu(0).guestOp({ op: 'ghcb_msr', value: GHCB_MSR_SEV_INFO_REQ })).toEqual({ ret: ghcbMsrSevInfo(2, 1, 51) });
  });

  it('SEV has read-only memory and, without SMM address spaces in the profile, one memslot address space', () => {
    const phys = host().process.phys;
    const plain = sevBackendFactory({}, { phys, profile: { ...UPSTREAM_PROFILE, smmAddressSpaces: false } });
    expect(plain.nrMemslotAsIds).toBe(1);
    expect(plain.hasReadonlyMem).toBe(true);
    expect(plain.name).toBe('sev');
    expect(sevBackendFactory({}, { phys, profile: UPSTREAM_PROFILE }).nrMemslotAsIds).toBe(2);
    expect(host().createVm({ type: KVM_X86_SEV_ES_VM }).backend!.name).toBe('sev-es');
  });

  it("inspect 'sev' before LAUNCH_START: no handle, no firmware state; destroy runs once", () => {
    const { kvm, vm, hva, b } = sevVm(host(), KVM_X86_SEV_VM);
    vm.memoryEncryptOp({ cmd: 'sev_init2' });
    expect(b.inspect!({ what: 'sev' })).toMatchObject({ handle: 0, state: 0, measured_bytes: 0, pages_locked: 0, regions: 0 });
    vm.memoryEncryptOp({ cmd: 'sev_launch_start', policy: 0 });
    vm.memoryEncryptRegRegion({ addr: hva, size: PAGE_SIZE });
    const fw = snpHostFor(kvm.process.phys).sev.firmware;
    // before the teardown, everything it must release is still held
    expect(b.checkAfterDestroy!()).toEqual([
      '1 pages of 1 KVM_MEMORY_ENCRYPT_REG_REGION regions still pinned (sev_unpin_memory() did not run)',
      `firmware guest context ${(b.inspect!({ what: 'sev' }) as { handle: number }).handle} still alive (no DEACTIVATE/DECOMMISSION: sev_unbind_asid())`,
      `ASID ${b.info.asid} still bound (sev_asid_free() did not run)`,
    ]);
    b.destroy!();
    expect(b.checkAfterDestroy!()).toEqual([]);
    expect(b.pagesLocked).toBe(0);
    expect(fw.guestCount).toBe(0);
    b.destroy!();
    expect(b.pagesLocked).toBe(0);
    expect(b.checkInvariants!()).toEqual([]);
  });

  it('memlockLimit must be a non-negative integer byte count', () => {
    expect(() => host().createVm({ type: KVM_X86_SEV_VM, options: { memlockLimit: 1.5 } })).toThrow(errno('EINVAL'));
    expect(() => host().createVm({ type: KVM_X86_SEV_VM, options: { memlockLimit: 0 } })).not.toThrow();
  });

  it('minSevAsid / maxSevAsid set the host ASID ranges of CPUID 0x8000001F, once per host', () => {
    const kvm = host();
    const a = kvm.createVm({ type: KVM_X86_SEV_VM, options: { minSevAsid: 3, maxSevAsid: 4 } });
    const { asids } = (a.backend as SevBackend).platform;
    expect([asids.minSevAsid, asids.maxSevAsid]).toEqual([3, 4]);
    expect(asids.range(false)).toEqual([3, 4]);
    expect(asids.range(true)).toEqual([1, 2]);
    // the SNP VMs of the host share it
    expect(snpHostFor(kvm.process.phys).sev).toBe((a.backend as SevBackend).platform);
    a.memoryEncryptOp({ cmd: 'sev_init2' });
    expect((a.backend as SevBackend).info.asid).toBe(3);
    const b = kvm.createVm({ type: KVM_X86_SEV_VM, options: { minSevAsid: 3, maxSevAsid: 4 } });
    b.memoryEncryptOp({ cmd: 'sev_init2' });
    expect((b.backend as SevBackend).info.asid).toBe(4);
    // a VM without the options takes the host as it is; one with other values is refused
    expect(() => kvm.createVm({ type: KVM_X86_SEV_VM, options: {} })).not.toThrow();
    expect(() => kvm.createVm({ type: KVM_X86_SEV_VM, options: { minSevAsid: 3, maxSevAsid: 5 } })).toThrow(/already has min_sev_asid 3 and max_sev_asid 4/);
    // min_sev_asid = max_sev_asid + 1: no SEV ASID, sev_asid_new() is ENOTTY
    const empty = host().createVm({ type: KVM_X86_SEV_VM, options: { minSevAsid: 5, maxSevAsid: 4 } });
    expect(() => empty.memoryEncryptOp({ cmd: 'sev_init2' })).toThrow(errno('ENOTTY'));
    expect((empty.backend as SevBackend).info).toMatchObject({ active: false, esActive: false, needInit: true, asid: 0 });
  });

  it('minSevAsid / maxSevAsid: bad values are EINVAL and leave no host behind', () => {
    const kvm = host();
    for (const options of [
      { minSevAsid: 0, maxSevAsid: 4 },
      { minSevAsid: 1.5, maxSevAsid: 4 },
      { minSevAsid: 3, maxSevAsid: 0 },
      { minSevAsid: 2 ** 32, maxSevAsid: 2 ** 32 },
      { minSevAsid: 10, maxSevAsid: 8 },
      { minSevAsid: 3 },
      { maxSevAsid: 3 },
    ]) {
      expect(() => kvm.createVm({ type: KVM_X86_SEV_VM, options }), JSON.stringify(options)).toThrow(errno('EINVAL'));
    }
    // nothing above set the host up: the defaults still apply
    const vm = kvm.createVm({ type: KVM_X86_SEV_VM, options: {} });
    expect((vm.backend as SevBackend).platform.asids.range(false)).toEqual([100, 509]);
    // sev_hardware_setup(): min_sev_asid 1 leaves no SEV-ES ASIDs, and SEV-ES off
    const noEs = host();
    expect(() => noEs.createVm({ type: KVM_X86_SEV_VM, options: { minSevAsid: 1, maxSevAsid: 4 } })).not.toThrow();
    expect(() => noEs.createVm({ type: KVM_X86_SEV_ES_VM, options: {} })).toThrow(/no SEV-ES ASIDs/);
    // ...and SNP with it: sev_snp_supported is set only past the min_sev_asid check
    expect(() => noEs.createVm({ type: KVM_X86_SNP_VM, options: {} })).toThrow(errno('EINVAL'));
    expect(() => noEs.createVm({ type: KVM_X86_SNP_VM, options: {} })).toThrow(/no SNP VMs/);
    // a host with SEV-ES ASIDs creates SNP VMs
    const withEs = host();
    withEs.createVm({ type: KVM_X86_SEV_VM, options: { minSevAsid: 2, maxSevAsid: 4 } });
    expect(() => withEs.createVm({ type: KVM_X86_SNP_VM, options: {} })).not.toThrow();
  });
});

describe('sev_mem_enc_ioctl() on a VM without SEV state (sevMemEncryptOpFallback)', () => {
  it('KVM_SEV_INIT2 is EINVAL, the deprecated inits and every launch command ENOTTY, anything else EINVAL', () => {
    const call = (cmd: string) => () => sevMemEncryptOpFallback(null as never, { cmd } as never);
    expect(call('sev_init2')).toThrow(errno('EINVAL'));
    for (const cmd of ['sev_init', 'sev_es_init', 'sev_launch_start', 'sev_launch_update_data', 'sev_launch_update_vmsa', 'sev_launch_measure', 'sev_launch_finish', 'sev_guest_status', 'snp_launch_start', 'snp_launch_finish']) {
      expect(call(cmd)).toThrow(errno('ENOTTY'));
    }
    expect(call('snp_launch_update')).toThrow(errno('EINVAL'));
  });
});
