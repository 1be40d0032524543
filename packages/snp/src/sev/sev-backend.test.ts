/** The SEV and SEV-ES backend inside the core VM: KVM_SEV_INIT2, ASIDs, launch, regions, GHCB. */
import { describe, expect, it } from 'vitest';
import {
  ERRNO, KVM_MEMORY_ATTRIBUTE_PRIVATE, KVM_SYSTEM_EVENT_SEV_TERM, KVM_X86_DEFAULT_VM, KVM_X86_SEV_ES_VM, KVM_X86_SEV_VM, KVM_X86_SNP_VM, Kvm, PAGE_SIZE,
  UPSTREAM_PROFILE,
} from '@ccmem/core';
import { guestMemfdFactory } from '@ccmem/gmem';
import { snpBackendFactory, snpHostFor } from '../snp-backend.js';
import { sevBackendFactory, sevEsBackendFactory, sevMemEncryptOpFallback, type SevBackend } from './sev-backend.js';
import {
  GHCB_MSR_SEV_INFO_REQ, GHCB_MSR_PSC_REQ, SEV_GUEST_STATE_LAUNCH_SECRET, SEV_GUEST_STATE_LAUNCH_UPDATE, SEV_GUEST_STATE_RUNNING, SEV_POLICY_ES,
  SEV_POLICY_NO_DBG, SVM_SEV_FEAT_DEBUG_SWAP, ghcbMsrSevInfo, ghcbMsrTermReq,
} from './uapi.js';

const MiB = 2 ** 20;
const BACKENDS = { [KVM_X86_SEV_VM]: sevBackendFactory, [KVM_X86_SEV_ES_VM]: sevEsBackendFactory, [KVM_X86_SNP_VM]: snpBackendFactory };

function host(opts: { memEncryptOpFallback?: boolean } = {}) {
  return new Kvm({ guestMemfd: guestMemfdFactory, backends: BACKENDS, ...(opts.memEncryptOpFallback && { memEncryptOpFallback: sevMemEncryptOpFallback }) });
}

function sevVm(kvm: Kvm<typeof BACKENDS>, type: typeof KVM_X86_SEV_VM | typeof KVM_X86_SEV_ES_VM, options: { memlockLimit?: number } = {}) {
  const vm = kvm.createVm({ type, options });
  const hva = kvm.process.mm.mmap({ length: 2 * MiB, prot: { read: true, write: true }, shared: false });
  vm.setUserMemoryRegion({ slot: 0, flags: 0, guest_phys_addr: 0, memory_size: 2 * MiB, userspace_addr: hva });
  return { vm, hva, b: vm.backend as SevBackend };
}

const errno = (code: string) => expect.objectContaining({ code });

describe('KVM_SEV_INIT2 (sev_guest_init2, __sev_guest_init)', () => {
  it('checks flags, vmsa_features, ghcb_version, and a second init, in order, changing nothing on failure', () => {
    const kvm = host();
    for (const type of [KVM_X86_SEV_VM, KVM_X86_SEV_ES_VM] as const) {
      const { vm, b } = sevVm(kvm, type);
      for (let i = 0; i < 32; i++) expect(() => vm.memoryEncryptOp({ cmd: 'sev_init2', flags: 2 ** i })).toThrow(errno('EINVAL'));
      for (let i = 0; i < 64; i++) {
        if (type === KVM_X86_SEV_ES_VM && 2 ** i === SVM_SEV_FEAT_DEBUG_SWAP) continue;
        expect(() => vm.memoryEncryptOp({ cmd: 'sev_init2', vmsa_features: 2 ** i })).toThrow(errno('EINVAL'));
      }
      expect(() => vm.memoryEncryptOp({ cmd: 'sev_init2', ghcb_version: 3 })).toThrow(errno('EINVAL'));
      if (type === KVM_X86_SEV_VM) expect(() => vm.memoryEncryptOp({ cmd: 'sev_init2', ghcb_version: 1 })).toThrow(errno('EINVAL'));
      expect(b.info).toMatchObject({ active: false, needInit: true, asid: 0 });
      expect(vm.memoryEncryptOp({ cmd: 'sev_init2', ...(type === KVM_X86_SEV_ES_VM && { vmsa_features: SVM_SEV_FEAT_DEBUG_SWAP }) })).toEqual({ ret: 0 });
      expect(b.info).toMatchObject({ active: true, esActive: type === KVM_X86_SEV_ES_VM, needInit: false, ghcbVersion: type === KVM_X86_SEV_ES_VM ? 2 : 0 });
      expect(() => vm.memoryEncryptOp({ cmd: 'sev_init2' })).toThrow(errno('EINVAL'));
      // the deprecated commands are for the default VM type
      expect(() => vm.memoryEncryptOp({ cmd: 'sev_init' })).toThrow(errno('EINVAL'));
    }
  });

  it('refuses init after vCPUs exist; SEV-ES gets its ASID from [1, min_sev_asid - 1], SEV from [min_sev_asid, max]', () => {
    const kvm = host();
    const a = sevVm(kvm, KVM_X86_SEV_VM);
    const cpu = a.vm.createVcpu(0);
    expect(() => a.vm.memoryEncryptOp({ cmd: 'sev_init2' })).toThrow(errno('EINVAL'));
    // svm_vcpu_pre_run(): no KVM_RUN while the VM needs init
    expect(cpu.guestWrite(0x1000, 8, 1n)).toMatchObject({ errno: 'EINVAL' });
    const s = sevVm(kvm, KVM_X86_SEV_VM);
    s.vm.memoryEncryptOp({ cmd: 'sev_init2' });
    const es = sevVm(kvm, KVM_X86_SEV_ES_VM);
    es.vm.memoryEncryptOp({ cmd: 'sev_init2' });
    const min = snpHostFor(kvm.process.phys).sev.asids.minSevAsid;
    expect(s.b.info.asid).toBe(min);
    expect(es.b.info.asid).toBe(1);
  });

  it('SEV-ES and SNP share one ASID space: exhaustion is EBUSY, a freed ASID returns after the flush', () => {
    const kvm = host();
    const h = snpHostFor(kvm.process.phys);
    const esMax = h.sev.asids.minSevAsid - 1;
    const snp = kvm.createVm({ type: KVM_X86_SNP_VM });
    expect((snp.backend as unknown as { asid: number }).asid).toBe(0); // none before KVM_SEV_INIT2
    snp.memoryEncryptOp({ cmd: 'sev_init2' });
    expect((snp.backend as unknown as { asid: number }).asid).toBe(1);
    const vms = [];
    for (let i = 2; i <= esMax; i++) {
      const { vm } = sevVm(kvm, KVM_X86_SEV_ES_VM);
      vm.memoryEncryptOp({ cmd: 'sev_init2' });
      vms.push(vm);
    }
    const last = sevVm(kvm, KVM_X86_SEV_ES_VM);
    expect(() => last.vm.memoryEncryptOp({ cmd: 'sev_init2' })).toThrow(errno('EBUSY'));
    expect(last.b.info).toMatchObject({ active: false, needInit: true });
    // the SEV range is separate
    const sev = sevVm(kvm, KVM_X86_SEV_VM);
    expect(sev.vm.memoryEncryptOp({ cmd: 'sev_init2' })).toEqual({ ret: 0 });
    // freeing one ES ASID: reclaimed on the next allocation that finds the range full
    kvm.process.close(vms[0]!.fd);
    expect(last.vm.memoryEncryptOp({ cmd: 'sev_init2' })).toEqual({ ret: 0 });
    expect(last.b.info.asid).toBe(2);
    expect(h.sev.asids.flushes).toBe(1);
  });

  it('the VM options are checked: unknown keys and a bad memlockLimit are EINVAL', () => {
    expect(() => host().createVm({ type: KVM_X86_SEV_VM, options: { memlock: 1 } as never })).toThrow(/unknown sev VM option 'memlock' \(known options: memlockLimit, minSevAsid, maxSevAsid\)/);
    expect(() => host().createVm({ type: KVM_X86_SEV_ES_VM, options: { memlockLimit: -1 } })).toThrow(errno('EINVAL'));
  });

  it('KVM_SEV_INIT2 on a default VM is EINVAL with the AMD mem_enc_ioctl, ENOTTY without one', () => {
    expect(() => host({ memEncryptOpFallback: true }).createVm({ type: KVM_X86_DEFAULT_VM }).memoryEncryptOp({ cmd: 'sev_init2' } as never)).toThrow(errno('EINVAL'));
    expect(() => host().createVm({ type: KVM_X86_DEFAULT_VM }).memoryEncryptOp({ cmd: 'sev_init2' } as never)).toThrow(errno('ENOTTY'));
  });

  it('SNP: KVM_SEV_INIT2 checks once; then the SEV commands are EPERM', () => {
    const vm = host().createVm({ type: KVM_X86_SNP_VM });
    // before KVM_SEV_INIT2 the VM is not an SNP guest (snp_launch_start(): !sev_snp_guest())
    expect(() => vm.memoryEncryptOp({ cmd: 'snp_launch_start' })).toThrow(errno('ENOTTY'));
    expect(() => vm.memoryEncryptOp({ cmd: 'sev_init2', flags: 1 })).toThrow(errno('EINVAL'));
    expect(() => vm.memoryEncryptOp({ cmd: 'sev_init2', vmsa_features: 1 })).toThrow(errno('EINVAL'));
    expect(vm.memoryEncryptOp({ cmd: 'sev_init2' })).toEqual({ ret: 0 });
    expect(() => vm.memoryEncryptOp({ cmd: 'sev_init2' })).toThrow(errno('EPERM'));
    expect(() => vm.memoryEncryptOp({ cmd: 'sev_launch_start' } as never)).toThrow(errno('EPERM'));
  });
});

describe('SEV launch', () => {
  it('LAUNCH_START, UPDATE_DATA, MEASURE, FINISH walk the firmware states; wrong states are EIO', () => {
    const { vm, hva, b } = sevVm(host(), KVM_X86_SEV_VM);
    expect(() => vm.memoryEncryptOp({ cmd: 'sev_launch_start' })).toThrow(errno('ENOTTY'));
    vm.memoryEncryptOp({ cmd: 'sev_init2' });
    expect(() => vm.memoryEncryptOp({ cmd: 'sev_guest_status' })).toThrow(errno('EIO')); // handle 0
    expect(() => vm.memoryEncryptOp({ cmd: 'sev_launch_update_data', uaddr: hva, len: PAGE_SIZE })).toThrow(errno('EIO'));
    // an ES policy on a SEV ASID: ACTIVATE refuses it
    expect(() => vm.memoryEncryptOp({ cmd: 'sev_launch_start', policy: SEV_POLICY_ES })).toThrow(errno('EIO'));
    expect(vm.memoryEncryptOp({ cmd: 'sev_launch_start', policy: SEV_POLICY_NO_DBG }).out).toMatchObject({ handle: expect.any(Number) });
    expect(vm.memoryEncryptOp({ cmd: 'sev_guest_status' }).out).toMatchObject({ policy: SEV_POLICY_NO_DBG, state: SEV_GUEST_STATE_LAUNCH_UPDATE });
    expect(() => vm.memoryEncryptOp({ cmd: 'sev_launch_update_data', uaddr: hva, len: 0 })).toThrow(errno('EINVAL'));
    expect(() => vm.memoryEncryptOp({ cmd: 'sev_launch_update_data', uaddr: hva, len: 15 })).toThrow(errno('EIO')); // INVALID_LEN
    expect(() => vm.memoryEncryptOp({ cmd: 'sev_launch_update_data', uaddr: 0x1000, len: PAGE_SIZE })).toThrow(errno('ENOMEM')); // unmapped
    expect(vm.memoryEncryptOp({ cmd: 'sev_launch_update_data', uaddr: hva, len: 2 * PAGE_SIZE })).toEqual({ ret: 0 });
    expect(b.pagesLocked).toBe(0);
    expect(() => vm.memoryEncryptOp({ cmd: 'sev_launch_update_vmsa' })).toThrow(errno('ENOTTY'));
    // the length query: the firmware answers INVALID_LEN with the length, KVM returns EIO and writes params.len
    expect(vm.memoryEncryptOp({ cmd: 'sev_launch_measure', len: 0 })).toEqual({ ret: -ERRNO.EIO, out: { len: 48 } });
    // a NULL buffer with a length hands the firmware a zero length too, but is no query: EIO, nothing written back
    expect(() => vm.memoryEncryptOp({ cmd: 'sev_launch_measure', len: 48 })).toThrow(errno('EIO'));
    expect(() => vm.memoryEncryptOp({ cmd: 'sev_launch_measure', uaddr: hva, len: 32 })).toThrow(errno('EIO'));
    expect(() => vm.memoryEncryptOp({ cmd: 'sev_launch_measure', uaddr: hva, len: 0x4001 })).toThrow(errno('EINVAL'));
    const m = vm.memoryEncryptOp({ cmd: 'sev_launch_measure', uaddr: hva, len: 256 }).out!;
    expect(m.len).toBe(48);
    expect(m.measurement).toMatch(/^[0-9a-f]{96}$/);
    expect(vm.memoryEncryptOp({ cmd: 'sev_guest_status' }).out).toMatchObject({ state: SEV_GUEST_STATE_LAUNCH_SECRET });
    expect(() => vm.memoryEncryptOp({ cmd: 'sev_launch_update_data', uaddr: hva, len: PAGE_SIZE })).toThrow(errno('EIO'));
    expect(vm.memoryEncryptOp({ cmd: 'sev_launch_finish' })).toEqual({ ret: 0 });
    expect(vm.memoryEncryptOp({ cmd: 'sev_guest_status' }).out).toMatchObject({ state: SEV_GUEST_STATE_RUNNING });
    expect(() => vm.memoryEncryptOp({ cmd: 'sev_launch_finish' })).toThrow(errno('EIO'));
  });

  it('the measurement covers the launched data', () => {
    const measure = (byte: number) => {
      const kvm = host();
      const { vm, hva } = sevVm(kvm, KVM_X86_SEV_VM);
      kvm.process.mm.writeBytes(hva, new Uint8Array(PAGE_SIZE).fill(byte));
      vm.memoryEncryptOp({ cmd: 'sev_init2' });
      vm.memoryEncryptOp({ cmd: 'sev_launch_start', policy: 0 });
      vm.memoryEncryptOp({ cmd: 'sev_launch_update_data', uaddr: hva, len: PAGE_SIZE });
      return vm.memoryEncryptOp({ cmd: 'sev_launch_measure', uaddr: hva + PAGE_SIZE, len: 48 }).out!.measurement;
    };
    expect(measure(1)).toBe(measure(1));
    expect(measure(1)).not.toBe(measure(2));
  });

  it('SEV-ES: LAUNCH_UPDATE_VMSA encrypts every vCPU; the GHCB MSR protocol reports the GHCB version and terminates', () => {
    const { vm, hva, b } = sevVm(host(), KVM_X86_SEV_ES_VM);
    vm.memoryEncryptOp({ cmd: 'sev_init2' });
    const cpu = vm.createVcpu(0);
    vm.createVcpu(1);
    expect(() => vm.memoryEncryptOp({ cmd: 'sev_launch_start', policy: 0 })).toThrow(errno('EIO')); // non-ES policy on an ES ASID
    vm.memoryEncryptOp({ cmd: 'sev_launch_start', policy: SEV_POLICY_ES });
    vm.memoryEncryptOp({ cmd: 'sev_launch_update_data', uaddr: hva, len: PAGE_SIZE });
    expect(vm.memoryEncryptOp({ cmd: 'sev_launch_update_vmsa' })).toEqual({ ret: 0 });
    expect(b.inspect!({ what: 'sev' })).toMatchObject({ protected_vcpus: 2, measured_bytes: 3 * PAGE_SIZE });
    vm.memoryEncryptOp({ cmd: 'sev_launch_measure', uaddr: hva, len: 48 });
    vm.memoryEncryptOp({ cmd: 'sev_launch_finish' });
    expect(cpu.guestOp({ op: 'ghcb_msr', value: GHCB_MSR_SEV_INFO_REQ })).toEqual({ ret: ghcbMsrSevInfo(2, 1, 51) });
    // an SNP-only request terminates an SEV-ES guest
    expect(cpu.guestOp({ op: 'ghcb_msr', value: GHCB_MSR_PSC_REQ }).exit).toMatchObject({ system_event: { type: KVM_SYSTEM_EVENT_SEV_TERM, data: [GHCB_MSR_PSC_REQ] } });
    const term = ghcbMsrTermReq(1, 3);
    expect(cpu.guestOp({ op: 'ghcb_msr', value: term }).exit).toEqual({ reason: 'KVM_EXIT_SYSTEM_EVENT', system_event: { type: KVM_SYSTEM_EVENT_SEV_TERM, ndata: 1, data: [term] } });
    expect(cpu.guestOp({ op: 'ghcb_term_request', ghcb_gpa: 0x5000 }).exit).toMatchObject({ system_event: { type: 6, ndata: 1, data: [0x5000] } });
    // no GHCB: KVM goes back to the guest
    expect(cpu.guestOp({ op: 'ghcb_term_request', ghcb_gpa: 0 }).exit).toBeUndefined();
    // a GHCB outside every memslot: kvm_vcpu_map() fails and KVM goes back to the guest
    const unmapped = cpu.guestOp({ op: 'ghcb_term_request', ghcb_gpa: 0x40_0000 });
    expect(unmapped.exit).toBeUndefined();
    expect(unmapped.errno).toBeUndefined();
  });

  it('a plain SEV guest has no GHCB', () => {
    const { vm } = sevVm(host(), KVM_X86_SEV_VM);
    vm.memoryEncryptOp({ cmd: 'sev_init2' });
    expect(vm.createVcpu(0).guestOp({ op: 'ghcb_msr', value: ghcbMsrTermReq(0, 0) })).toMatchObject({ errno: 'EINVAL' });
  });
});

describe('KVM_MEMORY_ENCRYPT_REG_REGION / UNREG_REGION (sev_mem_enc_register_region)', () => {
  it('pins the pages the range touches, counts them against RLIMIT_MEMLOCK, and unregisters exact matches only', () => {
    const kvm = host();
    const { vm, hva, b } = sevVm(kvm, KVM_X86_SEV_VM, { memlockLimit: 4 * PAGE_SIZE });
    expect(() => vm.memoryEncryptRegRegion({ addr: hva, size: PAGE_SIZE })).toThrow(errno('ENOTTY'));
    vm.memoryEncryptOp({ cmd: 'sev_init2' });
    const before = kvm.process.phys.allocatedPages;
    expect(() => vm.memoryEncryptRegRegion({ addr: hva, size: 0 })).toThrow(errno('EINVAL'));
    // 4 KiB from an unaligned address touches two pages
    vm.memoryEncryptRegRegion({ addr: hva + 0x800, size: PAGE_SIZE });
    expect(b.pagesLocked).toBe(2);
    expect(kvm.process.phys.allocatedPages - before).toBe(2);
    // overlap is not refused: the pages count again
    vm.memoryEncryptRegRegion({ addr: hva, size: 2 * PAGE_SIZE });
    expect(b.pagesLocked).toBe(4);
    expect(() => vm.memoryEncryptRegRegion({ addr: hva, size: 1 })).toThrow(errno('ENOMEM'));
    expect(b.pagesLocked).toBe(4);
    expect(() => vm.memoryEncryptUnregRegion({ addr: hva, size: PAGE_SIZE })).toThrow(errno('EINVAL'));
    vm.memoryEncryptUnregRegion({ addr: hva + 0x800, size: PAGE_SIZE });
    expect(b.pagesLocked).toBe(2);
    expect(() => vm.memoryEncryptUnregRegion({ addr: hva + 0x800, size: PAGE_SIZE })).toThrow(errno('EINVAL'));
    // unmapped memory cannot be pinned
    expect(() => vm.memoryEncryptRegRegion({ addr: 0x1000, size: PAGE_SIZE })).toThrow(errno('ENOMEM'));
    expect(b.checkInvariants!()).toEqual([]);
  });

  it('a large region pins what it spans without per-page objects; non-SEV VMs answer ENOTTY', () => {
    const kvm = host();
    const vm = kvm.createVm({ type: KVM_X86_SEV_VM });
    const hva = kvm.process.mm.mmap({ length: 64 * MiB, prot: { read: true, write: true }, shared: false });
    vm.memoryEncryptOp({ cmd: 'sev_init2' });
    vm.memoryEncryptRegRegion({ addr: hva, size: 64 * MiB });
    expect((vm.backend as SevBackend).pagesLocked).toBe((64 * MiB) / PAGE_SIZE);
    expect(() => kvm.createVm({ type: KVM_X86_SNP_VM }).memoryEncryptRegRegion({ addr: hva, size: PAGE_SIZE })).toThrow(errno('ENOTTY'));
  });

  it('SEV VMs have no private memory: KVM_SET_MEMORY_ATTRIBUTES(PRIVATE) is EINVAL; SEV-ES has one address space and no read-only memory', () => {
    const kvm = host();
    const { vm } = sevVm(kvm, KVM_X86_SEV_VM);
    expect(() => vm.setMemoryAttributes({ address: 0, size: PAGE_SIZE, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE, flags: 0 })).toThrow(errno('EINVAL'));
    expect(vm.nrMemslotAsIds).toBe(UPSTREAM_PROFILE.smmAddressSpaces ? 2 : 1);
    const es = kvm.createVm({ type: KVM_X86_SEV_ES_VM });
    expect(es.nrMemslotAsIds).toBe(1);
    expect(es.backend!.hasReadonlyMem).toBe(false);
  });

  it('teardown unpins, decommissions and frees the ASID for reclaim', () => {
    const kvm = host();
    const { vm, hva } = sevVm(kvm, KVM_X86_SEV_VM);
    const fw = snpHostFor(kvm.process.phys).sev.firmware;
    vm.memoryEncryptOp({ cmd: 'sev_init2' });
    vm.memoryEncryptOp({ cmd: 'sev_launch_start', policy: 0 });
    vm.memoryEncryptRegRegion({ addr: hva, size: MiB });
    const guests = fw.guestCount;
    kvm.process.close(vm.fd);
    expect(fw.guestCount).toBe(guests - 1);
  });
});
